//! Shared by the conformance suite's integration tests: where the gallery
//! is, and the team's convention for tests that cannot run here (print
//! `SKIPPED: why`; with `DEVCTL_NO_SKIP=1`, as in CI, fail instead).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The gallery's good shapes besides `good` and `fragile`: each must be
/// conformant with no failure at all.
pub const GOOD_SHAPES: &[&str] = &[
    "streams-in-ops",
    "follow",
    "out-of-order",
    "stderr-flood",
    "big-output",
    "slow",
    "anonymous",
    "children",
];

pub fn gallery_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gallery/gallery.py")
}

/// Whether a test can run; prints `SKIPPED: why` when it cannot, and
/// panics instead when `DEVCTL_NO_SKIP=1`.
pub fn can_run(test: &str) -> bool {
    let missing = if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        Some("python3 is not installed (the gallery plugins are Python)")
    } else if std::fs::metadata("/proc/self/stat").is_err() {
        Some("/proc is not readable (processes cannot be observed)")
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) if std::env::var("DEVCTL_NO_SKIP").as_deref() == Ok("1") => {
            panic!("{test} cannot run: {why} (DEVCTL_NO_SKIP=1 forbids skipping)")
        }
        Some(why) => {
            println!("SKIPPED: {test}: {why}");
            eprintln!("SKIPPED: {test}: {why}");
            false
        }
    }
}
