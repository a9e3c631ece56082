//! What counts as a secret, and how it is hidden.
//!
//! Secrets never reach stdout, stderr or a file unless the user passed
//! `--show-secrets`. Known secret keys are listed here; keys the schema does
//! not know are treated as secret when their name says so (the shared rule
//! in `devctl_contract::secrets`).

use serde_json::Value;

pub use devctl_contract::secrets::{redact_url_password, REDACTED};

/// Vite variables whose values are secret.
pub const SECRET_VITE_VARS: &[&str] = &["VITE_STYTCH_PUBLIC_TOKEN"];

/// Config keys whose whole value is secret.
const SECRET_KEYS: &[&str] = &["integrations.stytch.stytch-public-token"];

/// Config keys holding a URL whose password is secret.
const URL_PASSWORD_KEYS: &[&str] = &["sql.database-url"];

pub fn is_secret_vite_var(name: &str) -> bool {
    SECRET_VITE_VARS.contains(&name)
}

/// The value of config `key` as it may be shown.
pub fn redact_config_value(key: &str, value: &Value) -> Value {
    if SECRET_KEYS.contains(&key) || devctl_contract::secrets::is_secret_name(key) {
        return Value::String(REDACTED.into());
    }
    match value {
        Value::String(url) if URL_PASSWORD_KEYS.contains(&key) => {
            Value::String(redact_url_password(url))
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn database_passwords_are_hidden_but_the_rest_of_the_url_is_kept() {
        assert_eq!(
            redact_url_password("postgres://app:p@ss:w@rd@localhost:5432/moments?sslmode=disable"),
            "postgres://app:<redacted>@localhost:5432/moments?sslmode=disable"
        );
        assert_eq!(
            redact_url_password("postgres://app@localhost/x"),
            "postgres://app@localhost/x"
        );
        assert_eq!(redact_url_password("not a url"), "not a url");
    }

    #[test]
    fn secret_keys_and_secret_looking_unknown_keys_are_hidden() {
        let hidden = json!(REDACTED);
        assert_eq!(
            redact_config_value("integrations.stytch.stytch-public-token", &json!("pt")),
            hidden
        );
        assert_eq!(redact_config_value("extra.api-secret", &json!("s")), hidden);
        assert_eq!(
            redact_config_value("server.port", &json!(8083)),
            json!(8083)
        );
    }
}
