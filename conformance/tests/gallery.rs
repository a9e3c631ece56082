//! The self-test gallery: each fixture in `tests/gallery/gallery.py` breaks
//! one family, and the suite must fail exactly the checks it targets, for
//! the right reason. The well-behaved mode must pass everything.

use std::path::Path;

use devctl_conformance::{Report, Status, Suite};

fn run(mode: &str) -> Report {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gallery/gallery.py");
    Suite::command([
        "python3".to_owned(),
        script.display().to_string(),
        mode.to_owned(),
    ])
    .timeout_scale(0.3)
    .probe_commands(true)
    .run()
    .expect("the gallery plugin starts")
}

/// Runs `mode` and checks that exactly `expected` failed, each message
/// containing `reason`.
fn verdict(mode: &str, expected: &[&str], reason: &str) {
    let report = run(mode);
    let mut failed = report.failed_ids();
    failed.sort_unstable();
    let mut wanted = expected.to_vec();
    wanted.sort_unstable();
    assert_eq!(failed, wanted, "{mode}:\n{}", report.human());
    for id in expected {
        let message = &report.check(id).expect("reported").message;
        assert!(
            message.contains(reason),
            "{mode}: {id} says {message:?}, expected it to mention {reason:?}"
        );
    }
}

#[test]
fn a_well_behaved_plugin_passes_everything() {
    let report = run("good");
    report.assert_passed();
    assert!(
        report.checks.iter().all(|c| c.status == Status::Pass),
        "{}",
        report.human()
    );
    assert_eq!(report.plugin_name.as_deref(), Some("gallery-good"));
}

#[test]
fn handshake_wrong_version() {
    verdict("handshake-version", &["handshake.version"], "\"v1\"");
}

#[test]
fn stdout_text_between_frames() {
    verdict(
        "stdout-chatty",
        &["stdout.frames-only"],
        "handling a request",
    );
}

#[test]
fn unknown_op_answered_with_the_wrong_code() {
    verdict(
        "unknown-op-runtime",
        &["unknown-op.unsupported"],
        "E_RUNTIME",
    );
}

#[test]
fn timeout_of_a_declared_op() {
    verdict("timeout-hang", &["timeout.slow"], "no answer within");
}

#[test]
fn response_sent_twice() {
    verdict(
        "response-twice",
        &["response.exactly-one"],
        "more than once",
    );
}

#[test]
fn schema_of_launch_plan() {
    verdict(
        "schema-bad",
        &["schema.launch.plan"],
        "does not match the contract",
    );
}

#[test]
fn dry_run_that_writes() {
    verdict(
        "dry-run-writes",
        &["dry-run.repo-unchanged"],
        "created built.txt",
    );
}

#[test]
fn determinism_of_a_counter() {
    verdict(
        "determinism-counter",
        &["determinism.ping"],
        "different answer",
    );
}

#[test]
fn repo_root_ignored_for_the_cwd() {
    verdict("repo-root-cwd", &["repo-root.follows-ctx"], "ctx.repo_root");
}

#[test]
fn robustness_against_invalid_json() {
    verdict(
        "robustness-fragile",
        &[
            "robustness.invalid-json",
            "robustness.missing-request-id",
            "robustness.wrong-input-types",
            "robustness.blank-lines",
        ],
        "",
    );
    let report = run("robustness-fragile");
    let message = &report
        .check("robustness.invalid-json")
        .expect("reported")
        .message;
    assert!(message.contains("invalid JSON"), "{message}");
}

#[test]
fn concurrency_of_pipelined_requests() {
    verdict("concurrency-drop", &["concurrency.pipelined"], "unanswered");
}

#[test]
fn streams_event_after_end() {
    verdict(
        "streams-after-end",
        &["streams.nothing-after-end"],
        "after \"end\"",
    );
}

#[test]
fn shutdown_ignores_stdin_eof() {
    verdict(
        "shutdown-ignore-eof",
        &["shutdown.exits-on-eof"],
        "still running",
    );
}

#[test]
fn shutdown_leaves_a_process_behind() {
    verdict("shutdown-orphan", &["shutdown.no-leftovers"], "sleep 300");
    // The suite reports the orphan, then cleans it up itself.
    let report = run("shutdown-orphan");
    let message = &report
        .check("shutdown.no-leftovers")
        .expect("reported")
        .message;
    let pid: u32 = message
        .split("pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .expect("the message names the pid");
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false);
    assert!(!alive, "the orphan {pid} was left running");
}

#[test]
fn a_plugin_that_answers_nothing_still_gets_a_full_report() {
    let report = run("hang-all");
    assert!(!report.summary.ok);
    for family in devctl_conformance::FAMILIES {
        assert!(
            report.checks.iter().any(|c| c.family == *family),
            "family {family} missing from:\n{}",
            report.human()
        );
    }
    let failed = report.failed_ids();
    for id in [
        "unknown-op.unsupported",
        "timeout.ping",
        "concurrency.pipelined",
        "robustness.invalid-json",
    ] {
        assert!(
            failed.contains(&id),
            "{id} should fail:\n{}",
            report.human()
        );
    }
}
