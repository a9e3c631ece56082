//! How secrets are recognised and hidden, shared by every tool so they all
//! redact alike. Pure functions over names and values.

/// What is shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// Words that mark a key or env var name as secret (case-insensitive).
const SECRET_WORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "credential",
    "api_key",
    "api-key",
    "apikey",
    "private_key",
];

/// Whether a key or variable name (e.g. `VITE_STYTCH_PUBLIC_TOKEN`,
/// `db.password`) names a secret.
pub fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let last = lower.rsplit('.').next().unwrap_or(&lower);
    SECRET_WORDS.iter().any(|word| last.contains(word))
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

/// Whether the value of variable `name` must not be written in clear: its
/// name says secret, or it holds a URL with a password.
pub fn is_secret(name: &str, value: &str) -> bool {
    is_secret_name(name) || redact_url_password(value) != value
}

/// The value of `name` as it may be shown.
pub fn redact_value(name: &str, value: &str) -> String {
    if is_secret_name(name) {
        REDACTED.to_owned()
    } else {
        redact_url_password(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_recognised_by_their_last_segment() {
        assert!(is_secret_name("VITE_STYTCH_PUBLIC_TOKEN"));
        assert!(is_secret_name("integrations.stytch.stytch-public-token"));
        assert!(is_secret_name("db.Password"));
        assert!(!is_secret_name("keys.internal-jwt-private-key-path.x"));
        assert!(!is_secret_name("token.url"), "only the last segment counts");
        assert!(!is_secret_name("PORT"));
    }

    #[test]
    fn url_passwords_are_hidden_and_the_rest_kept() {
        assert_eq!(
            redact_url_password("postgres://app:p@ss:w@rd@localhost:5432/db?x=1"),
            "postgres://app:<redacted>@localhost:5432/db?x=1"
        );
        assert_eq!(
            redact_url_password("postgres://app@localhost/x"),
            "postgres://app@localhost/x"
        );
        assert_eq!(
            redact_value("VITE_BACKEND_URL", "http://localhost:8083"),
            "http://localhost:8083"
        );
        assert_eq!(redact_value("API_TOKEN", "abc"), REDACTED);
    }

    #[test]
    fn a_value_is_secret_by_its_name_or_a_password_in_a_url() {
        assert!(is_secret("API_TOKEN", ""));
        assert!(is_secret("DATABASE_URL", "postgres://app:pw@db/x"));
        assert!(!is_secret("DATABASE_URL", "postgres://app@db/x"));
        assert!(!is_secret("PORT", "8083"));
    }
}
