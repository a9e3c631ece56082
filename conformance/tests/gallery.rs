//! The self-test gallery (`tests/gallery/gallery.py`): plugins of many good
//! shapes must be conformant, and each bad one must fail exactly the checks
//! of its own family that it breaks, for the right reason, with no failure
//! anywhere else.

mod support;

use devctl_conformance::{Report, Severity, Status, Suite};

fn gallery(mode: &str) -> Suite {
    let script = support::gallery_script();
    Suite::command([
        "python3".to_owned(),
        script.display().to_string(),
        mode.to_owned(),
    ])
    .timeout_scale(0.3)
    .probe_commands(true)
}

fn run(mode: &str) -> Report {
    gallery(mode).run().expect("the gallery plugin starts")
}

/// `mode` fails exactly `expected`, each message (or fix) mentioning
/// `reason`.
fn fails_exactly(report: &Report, mode: &str, expected: &[&str], reason: &str) {
    let mut failed = report.failed_ids();
    failed.sort_unstable();
    let mut wanted = expected.to_vec();
    wanted.sort_unstable();
    assert_eq!(failed, wanted, "{mode}:\n{}", report.human());
    for id in expected {
        let check = report.check(id).expect("reported");
        let text = format!(
            "{} {}",
            check.message,
            check.fix.clone().unwrap_or_default()
        );
        assert!(
            text.contains(reason),
            "{mode}: {id} says {text:?}, expected it to mention {reason:?}"
        );
        assert!(check.fix.is_some(), "{mode}: {id} has no fix line");
    }
}

fn verdict(mode: &str, expected: &[&str], reason: &str) {
    fails_exactly(&run(mode), mode, expected, reason);
}

/// Conformant, and nothing failed but `allowed` (recommended checks).
fn conformant(mode: &str, allowed: &[&str]) -> Report {
    let report = run(mode);
    report.assert_passed();
    for id in report.failed_ids() {
        let check = report.check(id).expect("reported");
        assert!(
            allowed.contains(&id) && check.severity == Severity::Recommended,
            "{mode}: unexpected failure of {id}:\n{}",
            report.human()
        );
    }
    report
}

#[test]
fn a_well_behaved_plugin_passes_everything() {
    let report = conformant("good", &[]);
    assert!(
        report.checks.iter().all(|c| c.status == Status::Pass),
        "{}",
        report.human()
    );
    assert_eq!(report.plugin_name.as_deref(), Some("gallery-good"));
    // It writes built.txt unless dry_run: every request carried dry_run.
    let unchanged = report.check("dry-run.repo-unchanged").expect("reported");
    assert_eq!(unchanged.status, Status::Pass);
}

#[test]
fn good_shapes_are_conformant() {
    for mode in support::GOOD_SHAPES {
        let report = conformant(mode, &[]);
        assert!(
            report.failed_ids().is_empty(),
            "{mode}:\n{}",
            report.human()
        );
    }
}

#[test]
fn a_plugin_that_cannot_run_twice_at_once_is_judged_the_same() {
    let state = tempfile::tempdir().expect("temp dir");
    let report = gallery("single-instance")
        .env("GALLERY_STATE", state.path().display().to_string())
        .run()
        .expect("starts");
    // Every family ran (none skipped for want of a handshake), all passed.
    assert!(
        report.checks.iter().all(|c| c.status == Status::Pass),
        "{}",
        report.human()
    );
}

#[test]
fn a_stream_declared_only_in_ops_is_still_checked_as_a_stream() {
    let report = conformant("streams-in-ops", &[]);
    for id in [
        "streams.stream-id",
        "streams.end-arrives",
        "streams.events-carry-id",
    ] {
        assert_eq!(
            report.check(id).map(|c| c.status),
            Some(Status::Pass),
            "{id}:\n{}",
            report.human()
        );
    }
}

#[test]
fn a_follow_stream_ends_when_stdin_closes() {
    let report = conformant("follow", &[]);
    let end = report.check("streams.end-arrives").expect("reported");
    assert!(end.message.contains("follow stream"), "{}", end.message);
}

#[test]
fn crashing_on_malformed_json_only_fails_a_recommended_check() {
    let report = conformant("fragile", &["robustness.invalid-json"]);
    fails_exactly(
        &report,
        "fragile",
        &["robustness.invalid-json"],
        "invalid JSON",
    );
    let message = &report
        .check("robustness.invalid-json")
        .expect("reported")
        .message;
    assert!(message.contains("exited with status 1"), "{message}");
}

#[test]
fn handshake_wrong_version() {
    verdict("handshake-version", &["handshake.version"], "\"v1\"");
}

#[test]
fn handshake_never_comes() {
    let report = run("handshake-never");
    fails_exactly(
        &report,
        "handshake-never",
        &["handshake.first-frame", "handshake.in-time"],
        "handshake",
    );
    // Everything else could not be judged, and says so.
    for family in devctl_conformance::FAMILIES {
        assert!(
            report.checks.iter().any(|c| c.family == *family),
            "family {family} missing:\n{}",
            report.human()
        );
    }
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
fn unknown_op_refused_too_slowly() {
    verdict("unknown-op-slow", &["unknown-op.fast"], "refused after");
}

#[test]
fn timeout_of_a_declared_op_that_wedges_the_plugin() {
    verdict("timeout-hang", &["timeout.slow"], "no answer within");
}

#[test]
fn response_sent_twice() {
    verdict(
        "response-twice",
        &["response.exactly-one"],
        "already answered",
    );
}

#[test]
fn a_response_hosts_cannot_read_fails_stdout_only() {
    // Valid JSON of the wrong shape, and not JSON at all (a NaN).
    for (mode, reason) in [("response-malformed", "yes"), ("response-nan", "NaN")] {
        let report = run(mode);
        fails_exactly(&report, mode, &["stdout.frames-only"], reason);
        let timeout = report.check("timeout.launch.plan").expect("reported");
        assert_eq!(timeout.status, Status::Skip, "{mode}: {}", report.human());
        assert!(
            timeout.message.contains("stdout.frames-only"),
            "{mode}: {}",
            timeout.message
        );
    }
}

#[test]
fn responses_with_ids_never_sent() {
    let report = run("response-wrong-id");
    fails_exactly(
        &report,
        "response-wrong-id",
        &["response.id-echoed"],
        "never sent",
    );
    let skipped = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Skip)
        .count();
    assert!(
        skipped > 5,
        "checks needing matched answers are skipped:\n{}",
        report.human()
    );
}

