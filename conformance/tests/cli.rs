//! `devctl-conformance` as CI runs it: exit codes, JSON, JUnit XML read back
//! by a standard parser, and the baseline workflow.

use std::path::{Path, PathBuf};

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
    suite(&["--timeout-scale", "0"], "good").assert().code(2);
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
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(check)
        .arg(&xml)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "response.exactly-one"
    );
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
