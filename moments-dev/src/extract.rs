//! Reading the typed settings out of the merged layers (serde).
//!
//! Values are coerced the way viper (and figment's `extract_lossy`) coerce
//! them: env vars and `--set` flags are strings, so `"8083"` reads as a port
//! and `"yes"`/`"on"`/`"1"` as `true`. A value of the wrong type fails with
//! the key's dotted path and the layer the value came from.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::forward_to_deserialize_any;
use serde_json::Value;

use crate::config::Origin;
use crate::layers::{Children, View};

/// Why a value did not fit its setting.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractError {
    /// The dotted key (empty until the failing value says where it is).
    pub key: String,
    pub origin: Option<Origin>,
    pub kind: Problem,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// `found` where `expected` was wanted (serde's words: "u16", "a string").
    WrongType {
        expected: String,
        found: String,
    },
    Other(String),
}

impl ExtractError {
    /// Says where, unless a deeper value already did.
    fn at(mut self, key: &str, origin: Option<&Origin>) -> ExtractError {
        if self.origin.is_none() && self.key.is_empty() {
            self.key = key.to_owned();
            self.origin = origin.cloned();
        }
        self
    }
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Problem::WrongType { expected, found } => {
                write!(f, "{}: expected {expected}, found {found}", self.key)
            }
            Problem::Other(message) => write!(f, "{}: {message}", self.key),
        }
    }
}

impl std::error::Error for ExtractError {}

impl de::Error for ExtractError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        ExtractError {
            key: String::new(),
            origin: None,
            kind: Problem::Other(message.to_string()),
        }
    }

    fn invalid_type(found: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        ExtractError {
            key: String::new(),
            origin: None,
            kind: Problem::WrongType {
                expected: expected.to_string(),
                found: found.to_string(),
            },
        }
    }

    fn invalid_value(found: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::invalid_type(found, expected)
    }
}

/// `T` read from the merged `view`.
pub fn extract<T: DeserializeOwned>(view: View<'_>) -> Result<T, ExtractError> {
    T::deserialize(ViewDe {
        view,
        key: String::new(),
    })
}

fn child_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// A merged value: maps are read key by key across the layers; anything
/// else is the JSON value of the highest layer.
struct ViewDe<'a> {
    view: View<'a>,
    key: String,
}

impl<'a> ViewDe<'a> {
    fn leaf(&self) -> Result<(Value, Option<&'a Origin>), ExtractError> {
        let text = self.view.json_text().unwrap_or("null");
        let value = serde_json::from_str(text).map_err(de::Error::custom)?;
        Ok((value, self.view.origin()))
    }
}

macro_rules! through_leaf {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ExtractError> {
            if self.view.is_map() {
                return self.deserialize_any(visitor);
            }
            let (value, origin) = self.leaf()?;
            ValueDe { value: &value, key: &self.key, origin }
                .$method(visitor)
                .map_err(|err| err.at(&self.key, origin))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for ViewDe<'_> {
    type Error = ExtractError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ExtractError> {
        let origin = self.view.origin();
        if self.view.is_map() {
            return visitor
                .visit_map(ViewMap {
                    children: self.view.children(),
                    key: &self.key,
                    next: None,
                })
                .map_err(|err| err.at(&self.key, origin));
        }
        let (value, origin) = self.leaf()?;
        ValueDe {
            value: &value,
            key: &self.key,
            origin,
        }
        .deserialize_any(visitor)
        .map_err(|err| err.at(&self.key, origin))
    }

    through_leaf!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_f32,
        deserialize_f64,
        deserialize_option
    );

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ExtractError> {
        visitor.visit_newtype_struct(self)
    }

    /// Keys the settings do not know are skipped unread (they may be huge).
    fn deserialize_ignored_any<V: Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, ExtractError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct enum identifier
    }
}

struct ViewMap<'a, 'k> {
    children: Children<'a>,
    key: &'k str,
    next: Option<(&'a str, View<'a>)>,
}