#[test]
fn a_request_frame_from_the_plugin() {
    verdict("response-request", &["response.no-unsolicited"], "request");
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
fn a_declared_op_answered_unsupported_fails_without_a_repo_too() {
    verdict(
        "declared-unsupported",
        &["schema.launch.plan"],
        "declared in the handshake",
    );
}

#[test]
fn a_handshake_that_does_not_parse_is_named_as_such_not_as_junk() {
    verdict(
        "handshake-numeric",
        &["handshake.valid"],
        "the handshake does not parse",
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
    verdict(
        "repo-root-cwd",
        &["repo-root.follows-ctx"],
        "launch.plan answered",
    );
}

#[test]
fn config_read_relative_to_the_cwd() {
    let repo = tempfile::tempdir().expect("temp dir");
    std::fs::write(repo.path().join("gallery.cfg"), "from-the-repo\n").expect("write");
    let report = gallery("repo-root-config")
        .repo_root(repo.path())
        .run()
        .expect("starts");
    fails_exactly(
        &report,
        "repo-root-config",
        &["repo-root.follows-ctx"],
        "config.mutate answered",
    );
}

#[test]
fn robustness_probes_are_judged_one_by_one() {
    verdict(
        "robustness-blank",
        &["robustness.blank-lines"],
        "blank lines",
    );
    verdict(
        "robustness-noid",
        &["robustness.missing-request-id"],
        "without request_id",
    );
    verdict(
        "robustness-types",
        &["robustness.wrong-input-types"],
        "was a string",
    );
}

#[test]
fn concurrency_of_pipelined_requests() {
    verdict(
        "concurrency-drop",
        &["concurrency.pipelined"],
        "not answered",
    );
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
fn streams_that_never_end() {
    verdict("streams-no-end", &["streams.end-arrives"], "no \"end\"");
}

#[test]
fn streams_events_with_another_id() {
    // Its events (its end included) go to another id: its own stream never ends.
    verdict(
        "streams-wrong-id",
        &["streams.events-carry-id", "streams.end-arrives"],
        "",
    );
    let report = run("streams-wrong-id");
    let message = &report
        .check("streams.events-carry-id")
        .expect("reported")
        .message;
    assert!(message.contains("someone-else"), "{message}");
}

#[test]
fn streams_declared_but_not_callable() {
    verdict(
        "streams-undeclared",
        &["streams.stream-id"],
        "List ticks in capabilities.ops",
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
fn commands_answered_without_an_exit_code() {
    verdict("commands-bad", &["commands.hello"], "exit_code");
}

#[test]
fn unsolicited_events_fail_only_the_streams_family() {
    let report = gallery("event-flood")
        .env("GALLERY_FLOOD", "5000")
        .run()
        .expect("starts");
    fails_exactly(
        &report,
        "event-flood",
        &["streams.events-carry-id"],
        "nobody-asked",
    );
}

/// The pid in "pid 123 (sleep 300)" of a message.
fn pid_in(message: &str) -> u32 {
    message
        .split("pid ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {message:?}"))
}

#[test]
fn processes_that_escape_the_group_or_the_tree_are_found_and_stopped() {
    for mode in ["shutdown-orphan", "shutdown-double-fork", "shutdown-no-env"] {
        // A stray that cleared its environment is told apart only when one
        // suite runs in the process (tests here run suites on threads): the
        // command line, as CI runs it.
        let report = if mode == "shutdown-no-env" {
            let output = assert_cmd::Command::cargo_bin("devctl-conformance")
                .unwrap()
                .args(["--timeout-scale", "0.3", "--format", "json", "--"])
                .args([
                    "python3",
                    &support::gallery_script().display().to_string(),
                    mode,
                ])
                .output()
                .unwrap();
            serde_json::from_slice::<Report>(&output.stdout).expect("a JSON report")
        } else {
            run(mode)
        };
        fails_exactly(&report, mode, &["shutdown.no-leftovers"], "sleep 300");
        // The suite reports the orphan, then stops it itself.
        let message = &report
            .check("shutdown.no-leftovers")
            .expect("reported")
            .message;
        let pid = pid_in(message);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
        let running = match &stat {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
            Err(err) => panic!("cannot tell whether {pid} runs: {err}"),
            Ok(stat) => {
                let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                !state.starts_with('Z') && stat.contains("(sleep)")
            }
        };
        assert!(!running, "{mode}: the orphan {pid} was left running");
    }
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
    for id in ["unknown-op.unsupported", "timeout.ping"] {
        assert!(
            failed.contains(&id),
            "{id} should fail:\n{}",
            report.human()
        );
    }
    // Surviving bad input cannot be judged when nothing is ever answered.
    assert_eq!(
        report.check("robustness.invalid-json").map(|c| c.status),
        Some(Status::Skip)
    );
}
