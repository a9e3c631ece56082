//! Snapshots of what `moments-dev` prints for the example repo: the manifest,
//! the Vite env in every format, and the validation report. A change to any
//! of these is a change to the contract and must be reviewed
//! (`cargo insta review`, or `INSTA_UPDATE=always cargo test`).

mod common;

use common::{stdout_of, RepoCopy, STATIC_CHECKS};

fn snapshot_of(repo: &RepoCopy, args: &[&str]) -> String {
    let output = repo.cmd(args).output().expect("moments-dev runs");
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let root = repo
        .root
        .canonicalize()
        .expect("root")
        .display()
        .to_string();
    stdout_of(&output).replace(&root, "[REPO]")
}

#[test]
fn manifest_json() {
    let repo = RepoCopy::new();
    insta::assert_snapshot!(snapshot_of(&repo, &["dev", "manifest"]));
}

#[test]
fn manifest_yaml() {
    let repo = RepoCopy::new();
    insta::assert_snapshot!(snapshot_of(&repo, &["dev", "manifest", "--format", "yaml"]));
}

#[test]
fn vite_env_json() {
    let repo = RepoCopy::new();
    insta::assert_snapshot!(snapshot_of(&repo, &["dev", "vite-env"]));
}

#[test]
fn vite_env_shell() {
    let repo = RepoCopy::new();
    insta::assert_snapshot!(snapshot_of(&repo, &["dev", "vite-env", "--format", "env"]));
}

#[test]
fn vite_env_dotenv() {
    let repo = RepoCopy::new();
    insta::assert_snapshot!(snapshot_of(
        &repo,
        &["dev", "vite-env", "--format", "dotenv"]
    ));
}

#[test]
fn validate_json() {
    let repo = RepoCopy::new();
    let mut args = vec!["dev", "validate", "--format", "json"];
    args.extend(STATIC_CHECKS);
    insta::assert_snapshot!(snapshot_of(&repo, &args));
}

#[test]
fn validate_human() {
    let repo = RepoCopy::new();
    let mut args = vec!["dev", "validate"];
    args.extend(STATIC_CHECKS);
    insta::assert_snapshot!(snapshot_of(&repo, &args));
}
