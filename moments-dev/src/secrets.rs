//! What counts as a secret, and how it is hidden.
//!
//! Secrets never reach stdout, stderr or a file unless the user passed
//! `--show-secrets`. Known secret keys are listed here; keys the schema does
//! not know are treated as secret when their name says so (`password`,
//! `secret`, `token`).

use serde_json::Value;

/// What is printed instead of a secret.
pub const REDACTED: &str = "<redacted>";

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
    let last = key.rsplit('.').next().unwrap_or(key);
    if SECRET_KEYS.contains(&key)
        || ["password", "secret", "token"]
            .iter()
            .any(|word| last.contains(word))
    {
        return Value::String(REDACTED.into());
    }
    match value {
        Value::String(url) if URL_PASSWORD_KEYS.contains(&key) => {
            Value::String(redact_url_password(url))
        }
        other => other.clone(),
    }
}

/// `postgres://app:hunter2@db/x` → `postgres://app:<redacted>@db/x`.
pub fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let Some(colon) = rest[..at].find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:{REDACTED}{}",
        &url[..scheme_end],
        &rest[..colon],
        &rest[at..]
    )
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
