//! The dotenv rendering read back by Vite's own `loadEnv`, in Vite 7 (dotenv
//! parser) and Vite 8 (`util.parseEnv`): every value we agree to write must
//! come back byte-exact, and the values we refuse are exactly the ones that
//! cannot.
//!
//! Needs Node and Vite installs listed in `VITE_ROUNDTRIP_DIRS` (colon
//! separated); `.ci/run` installs vite@7 and vite@8 and sets it. Without it
//! the test says so and passes locally, but fails under CI.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use moments_dev::vite_env::{to_dotenv, ViteEnv};

/// Hand-picked values that broke naive dotenv writers.
const TRICKY: &[&str] = &[
    "http://localhost:8083",
    "",
    "has space",
    "it's",
    "it's `tick`",
    "cost $5",
    "${HOME}",
    "$HOME",
    "a\\nb",
    "back\\slash",
    "line1\nline2",
    "#hash",
    "a #b",
    " lead",
    "trail ",
    "tab\tx",
    "=eq",
    "q\"d",
    "`bt`",
    "'sq'",
    "\\$x",
    "x\\",
    "é ünï 😀",
    "$",
    "\\",
    "a'b`c",
    "a'b`c\nd",
    "a'b`c $x",
    "${A:-b}",
    "a\\\\$b",
];

/// Deterministic pseudo-random values over an alphabet of troublemakers.
fn generated(count: usize) -> Vec<String> {
    let alphabet: Vec<char> = "ab Z09_-./:$\\'\"`#=\n\t{}!*é😀".chars().collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let len = (next() % 12) as usize;
            (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect()
        })
        .collect()
}

#[test]
fn vite_load_env_reads_back_every_value_we_write() {
    let Some(dirs) = std::env::var_os("VITE_ROUNDTRIP_DIRS") else {
        e2e::skip("the Vite round trip needs VITE_ROUNDTRIP_DIRS (Vite installs; .ci/run sets it)");
        return;
    };

    let mut env = ViteEnv::new();
    let mut refused = 0;
    let values = TRICKY.iter().map(|v| v.to_string()).chain(generated(2000));
    for (index, value) in values.enumerate() {
        let key = format!("VITE_V{index}");
        let single = BTreeMap::from([(key.clone(), value.clone())]);
        match to_dotenv(&single) {
            Ok(_) => {
                env.insert(key, value);
            }
            Err(err) => {
                // Refusals are only for what dotenv cannot represent.
                let needs_double = value.contains('\'') && value.contains('`');
                assert!(
                    value.contains('\r')
                        || value.ends_with('\\')
                        || (needs_double
                            && (value.contains('"')
                                || value.contains("\\n")
                                || value.contains("\\r"))),
                    "refused a representable value {value:?}: {err}"
                );
                refused += 1;
            }
        }
    }
    assert!(env.len() > 1500, "too few values written: {}", env.len());

    let env_dir = tempfile::tempdir().unwrap();
    std::fs::write(env_dir.path().join(".env"), to_dotenv(&env).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vite/load_env.mjs");
    for dir in std::env::split_paths(&dirs) {
        let output = Command::new("node")
            .arg(&script)
            .arg(&dir)
            .arg(env_dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .expect("node runs");
        assert!(
            output.status.success(),
            "node failed for {}: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let read: BTreeMap<String, String> = serde_json::from_slice(&output.stdout).unwrap();
        let mismatches: Vec<String> = env
            .iter()
            .filter(|(key, value)| read.get(*key) != Some(*value))
            .map(|(key, value)| format!("{key}: wrote {value:?}, Vite read {:?}", read.get(key)))
            .collect();
        assert!(
            mismatches.is_empty(),
            "{} (refused {refused}): {mismatches:#?}",
            dir.display()
        );
    }
}
