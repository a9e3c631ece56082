//! devctl's own surface: bad config, discovery, `plugins list`, plugin
//! commands (flags untouched, exit codes, the startup budget), `stream`
//! and Ctrl-C, `plugins check`, and commands that must not start plugins.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{stderr, Repo};
use predicates::prelude::*;
use serde_json::json;

#[test]
fn bad_config_names_the_file_the_key_and_the_fix() {
    let repo = Repo::with(&[]);
    let cases = [
        (
            "plugins:\n  - id: a\n    path: x\n   bad: [\n",
            ".devctl.yaml:4",
            "YAML syntax",
        ),
        (
            "plugins:\n  - id: a\n    path: [\n",
            ".devctl.yaml:3:11: plugins[0].path: invalid type: sequence",
            "value of the type",
        ),
        (
            "plugins:\n  - path: ./fixture.py\n",
            "plugins[0].id: missing",
            "unique `id`",
        ),
        (
            "plugins:\n  - {id: a, path: ./fixture.py}\n  - {id: a, path: ./fixture.py}\n",
            "plugins[1].id: duplicate id \"a\"",
            "unique `id`",
        ),
        (
            "plugins:\n  - {id: a, path: ./nope.py}\n",
            "plugins[0].path: \"./nope.py\" does not exist",
            "relative to the repo root",
        ),
        (
            "plugins:\n  - {id: a, path: no-such-program-xyz}\n",
            "does not exist",
            "on PATH",
        ),
    ];
    for (yaml, what, fix) in cases {
        repo.write(".devctl.yaml", yaml);
        repo.devctl(&["plan"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(".devctl.yaml"))
            .stderr(predicate::str::contains(what))
            .stderr(predicate::str::contains(fix));
    }
}

#[test]
fn a_strictness_the_go_devctl_accepts_is_a_warning_not_an_error() {
    let repo = Repo::with(&[]);
    repo.write("extra.yaml", "strictness: loud\nplugins: []\n");
    repo.devctl(&["--config", "extra.yaml", "plugins", "list"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "strictness \"loud\" means warn (only `error` makes collisions fail",
        ));
}

#[test]
fn plugins_named_devctl_id_are_discovered_and_disabled_ones_skipped() {
    let repo = Repo::with(&[]);
    repo.write(".devctl.yaml", "plugins:\n  - {id: off, path: ./fixture.py, enabled: false, args: ['{\"name\":\"off\"}']}\n");
    repo.write(
        "plugins/devctl-auto",
        "#!/bin/sh\nexec python3 \"$(dirname \"$0\")/../fixture.py\" '{\"name\":\"auto\"}'\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        repo.root.join("plugins/devctl-auto"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let output = repo
        .devctl(&["plugins", "list", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let summary: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Discovered plugins run after configured ones (priority 1000 against
    // 0, as in the Go devctl).
    assert_eq!(
        summary,
        [
            ("off".to_owned(), "disabled".to_owned()),
            ("auto".to_owned(), "ok".to_owned())
        ]
    );
}

#[test]
fn plugins_list_reports_a_failing_plugin_in_its_row() {
    let repo = Repo::with(&[
        (
            "good",
            10,
            json!({"name": "good-plugin", "commands": [{"name": "hi"}]}),
        ),
        ("hung", 20, json!({"name": "hung", "hang": "handshake"})),
    ]);
    let output = repo.devctl(&["plugins", "list"]).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("good  (good-plugin v2, priority 10)"),
        "{text}"
    );
    assert!(text.contains("commands: hi"), "{text}");
    assert!(
        text.contains("hung  FAILED: no handshake within 2000 ms"),
        "{text}"
    );
}

#[test]
fn plugin_commands_get_their_flags_untouched_and_set_the_exit_code() {
    let repo = Repo::with(&[(
        "tools",
        10,
        json!({"name": "tools", "record": "calls.log", "commands": [{"name": "db-reset", "help": "Reset the database"}], "exit_codes": {"db-reset": 7}}),
    )]);
    let output = repo
        .devctl(&[
            "db-reset",
            "--force",
            "-x",
            "--timeout",
            "20s",
            "--",
            "--repo-root",
            "elsewhere",
            "--help",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    let calls = std::fs::read_to_string(repo.root.join("calls.log")).unwrap();
    // devctl's own flags are devctl's wherever they stand (as in the Go
    // devctl); after `--` everything is the plugin's.
    assert!(
        calls.contains(r#"argv ["--force", "-x", "--repo-root", "elsewhere", "--help"]"#),
        "{calls}"
    );
    assert!(
        !calls.contains("launch.plan"),
        "only config.mutate and command.run: {calls}"
    );
    repo.devctl(&["commands"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "db-reset  Reset the database  [tools]",
        ));
}

#[test]
fn the_first_plugin_wins_a_command_name_clash_and_commands_reports_it() {
    let repo = Repo::with(&[
        (
            "one",
            10,
            json!({"name": "one", "commands": [{"name": "go"}], "exit_codes": {"go": 3}}),
        ),
        (
            "two",
            20,
            json!({"name": "two", "commands": [{"name": "go"}], "exit_codes": {"go": 4}}),
        ),
    ]);
    repo.devctl(&["go"]).assert().code(3);
    repo.devctl(&["commands"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "command \"go\" is provided by both one and two; one's is used",
        ));
}

#[test]
fn a_hung_plugin_before_the_provider_costs_only_its_startup_budget() {
    let repo = Repo::with(&[
        ("hung", 5, json!({"name": "hung", "hang": "handshake"})),
        (
            "tools",
            10,
            json!({"name": "tools", "commands": [{"name": "hello"}]}),
        ),
    ]);
    repo.devctl(&["hello"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "plugin hung is left out of the commands: no handshake within 500 ms",
        ));
}

#[test]
fn a_hung_plugin_after_the_provider_is_not_waited_for_and_not_left_behind() {
    let repo = Repo::with(&[
        (
            "tools",
            10,
            json!({"name": "tools", "commands": [{"name": "hello"}]}),
        ),
        (
            "hung",
            20,
            json!({"name": "hung", "hang": "handshake", "pidfile": "hung.pid"}),
        ),
    ]);
    let output = repo.devctl(&["hello"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("left out"),
        "the hung plugin was not waited for"
    );
    // If it got as far as starting, it must be gone once devctl has exited.
    if let Ok(pid) = std::fs::read_to_string(repo.root.join("hung.pid")) {
        let pid: u32 = pid.trim().parse().unwrap();
        assert!(!e2e::running(pid), "plugin {pid} outlived devctl");
    }
}

#[test]
fn unknown_commands_are_usage_errors_listing_what_exists() {
    let repo = Repo::with(&[(
        "tools",
        10,
        json!({"name": "tools", "commands": [{"name": "hello"}]}),
    )]);
    repo.devctl(&["nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown command `nope`"))
        .stderr(predicate::str::contains("plugin commands: hello"));
}

#[test]
fn help_and_status_do_not_start_plugins() {
    let repo = Repo::with(&[("p", 10, json!({"name": "p", "pidfile": "p.pid"}))]);
    repo.devctl(&["--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes"));
    repo.devctl(&["status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing is running"));
    assert!(!repo.root.join("p.pid").exists());
}

#[test]
fn stream_prints_events_until_end() {
    let repo = Repo::with(&[("s", 10, json!({"name": "s", "streams": ["ticks"]}))]);
    let output = repo
        .devctl(&[
            "stream",
            "--op",
            "ticks",
            "--input-json",
            r#"{"count": 3}"#,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 4);
    assert_eq!(events[3]["event"], json!("end"));
    repo.devctl(&["stream", "--op", "nothing"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no plugin declares the op"));
}

#[test]
fn ctrl_c_ends_a_stream_cleanly_and_leaves_no_plugin_process() {
    let repo = Repo::with(&[(
        "s",
        10,
        json!({"name": "s", "streams": ["ticks"], "pidfile": "s.pid"}),
    )]);
    let bin = assert_cmd::cargo::cargo_bin("devctl");
    let mut child = std::process::Command::new(bin)
        .env("PATH", e2e::search_path())
        .args([
            "--repo-root",
            &repo.root.display().to_string(),
            "stream",
            "--op",
            "ticks",
            "--input-json",
            r#"{"count": -1}"#,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("an event").unwrap();
    assert!(first.contains("tick"), "{first}");
    let pid: i32 = std::fs::read_to_string(repo.root.join("s.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(
        !e2e::running(pid as u32),
        "the plugin {pid} survived Ctrl-C"
    );
}

#[test]
fn plugins_check_runs_the_conformance_suite() {
    let repo = Repo::with(&[("good", 10, json!({"name": "good", "services": []}))]);
    repo.devctl(&["plugins", "check", "good", "--timeout-scale", "0.5"])
        .assert()
        .stdout(predicate::str::contains("== good =="))
        .stdout(predicate::str::contains("handshake.in-time"));
}

#[test]
fn plugins_that_ignore_sigterm_are_killed_after_the_close_budget_not_waited_for() {
    for provider_is_stubborn in [false, true] {
        let repo = Repo::with(&[
            (
                "tools",
                10,
                json!({"name": "tools", "commands": [{"name": "hello"}], "stubborn": provider_is_stubborn, "pidfile": "tools.pid"}),
            ),
            // Before the provider, so it has to answer (and runs) first.
            (
                "other",
                5,
                json!({"name": "other", "stubborn": true, "pidfile": "other.pid"}),
            ),
        ]);
        let output = repo.devctl(&["hello"]).output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        for plugin in ["tools", "other"] {
            let pid: i32 = std::fs::read_to_string(repo.root.join(format!("{plugin}.pid")))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            // devctl waited until each group was empty before it exited.
            assert!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
                "{plugin} (stubborn provider: {provider_is_stubborn}) outlived the command"
            );
        }
    }
}

#[test]
fn a_plugin_answering_ids_it_was_never_sent_is_named_not_waited_for() {
    let repo = Repo::with(&[(
        "liar",
        10,
        json!({"name": "liar", "services": [], "wrong_ids": true}),
    )]);
    let output = repo.devctl(&["plan"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("which this host never sent") && text.contains("not-liar-1"),
        "{text}"
    );
    assert!(!text.contains("no answer"), "it was not a timeout: {text}");
}

#[test]
fn a_slow_provider_still_provides_its_command() {
    // Slower than the 500 ms discovery budget, as a Python plugin on a busy
    // machine can be: with no other provider, it is waited for.
    let repo = Repo::with(&[
        (
            "tools",
            10,
            json!({"name": "tools", "commands": [{"name": "hello"}], "slow_start_ms": 900}),
        ),
        ("other", 20, json!({"name": "other"})),
    ]);
    let output = repo.devctl(&["hello"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    repo.devctl(&["commands"])
        .assert()
        .success()
        .stdout(predicate::str::contains("hello"));
}

#[test]
fn a_config_that_is_no_regular_utf8_file_is_refused_at_once() {
    let repo = Repo::with(&[]);
    let config = repo.root.join(".devctl.yaml");
    std::fs::remove_file(&config).unwrap();
    nix::unistd::mkfifo(&config, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // A FIFO would block a read forever (killed after 10 s: no exit code).
    for args in [&["status"][..], &["plan"]] {
        let output = repo
            .devctl(args)
            .timeout(std::time::Duration::from_secs(10))
            .output()
            .unwrap();
        assert!(output.status.code().is_some(), "{args:?} hangs on a FIFO");
        if args == ["plan"] {
            assert_eq!(output.status.code(), Some(2));
            assert!(
                stderr(&output).contains("not a regular file"),
                "{}",
                stderr(&output)
            );
        }
    }
    let output = repo
        .devctl(&["--config", "/dev/zero", "plan"])
        .timeout(std::time::Duration::from_secs(10))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("/dev/zero: not a regular file"),
        "{}",
        stderr(&output)
    );
    std::fs::remove_file(&config).unwrap();
    std::fs::write(&config, b"plugins: []\n# caf\xe9\n").unwrap();
    let output = repo.devctl(&["plan"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert_eq!(text.matches("not UTF-8").count(), 1, "once: {text}");
    assert!(text.contains("invalid byte at offset 17"), "{text}");
}
