//! How secrets are recognised and hidden, shared by every tool so they all
//! redact alike. Pure functions over names and values.
//!
//! A value is secret by its name (`STRIPE_KEY`, `db.password`, `MYSQL_PWD`)
//! or by what it holds: a password in a URL (`postgres://app:pw@db/x`), a
//! secret parameter in a URL query or a `key=value` connection string
//! (`?password=…`, `host=db password=…`), a `--password=…` flag, a bearer
//! token. [`redact_text`] hides all of those inside any text (a command
//! line, a health-check URL); [`redact_argv`] also hides the word after a
//! `--password`-like flag.

/// What is shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// Words of a name that make it secret.
const SECRET_WORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "pass",
    "pwd",
    "credential",
    "credentials",
    "apikey",
    "auth",
    "authorization",
    "bearer",
    "key",
    "cookie",
    "salt",
];

/// A last word that says the value is about a secret, not the secret
/// (`PRIVATE_KEY_PATH`, `AUTH_URL`, `TOKEN_TTL`, `AWS_ACCESS_KEY_ID`).
const NOT_THE_SECRET: &[&str] = &[
    "path", "file", "dir", "url", "uri", "host", "port", "user", "username", "name", "id", "ttl",
    "timeout", "type", "mode", "format", "length", "size", "header", "endpoint", "issuer",
];

/// Whether a key or variable name (e.g. `VITE_STYTCH_PUBLIC_TOKEN`,
/// `db.password`, `MYSQL_PWD`) names a secret. Only the last segment of a
/// dotted key counts, split into words at `_`, `-` and case changes.
pub fn is_secret_name(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    let words = words_of(last);
    // `PWD` alone is the shell's working directory.
    if words == ["pwd"] {
        return false;
    }
    if words
        .last()
        .is_some_and(|w| NOT_THE_SECRET.contains(&w.as_str()))
    {
        return false;
    }
    words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
        || last.to_ascii_lowercase().contains("password")
        || last.to_ascii_lowercase().contains("secret")
        || last.to_ascii_lowercase().contains("token")
}

