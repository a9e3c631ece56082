//! YAML that the engines read back exactly as written.
//!
//! `yaml_serde` writes YAML 1.2: it quotes `true` or `8083` but writes
//! `no`, `on`, `y`, `1_000`, `80:80` and `2024-01-02` plain, which the
//! engines' YAML 1.1 readers (PyYAML in docker-compose and
//! kubernetes-validate, go-yaml v2 behind kubectl) take for a boolean, a
//! number or a date: a service called `no`, `command: [yes]` or an env
//! value `on` would change meaning. So every string such a reader could
//! take for something else is single-quoted: it is serialized as a unique
//! placeholder (plain, since it is a plain word) that is then replaced by
//! its quoted form, and the result is parsed back and compared with what
//! was meant before it is returned.

use serde::Serialize;
use yaml_serde::{Mapping, Value};

use super::ExportError;

/// `doc` as one YAML document. With `escape_dollars`, every `$` in a string
/// value (not in keys) is doubled, as Compose needs to keep it literal.
pub fn document(doc: &impl Serialize, escape_dollars: bool) -> Result<String, ExportError> {
    let mut value = yaml_serde::to_value(doc).map_err(|err| ExportError::Yaml(err.to_string()))?;
    if escape_dollars {
        double_dollars(&mut value);
    }
    let marker = unused_marker(&value);
    let mut quoted = Vec::new();
    let placeheld = hold_places(&value, &marker, &mut quoted);
    let held =
        yaml_serde::to_string(&placeheld).map_err(|err| ExportError::Yaml(err.to_string()))?;
    let text = put_back(&held, &marker, &quoted);
    let back: Value =
        yaml_serde::from_str(&text).map_err(|err| ExportError::Yaml(err.to_string()))?;
    if back != value {
        return Err(ExportError::Yaml(
            "the YAML written does not read back as the document meant (a devctl bug)".into(),
        ));
    }
    Ok(text)
}

/// `held` with each placeholder `<marker><n>z` replaced by `quoted[n]`,
/// single-quoted, in one pass.
fn put_back(held: &str, marker: &str, quoted: &[String]) -> String {
    let mut text = String::with_capacity(held.len());
    let mut rest = held;
    while let Some(at) = rest.find(marker) {
        text.push_str(&rest[..at]);
        let after = &rest[at + marker.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let original = after[..digits]
            .parse::<usize>()
            .ok()
            .filter(|_| after[digits..].starts_with('z'))
            .and_then(|n| quoted.get(n));
        match original {
            Some(original) => {
                text.push_str(&format!("'{}'", original.replace('\'', "''")));
                rest = &after[digits + 1..];
            }
            // Not one of ours (cannot happen: no string holds the marker);
            // left as it is, and the read-back check reports it.
            None => {
                text.push_str(marker);
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text
}

/// Whether a YAML 1.1 reader could resolve the plain scalar `text` to
/// something other than this string. Errs on the side of quoting.
pub fn ambiguous_in_yaml_1_1(text: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~", "=",
        "<<",
    ];
    if text.is_empty() || WORDS.contains(&text) {
        return true;
    }
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(body, ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    // Numbers in any base, with `_` separators or base 60 (`1:20`), and
    // timestamps (`2001-12-14 21:59:43.10 -5`).
    body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body.contains(|c: char| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_hexdigit() || "xXoO_.:+-tTzZ ".contains(c))
}

fn double_dollars(value: &mut Value) {
    match value {
        Value::String(text) if text.contains('$') => *text = text.replace('$', "$$"),
        Value::Sequence(items) => items.iter_mut().for_each(double_dollars),
        Value::Mapping(map) => map.values_mut().for_each(double_dollars),
        Value::Tagged(tagged) => double_dollars(&mut tagged.value),
        _ => {}
    }
}

/// A word that no string in `value` contains.
fn unused_marker(value: &Value) -> String {
    let mut strings = Vec::new();
    collect_strings(value, &mut strings);
    (0..)
        .map(|n| format!("devctlq{n}x"))
        .find(|marker| !strings.iter().any(|s| s.contains(marker.as_str())))
        .unwrap_or_default()
}

fn collect_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(text) => out.push(text),
        Value::Sequence(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Value::Mapping(map) => {
            for (key, item) in map {
                collect_strings(key, out);
                collect_strings(item, out);
            }
        }
        Value::Tagged(tagged) => collect_strings(&tagged.value, out),
        _ => {}
    }
}

/// `value` with each ambiguous string (keys too) replaced by
/// `<marker><n>z`, where `quoted[n]` is the string.
fn hold_places(value: &Value, marker: &str, quoted: &mut Vec<String>) -> Value {
    match value {
        Value::String(text) if ambiguous_in_yaml_1_1(text) && !text.contains('\n') => {
            quoted.push(text.clone());
            Value::String(format!("{marker}{}z", quoted.len() - 1))
        }
        Value::Sequence(items) => Value::Sequence(
            items
                .iter()
                .map(|item| hold_places(item, marker, quoted))
                .collect(),
        ),
        Value::Mapping(map) => {
            let mut out = Mapping::new();
            for (key, item) in map {
                let key = hold_places(key, marker, quoted);
                out.insert(key, hold_places(item, marker, quoted));
            }
            Value::Mapping(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn strings_yaml_1_1_would_misread_are_quoted_and_read_back_unchanged() {
        let tricky = [
            "no",
            "yes",
            "on",
            "Off",
            "y",
            "N",
            "~",
            "=",
            "<<",
            "",
            "1_000",
            "80:80",
            "0b101",
            "0x1F",
            "2024-01-02",
            "1e3",
            ".inf",
            "-.NaN",
            "8083",
            "0777",
            "1.0",
            "true",
        ];
        let doc: BTreeMap<String, Vec<String>> = tricky
            .iter()
            .map(|t| (t.to_string(), vec![t.to_string()]))
            .collect();
        let text = document(&doc, false).unwrap();
        for t in tricky {
            let quoted = format!("'{t}'");
            assert!(
                text.contains(&format!("{quoted}:\n- {quoted}\n")),
                "{t:?} not quoted as key and item in:\n{text}"
            );
        }
    }

    #[test]
    fn plain_words_stay_plain_and_odd_strings_survive() {
        let doc = BTreeMap::from([
            ("command", vec!["python3", "server.py", "3.13-slim"]),
            (
                "odd",
                vec!["it's \"x\": #y", "a\nb\n", "- z", " lead", "devctlq0x1z"],
            ),
        ]);
        let text = document(&doc, false).unwrap();
        assert!(
            text.contains("- python3\n- server.py\n- 3.13-slim\n"),
            "{text}"
        );
        let back: BTreeMap<String, Vec<String>> = yaml_serde::from_str(&text).unwrap();
        assert_eq!(back["odd"], doc["odd"]);
    }

    #[test]
    fn dollars_are_doubled_in_values_only() {
        let doc = BTreeMap::from([("$KEY", "echo $HOME $$")]);
        let text = document(&doc, true).unwrap();
        assert_eq!(text, "$KEY: echo $$HOME $$$$\n");
    }

    #[test]
    fn the_ambiguity_test_leaves_ordinary_words_alone() {
        for plain in [
            "python3",
            "server.py",
            "--port",
            "web",
            "backend",
            "http://x:1/",
            ".",
            "..",
            "-",
        ] {
            assert!(!ambiguous_in_yaml_1_1(plain), "{plain}");
        }
    }
}
