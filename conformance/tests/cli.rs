//! `devctl-conformance` as CI runs it: exit codes, JSON, JUnit XML read back
//! by a standard parser, the baseline workflow, `--only` deciding what runs,
//! hostile flag values, `--list`, and Ctrl-C / SIGTERM on the real binary.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use devctl_conformance::Report;

fn gallery() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/gallery/gallery.py")
        .display()
        .to_string()
}

fn suite(args: &[&str], mode: &str) -> Command {
    let mut cmd = Command::cargo_bin("devctl-conformance").expect("binary");
    cmd.args(["--timeout-scale", "0.3"])
        .args(args)
        .args(["--", "python3", &gallery(), mode]);
    cmd
}

#[test]
fn exit_zero_for_a_conformant_plugin_one_for_a_failing_one() {
    suite(&[], "good").assert().code(0);
    suite(&[], "stdout-chatty")
        .assert()
        .code(1)
        .stdout(predicates::str::contains(
            "FAIL   required    stdout.frames-only",
        ));
}

#[test]
fn exit_two_for_usage_errors_and_unstartable_plugins() {
    let mut no_plugin = Command::cargo_bin("devctl-conformance").unwrap();
    no_plugin.assert().code(2);
    suite(&["--only", "nonsense"], "good")
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "unknown check or family `nonsense`",
        ));
    let flag = |name: &str, value: &str| {
        let mut cmd = Command::cargo_bin("devctl-conformance").unwrap();
        cmd.args([name, value, "--", "python3", &gallery(), "good"]);
        cmd
    };
    for bad in ["0", "NaN", "-1", "inf", "1e300", "99999999999999999999", ""] {
        flag("--timeout-scale", bad)
            .assert()
            .code(2)
            .stderr(predicates::str::contains("from 0.1 to 100"));
    }
    for bad in ["1e300", "99999999999999999999s", "-5s", "NaN", "0", "31s"] {
        flag("--op-timeout", bad)
            .assert()
            .code(2)
            .stderr(predicates::str::contains("from 100ms to 30s"));
    }
    let mut missing = Command::cargo_bin("devctl-conformance").unwrap();
    missing
        .args(["--", "./no-such-plugin-here"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("cannot start the plugin"));
}

#[test]
fn json_output_is_the_report() {
    let output = suite(&["--format", "json"], "schema-bad").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: Report = serde_json::from_slice(&output.stdout).expect("JSON report");
    assert_eq!(report.summary.required_failed, ["schema.launch.plan"]);
}

#[test]
fn every_report_names_the_suite_version_that_judged() {
    let mut version = Command::cargo_bin("devctl-conformance").unwrap();
    let line = version.arg("--version").output().unwrap();
    assert_eq!(line.status.code(), Some(0));
    let line = String::from_utf8_lossy(&line.stdout).trim().to_owned();
    assert!(line.starts_with("devctl-conformance 0."), "{line}");

    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("report.xml");
    let json = suite(
        &[
            "--format",
            "json",
            "--junit",
            xml.to_str().unwrap(),
            "--only",
            "handshake",
        ],
        "good",
    )
    .output()
    .unwrap();
    let report: Report = serde_json::from_slice(&json.stdout).expect("JSON report");
    assert_eq!(report.suite, line);
    assert!(report.human().starts_with(&format!("{line}: python3 ")));
    // Read back as CI reads JUnit: a property of the test suite.
    let read = r#"
import sys, xml.etree.ElementTree as ET
suite = ET.parse(sys.argv[1]).getroot().find("testsuite")
props = {p.get("name"): p.get("value") for p in suite.find("properties")}
print(props["devctl-conformance --version"])
"#;
    assert_eq!(python_on(read, &xml), line);
}

#[test]
fn only_and_skip_select_checks() {
    let output = suite(
        &[
            "--format",
            "json",
            "--only",
            "handshake",
            "--only",
            "stdout.frames-only",
        ],
        "stdout-chatty",
    )
    .output()
    .unwrap();
    let report: Report = serde_json::from_slice(&output.stdout).unwrap();
    let families: std::collections::BTreeSet<&str> =
        report.checks.iter().map(|c| c.family.as_str()).collect();
    assert_eq!(families, ["handshake", "stdout"].into());
    suite(&["--skip", "stdout"], "stdout-chatty")
        .assert()
        .code(0);
}

