//! Where a YAML document went wrong, in the form every error of ours uses:
//! `file:line:column: message` (the parser's own "at line …" suffix is
//! dropped so the position is said once).

use std::path::Path;

/// A parse error's position (1-based) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl YamlError {
    pub fn from_parser(err: &yaml_serde::Error) -> YamlError {
        let (line, column) = err
            .location()
            .map(|at| (at.line(), at.column()))
            .unwrap_or((1, 1));
        let message = err.to_string();
        let message = match message.find(" at line ") {
            Some(cut) => message[..cut].to_owned(),
            None => message,
        };
        // "…, expected i64" → "…, expected a whole number".
        let message = match message.rsplit_once(", expected ") {
            Some((head, expected)) => format!("{head}, expected {}", type_in_words(expected)),
            None => message,
        };
        YamlError {
            line,
            column,
            message,
        }
    }

    /// `path:line:column: message`.
    pub fn at(&self, path: &Path) -> String {
        format!(
            "{}:{}:{}: {}",
            path.display(),
            self.line,
            self.column,
            self.message
        )
    }

    /// Whether the parser read the document but its shape or a value's type
    /// is wrong (as opposed to broken syntax): the fix differs.
    pub fn is_type_error(&self) -> bool {
        // The message may start with the key's path ("plugins[0].priority: invalid type…").
        [
            "invalid type",
            "invalid value",
            "missing field",
            "unknown variant",
            "unknown field",
        ]
        .iter()
        .any(|kind| self.message.contains(kind))
    }
}

/// A type as serde names it ("i64", "struct RawFile", "a sequence"), in
/// the words of someone who writes the config.
pub fn type_in_words(expected: &str) -> String {
    match expected {
        "u16" => "a port number (0 to 65535)".into(),
        "u8" | "u32" | "u64" | "usize" => "a non-negative whole number".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "a list".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a string" | "string" => "text".into(),
        other if other.starts_with("struct ") || other.starts_with("a map") => {
            "a map (`key: value` lines indented under it)".into()
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_is_said_once() {
        let err = yaml_serde::from_str::<yaml_serde::Value>("a: [1,\nb: 2\n").unwrap_err();
        let located = YamlError::from_parser(&err);
        assert!(located.line >= 1);
        assert!(!located.message.contains(" at line "), "{located:?}");
        assert!(located
            .at(Path::new("x.yaml"))
            .starts_with(&format!("x.yaml:{}:", located.line)));
        assert!(!located.is_type_error());
    }

    #[test]
    fn type_errors_are_told_apart() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Plugin {
            priority: i64,
        }
        let err = yaml_serde::from_str::<Plugin>("priority: \"10\"\n").unwrap_err();
        let located = YamlError::from_parser(&err);
        assert!(located.is_type_error(), "{located:?}");
        assert_eq!(located.line, 1);
        assert!(
            located.message.contains("priority"),
            "names the key: {located:?}"
        );
    }
}
