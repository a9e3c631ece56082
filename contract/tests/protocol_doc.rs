//! `docs/protocol.md` is the protocol in prose for plugin authors; this test
//! keeps it honest against the contract: every op, every error code, every
//! field of every protocol frame and op payload, and every limit (name and
//! value) appears in it. Adding a field or a code to the contract without
//! documenting it fails here.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use devctl_contract::limits::{
    COMMAND_DISCOVERY_BUDGET, DEFAULT_OP_TIMEOUT, HANDSHAKE_TIMEOUT, MAX_FRAME_BYTES,
    UNKNOWN_OP_ANSWER,
};
use devctl_contract::names::MAX_NAME_LEN;
use devctl_contract::ops::{COMMAND_RUN, PIPELINE};
use devctl_contract::ErrorCode;
use serde_json::Value;

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// The text inside backticks and fenced code blocks: where names are written.
fn code_words(doc: &str) -> BTreeSet<String> {
    let mut code = String::new();
    let mut in_block = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            code.push_str(line);
            code.push('\n');
        } else {
            for (index, span) in line.split('`').enumerate() {
                if index % 2 == 1 {
                    code.push_str(span);
                    code.push('\n');
                }
            }
        }
    }
    code.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .map(|word| word.trim_matches('.').to_owned())
        .filter(|word| !word.is_empty())
        .collect()
}

fn property_names(schema: &Value, names: &mut BTreeSet<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(properties)) = map.get("properties") {
                names.extend(properties.keys().cloned());
            }
            map.values().for_each(|value| property_names(value, names));
        }
        Value::Array(items) => items.iter().for_each(|value| property_names(value, names)),
        _ => {}
    }
}

#[test]
fn every_op_and_error_code_is_documented() {
    let words = code_words(&doc());
    let missing: Vec<&str> = PIPELINE
        .iter()
        .copied()
        .chain([COMMAND_RUN])
        .chain(ErrorCode::known())
        .filter(|name| !words.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/protocol.md does not name {missing:?}"
    );
    for op in PIPELINE.iter().chain([&COMMAND_RUN]) {
        assert!(
            doc()
                .lines()
                .any(|l| l.starts_with('#') && l.contains(&format!("`{op}`"))),
            "docs/protocol.md has no section for {op}"
        );
    }
}

#[test]
fn every_field_of_every_frame_and_payload_is_documented() {
    let words = code_words(&doc());
    let mut missing = BTreeSet::new();
    for (stem, schema) in devctl_contract::schema::all() {
        // The dev manifest and the validation report are moments-dev's
        // outputs, not protocol frames.
        if matches!(stem, "manifest" | "validation-report") {
            continue;
        }
        let mut names = BTreeSet::new();
        property_names(&schema.to_value(), &mut names);
        for name in names {
            if !words.contains(&name) {
                missing.insert(format!("{stem}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/protocol.md does not name {missing:?}"
    );
}

fn spoken(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

#[test]
fn every_limit_is_documented_with_its_value() {
    let doc = doc();
    let limits = [
        ("HANDSHAKE_TIMEOUT", spoken(HANDSHAKE_TIMEOUT)),
        ("UNKNOWN_OP_ANSWER", spoken(UNKNOWN_OP_ANSWER)),
        ("COMMAND_DISCOVERY_BUDGET", spoken(COMMAND_DISCOVERY_BUDGET)),
        ("DEFAULT_OP_TIMEOUT", spoken(DEFAULT_OP_TIMEOUT)),
        ("MAX_FRAME_BYTES", format!("{} MiB", MAX_FRAME_BYTES >> 20)),
        ("MAX_NAME_LEN", format!("{MAX_NAME_LEN} characters")),
    ];
    for (name, value) in limits {
        let row = doc
            .lines()
            .find(|line| line.starts_with('|') && line.ends_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("docs/protocol.md's limits table has no row for {name}"));
        assert!(
            row.contains(&format!("| {value} |")),
            "docs/protocol.md says {row:?}, but {name} is {value}"
        );
    }
}
