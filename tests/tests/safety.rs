//! `.devctl/` is input, not truth: forged, damaged or missing state, links
//! planted under `.devctl/`, a permissive umask, names that are paths,
//! descendants that escape their group, signals and absurd flags. Each test
//! here reproduces a way devctl used to be fooled or to leave something
//! behind.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::TestRepo;
use serde_json::json;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn alive(pid: u32) -> bool {
    e2e::running(pid)
}

fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    fields[19].parse().unwrap()
}

/// A service that is ready at once and runs until stopped.
fn sleeper(name: &str, script: &str) -> serde_json::Value {
    json!({"name": name, "cwd": ".", "command": ["sh", "-c", script]})
}

#[test]
fn a_forged_state_file_neither_deletes_files_nor_signals_strangers() {
    let repo = TestRepo::with_fixture(&json!({"name": "f"}));
    // A process of the user's that devctl never started, in its own group.
    let mut stranger = Command::new("sleep")
        .arg("600")
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = stranger.id();
    let victim = repo.root.join("precious.txt");
    std::fs::write(&victim, "keep me").unwrap();
    repo.write(
        ".devctl/state.json",
        &json!({
            "version": 2, "repo_root": repo.root, "supervisor_pid": pid,
            "supervisor_start_time": start_time(pid), "socket": victim,
            "phase": "running", "generation": 1, "error": "\u{1b}[2J\u{1b}]0;owned\u{7}boom",
            "services": [{"name": "web", "status": "ready", "pid": pid, "pgid": pid,
                "start_time": start_time(pid), "started_at_ms": 1, "ready_at_ms": 1,
                "restarts": 0, "exit": null,
                "endpoint": "\u{1b}]8;;http://evil\u{7}click\u{1b}]8;;\u{7}"}]
        })
        .to_string(),
    );
    // What it says cannot drive the terminal.
    let status = repo.devctl(&["status"]);
    assert!(
        stdout(&status).contains("last error: boom") && !stdout(&status).contains('\u{1b}'),
        "{:?}",
        stdout(&status)
    );
    let down = repo.devctl(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(
        stdout(&down).contains(&format!(
            "pid {pid} (recorded for web) does not carry devctl's mark"
        )),
        "{}",
        stdout(&down)
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(alive(pid), "the stranger was signalled");
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

#[test]
fn under_umask_000_everything_in_devctl_is_private() {
    let repo = TestRepo::with_fixture(&json!({"name": "f", "services": [
        sleeper("svc", "echo hi; echo oops >&2; exec sleep 600")
    ]}));
    let devctl = e2e::built("devctl", "--bin", "devctl");
    // Through a shell, for the umask; the fixture plugin is in the repo.
    let up = Command::new("sh")
        .current_dir(&repo.root)
        .env("DEVCTL", &devctl)
        .args(["-c", "umask 000; exec \"$DEVCTL\" up -d"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    let dir = repo.root.join(".devctl");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("logs")), 0o700);
    for file in [
        "state.json",
        "lock",
        "supervisor.log",
        "control.sock",
        "logs/svc.log",
        "logs/@devctl.log",
    ] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn links_planted_under_devctl_are_refused_and_nothing_is_written_outside() {
    let outside = tempfile::tempdir().unwrap();
    let spec = json!({"name": "f", "services": [sleeper("svc", "echo hi; exec sleep 600")]});
    type Plant<'a> = &'a dyn Fn(&TestRepo);
    let cases: [(&str, Plant); 3] = [
        (".devctl", &|repo| {
            std::os::unix::fs::symlink(outside.path(), repo.root.join(".devctl")).unwrap();
        }),
        (".devctl/logs", &|repo| {
            std::fs::create_dir(repo.root.join(".devctl")).unwrap();
            std::os::unix::fs::symlink(outside.path(), repo.root.join(".devctl/logs")).unwrap();
        }),
        (".devctl/supervisor.log", &|repo| {
            std::fs::create_dir(repo.root.join(".devctl")).unwrap();
            std::os::unix::fs::symlink(
                outside.path().join("log"),
                repo.root.join(".devctl/supervisor.log"),
            )
            .unwrap();
        }),
    ];
    for (planted, plant) in cases {
        let repo = TestRepo::with_fixture(&spec);
        plant(&repo);
        let up = repo.devctl(&["up", "-d"]);
        assert!(!up.status.success(), "{planted}: {}", stderr(&up));
        assert!(
            stderr(&up).contains(&format!("{planted} is a symbolic link")),
            "{planted}: {}",
            stderr(&up)
        );
        assert!(
            stderr(&up).contains("fix: remove the link"),
            "{}",
            stderr(&up)
        );
        let written: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
        assert!(
            written.is_empty(),
            "{planted}: wrote {written:?} outside the repo"
        );
        assert!(
            repo.leftovers().is_empty(),
            "{planted}: {:?}",
            repo.leftovers()
        );
    }
    // A link where a log file goes is moved aside, never written through.
    let repo = TestRepo::with_fixture(&spec);
    std::fs::create_dir_all(repo.root.join(".devctl/logs")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("stolen"),
        repo.root.join(".devctl/logs/svc.log"),
    )
    .unwrap();
    let up = repo.devctl(&["up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));
    assert!(!outside.path().join("stolen").exists());

    // Reading back: `logs` and `status` never read through a link put in
    // the place of `.devctl/logs` (or of a log file) while it runs.
    std::fs::write(
        outside.path().join("svc.log"),
        "2026-11-23T10:00:00.000000Z e FOREIGN-LINE\n",
    )
    .unwrap();
    std::fs::rename(
        repo.root.join(".devctl/logs"),
        repo.root.join(".devctl/logs.real"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), repo.root.join(".devctl/logs")).unwrap();
    let logs = repo.devctl(&["logs"]);
    assert!(!logs.status.success(), "{}", stdout(&logs));
    assert!(!stdout(&logs).contains("FOREIGN-LINE"));
    assert!(
        stderr(&logs).contains("is a symbolic link"),
        "{}",
        stderr(&logs)
    );
    let status = repo.devctl(&["status"]);
    assert!(
        !stdout(&status).contains("FOREIGN-LINE"),
        "{}",
        stdout(&status)
    );
    std::fs::remove_file(repo.root.join(".devctl/logs")).unwrap();
    std::fs::rename(
        repo.root.join(".devctl/logs.real"),
        repo.root.join(".devctl/logs"),
    )
    .unwrap();
    std::fs::remove_file(repo.root.join(".devctl/logs/svc.log")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("svc.log"),
        repo.root.join(".devctl/logs/svc.log"),
    )
    .unwrap();
    let logs = repo.devctl(&["logs"]);
    assert!(!stdout(&logs).contains("FOREIGN-LINE"), "{}", stdout(&logs));
    assert!(
        stderr(&logs).contains("skipped") && stderr(&logs).contains("svc.log: not a regular file"),
        "{}",
        stderr(&logs)
    );
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn a_service_named_like_a_path_is_a_plan_error_naming_the_plugin() {
    let repo = TestRepo::with_fixture(&json!({"name": "f", "services": [
        sleeper("../../../escape", "exec sleep 600")
    ]}));
    for args in [&["plan"][..], &["up", "-d"]] {
        let output = repo.devctl(args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains("plugin fixture names a service badly")
                && stderr(&output).contains("\"../../../escape\""),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let escaped = repo
        .root
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("escape.log");
    assert!(!escaped.exists());
    assert!(repo.leftovers().is_empty());
}

#[test]
fn a_running_environment_is_seen_and_stopped_without_its_plugin_or_a_valid_config() {
    let (repo, _, _) = TestRepo::moments();
    assert!(repo.devctl(&["up", "-d"]).status.success());
    repo.write(".devctl.yaml", "plugins: [\n");
    let path_without_plugin = "/usr/bin:/bin";
    let run = |args: &[&str]| {
        repo.command(args)
            .env("PATH", path_without_plugin)
            .output()
            .unwrap()
    };
    let status = run(&["status", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["running"], json!(true));
    assert_eq!(doc["services"].as_array().unwrap().len(), 2);
    let logs = run(&["logs", "backend", "--tail", "3"]);
    assert!(logs.status.success(), "{}", stderr(&logs));
    let down = run(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(
        stdout(&down).contains("stopped backend"),
        "{}",
        stdout(&down)
    );
    assert!(repo
        .wait_for_nothing_left(Duration::from_secs(3))
        .is_empty());
}

#[test]
fn a_damaged_or_missing_state_file_does_not_hide_the_running_environment() {
    let (repo, _, _) = TestRepo::moments();
    assert!(repo.devctl(&["up", "-d"]).status.success());
    let state = repo.root.join(".devctl/state.json");

    std::fs::write(&state, "{\"version\": 2, \"repo").unwrap();
    let status = repo.devctl(&["status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(
        stderr(&status).contains("is not a devctl state file"),
        "{}",
        stderr(&status)
    );
    assert!(
        stdout(&status).contains("backend") && stdout(&status).contains("ready"),
        "{}",
        stdout(&status)
    );
    let again = repo.devctl(&["up", "-d"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already up here"),
        "{}",
        stderr(&again)
    );

    std::fs::remove_file(&state).unwrap();
    let forced = repo.devctl(&["up", "-d", "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    let supervisor = repo.status()["supervisor_pid"].as_u64().unwrap() as i32;

    // The new supervisor dies and takes its state file with it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while repo.status()["running"] == json!(true) {
        assert!(Instant::now() < deadline, "the supervisor survived SIGKILL");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::remove_file(&state).unwrap();
    let status = repo.devctl(&["status"]);
    assert!(
        stdout(&status).contains("still running without a supervisor"),
        "{}",
        stdout(&status)
    );
    let refused = repo.devctl(&["up", "-d"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("services from a previous run are still running"),
        "{}",
        stderr(&refused)
    );
    let down = repo.devctl(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(
        stdout(&down).contains("stopped backend") && stdout(&down).contains("stopped web"),
        "{}",
        stdout(&down)
    );
    let left = repo.wait_for_nothing_left(Duration::from_secs(3));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn descendants_that_leave_their_group_are_stopped_by_down_and_named() {
    let repo = TestRepo::with_fixture(&json!({"name": "f", "services": [
        sleeper("svc", "setsid sleep 601 & env -i setsid sleep 602 & echo started; exec sleep 600")
    ]}));
    let up = repo.devctl(&["up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));
    let deadline = Instant::now() + Duration::from_secs(5);
    while repo
        .leftovers()
        .iter()
        .filter(|l| l.contains("sleep 60"))
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "{:?}", repo.leftovers());
        std::thread::sleep(Duration::from_millis(10));
    }
    let down = repo.devctl(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    let text = stdout(&down);
    assert!(
        text.contains("escaped process") && text.contains("(sleep 601)"),
        "{text}"
    );
    assert!(
        text.contains("(sleep 602)"),
        "found without its marks: {text}"
    );
    let left = repo.wait_for_nothing_left(Duration::from_secs(3));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_foreground_up_stops_everything_on_sighup_and_sigterm_with_their_exit_codes() {
    for (signal, code) in [
        (nix::sys::signal::Signal::SIGHUP, 129),
        (nix::sys::signal::Signal::SIGTERM, 143),
    ] {
        let repo = TestRepo::with_fixture(&json!({"name": "f", "services": [
            sleeper("svc", "echo serving; exec sleep 600")
        ]}));
        let mut up = repo
            .command(&["up"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !repo.status()["services"][0]["ready"]
            .as_bool()
            .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "never ready");
            std::thread::sleep(Duration::from_millis(10));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(up.id() as i32), signal).unwrap();
        let status = up.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{signal}");
        let left = repo.wait_for_nothing_left(Duration::from_secs(3));
        assert!(left.is_empty(), "{signal}: left behind: {left:?}");
    }
}

#[test]
fn absurd_durations_are_usage_errors_not_panics() {
    let repo = TestRepo::with_fixture(&json!({"name": "f"}));
    for args in [
        &["--timeout", "99999999999999999999", "status"][..],
        &["down", "--grace", "1e19"],
        &["up", "-d", "--grace", "1e19"],
        &["up", "-d", "--grace", "NaN"],
        &["--timeout", "-5s", "plan"],
    ] {
        let output = repo.devctl(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    }
    assert!(repo.leftovers().is_empty());
}

#[test]
fn up_d_with_no_services_returns_and_dry_run_up_starts_nothing() {
    let repo = TestRepo::with_fixture(&json!({"name": "f"}));
    let up = repo.devctl(&["up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));
    assert!(
        stderr(&up).contains("0 service(s) ready"),
        "{}",
        stderr(&up)
    );
    assert!(repo.devctl(&["down"]).status.success());

    let repo = TestRepo::with_fixture(&json!({"name": "f", "services": [
        sleeper("svc", "touch started; exec sleep 600")
    ]}));
    let dry = repo.devctl(&["--dry-run", "up", "-d"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(stdout(&dry).contains("svc: sh -c"), "{}", stdout(&dry));
    assert!(
        stderr(&dry).contains("--dry-run: nothing was started"),
        "{}",
        stderr(&dry)
    );
    assert!(!repo.root.join("started").exists());
    assert!(!repo.root.join(".devctl/state.json").exists());
    assert!(repo.leftovers().is_empty());
}

#[test]
fn readiness_probes_close_their_connections_cleanly() {
    let (repo, _, _) = TestRepo::moments();
    assert!(repo.devctl(&["up", "-d"]).status.success());
    let log = stdout(&repo.devctl(&["logs", "backend", "--stderr"]));
    assert!(
        !log.contains("ConnectionResetError") && !log.contains("Traceback"),
        "{log}"
    );
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn state_says_ready_as_soon_as_up_d_returns() {
    let repo = TestRepo::with_fixture(&json!({"name": "f", "services": [
        sleeper("a", "exec sleep 600"),
        sleeper("b", "exec sleep 600"),
        {"name": "c", "cwd": ".", "command": ["sh", "-c", "exec sleep 600"],
         "health": {"type": "exec", "command": ["true"]}, "depends_on": ["a"]}
    ]}));
    for round in 0..8 {
        let up = repo.devctl(&["up", "-d"]);
        assert!(up.status.success(), "{}", stderr(&up));
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(repo.root.join(".devctl/state.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(state["phase"], json!("running"), "round {round}: {state}");
        for service in state["services"].as_array().unwrap() {
            assert_eq!(service["status"], json!("ready"), "round {round}: {state}");
            assert!(service["ready_at_ms"].is_u64(), "round {round}: {state}");
        }
        assert!(repo.devctl(&["down"]).status.success());
    }
}

#[test]
fn secrets_in_commands_env_and_health_checks_appear_nowhere() {
    let port = e2e::free_port();
    let repo = TestRepo::with_fixture(&json!({"name": "f", "services": [{
        "name": "api", "cwd": ".",
        // The words after the script are its unused $1…: only devctl shows them.
        "command": ["sh", "-c", "exec python3 -m http.server \"$0\" --bind 127.0.0.1", port.to_string(),
                    "postgres://u:URLARGSECRET@h/db", "--password", "FLAGSECRET"],
        "env": {"DB_PASS": "ENVSECRET1", "MYSQL_PWD": "ENVSECRET2", "STRIPE_KEY": "ENVSECRET3",
                "AUTH_HEADER_VALUE": "Bearer ENVSECRET4", "DSN": "host=h password=ENVSECRET5"},
        "health": {"type": "http", "url": format!("http://admin:HEALTHSECRET@127.0.0.1:{port}/"),
                   "timeout_ms": 10000}
    }]}));
    let mut seen = String::new();
    for args in [
        &["plan"][..],
        &["plan", "--json"],
        &["up", "-d"],
        &["status"],
        &["status", "--json"],
        &["logs"],
    ] {
        let output = repo.devctl(args);
        seen.push_str(&stdout(&output));
        seen.push_str(&stderr(&output));
    }
    for entry in walk(&repo.root.join(".devctl")) {
        seen.push_str(&String::from_utf8_lossy(
            &std::fs::read(entry).unwrap_or_default(),
        ));
    }
    for secret in ["URLARGSECRET", "FLAGSECRET", "ENVSECRET", "HEALTHSECRET"] {
        assert!(!seen.contains(secret), "{secret} leaked:\n{seen}");
    }
    assert!(seen.contains("<redacted>"), "{seen}");
    let shown = stdout(&repo.devctl(&["plan", "--show-secrets"]));
    assert!(
        shown.contains("HEALTHSECRET") && shown.contains("ENVSECRET1"),
        "{shown}"
    );
    assert!(repo.devctl(&["down"]).status.success());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => files.extend(walk(&path)),
            Ok(t) if t.is_file() => files.push(path),
            _ => {}
        }
    }
    files
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if pid != std::process::id() && String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn plugins_check_stops_its_plugin_and_scratch_copy_on_ctrl_c() {
    let name = format!("checked{}", std::process::id());
    let repo = TestRepo::with_fixture(&json!({
        "name": name, "slow_start_ms": 300, "services": []
    }));
    let tmp = tempfile::tempdir().unwrap();
    for (signal, code) in [
        (nix::sys::signal::Signal::SIGINT, 130),
        (nix::sys::signal::Signal::SIGTERM, 143),
    ] {
        let mut check = repo
            .command(&["plugins", "check"])
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        // The plugin's command line holds its spec (devctl's does not).
        while processes_mentioning(&name).is_empty() {
            assert!(
                Instant::now() < deadline,
                "the suite never started the plugin"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(check.id() as i32), signal).unwrap();
        let status = check.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{signal}");
        let deadline = Instant::now() + Duration::from_secs(3);
        while !processes_mentioning(&name).is_empty() {
            assert!(
                Instant::now() < deadline,
                "{signal}: the plugin outlived the check"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert!(left.is_empty(), "{signal}: scratch left: {left:?}");
    }
}
