//! What counts as a secret, and how it is hidden.
//!
//! Secrets never reach stdout, stderr or a file unless the user passed
//! `--show-secrets`. Which typed settings are secret is decided by their
//! types (see [`crate::settings::Secret`]), through the key table; keys the
//! schema does not know are treated as secret when a part of their path says
//! so (the shared words of `devctl_contract::secrets`). A parent key's value is
//! redacted leaf by leaf, so `config get integrations` hides the token in it.

use std::borrow::Cow;

use serde_json::Value;

pub use devctl_contract::secrets::{redact_text, REDACTED};

use crate::keys::KeyTable;
use crate::settings::Secrecy;

/// Vite variables whose values are secret.
pub const SECRET_VITE_VARS: &[&str] = &["VITE_STYTCH_PUBLIC_TOKEN"];

pub fn is_secret_vite_var(name: &str) -> bool {
    SECRET_VITE_VARS.contains(&name)
}

/// The JSON text of config `key`'s value as it may be shown. Parsed only
/// when something in it could be secret (the key, or a map inside a list).
pub fn redact_json_text<'a>(table: &KeyTable, key: &str, text: &'a str) -> Cow<'a, str> {
    let key_is_secret = table.secrecy(key).is_some() || secret_by_name(table, key);
    if !key_is_secret && !text.contains('{') {
        return Cow::Borrowed(text);
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value) => Cow::Owned(
            serde_json::to_string(&redact_config_value(table, key, &value)).unwrap_or_default(),
        ),
        // Not JSON (cannot happen for stored values): show nothing of it.
        Err(_) => Cow::Owned(serde_json::to_string(REDACTED).unwrap_or_default()),
    }
}

/// The value of config `key` (a leaf or a parent) as it may be shown.
pub fn redact_config_value(table: &KeyTable, key: &str, value: &Value) -> Value {
    let mut shown = value.clone();
    redact_in_place(table, &mut key.to_owned(), &mut shown);
    shown
}

fn redact_in_place(table: &KeyTable, key: &mut String, value: &mut Value) {
    match (table.secrecy(key), value) {
        (Some(Secrecy::Whole), value) => *value = Value::String(REDACTED.into()),
        (Some(Secrecy::UrlPassword), Value::String(url)) => *url = redact_password_of(url),
        (Some(Secrecy::UrlPassword), value) => *value = Value::String(REDACTED.into()),
        (None, value)
            if !table.is_typed_leaf(key) && devctl_contract::secrets::is_secret_name(key) =>
        {
            *value = Value::String(REDACTED.into())
        }
        (None, Value::Object(map)) => {
            for (name, inner) in map.iter_mut() {
                let len = key.len();
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
                redact_in_place(table, key, inner);
                key.truncate(len);
            }
        }
        // Maps inside lists are checked under the list's key.
        (None, Value::Array(items)) => {
            for item in items {
                redact_in_place(table, key, item);
            }
        }
        (None, _) => {}
    }
}

/// A key the settings do not type is secret when any part of its path
/// names a secret: `extra.credentials.pass` as well as `extra.api-token`, so
/// `config dump` (leaf by leaf) hides what `config get extra.credentials`
/// hides.
fn secret_by_name(table: &KeyTable, key: &str) -> bool {
    !table.is_typed_leaf(key) && key.split('.').any(devctl_contract::secrets::is_secret_name)
}

/// The URL with its password (and any secret query parameter) hidden.
fn redact_password_of(url: &str) -> String {
    redact_text(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn database_passwords_are_hidden_but_the_rest_of_the_url_is_kept() {
        assert_eq!(
            redact_text("postgres://app:p@ss:w@rd@localhost:5432/moments?sslmode=disable"),
            "postgres://app:<redacted>@localhost:5432/moments?sslmode=disable"
        );
        assert_eq!(
            redact_text("postgres://app@localhost/x"),
            "postgres://app@localhost/x"
        );
        assert_eq!(redact_text("not a url"), "not a url");
    }

    #[test]
    fn secret_keys_and_secret_looking_unknown_keys_are_hidden() {
        let table = KeyTable::for_settings();
        let hidden = json!(REDACTED);
        assert_eq!(
            redact_config_value(
                &table,
                "integrations.stytch.stytch-public-token",
                &json!("pt")
            ),
            hidden
        );
        assert_eq!(
            redact_config_value(&table, "extra.api-secret", &json!("s")),
            hidden
        );
        assert_eq!(
            redact_config_value(&table, "server.port", &json!(8083)),
            json!(8083)
        );
    }

    #[test]
    fn parents_are_redacted_leaf_by_leaf() {
        let table = KeyTable::for_settings();
        let config = json!({
            "integrations": {"stytch": {"stytch-public-token": "pt", "stytch-hosted-url": "https://h"}},
            "sql": {"database-url": "postgres://u:pw@db/x"},
            "extra": {"list": [{"password": "p", "user": "u"}]},
        });
        assert_eq!(
            redact_config_value(&table, "", &config),
            json!({
                "integrations": {"stytch": {"stytch-public-token": REDACTED, "stytch-hosted-url": "https://h"}},
                "sql": {"database-url": "postgres://u:<redacted>@db/x"},
                "extra": {"list": [{"password": REDACTED, "user": "u"}]},
            })
        );
    }

    #[test]
    fn a_password_with_url_characters_in_it_is_still_hidden() {
        assert_eq!(
            redact_password_of("postgres://u:pa/ss@db/x"),
            "postgres://u:<redacted>@db/x"
        );
        assert_eq!(
            redact_password_of("postgres://u:pw@db/x?password=q"),
            "postgres://u:<redacted>@db/x?password=<redacted>"
        );
        assert_eq!(redact_password_of("postgres://db/x"), "postgres://db/x");
        assert_eq!(redact_password_of("not a url"), "not a url");
    }
}