#[test]
fn junit_xml_is_read_by_a_standard_parser() {
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("report.xml");
    suite(&["--junit", xml.to_str().unwrap()], "response-twice")
        .assert()
        .code(1);
    // Python's xml.etree, as CI systems parse JUnit.
    let check = r#"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suite = root.find("testsuite")
cases = suite.findall("testcase")
failed = [c.get("name") for c in cases if c.find("failure") is not None]
assert root.tag == "testsuites", root.tag
assert int(suite.get("tests")) == len(cases) > 20, (suite.get("tests"), len(cases))
assert int(suite.get("failures")) == len(failed) == 1, failed
print(failed[0])
"#;
    assert_eq!(python_on(check, &xml), "response.exactly-one");
}

/// Runs a Python script on `file`; its trimmed stdout.
fn python_on(script: &str, file: &Path) -> String {
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn the_baseline_accepts_known_failures_and_rejects_stale_entries() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("baseline.txt");
    std::fs::write(
        &baseline,
        "# chatty logger, fix tracked elsewhere\nstdout.frames-only\n",
    )
    .unwrap();
    let arg = baseline.to_str().unwrap();
    suite(&["--baseline", arg], "stdout-chatty")
        .assert()
        .code(0)
        .stdout(predicates::str::contains(
            "known  required    stdout.frames-only",
        ));
    // The same baseline on a plugin that now passes: stale, so the run fails.
    suite(&["--baseline", arg], "good")
        .assert()
        .code(1)
        .stdout(predicates::str::contains(
            "the baseline is stale: stdout.frames-only",
        ));
    let bogus = dir.path().join("bogus.txt");
    std::fs::write(&bogus, "not-a-family.check\n").unwrap();
    suite(&["--baseline", bogus.to_str().unwrap()], "good")
        .assert()
        .code(2);
}

#[test]
fn relative_plugin_paths_are_relative_to_where_the_suite_runs() {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gallery");
    let mut cmd = Command::cargo_bin("devctl-conformance").unwrap();
    cmd.current_dir(&dir)
        .args([
            "--timeout-scale",
            "0.3",
            "--",
            "python3",
            "gallery.py",
            "good",
        ])
        .assert()
        .code(0);
}

#[test]
fn only_decides_what_runs_not_just_what_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("received.log");
    // A plugin that dies on invalid JSON: asked only about blank lines, it
    // must never be sent invalid JSON.
    let output = suite(
        &["--format", "json", "--only", "robustness.blank-lines"],
        "fragile",
    )
    .env("GALLERY_LOG", &log)
    .output()
    .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let report: Report = serde_json::from_slice(&output.stdout).unwrap();
    let ids: Vec<&str> = report.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["robustness.blank-lines"]);
    let received = std::fs::read_to_string(&log).unwrap();
    assert!(received.contains("blank"), "{received}");
    assert!(!received.contains("invalid"), "{received}");
    assert!(!received.contains("noid"), "{received}");

    // Only the handshake: the plugin is started, and asked nothing at all.
    std::fs::remove_file(&log).unwrap();
    suite(&["--only", "handshake"], "timeout-hang")
        .env("GALLERY_LOG", &log)
        .assert()
        .code(0);
    let received = std::fs::read_to_string(&log).unwrap();
    assert!(
        received.lines().all(|line| line.starts_with("pid ")),
        "started, but sent something: {received}"
    );
}

#[test]
fn list_prints_every_check_with_its_severity_and_the_reason() {
    let mut cmd = Command::cargo_bin("devctl-conformance").unwrap();
    let output = cmd.arg("--list").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    for check in devctl_conformance::CATALOGUE {
        assert!(
            text.contains(check.id),
            "{} missing from:\n{text}",
            check.id
        );
        assert!(text.contains(check.why), "{}'s reason missing", check.id);
    }
    assert!(text.contains("robustness.invalid-json"));
    let line = text
        .lines()
        .find(|l| l.starts_with("robustness.invalid-json "))
        .expect("a line for it");
    assert!(line.contains("recommended"), "{line}");
}