/// `stytchPublicToken` → [stytch, public, token]; `API_KEY` → [api, key].
fn words_of(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            previous_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c.to_ascii_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Hides every secret inside `text`: URL passwords, secret query and
/// `key=value` parameters, `--password=…` flags, bearer tokens.
pub fn redact_text(text: &str) -> String {
    let text = redact_url_passwords(text);
    let text = redact_parameters(&text);
    redact_bearer(&text)
}

/// `postgres://app:hunter2@db/x` → `postgres://app:<redacted>@db/x`, for
/// every URL in the text. A URL whose password cannot be told apart from the
/// rest (an unencoded `@`, `/` or `?` in it) loses everything up to its `@`.
fn redact_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first `/`, `?`, `#` or space after the
        // last `@` of the URL's first word.
        let word_end = after.find(char::is_whitespace).unwrap_or(after.len());
        let word = &after[..word_end];
        let authority_end = match word.rfind('@') {
            Some(last_at) => {
                last_at
                    + word[last_at..]
                        .find(['/', '?', '#'])
                        .unwrap_or(word.len() - last_at)
            }
            None => word.find(['/', '?', '#']).unwrap_or(word.len()),
        };
        let authority = &word[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(last_at), Some(colon)) if colon < last_at => {
                out.push_str(&authority[..colon]);
                out.push(':');
                out.push_str(REDACTED);
                out.push_str(&authority[last_at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

/// `…?password=x&a=1`, `host=db password=x`, `--password=x`: the value of a
/// secret-named parameter is hidden.
fn redact_parameters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (head, tail) = rest.split_at(eq);
        let name_start = head
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
            .map_or(0, |i| i + 1);
        let name = head[name_start..].trim_start_matches('-');
        out.push_str(head);
        out.push('=');
        let value = &tail[1..];
        let value_end = value
            .find(|c: char| c == '&' || c == ';' || c.is_whitespace())
            .unwrap_or(value.len());
        if !name.is_empty() && is_secret_name(name) && value_end > 0 {
            out.push_str(REDACTED);
        } else {
            out.push_str(&value[..value_end]);
        }
        rest = &value[value_end..];
    }
    out.push_str(rest);
    out
}

/// `Bearer abc.def` → `Bearer <redacted>` (also `Basic …`).
fn redact_bearer(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut words = text.split_inclusive(char::is_whitespace).peekable();
    while let Some(word) = words.next() {
        out.push_str(word);
        let bare = word.trim_end();
        if ["bearer", "basic", "token"].contains(&bare.to_ascii_lowercase().as_str())
            && bare.len() < word.len()
        {
            if let Some(next) = words.next() {
                let secret = next.trim_end();
                out.push_str(REDACTED);
                out.push_str(&next[secret.len()..]);
            }
        }
    }
    out
}

/// An argv as it may be shown: every word through [`redact_text`], and the
/// word after a secret-named flag (`--password hunter2`) hidden.
pub fn redact_argv(argv: &[String]) -> Vec<String> {
    let mut shown = Vec::with_capacity(argv.len());
    let mut hide_next = false;
    for word in argv {
        if hide_next {
            shown.push(REDACTED.to_owned());
            hide_next = false;
            continue;
        }
        if let Some(flag) = word.strip_prefix('-').map(|w| w.trim_start_matches('-')) {
            if !flag.contains('=') && is_secret_name(flag) {
                hide_next = true;
            }
        }
        shown.push(redact_text(word));
    }
    shown
}

/// Whether the value of variable `name` must not be written in clear: its
/// name says secret, or it holds a secret ([`redact_text`] changes it).
pub fn is_secret(name: &str, value: &str) -> bool {
    is_secret_name(name) || redact_text(value) != value
}

/// The value of `name` as it may be shown.
pub fn redact_value(name: &str, value: &str) -> String {
    if is_secret_name(name) {
        REDACTED.to_owned()
    } else {
        redact_text(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_recognised_by_the_words_of_their_last_segment() {
        for secret in [
            "VITE_STYTCH_PUBLIC_TOKEN",
            "integrations.stytch.stytch-public-token",
            "db.Password",
            "DB_PASS",
            "MYSQL_PWD",
            "STRIPE_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "AUTH_HEADER_VALUE",
            "sessionSecret",
            "GITHUB_TOKEN",
            "password",
        ] {
            assert!(is_secret_name(secret), "{secret}");
        }
        for plain in [
            "keys.internal-jwt-private-key-path",
            "token.url",
            "PORT",
            "PWD",
            "AWS_ACCESS_KEY_ID",
            "AUTH_URL",
            "TOKEN_TTL",
            "MONKEY",
            "KEYBOARD_LAYOUT",
            "PASSENGER_COUNT",
        ] {
            assert!(!is_secret_name(plain), "{plain}");
        }
    }

    #[test]
    fn secrets_inside_text_are_hidden_and_the_rest_kept() {
        for (text, shown) in [
            (
                "postgres://app:p@ss:w@rd@localhost:5432/db?x=1",
                "postgres://app:<redacted>@localhost:5432/db?x=1",
            ),
            ("postgres://app@localhost/x", "postgres://app@localhost/x"),
            (
                "postgres://u:S3CRET@host/db?password=QSECRET&sslmode=disable",
                "postgres://u:<redacted>@host/db?password=<redacted>&sslmode=disable",
            ),
            (
                "host=h user=u password=KVSECRET dbname=x",
                "host=h user=u password=<redacted> dbname=x",
            ),
            (
                "curl -H Authorization: Bearer abc.def http://admin:HEALTH@127.0.0.1:9/",
                "curl -H Authorization: Bearer <redacted> http://admin:<redacted>@127.0.0.1:9/",
            ),
            (
                "--password=hunter2 --port=80",
                "--password=<redacted> --port=80",
            ),
            ("a=b c==d =e", "a=b c==d =e"),
            (
                "http://localhost:8083/rpc/v1/health",
                "http://localhost:8083/rpc/v1/health",
            ),
        ] {
            assert_eq!(redact_text(text), shown, "{text}");
        }
        assert_eq!(
            redact_value("VITE_BACKEND_URL", "http://localhost:8083"),
            "http://localhost:8083"
        );
        assert_eq!(redact_value("API_TOKEN", "abc"), REDACTED);
    }

    #[test]
    fn a_flag_named_like_a_secret_hides_the_word_after_it() {
        let argv: Vec<String> = ["tool", "--password", "hunter2", "--user", "me", "-token=x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            redact_argv(&argv),
            [
                "tool",
                "--password",
                REDACTED,
                "--user",
                "me",
                "-token=<redacted>"
            ]
        );
    }

    #[test]
    fn a_value_is_secret_by_its_name_or_what_it_holds() {
        assert!(is_secret("API_TOKEN", ""));
        assert!(is_secret("DATABASE_URL", "postgres://app:pw@db/x"));
        assert!(is_secret("DSN", "host=db password=x"));
        assert!(!is_secret("DATABASE_URL", "postgres://app@db/x"));
        assert!(!is_secret("PORT", "8083"));
    }
}
