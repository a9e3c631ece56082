//! What a service or step may be called.
//!
//! Names become file names (`.devctl/logs/<service>.log`), environment
//! values and command-line arguments, so they are kept to a portable set:
//! ASCII letters, digits, `.`, `_` and `-`, 1 to [`MAX_NAME_LEN`] characters,
//! and never `.` or `..`. A name from a plugin that breaks the rule is an
//! error naming the plugin, never a path outside the repo.

/// The longest service or step name.
pub const MAX_NAME_LEN: usize = 64;

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("{name:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong { name: String },
    #[error("{name:?} is not a name (`.` and `..` are directories)")]
    Dots { name: String },
    #[error("{name:?} contains {bad:?}; use only letters, digits, '.', '_' and '-'")]
    BadCharacter { name: String, bad: char },
}

/// Checks a service or step name.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(NameError::Dots {
            name: name.to_owned(),
        });
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(NameError::BadCharacter {
            name: name.to_owned(),
            bad,
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Whether `name` is a portable environment variable name (POSIX: a letter
/// or `_`, then letters, digits and `_`), the only kind every engine a plan
/// is exported to can set (a shell assignment, a `.env` line, a ConfigMap
/// key).
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_posix_identifiers() {
        for good in ["PORT", "_X", "VITE_BACKEND_URL", "a1"] {
            assert!(is_env_name(good), "{good}");
        }
        for bad in ["", "1X", "A-B", "A.B", "A=B", "A B", "A\nB", "É"] {
            assert!(!is_env_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn portable_names_pass_and_paths_do_not() {
        for good in ["backend", "web", "api-v2", "db_1", "a.b", "x"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert!(matches!(check_name(".."), Err(NameError::Dots { .. })));
        assert!(matches!(check_name("."), Err(NameError::Dots { .. })));
        for bad in ["../../../x", "a/b", "a b", "é", "a\0b", "a\nb"] {
            assert!(
                matches!(check_name(bad), Err(NameError::BadCharacter { .. })),
                "{bad:?}"
            );
        }
        assert!(check_name(&"a".repeat(64)).is_ok());
        assert!(matches!(
            check_name(&"a".repeat(65)),
            Err(NameError::TooLong { .. })
        ));
    }
}
