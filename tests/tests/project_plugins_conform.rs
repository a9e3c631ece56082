//! The project's own plugins pass every required conformance check:
//! `moments-dev dev plugin` on the example repo (commands probed), and
//! without a repo (where what needs one is skipped, not failed), the SDK's
//! minimal example and the Python stdlib example.

use devctl_conformance::Suite;
use e2e::{built, workspace};

#[test]
fn moments_dev_dev_plugin_is_conformant() {
    let moments_dev = built("moments-dev", "--bin", "moments-dev");
    let report = Suite::command([
        moments_dev.display().to_string(),
        "dev".into(),
        "plugin".into(),
    ])
    .repo_root(workspace().join("examples/moments"))
    .probe_commands(true)
    .run()
    .expect("starts");
    report.assert_passed();
    assert!(report
        .check("commands.vite-env")
        .is_some_and(|c| c.status == devctl_conformance::Status::Pass));
}

#[test]
fn without_a_repo_moments_dev_is_conformant_and_says_what_needs_one() {
    let moments_dev = built("moments-dev", "--bin", "moments-dev");
    let report = Suite::command([
        moments_dev.display().to_string(),
        "dev".into(),
        "plugin".into(),
    ])
    .run()
    .expect("starts");
    report.assert_passed();
    assert!(report.failed_ids().is_empty(), "{}", report.human());
    let schema = report.check("schema.launch.plan").expect("reported");
    assert_eq!(schema.status, devctl_conformance::Status::Skip);
    assert!(
        schema.message.starts_with("needs --repo-root"),
        "{}",
        schema.message
    );
    assert!(
        report.notes.iter().any(|n| n.contains("need its repo")),
        "{:?}",
        report.notes
    );
}

#[test]
fn the_sdk_example_plugin_is_conformant() {
    let plugin = built("devctl-sdk", "--example", "minimal-plugin");
    let report = Suite::command([plugin.display().to_string()])
        .probe_commands(true)
        .run()
        .expect("starts");
    report.assert_passed();
    assert!(report
        .check("streams.end-arrives")
        .is_some_and(|c| c.status == devctl_conformance::Status::Pass));
}

#[test]
fn the_python_example_plugin_is_conformant() {
    let script = workspace().join("examples/plugins/python-minimal/plugin.py");
    Suite::command(["python3".to_owned(), script.display().to_string()])
        .probe_commands(true)
        .run()
        .expect("starts")
        .assert_passed();
}
