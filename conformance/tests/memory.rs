//! The suite reads whatever a plugin sends in bounded memory: a plugin that
//! floods a million unsolicited events keeps the real binary under 50 MB
//! of resident memory, and every event is still counted.
//!
//! Alone in its test binary, so the peak RSS of this process's children is
//! the suite's own (or its plugin's, which is smaller).

mod support;

use devctl_conformance::Report;

const MAX_RSS_KB: i64 = 50 * 1024;

#[test]
fn a_million_unsolicited_events_fit_in_50_mb() {
    if !support::can_run("memory test") {
        return;
    }
    let state = tempfile::tempdir().unwrap();
    // The first plugin process floods before it answers anything; the
    // generous scale only gives a debug build time to read it all.
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("devctl-conformance"))
        .args(["--timeout-scale", "60", "--format", "json", "--", "python3"])
        .arg(support::gallery_script())
        .arg("event-flood")
        .env("GALLERY_STATE", state.path())
        .env("GALLERY_FLOOD", "1000000")
        .output()
        .unwrap();
    let report: Report = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "no JSON report ({err}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let strays = report.check("streams.events-carry-id").expect("reported");
    assert!(
        strays.message.starts_with("1000000 event(s)"),
        "every event was read and counted: {}",
        strays.message
    );
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    let peak_kb = usage.max_rss();
    println!("peak RSS of the suite (or its plugin): {peak_kb} KB");
    assert!(peak_kb > 0, "getrusage reported no peak at all");
    assert!(
        peak_kb <= MAX_RSS_KB,
        "the suite peaked at {peak_kb} KB reading the flood"
    );
}
