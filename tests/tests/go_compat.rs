//! A team moving from the Go devctl changes nothing: its configs, plugins
//! written the way its fixtures are (`go_style.py`), its command forms; and
//! a newcomer meets no error they did not cause.

use std::process::Command;
use std::time::Duration;

use e2e::TestRepo;
use serde_json::{json, Value};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A repo laid out like the Go devctl's: plugins under `testdata/plugins/`,
/// referred to by relative arguments of `python3`.
fn go_repo(config: &str) -> TestRepo {
    let repo = TestRepo::empty("gorepo");
    repo.fixture("go_style.py", "testdata/plugins/go_style.py");
    repo.write(".devctl.yaml", config);
    repo
}

fn plugin(id: &str, mode: &str, extra: &str) -> String {
    format!("  - id: {id}\n    path: python3\n    args: [./testdata/plugins/go_style.py, {mode}]\n{extra}")
}

#[test]
fn the_go_example_config_with_no_services_comes_up_and_down() {
    // The shape of the Go project's .devctl.example.yaml.
    let repo = go_repo(&format!(
        "plugins:\n{}",
        plugin("ok", "ok", "    priority: 10\n")
    ));
    let up = repo.devctl(&["up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));
    assert!(
        stderr(&up).contains("0 service(s) ready"),
        "{}",
        stderr(&up)
    );
    let status: Value = serde_json::from_slice(&repo.devctl(&["status", "--json"]).stdout).unwrap();
    assert_eq!(status["running"], Value::Bool(true));
    let down = repo.devctl(&["down"]);
    assert!(down.status.success());
    assert!(
        stdout(&down).contains("stopped the supervisor"),
        "{}",
        stdout(&down)
    );
    assert!(repo
        .wait_for_nothing_left(Duration::from_secs(3))
        .is_empty());
}

#[test]
fn priorities_default_as_in_go_and_the_last_writer_wins() {
    // `a` has no priority (0 in Go), `b` has 10, `plugins/devctl-z` is
    // discovered (1000): the order is a, b, z, and b's service wins over a's.
    let repo = go_repo(
        "plugins:\n  - id: a\n    path: python3\n    args: [./testdata/plugins/go_style.py, pipeline, echo, from-a]\n  - id: b\n    path: python3\n    args: [./testdata/plugins/go_style.py, pipeline, echo, from-b]\n    priority: 10\n",
    );
    repo.write(
        "plugins/devctl-z",
        "#!/bin/sh\nexec python3 \"$(dirname \"$0\")/../testdata/plugins/go_style.py\" ok\n",
    );
    std::fs::set_permissions(
        repo.root.join("plugins/devctl-z"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let plan = repo.devctl(&["plan", "--json"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["plugins"], serde_json::json!(["a", "b", "z"]));
    assert_eq!(
        plan["services"][0]["spec"]["command"],
        serde_json::json!(["echo", "from-b"])
    );
}

#[test]
fn relative_config_and_plugin_args_resolve_from_the_repo_not_the_cwd() {
    let repo = go_repo("plugins: []\n");
    repo.write(
        "conf/dev.yaml",
        &format!("plugins:\n{}", plugin("p", "pipeline", "")),
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let root = repo.root.display().to_string();
    for args in [
        vec![
            "--repo-root",
            root.as_str(),
            "--config",
            "conf/dev.yaml",
            "plan",
        ],
        vec![
            "--repo-root",
            root.as_str(),
            "--config",
            "conf/dev.yaml",
            "plugins",
            "check",
        ],
    ] {
        let output = repo
            .command(&args)
            .current_dir(elsewhere.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}{}",
            stdout(&output),
            stderr(&output)
        );
        assert!(
            !stderr(&output).contains("can't open file"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn go_command_forms_are_accepted() {
    let repo = go_repo(&format!(
        "strictness: strict\nplugins:\n{}{}{}",
        plugin("cmd", "command", ""),
        plugin("pipe", "pipeline", ""),
        plugin("str", "stream", ""),
    ));
    // Global flags after a plugin command's name; output on stdout.
    let root = repo.root.display().to_string();
    let elsewhere = tempfile::tempdir().unwrap();
    let echo = repo
        .command(&[
            "echo",
            "--repo-root",
            &root,
            "--config",
            ".devctl.yaml",
            "hello",
            "world",
        ])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(echo.status.success(), "{}", stderr(&echo));
    assert_eq!(stdout(&echo), "hello world\n");
    assert!(
        stderr(&echo).contains("strictness \"strict\" means warn"),
        "{}",
        stderr(&echo)
    );

    repo.write("input.json", "{\"count\": 3}");
    let stream = repo.devctl(&[
        "stream",
        "start",
        "--op",
        "stream.start",
        "--input-file",
        "input.json",
        "--start-timeout",
        "2s",
    ]);
    assert!(stream.status.success(), "{}", stderr(&stream));
    assert!(stdout(&stream).contains("tick 2"), "{}", stdout(&stream));

    let up = repo.devctl(&["up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));
    let logs = repo.devctl(&["logs", "--service", "demo", "--tail", "5"]);
    assert!(logs.status.success(), "{}", stderr(&logs));
    let status = repo.devctl(&["status", "--tail-lines", "5", "--format", "go"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let doc: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["exists"], Value::Bool(true));
    assert_eq!(doc["services"][0]["name"], "demo");
    assert_eq!(doc["services"][0]["alive"], Value::Bool(true));
    let plan = repo.devctl(&["plan", "--format", "go"]);
    let doc: Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(doc["config"]["services"]["demo"]["port"], 1234);
    assert_eq!(doc["plan"]["services"][0]["name"], "demo");
    let list = repo.devctl(&["plugins", "list", "--format", "go"]);
    let doc: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(doc["plugins"][0]["plugin_name"], "go-style-command");
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn plugin_commands_get_help_from_devctl_and_never_run_for_it() {
    let repo = go_repo(&format!("plugins:\n{}", plugin("cmd", "command", "")));
    for args in [&["echo", "--help"][..], &["echo", "-h"], &["help", "echo"]] {
        let output = repo.devctl(args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert!(
            stdout(&output).contains("Echo arguments to stderr"),
            "{}",
            stdout(&output)
        );
        assert!(
            stdout(&output).contains("Usage: devctl echo"),
            "{}",
            stdout(&output)
        );
        assert!(
            !stdout(&output).contains("--help\n"),
            "the command ran: {}",
            stdout(&output)
        );
    }
    // After `--`, `--help` is the plugin's.
    let passed = repo.devctl(&["echo", "--", "--help"]);
    assert_eq!(stdout(&passed), "--help\n");
    for shell in ["bash", "zsh", "fish"] {
        let script = repo.devctl(&["completion", shell]);
        assert!(script.status.success(), "{shell}: {}", stderr(&script));
        let text = stdout(&script);
        assert!(
            text.contains("echo") && text.contains("status"),
            "{shell}: {text}"
        );
    }
    let bash = repo.devctl(&["completion", "bash"]);
    let check = Command::new("bash")
        .arg("-n")
        .stdin(std::process::Stdio::piped())
        .arg("/dev/stdin")
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&bash.stdout)?;
            child.wait()
        })
        .unwrap();
    assert!(check.success(), "bash parses the completion script");
}

#[test]
fn a_newcomer_meets_no_wrong_hint() {
    let empty = TestRepo::empty("empty");
    for args in [&["up", "-d"][..], &["plan"]] {
        let output = empty.devctl(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains("no .devctl.yaml in"),
            "{}",
            stderr(&output)
        );
    }
    assert!(!empty.root.join(".devctl").exists(), "nothing left behind");

    let typo = empty.devctl(&["stauts"]);
    assert_eq!(typo.status.code(), Some(2));
    let text = stderr(&typo);
    assert!(text.contains("did you mean `status`?"), "{text}");
    for builtin in [
        "up",
        "down",
        "logs",
        "restart",
        "plan",
        "plugins",
        "commands",
        "stream",
        "status",
        "completion",
    ] {
        assert!(text.contains(builtin), "{builtin} missing from: {text}");
    }
    for args in [
        &["--repo-root", "/nonexistent/x", "status"][..],
        &["--config", "nope.yaml", "plan"],
    ] {
        assert_eq!(empty.devctl(args).status.code(), Some(2), "{args:?}");
    }
    let help = empty.devctl(&["status", "--help"]);
    assert!(
        !stdout(&help).contains("--strict") && !stdout(&help).contains("--dry-run"),
        "{}",
        stdout(&help)
    );

    let repo = go_repo(&format!("plugins:\n{}", plugin("pipe", "pipeline", "")));
    let elsewhere = tempfile::tempdir().unwrap();
    let root = repo.root.display().to_string();
    let up = repo
        .command(&["--repo-root", &root, "up", "-d"])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    assert!(
        stdout(&up).contains(&format!("`devctl --repo-root {root} status`")),
        "{}",
        stdout(&up)
    );
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn completion_leaves_out_plugin_commands_no_shell_can_complete() {
    let repo = TestRepo::with_fixture(&json!({
        "name": "oddnames",
        "commands": [
            {"name": "two words", "help": "spaces"},
            {"name": "--flaglike", "help": "a flag"},
            {"name": "fine-one", "help": "a good one"}
        ]
    }));
    let output = repo.devctl(&["completion", "bash"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let script = stdout(&output);
    assert!(script.contains("fine-one"), "{script}");
    assert!(!script.contains("two words"), "{script}");
    let warning = stderr(&output);
    assert!(
        warning.contains("two words") && warning.contains("--flaglike"),
        "{warning}"
    );
}

#[test]
fn health_checks_written_the_go_way_are_understood() {
    let http = e2e::free_port();
    let tcp = e2e::free_port();
    let server = |port: u16| {
        json!([
            "python3",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            port.to_string()
        ])
    };
    let repo = TestRepo::with_fixture(&json!({"name": "goish", "services": [
        {"name": "web", "cwd": ".", "command": server(http),
         "health": {"type": "HTTP", "address": format!("http://127.0.0.1:{http}/"), "timeout_ms": 0}},
        {"name": "db", "cwd": ".", "command": server(tcp),
         "health": {"type": "Tcp", "address": format!("127.0.0.1:{tcp}"), "timeout_ms": 0}}
    ]}));
    let up = repo.devctl(&["up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));
    let status = repo.status();
    for service in status["services"].as_array().unwrap() {
        assert_eq!(service["ready"], true, "{service}");
    }
    assert!(repo.devctl(&["down"]).status.success());

    // A check missing what its type needs is refused when planning.
    let broken = TestRepo::with_fixture(&json!({"name": "goish", "services": [
        {"name": "web", "cwd": ".", "command": ["sleep", "60"], "health": {"type": "tcp"}}
    ]}));
    let plan = broken.devctl(&["plan"]);
    assert_eq!(plan.status.code(), Some(1), "{}", stderr(&plan));
    assert!(
        stderr(&plan)
            .contains("plugin fixture's service web: tcp health check needs an address or a port"),
        "{}",
        stderr(&plan)
    );
}

#[test]
fn plan_in_the_go_format_calls_only_what_the_go_devctl_calls() {
    let record = tempfile::NamedTempFile::new().unwrap();
    let repo = TestRepo::with_fixture(&json!({
        "name": "steps",
        "build": [{"name": "compile", "ok": true}],
        "prepare": [{"name": "keys", "ok": true}],
        "valid": true,
        "services": [{"name": "svc", "cwd": ".", "command": ["sleep", "60"]}],
        "record": record.path()
    }));
    let plan = repo.devctl(&["plan", "--format", "go"]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let ops = std::fs::read_to_string(record.path()).unwrap();
    let ops: Vec<&str> = ops.lines().collect();
    assert_eq!(ops, ["config.mutate", "launch.plan"]);
}