#[test]
fn without_a_repo_root_the_report_says_what_the_plugin_ran_against() {
    let output = suite(&["--format", "json"], "good").output().unwrap();
    let report: Report = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report.repo_root, None);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("empty scratch directory")),
        "{:?}",
        report.notes
    );
    let mut cmd = Command::cargo_bin("devctl-conformance").unwrap();
    cmd.arg("--help")
        .assert()
        .code(0)
        .stdout(predicates::str::contains("empty directory"))
        .stdout(predicates::str::contains("needs --repo-root"));
}

/// The ids a gallery plugin logged: "pid N" and "child N" lines.
fn logged_processes(log: &Path) -> Vec<devctl_sdk::host::ProcessId> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            line.strip_prefix("pid ")
                .or_else(|| line.strip_prefix("child "))
        })
        .filter_map(|pid| devctl_sdk::host::process_id(pid.trim().parse().ok()?))
        .collect()
}

#[test]
fn a_signal_stops_the_plugin_and_its_children_and_removes_the_scratch_copy() {
    if !support::can_run("signal test") {
        return;
    }
    for (signal, code) in [
        (nix::sys::signal::Signal::SIGINT, 130),
        (nix::sys::signal::Signal::SIGTERM, 143),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("received.log");
        let scratch_parent = tmp.path().join("tmp");
        std::fs::create_dir(&scratch_parent).unwrap();
        let mut child =
            std::process::Command::new(assert_cmd::cargo::cargo_bin("devctl-conformance"))
                .args(["--timeout-scale", "10", "--", "python3"])
                .arg(support::gallery_script())
                .arg("hang-with-child")
                .env("TMPDIR", &scratch_parent)
                .env("GALLERY_LOG", &log)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
        // Wait until the plugin is stuck in "slow" (the run is under way).
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("\nslow\n")
        {
            assert!(
                Instant::now() < deadline,
                "the run never reached the slow op"
            );
            assert!(child.try_wait().unwrap().is_none(), "the suite ended early");
            std::thread::sleep(Duration::from_millis(20));
        }
        let running = logged_processes(&log);
        assert!(
            running.len() >= 2,
            "the plugin and its detached child run: {running:?}"
        );
        assert_eq!(
            std::fs::read_dir(&scratch_parent).unwrap().count(),
            1,
            "the scratch copy exists while the suite runs"
        );
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the suite ignored {signal}");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(code), "{signal}: {stderr}");
        assert!(stderr.contains("scratch copy removed"), "{stderr}");
        for process in running {
            assert_eq!(
                devctl_sdk::host::liveness(process),
                devctl_sdk::host::Liveness::Gone,
                "{signal}: pid {} survived",
                process.pid
            );
        }
        let left: Vec<_> = std::fs::read_dir(&scratch_parent)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "{signal}: left in TMPDIR: {left:?}");
    }
}

#[test]
fn a_plugin_that_never_stops_writing_still_gets_its_verdict() {
    // `yes` floods stdout with "y" and never handshakes; the run must end
    // (the deadline below only keeps a regression from hanging CI).
    let mut cmd = Command::cargo_bin("devctl-conformance").unwrap();
    cmd.args(["--", "yes"])
        .timeout(Duration::from_secs(120))
        .assert()
        .code(1)
        .stdout(predicates::str::contains(
            "line(s) on stdout before the handshake",
        ));
}

#[test]
fn completion_scripts_name_the_flags_and_bash_parses_its_own() {
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::cargo_bin("devctl-conformance")
            .unwrap()
            .args(["--completion", shell])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{shell}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("timeout-scale") && text.contains("junit"),
            "{shell}: {text}"
        );
    }
    let script = Command::cargo_bin("devctl-conformance")
        .unwrap()
        .args(["--completion", "bash"])
        .output()
        .unwrap()
        .stdout;
    let mut bash = std::process::Command::new("bash")
        .args(["-n", "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut bash.stdin.take().unwrap(), &script).unwrap();
    assert!(bash.wait().unwrap().success(), "bash parses the script");
}

#[test]
fn a_selection_that_selects_nothing_is_a_usage_error_not_a_pass() {
    for args in [
        &["--only", "timeout.lauch.plan"][..],
        &["--only", "handshake", "--skip", "handshake"],
    ] {
        let output = suite(args, "good").output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("selected no check") && stderr.contains("handshake.in-time"),
            "{args:?}: {stderr}"
        );
    }
}
