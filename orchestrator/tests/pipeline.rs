//! The pipeline through `devctl plan`: ordering, merge rules, collisions,
//! provenance, `--without`, and capability enforcement, with fixture
//! plugins speaking raw protocol v2.

mod common;

use common::{stderr, Repo};
use serde_json::json;

fn service(name: &str, program: &str) -> serde_json::Value {
    json!({"name": name, "cwd": ".", "command": [program]})
}

#[test]
fn plugins_run_by_priority_then_id_and_each_sees_the_config_before_it() {
    let repo = Repo::with(&[
        ("a", 20, json!({"name": "a"})),
        ("c", 10, json!({"name": "c"})),
        ("b", 10, json!({"name": "b"})),
    ]);
    let (plan, output) = repo.plan(&[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(plan["plugins"], json!(["b", "c", "a"]));
    // config.mutate is chained: each plugin saw the keys set before it.
    assert_eq!(
        plan["config"]["order"],
        json!({"b": [], "c": ["b"], "a": ["b", "c"]})
    );
}

#[test]
fn merge_rules_last_key_wins_services_and_steps_merge_validation_is_the_and() {
    let repo = Repo::with(&[
        (
            "base",
            10,
            json!({"name": "base", "patch": {"set": {"port": 1, "keep": "x"}},
            "services": [service("api", "base-api"), service("db", "base-db")],
            "build": [{"name": "deps", "ok": true, "duration_ms": 0}], "valid": true}),
        ),
        (
            "over",
            20,
            json!({"name": "over", "patch": {"set": {"port": 2}, "unset": ["keep"]},
            "services": [service("api", "over-api")],
            "build": [{"name": "assets", "ok": true, "duration_ms": 0}],
            "valid": false, "errors": [{"code": "over.bad", "message": "not ready"}]}),
        ),
    ]);
    let (plan, output) = repo.plan(&[]);
    assert_eq!(output.status.code(), Some(1), "invalid plans exit 1");
    assert_eq!(plan["config"]["port"], json!(2));
    assert!(
        plan["config"].get("keep").is_none(),
        "unset removes the key"
    );
    let services: Vec<(&str, &str)> = plan["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["spec"]["name"].as_str().unwrap(),
                s["spec"]["command"][0].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(services, [("api", "over-api"), ("db", "base-db")]);
    let steps: Vec<&str> = plan["build"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["deps", "assets"]);
    assert_eq!(plan["valid"], json!(false));
    assert_eq!(plan["errors"][0]["plugin"], json!("over"));
}

#[test]
fn a_collision_warns_naming_both_plugins_unless_strict() {
    let repo = Repo::with(&[
        (
            "one",
            10,
            json!({"name": "one", "services": [service("api", "one")]}),
        ),
        (
            "two",
            20,
            json!({"name": "two", "services": [service("api", "two")]}),
        ),
    ]);
    let output = repo.devctl(&["plan"]).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("warning: service \"api\" comes from both one and two; two's wins"),
        "{text}"
    );

    let output = repo.devctl(&["--strict", "plan"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("strict mode: service \"api\" comes from both one and two"),
        "{err}"
    );

    repo.write(
        ".devctl.yaml",
        &format!(
            "strictness: error\n{}",
            std::fs::read_to_string(repo.root.join(".devctl.yaml")).unwrap()
        ),
    );
    assert_eq!(
        repo.devctl(&["plan"]).output().unwrap().status.code(),
        Some(1)
    );
}

#[test]
fn explain_names_who_set_each_key_and_service_and_what_it_overrode() {
    let repo = Repo::with(&[
        (
            "first",
            10,
            json!({"name": "first", "patch": {"set": {"port": 1}}, "services": [service("api", "first")]}),
        ),
        (
            "second",
            20,
            json!({"name": "second", "patch": {"set": {"port": 2}}, "services": [service("api", "second")]}),
        ),
    ]);
    let output = repo.devctl(&["plan", "--explain"]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("port = 2    set by second, overriding first (1)"),
        "{text}"
    );
    assert!(
        text.contains("from second, overriding the one from first"),
        "{text}"
    );
}

#[test]
fn without_removes_a_plugins_influence_and_does_not_start_it() {
    let repo = Repo::with(&[
        (
            "keep",
            10,
            json!({"name": "keep", "patch": {"set": {"port": 1}}, "services": [service("api", "keep")]}),
        ),
        (
            "drop",
            20,
            json!({"name": "drop", "patch": {"set": {"port": 2}}, "services": [service("web", "drop")], "pidfile": "drop.pid"}),
        ),
    ]);
    let (plan, output) = repo.plan(&["--without", "drop"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(plan["plugins"], json!(["keep"]));
    assert_eq!(plan["config"]["port"], json!(1));
    assert_eq!(plan["services"].as_array().unwrap().len(), 1);
    assert!(
        !repo.root.join("drop.pid").exists(),
        "a plugin left out is not started"
    );
    let output = repo
        .devctl(&["plan", "--without", "nosuch"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert!(stderr(&output).contains("no such plugin"));
}

#[test]
fn undeclared_ops_are_never_sent() {
    let repo = Repo::with(&[(
        "narrow",
        10,
        json!({"name": "narrow", "ops": ["launch.plan"], "services": [], "record": "ops.log"}),
    )]);
    let (_, output) = repo.plan(&[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let ops = std::fs::read_to_string(repo.root.join("ops.log")).unwrap();
    assert_eq!(ops, "launch.plan\n");
}

#[test]
fn a_plugin_that_ignores_unknown_ops_stalls_nothing() {
    let repo = Repo::with(&[(
        "quiet",
        10,
        json!({"name": "quiet", "ops": ["launch.plan"], "services": [service("api", "x")], "ignore_unknown": true, "record": "ops.log"}),
    )]);
    let (plan, output) = repo.plan(&[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(plan["services"][0]["spec"]["name"], json!("api"));
    repo.devctl(&["commands"]).assert().success();
    // Only the declared op reached it: nothing it would leave unanswered.
    let ops = std::fs::read_to_string(repo.root.join("ops.log")).unwrap();
    assert_eq!(ops, "launch.plan\n");
}

#[test]
fn a_step_that_fails_fails_the_plan() {
    let repo = Repo::with(&[(
        "b",
        10,
        json!({"name": "b", "prepare": [{"name": "migrate", "ok": false, "duration_ms": 3}]}),
    )]);
    let output = repo.devctl(&["plan"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("migrate FAILED"));
}

#[test]
fn a_plugin_that_cannot_start_fails_the_plan_with_a_fix() {
    let repo = Repo::with(&[("hung", 10, json!({"name": "hung", "hang": "handshake"}))]);
    let output = repo.devctl(&["plan"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("plugin hung") && err.contains("no handshake within 2000 ms"),
        "{err}"
    );
    assert!(err.contains("devctl plugins check hung"), "{err}");
}

#[test]
fn secret_looking_values_are_redacted_unless_asked() {
    let repo = Repo::with(&[(
        "s",
        10,
        json!({"name": "s", "patch": {"set": {"db.password": "hunter2", "db.url": "postgres://u:hunter2@h/db"}},
        "services": [{"name": "api", "command": ["x"], "env": {"API_TOKEN": "hunter2", "PORT": "1"}}]}),
    )]);
    let output = repo.devctl(&["plan", "--explain"]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("API_TOKEN=<redacted>") && text.contains("PORT=1"));
    let output = repo.devctl(&["plan", "--show-secrets"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("hunter2"));
}
