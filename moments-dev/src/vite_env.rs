//! The `VITE_*` environment of the web app: one derivation, three renderings.
//!
//! [`derive_vite_env`] is the only place that maps settings to Vite variables.
//! The renderings are JSON, `export KEY='…'` lines for `eval` in sh/bash/zsh,
//! and a dotenv file that Vite's `loadEnv` reads back byte-exact (Vite 7's
//! dotenv parser and Vite 8's `util.parseEnv`). Secret variables are shown as
//! `<redacted>` in JSON and left out of the shell and dotenv renderings unless
//! the caller asks for them.

use std::collections::BTreeMap;

use crate::secrets::{is_secret_vite_var, REDACTED};
use crate::settings::MomentsSettings;

pub type ViteEnv = BTreeMap<String, String>;

/// The canonical derivation. Variables whose source setting is unset are
/// absent (no silent fallback ports: `dev validate` reports what is missing).
pub fn derive_vite_env(settings: &MomentsSettings) -> ViteEnv {
    let mut env = ViteEnv::new();
    let mut put = |name: &str, value: &Option<String>| {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            env.insert(name.to_owned(), value.to_owned());
        }
    };
    let platform = &settings.platform;
    let stytch = &settings.integrations.stytch;
    put("VITE_BACKEND_URL", &platform.mento_service_public_base_url);
    put(
        "VITE_IDENTITY_BACKEND_URL",
        &platform.mento_service_identity_base_url,
    );
    put(
        "VITE_IDENTITY_SERVICE_URL",
        &platform.mento_service_identity_base_url,
    );
    let token = stytch
        .stytch_public_token
        .as_ref()
        .map(|t| t.expose().to_owned());
    put("VITE_STYTCH_PUBLIC_TOKEN", &token);
    put("VITE_STYTCH_HOSTED_URL", &stytch.stytch_hosted_url);
    env
}

/// Replaces secret values with `<redacted>`.
pub fn redacted(env: &ViteEnv) -> ViteEnv {
    env.iter()
        .map(|(key, value)| {
            let shown = if is_secret_vite_var(key) {
                REDACTED.to_owned()
            } else {
                value.clone()
            };
            (key.clone(), shown)
        })
        .collect()
}

/// Splits off the secret variables; returns (kept, names left out).
pub fn without_secrets(env: &ViteEnv) -> (ViteEnv, Vec<String>) {
    let (secret, kept): (ViteEnv, ViteEnv) = env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .partition(|(key, _)| is_secret_vite_var(key));
    (kept, secret.into_keys().collect())
}

/// `export KEY='value'` lines; `eval` restores every value byte for byte.
pub fn to_shell(env: &ViteEnv) -> String {
    env.iter()
        .map(|(key, value)| format!("export {key}='{}'\n", value.replace('\'', r"'\''")))
        .collect()
}

/// Why a value cannot be written to a dotenv file faithfully.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write {key} to a dotenv file: {reason}")]
pub struct DotenvError {
    pub key: String,
    pub reason: &'static str,
}

/// A dotenv file that Vite's `loadEnv` reads back byte-exact.
pub fn to_dotenv(env: &ViteEnv) -> Result<String, DotenvError> {
    let mut out = String::new();
    for (key, value) in env {
        out.push_str(key);
        out.push('=');
        out.push_str(&dotenv_value(key, value)?);
        out.push('\n');
    }
    Ok(out)
}

fn dotenv_value(key: &str, value: &str) -> Result<String, DotenvError> {
    let refuse = |reason| DotenvError {
        key: key.to_owned(),
        reason,
    };
    let mut chars = key.chars();
    let key_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !key_ok {
        return Err(refuse("the name is not [A-Za-z_][A-Za-z0-9_]*"));
    }
    if value.contains('\r') {
        return Err(refuse("the value contains a carriage return"));
    }
    if value.contains('\0') {
        return Err(refuse("the value contains a NUL byte"));
    }
    let escaped = value.replace('$', r"\$");
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_./:@%+,=-".contains(c));
    if plain {
        return Ok(escaped);
    }
    if value.ends_with('\\') {
        // Quoted, it would end in \' (or \` or \"), which dotenv reads as an
        // escaped quote: the value would swallow the following lines.
        return Err(refuse(
            "the value ends with a backslash, which dotenv would read as escaping the closing quote",
        ));
    }
    let quote = if !value.contains('\'') {
        '\''
    } else if !value.contains('`') {
        '`'
    } else if !value.contains('"') {
        // dotenv expands \n (and Vite 7 also \r) inside double quotes, with
        // no escape to prevent it: such a value cannot round-trip.
        if value.contains("\\n") || value.contains("\\r") {
            return Err(refuse(
                "the value needs double quotes (it has both ' and `) and contains \\n or \\r, which dotenv would turn into a line break",
            ));
        }
        '"'
    } else {
        return Err(refuse(
            "the value contains all three quote characters ' ` \"",
        ));
    };
    Ok(format!("{quote}{escaped}{quote}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> ViteEnv {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dotenv_quotes_only_what_needs_quoting() {
        let out = to_dotenv(&env(&[
            ("A", "http://localhost:8083"),
            ("B", "has space"),
            ("C", "it's"),
            ("D", "it's `x`"),
            ("E", "cost $5"),
            ("F", ""),
        ]))
        .unwrap();
        assert_eq!(
            out,
            "A=http://localhost:8083\nB='has space'\nC=`it's`\nD=\"it's `x`\"\nE='cost \\$5'\nF=\n"
        );
    }

    #[test]
    fn dotenv_refuses_what_it_cannot_round_trip() {
        for value in ["a\rb", "a\0b", "'`\"", "'`\\n", "'`\\r", "x y\\"] {
            let err = to_dotenv(&env(&[("VITE_X", value)])).unwrap_err();
            assert_eq!(err.key, "VITE_X");
        }
    }

    #[test]
    fn secrets_are_redacted_or_left_out() {
        let all = env(&[("VITE_BACKEND_URL", "u"), ("VITE_STYTCH_PUBLIC_TOKEN", "t")]);
        assert_eq!(redacted(&all)["VITE_STYTCH_PUBLIC_TOKEN"], REDACTED);
        let (kept, left_out) = without_secrets(&all);
        assert_eq!(kept, env(&[("VITE_BACKEND_URL", "u")]));
        assert_eq!(left_out, vec!["VITE_STYTCH_PUBLIC_TOKEN".to_owned()]);
    }
}
