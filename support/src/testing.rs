//! How a test that cannot run here says so: `SKIPPED: why`, where `cargo
//! test` shows it (straight to stderr, past the test harness's capture of
//! `println!`). Under `.ci/run`, which sets `DEVCTL_NO_SKIP=1`, a skip is a
//! failure, so CI never reports a test as passed that did not run.

/// Reports a skipped test (or fails it under `DEVCTL_NO_SKIP=1`).
pub fn skip(reason: &str) {
    use std::io::Write;
    if std::env::var("DEVCTL_NO_SKIP").as_deref() == Ok("1") {
        panic!("SKIPPED, which DEVCTL_NO_SKIP=1 forbids: {reason}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}
