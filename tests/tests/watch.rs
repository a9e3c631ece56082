//! `devctl up --watch` on a temp copy of the example repo: edits re-plan the
//! environment and restart only what changed; bad edits change nothing;
//! plugins switched off and on take their services with them.

use std::time::{Duration, Instant};

use e2e::{free_port, http_get, TestRepo};
use serde_json::Value;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Waits (with a deadline) until `check` holds for `devctl status --json`.
fn wait_for(repo: &TestRepo, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = repo.status();
        if check(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn generation(status: &Value) -> u64 {
    status["generation"].as_u64().unwrap_or(0)
}

fn all_ready(status: &Value) -> bool {
    status["services"]
        .as_array()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|s| s["ready"] == true))
}

fn local_yaml(backend: u16, web: u16) -> String {
    format!(
        "server:\n  port: {backend}\nplatform:\n  mento-service-identity-base-url: http://localhost:{backend}\n  mento-service-public-base-url: http://localhost:{backend}\ndev:\n  web-port: {web}\n"
    )
}

fn last_rebuild(repo: &TestRepo) -> String {
    let text = std::fs::read_to_string(repo.root.join(".devctl/state.json")).unwrap_or_default();
    serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|s| s["last_rebuild"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn up_watching(repo: &TestRepo) {
    let up = repo.devctl(&["up", "-d", "--watch"]);
    assert!(up.status.success(), "{}", stderr(&up));
}

#[test]
fn a_new_web_port_restarts_web_only() {
    let (repo, backend, _) = TestRepo::moments();
    up_watching(&repo);
    let backend_pid = repo.pid_of("backend");
    let new_web = free_port();
    repo.write("config/app/local.yaml", &local_yaml(backend, new_web));
    wait_for(&repo, "plan 2 ready", |s| {
        generation(s) == 2 && all_ready(s)
    });
    assert!(
        http_get(&format!("http://127.0.0.1:{new_web}/")).is_some(),
        "web listens on the new port"
    );
    assert_eq!(
        repo.pid_of("backend"),
        backend_pid,
        "the backend kept its pid"
    );
    assert!(
        last_rebuild(&repo).contains("restarted web"),
        "{}",
        last_rebuild(&repo)
    );
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn a_new_backend_port_with_its_urls_restarts_both_with_new_vite_values() {
    let (repo, _, web) = TestRepo::moments();
    up_watching(&repo);
    let web_pid = repo.pid_of("web");
    let new_backend = free_port();
    repo.write("config/app/local.yaml", &local_yaml(new_backend, web));
    wait_for(&repo, "plan 2 ready", |s| {
        generation(s) == 2 && all_ready(s)
    });
    let (status, _) = http_get(&format!("http://127.0.0.1:{new_backend}/rpc/v1/health"))
        .expect("backend on the new port");
    assert_eq!(status, 200);
    assert_ne!(repo.pid_of("web"), web_pid, "web restarted");
    let (_, page) = http_get(&format!("http://127.0.0.1:{web}/")).expect("web answers");
    assert!(
        page.contains(&format!("http://localhost:{new_backend}")),
        "new VITE_* values: {page}"
    );
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn ten_edits_within_50_ms_are_one_rebuild() {
    let (repo, backend, _) = TestRepo::moments();
    up_watching(&repo);
    let webs: Vec<u16> = (0..10).map(|_| free_port()).collect();
    // Ten saves a few ms apart: nominally ~30 ms in all, and the gaps stay
    // far below the 150 ms debounce even on a loaded machine.
    for web in &webs {
        repo.write("config/app/local.yaml", &local_yaml(backend, *web));
        std::thread::sleep(Duration::from_millis(3));
    }
    wait_for(&repo, "plan 2 ready", |s| {
        generation(s) == 2 && all_ready(s)
    });
    assert!(
        http_get(&format!("http://127.0.0.1:{}/", webs[9])).is_some(),
        "the last edit won"
    );
    // One more edit, once that burst's plan runs: it must be plan 3. Had the
    // burst made two rebuilds, this one would be plan 4 (a sync point, not
    // a sleep).
    let last = free_port();
    repo.write("config/app/local.yaml", &local_yaml(backend, last));
    let status = wait_for(&repo, "the next edit's plan", |s| {
        all_ready(s) && http_get(&format!("http://127.0.0.1:{last}/")).is_some()
    });
    assert_eq!(generation(&status), 3, "{status:#}");
    let log = std::fs::read_to_string(repo.root.join(".devctl/supervisor.log")).unwrap();
    assert_eq!(log.matches("\"event\":\"replanned\"").count(), 2, "{log}");
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn a_syntax_error_changes_nothing_and_the_fix_applies() {
    let (repo, backend, web) = TestRepo::moments();
    up_watching(&repo);
    let pids = (repo.pid_of("backend"), repo.pid_of("web"));
    repo.write("config/app/local.yaml", "dev:\n  web-port: [\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !last_rebuild(&repo).contains("rejected") {
        assert!(Instant::now() < deadline, "the bad edit was not noticed");
        std::thread::sleep(Duration::from_millis(25));
    }
    let rejection = last_rebuild(&repo);
    assert!(
        rejection.contains("config/app/local.yaml:3:") && rejection.contains("malformed YAML"),
        "{rejection}"
    );
    assert_eq!(generation(&repo.status()), 1);
    assert_eq!(
        (repo.pid_of("backend"), repo.pid_of("web")),
        pids,
        "nothing restarted"
    );
    assert!(http_get(&format!("http://127.0.0.1:{web}/")).is_some());

    let new_web = free_port();
    repo.write("config/app/local.yaml", &local_yaml(backend, new_web));
    wait_for(&repo, "the fix applied", |s| {
        generation(s) == 2 && all_ready(s)
    });
    assert!(http_get(&format!("http://127.0.0.1:{new_web}/")).is_some());
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn a_failed_validation_under_watch_changes_nothing() {
    let (repo, backend, web) = TestRepo::moments();
    up_watching(&repo);
    let pids = (repo.pid_of("backend"), repo.pid_of("web"));
    let yaml = local_yaml(backend, web).replace(
        &format!("identity-base-url: http://localhost:{backend}"),
        "identity-base-url: http://localhost:1",
    );
    repo.write("config/app/local.yaml", &yaml);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !last_rebuild(&repo).contains("rejected") {
        assert!(
            Instant::now() < deadline,
            "the invalid edit was not noticed: {}",
            last_rebuild(&repo)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let rejection = last_rebuild(&repo);
    assert!(
        rejection.contains("consistency.identity-port")
            && rejection.contains("nothing was changed")
            && !rejection.contains("--skip-validate")
            && !rejection.contains("nothing was started"),
        "advice that fits a running environment: {rejection}"
    );
    assert_eq!((repo.pid_of("backend"), repo.pid_of("web")), pids);
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn disabling_a_plugin_removes_its_services_and_enabling_brings_them_back() {
    let (repo, _, _) = TestRepo::moments();
    std::fs::copy(
        e2e::workspace().join("orchestrator/tests/fixtures/fixture.py"),
        repo.root.join("fixture.py"),
    )
    .unwrap();
    let spec = serde_json::json!({"name": "extra", "services": [{"name": "extra", "cwd": ".", "command": ["sleep", "300"]}]}).to_string();
    let config = std::fs::read_to_string(repo.root.join(".devctl.yaml")).unwrap();
    repo.write(
        ".devctl.yaml",
        &format!(
            "{config}  - id: extra\n    path: ./fixture.py\n    priority: 20\n    args: [{}]\n",
            serde_json::to_string(&spec).unwrap()
        ),
    );
    up_watching(&repo);
    // Service names, sorted (the status lists them in start order).
    let names = |s: &Value| -> Vec<String> {
        let mut names: Vec<String> = s["services"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    assert_eq!(names(&repo.status()), ["backend", "extra", "web"]);
    let pids = (repo.pid_of("backend"), repo.pid_of("web"));

    let off = repo.devctl(&["plugins", "disable", "extra"]);
    assert!(off.status.success(), "{}", stderr(&off));
    assert!(
        String::from_utf8_lossy(&off.stdout).contains("the running `up --watch` applies it now")
    );
    wait_for(&repo, "extra gone", |s| {
        generation(s) == 2 && names(s) == ["backend", "web"]
    });
    assert_eq!(
        (repo.pid_of("backend"), repo.pid_of("web")),
        pids,
        "the others were not touched"
    );
    assert!(
        !e2e::leftovers_under(&repo.root)
            .iter()
            .any(|p| p.contains("sleep 300")),
        "extra's process is gone"
    );

    assert!(repo
        .devctl(&["plugins", "enable", "extra"])
        .status
        .success());
    wait_for(&repo, "extra back", |s| {
        generation(s) == 3 && names(s) == ["backend", "extra", "web"] && all_ready(s)
    });
    assert_eq!((repo.pid_of("backend"), repo.pid_of("web")), pids);
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn a_foreground_up_watch_reports_each_rebuild_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    let (repo, backend, _) = TestRepo::moments();
    let devctl = e2e::built("devctl", "--bin", "devctl");
    e2e::built("moments-dev", "--bin", "moments-dev");
    let path = format!(
        "{}:{}",
        devctl.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = std::process::Command::new(&devctl)
        .current_dir(&repo.root)
        .env("PATH", path)
        .args(["up", "--watch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_line = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line containing {needle:?}"),
            }
        }
    };
    wait_line("service(s) ready");
    repo.write("config/app/local.yaml", &local_yaml(backend, free_port()));
    let line = wait_line("plan 2 (config/app/local.yaml changed)");
    assert!(
        line.contains("restarted web") && line.contains("unchanged: backend"),
        "{line}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert_eq!(
        child.wait().unwrap().code(),
        Some(130),
        "Ctrl-C: 128 + SIGINT"
    );
    let left = repo.wait_for_nothing_left(Duration::from_secs(3));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn an_edited_backend_source_rebuilds_it_and_restarts_it() {
    let (repo, _, _) = TestRepo::moments();
    up_watching(&repo);
    let backend_pid = repo.pid_of("backend");
    let source = repo.root.join("backend/server.py");
    let mut text = std::fs::read_to_string(&source).unwrap();
    text.push_str("\n# an edit\n");
    std::fs::write(&source, text).unwrap();
    wait_for(&repo, "plan 2 ready", |s| {
        generation(s) == 2 && all_ready(s)
    });
    let line = last_rebuild(&repo);
    assert!(
        line.starts_with("plan 2 (backend/server.py changed): built backend in ")
            && line.contains("restarted backend (build changed)"),
        "{line}"
    );
    assert_ne!(repo.pid_of("backend"), backend_pid, "a new backend process");
    // The same line is in the merged log, as devctl's own.
    let logs = String::from_utf8_lossy(&repo.devctl(&["logs", "--tail", "50"]).stdout).into_owned();
    assert!(logs.contains(&format!("devctl  * {line}")), "{logs}");
    assert!(repo.devctl(&["down"]).status.success());
}
