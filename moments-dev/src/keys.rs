//! The table of known config keys, derived from the typed settings
//! themselves, and the env var name of each key.
//!
//! Like viper, we resolve env vars only for keys we already know: the typed
//! schema's leaves plus the leaves present in the YAML layers. We never infer
//! nesting from an env var's name.
//!
//! The same walk learns which keys are secret: secret settings have types
//! ([`crate::settings::Secret`], …) that announce themselves by name.

use std::collections::BTreeMap;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::settings::{MomentsSettings, Secrecy};

/// What the schema says about a key path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A scalar or list field of the typed settings.
    Leaf,
    /// A map with free-form keys (any sub-key is known).
    Map,
}

/// Known key paths of the typed settings.
#[derive(Debug, Clone, Default)]
pub struct KeyTable {
    keys: BTreeMap<String, KeyKind>,
    secrets: BTreeMap<String, Secrecy>,
}

impl KeyTable {
    /// The table of [`MomentsSettings`], read off its `Deserialize` impl.
    pub fn for_settings() -> KeyTable {
        let mut table = KeyTable::default();
        // The recorder never fails; a failure would only mean an empty table,
        // which the key-table test would catch.
        let _ = MomentsSettings::deserialize(Recorder {
            path: String::new(),
            secrecy: None,
            table: &mut table,
        });
        table
    }

    /// How much of the typed leaf `key` is secret, if any of it is.
    pub fn secrecy(&self, key: &str) -> Option<Secrecy> {
        self.secrets.get(key).copied()
    }

    /// Leaf keys of the typed settings, in sorted order.
    pub fn leaves(&self) -> impl Iterator<Item = &str> {
        self.keys
            .iter()
            .filter(|(_, kind)| **kind == KeyKind::Leaf)
            .map(|(key, _)| key.as_str())
    }

    pub fn is_typed_leaf(&self, key: &str) -> bool {
        self.keys.get(key) == Some(&KeyKind::Leaf)
    }

    /// True when `key` is a typed leaf, sits under a typed map, or is a
    /// parent of typed keys.
    pub fn knows(&self, key: &str) -> bool {
        if self.keys.contains_key(key) {
            return true;
        }
        let is_under_map = self.keys.iter().any(|(known, kind)| {
            *kind == KeyKind::Map
                && key.len() > known.len()
                && key.starts_with(known.as_str())
                && key.as_bytes()[known.len()] == b'.'
        });
        let is_parent = self.keys.keys().any(|known| {
            known.len() > key.len() && known.starts_with(key) && known.as_bytes()[key.len()] == b'.'
        });
        is_under_map || is_parent
    }
}

/// `MOMENTS` + `platform.mento-service-identity-base-url` →
/// `MOMENTS_PLATFORM_MENTO_SERVICE_IDENTITY_BASE_URL`.
pub fn env_var_name(prefix: &str, key: &str) -> String {
    let prefix = prefix.trim_end_matches('_');
    let body: String = key
        .chars()
        .map(|c| match c {
            '.' | '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    if prefix.is_empty() {
        body
    } else {
        format!("{prefix}_{body}")
    }
}

/// A deserializer that produces default-like values while recording which
/// key paths the target type asks for: struct fields are followed, maps are
/// recorded as [`KeyKind::Map`], everything else as [`KeyKind::Leaf`]. This
/// keeps the typed structs the single source of truth for the key table at
/// almost no cost per run.
struct Recorder<'a> {
    path: String,
    /// Set when the value's type announced itself as secret.
    secrecy: Option<Secrecy>,
    table: &'a mut KeyTable,
}

impl Recorder<'_> {
    fn leaf(self) {
        if !self.path.is_empty() {
            if let Some(secrecy) = self.secrecy {
                self.table.secrets.insert(self.path.clone(), secrecy);
            }
            self.table.keys.insert(self.path, KeyKind::Leaf);
        }
    }
}

type RecordError = serde::de::value::Error;

macro_rules! leaf_as {
    ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RecordError> {
            self.leaf();
            visitor.$visit($($value)?)
        }
    )*};
}