impl<'de> MapAccess<'de> for ViewMap<'_, '_> {
    type Error = ExtractError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ExtractError> {
        let Some((key, view)) = self.children.next() else {
            return Ok(None);
        };
        self.next = Some((key, view));
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ExtractError> {
        let Some((key, view)) = self.next.take() else {
            return Err(de::Error::custom("a value without a key"));
        };
        seed.deserialize(ViewDe {
            view,
            key: child_key(self.key, key),
        })
    }
}

/// A JSON value, coerced loosely where the target is a number or a boolean.
struct ValueDe<'v, 'k, 'o> {
    value: &'v Value,
    key: &'k str,
    origin: Option<&'o Origin>,
}

impl ValueDe<'_, '_, '_> {
    /// Reads `value`, found under `key` inside this one, with `seed`.
    fn nested<'de, S: DeserializeSeed<'de>>(
        &self,
        key: &str,
        value: &Value,
        seed: S,
    ) -> Result<S::Value, ExtractError> {
        let key = child_key(self.key, key);
        seed.deserialize(ValueDe {
            value,
            key: &key,
            origin: self.origin,
        })
        .map_err(|err| err.at(&key, self.origin))
    }
}

macro_rules! loose_number {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ExtractError> {
            let Value::String(text) = self.value else {
                return self.deserialize_any(visitor);
            };
            let text = text.trim();
            if let Ok(n) = text.parse::<u64>() {
                visitor.visit_u64(n)
            } else if let Ok(n) = text.parse::<i64>() {
                visitor.visit_i64(n)
            } else if let Ok(n) = text.parse::<f64>() {
                visitor.visit_f64(n)
            } else {
                visitor.visit_str(text)
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for ValueDe<'_, '_, '_> {
    type Error = ExtractError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ExtractError> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(n) = n.as_u64() {
                    visitor.visit_u64(n)
                } else if let Some(n) = n.as_i64() {
                    visitor.visit_i64(n)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_str(s),
            Value::Array(items) => visitor.visit_seq(ValueSeq {
                items: items.iter().enumerate(),
                de: &self,
            }),
            Value::Object(map) => visitor.visit_map(ValueMap {
                entries: map.iter(),
                next: None,
                de: &self,
            }),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ExtractError> {
        let loose = match self.value {
            Value::String(text) => {
                let text = text.trim().to_ascii_lowercase();
                match text.as_str() {
                    "true" | "yes" | "1" | "on" => Some(true),
                    "false" | "no" | "0" | "off" => Some(false),
                    _ => None,
                }
            }
            Value::Number(n) => match n.as_u64() {
                Some(0) => Some(false),
                Some(1) => Some(true),
                _ => None,
            },
            _ => None,
        };
        match loose {
            Some(b) => visitor.visit_bool(b),
            None => self.deserialize_any(visitor),
        }
    }

    loose_number!(
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_f32,
        deserialize_f64
    );

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ExtractError> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ExtractError> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct ValueSeq<'a, 'd, 'k, 'o> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
    de: &'d ValueDe<'a, 'k, 'o>,
}

impl<'de> SeqAccess<'de> for ValueSeq<'_, '_, '_, '_> {
    type Error = ExtractError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ExtractError> {
        let Some((index, item)) = self.items.next() else {
            return Ok(None);
        };
        self.de.nested(&index.to_string(), item, seed).map(Some)
    }
}

struct ValueMap<'a, 'd, 'k, 'o> {
    entries: serde_json::map::Iter<'a>,
    next: Option<(&'a String, &'a Value)>,
    de: &'d ValueDe<'a, 'k, 'o>,
}

impl<'de> MapAccess<'de> for ValueMap<'_, '_, '_, '_> {
    type Error = ExtractError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ExtractError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.next = Some((key, value));
        seed.deserialize(key.as_str().into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ExtractError> {
        let Some((key, value)) = self.next.take() else {
            return Err(de::Error::custom("a value without a key"));
        };
        self.de.nested(key, value, seed)
    }
}
