//! The table of known config keys, derived from the typed settings' JSON
//! Schema, and the env var name of each key.
//!
//! Like viper, we resolve env vars only for keys we already know: the typed
//! schema's leaves plus the leaves present in the YAML layers. We never infer
//! nesting from an env var's name.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::settings::MomentsSettings;

/// What the schema says about a key path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A scalar or list field of the typed settings.
    Leaf,
    /// A map with free-form keys (any sub-key is known).
    Map,
}

/// Known key paths of the typed settings.
#[derive(Debug, Clone)]
pub struct KeyTable {
    keys: BTreeMap<String, KeyKind>,
}

impl KeyTable {
    /// The table of [`MomentsSettings`].
    pub fn for_settings() -> KeyTable {
        let schema = schemars::schema_for!(MomentsSettings);
        let root = schema.as_value();
        let defs = root.get("$defs").unwrap_or(&Value::Null);
        let mut keys = BTreeMap::new();
        walk(root, defs, &mut Vec::new(), &mut keys);
        KeyTable { keys }
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

fn walk(
    schema: &Value,
    defs: &Value,
    path: &mut Vec<String>,
    keys: &mut BTreeMap<String, KeyKind>,
) {
    let schema = resolve(schema, defs);
    if let Some(Value::Object(properties)) = schema.get("properties") {
        for (name, sub) in properties {
            path.push(name.clone());
            walk(sub, defs, path, keys);
            path.pop();
        }
        return;
    }
    if path.is_empty() {
        return;
    }
    let kind = if schema
        .get("additionalProperties")
        .is_some_and(Value::is_object)
    {
        KeyKind::Map
    } else {
        KeyKind::Leaf
    };
    keys.insert(path.join("."), kind);
}

fn resolve<'a>(schema: &'a Value, defs: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or_default();
            defs.get(name).unwrap_or(schema)
        }
        None => schema,
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
    fn env_names_replace_dots_and_dashes() {
        assert_eq!(
            env_var_name("MOMENTS", "platform.mento-service-identity-base-url"),
            "MOMENTS_PLATFORM_MENTO_SERVICE_IDENTITY_BASE_URL"
        );
        assert_eq!(env_var_name("APP_", "server.port"), "APP_SERVER_PORT");
    }
}