impl<'de> Deserializer<'de> for Recorder<'_> {
    type Error = RecordError;

    leaf_as! {
        deserialize_any => visit_unit(),
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i8(0),
        deserialize_i16 => visit_i16(0),
        deserialize_i32 => visit_i32(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u8(0),
        deserialize_u16 => visit_u16(0),
        deserialize_u32 => visit_u32(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f32(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char(' '),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
        deserialize_unit => visit_unit(),
        deserialize_identifier => visit_str(""),
        deserialize_ignored_any => visit_unit(),
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RecordError> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, RecordError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, RecordError> {
        self.secrecy = self.secrecy.or(Secrecy::from_marker(name));
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RecordError> {
        self.leaf();
        visitor.visit_seq(serde::de::value::SeqDeserializer::<
            std::iter::Empty<()>,
            RecordError,
        >::new(std::iter::empty()))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, RecordError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, RecordError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RecordError> {
        if !self.path.is_empty() {
            self.table.keys.insert(self.path, KeyKind::Map);
        }
        visitor.visit_map(serde::de::value::MapDeserializer::<
            std::iter::Empty<((), ())>,
            RecordError,
        >::new(std::iter::empty()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, RecordError> {
        visitor.visit_map(Fields {
            fields: fields.iter(),
            current: "",
            path: self.path,
            table: self.table,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, RecordError> {
        self.deserialize_any(visitor)
    }
}

/// Walks the fields of one struct, recording each under `path`.
struct Fields<'a> {
    fields: std::slice::Iter<'static, &'static str>,
    current: &'static str,
    path: String,
    table: &'a mut KeyTable,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = RecordError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, RecordError> {
        let Some(field) = self.fields.next() else {
            return Ok(None);
        };
        self.current = field;
        seed.deserialize(serde::de::value::BorrowedStrDeserializer::new(field))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, RecordError> {
        let path = if self.path.is_empty() {
            self.current.to_owned()
        } else {
            format!("{}.{}", self.path, self.current)
        };
        seed.deserialize(Recorder {
            path,
            secrecy: None,
            table: self.table,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_the_backend_keys_in_yaml_spelling() {
        let table = KeyTable::for_settings();
        let leaves: Vec<&str> = table.leaves().collect();
        for key in [
            "server.port",
            "platform.mento-service-identity-base-url",
            "platform.mento-service-public-base-url",
            "integrations.stytch.stytch-public-token",
            "integrations.stytch.stytch-hosted-url",
            "sql.database-url",
            "keys.internal-jwt-private-key-path",
            "keys.internal-jwt-public-key-path",
            "bootstrap.openssl-bin",
            "dev.web-port",
            "dev.backend.command",
        ] {
            assert!(leaves.contains(&key), "{key} missing from {leaves:?}");
        }
        assert!(!table.is_typed_leaf("dev.build"));
        assert!(table.knows("dev.build.anything"));
        assert!(table.knows("platform"));
        assert!(!table.knows("server.prot"));
        assert!(!table.knows("serverx"));
    }

    #[test]
    fn secret_keys_come_from_the_settings_types() {
        let table = KeyTable::for_settings();
        assert_eq!(
            table.secrecy("integrations.stytch.stytch-public-token"),
            Some(Secrecy::Whole)
        );
        assert_eq!(
            table.secrecy("sql.database-url"),
            Some(Secrecy::UrlPassword)
        );
        let secret: Vec<&String> = table.secrets.keys().collect();
        assert_eq!(secret.len(), 2, "only the marked fields: {secret:?}");
        assert_eq!(table.secrecy("integrations.stytch.stytch-hosted-url"), None);
    }

    #[test]
    fn env_names_replace_dots_and_dashes() {
        assert_eq!(
            env_var_name("MOMENTS", "platform.mento-service-identity-base-url"),
            "MOMENTS_PLATFORM_MENTO_SERVICE_IDENTITY_BASE_URL"
        );
        assert_eq!(env_var_name("APP_", "server.port"), "APP_SERVER_PORT");
    }
}
