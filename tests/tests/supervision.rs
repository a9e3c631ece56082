//! `devctl up / down / status / logs / restart` end to end: the example repo
//! driven by `moments-dev dev plugin`, and fixture services that misbehave.

use std::time::{Duration, Instant};

use e2e::{http_get, TestRepo};
use serde_json::json;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn up_d_brings_the_example_up_ready_and_down_leaves_nothing() {
    let (repo, backend, web) = TestRepo::moments();
    let up = repo.devctl(&["up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));

    let (status, body) =
        http_get(&format!("http://127.0.0.1:{backend}/rpc/v1/health")).expect("backend answers");
    assert_eq!(status, 200, "{body}");
    let (_, page) = http_get(&format!("http://127.0.0.1:{web}/")).expect("web answers");
    assert!(
        page.contains(&format!("http://localhost:{backend}")),
        "{page}"
    );
    assert!(page.contains("VITE_IDENTITY_SERVICE_URL"), "{page}");
    assert!(
        page.contains("e2e-public-token"),
        "the web app gets the real token: {page}"
    );

    let state = repo.status();
    let ready: Vec<(String, bool)> = state["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["ready"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ready,
        [("backend".to_owned(), true), ("web".to_owned(), true)]
    );
    assert!(
        !std::fs::read_to_string(repo.root.join(".devctl/state.json"))
            .unwrap()
            .contains("e2e-public-token"),
        "no secrets in the state file"
    );
    // Its own services' ports are not "in use" to a plan of the same repo.
    let plan = repo.devctl(&["plan"]);
    assert!(
        plan.status.success(),
        "{}{}",
        String::from_utf8_lossy(&plan.stdout),
        stderr(&plan)
    );

    let logs = repo.devctl(&["logs", "backend"]);
    assert!(
        stdout(&logs).contains("backend | backend: listening on 127.0.0.1"),
        "{}",
        stdout(&logs)
    );

    let again = repo.devctl(&["up", "-d"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already up here"),
        "{}",
        stderr(&again)
    );

    let down = repo.devctl(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(
        stdout(&down).contains("stopped backend"),
        "{}",
        stdout(&down)
    );
    let left = repo.wait_for_nothing_left(Duration::from_secs(2));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn down_after_the_supervisor_was_killed_stops_what_it_recorded() {
    let (repo, _, _) = TestRepo::moments();
    assert!(repo.devctl(&["up", "-d"]).status.success());
    let supervisor = repo.status()["supervisor_pid"]
        .as_i64()
        .expect("supervisor pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while repo.status()["running"] == json!(true) {
        assert!(Instant::now() < deadline, "the supervisor survived SIGKILL");
        std::thread::sleep(Duration::from_millis(10));
    }
    let down = repo.devctl(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    let text = stdout(&down);
    assert!(
        text.contains("is gone; stopping what it started") && text.contains("stopped web"),
        "{text}"
    );
    let left = repo.wait_for_nothing_left(Duration::from_secs(2));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_service_that_ignores_sigterm_is_killed_after_the_grace() {
    let repo = TestRepo::with_fixture(&json!({"name": "stubborn", "services": [{
        "name": "stubborn", "cwd": ".",
        "command": ["sh", "-c", "trap '' TERM; echo started; while true; do sleep 0.05; done"]
    }]}));
    let up = repo.devctl(&["up", "-d", "--grace", "300ms"]);
    assert!(up.status.success(), "{}", stderr(&up));
    let started = Instant::now();
    let down = repo.devctl(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(
        stdout(&down).contains("ignored SIGTERM for 300 ms; killed"),
        "{}",
        stdout(&down)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the grace was given"
    );
    let left = repo.wait_for_nothing_left(Duration::from_secs(2));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_service_that_exits_at_start_up_fails_up_with_its_exit_code_and_stderr() {
    let (repo, _, _) = TestRepo::moments();
    let local = std::fs::read_to_string(repo.root.join("config/app/local.yaml")).unwrap();
    let crashing = "dev:\n  backend:\n    cwd: backend\n    command: [python3, -c, \"import sys; print('boom: no database', file=sys.stderr); sys.exit(3)\"]\n";
    repo.write(
        "config/app/local.yaml",
        &local.replacen("dev:\n", crashing, 1),
    );
    let up = repo.devctl(&["up", "-d"]);
    assert_eq!(up.status.code(), Some(1));
    let err = stderr(&up);
    assert!(
        err.contains("service backend exited during start-up with exit code 3"),
        "{err}"
    );
    assert!(
        err.contains("boom: no database"),
        "the stderr tail is shown: {err}"
    );
    let left = repo.wait_for_nothing_left(Duration::from_secs(2));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn restart_web_keeps_the_backend_and_its_log_tells_the_story() {
    let (repo, _, web) = TestRepo::moments();
    assert!(repo.devctl(&["up", "-d"]).status.success());
    let backend_pid = repo.pid_of("backend").expect("backend pid");
    let web_pid = repo.pid_of("web").expect("web pid");
    let restart = repo.devctl(&["restart", "web"]);
    assert!(restart.status.success(), "{}", stderr(&restart));
    assert_eq!(
        repo.pid_of("backend"),
        Some(backend_pid),
        "the backend was not touched"
    );
    assert_ne!(repo.pid_of("web"), Some(web_pid), "web is a new process");
    assert!(
        http_get(&format!("http://127.0.0.1:{web}/")).is_some(),
        "web answers again"
    );
    // One log for the run: the old process's lines, its stop, the new one.
    let new_pid = repo.pid_of("web").expect("web pid");
    let logs = repo.devctl(&["logs", "web"]);
    let text = stdout(&logs);
    let at = |needle: String| {
        text.find(&needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from:\n{text}"))
    };
    assert!(
        at(format!("web * started (pid {web_pid})")) < at(format!("web * stopped (pid {web_pid})"))
    );
    assert!(
        at(format!("web * stopped (pid {web_pid})")) < at(format!("web * started (pid {new_pid})"))
    );
    let unknown = repo.devctl(&["restart", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stdout(&unknown).contains("no service \"nope\""));
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn restarting_the_backend_restarts_what_depends_on_it() {
    let (repo, _, _) = TestRepo::moments();
    assert!(repo.devctl(&["up", "-d"]).status.success());
    let before = (repo.pid_of("backend"), repo.pid_of("web"));
    let restart = repo.devctl(&["restart", "backend"]);
    assert!(restart.status.success(), "{}", stderr(&restart));
    assert!(
        stdout(&restart).contains("restarted backend, web"),
        "{}",
        stdout(&restart)
    );
    let after = (repo.pid_of("backend"), repo.pid_of("web"));
    assert_ne!(before.0, after.0);
    assert_ne!(before.1, after.1);
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn a_health_check_that_never_passes_fails_up_within_its_timeout() {
    let port = e2e::free_port();
    let repo = TestRepo::with_fixture(&json!({"name": "never", "services": [{
        "name": "never", "cwd": ".", "command": ["sleep", "30"],
        "health": {"type": "tcp", "port": port, "timeout_ms": 400}
    }]}));
    // The service sleeps for 30 s: `up` returning with the health check's
    // own verdict shows it did not wait for the service.
    let up = repo.devctl(&["up", "-d"]);
    assert_eq!(up.status.code(), Some(1));
    assert!(
        stderr(&up).contains("did not become ready: not ready after 400 ms"),
        "{}",
        stderr(&up)
    );
    let left = repo.wait_for_nothing_left(Duration::from_secs(2));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn on_failure_restarts_a_service_that_dies_after_start_up() {
    let repo = TestRepo::with_fixture(&json!({"name": "flaky", "services": [{
        "name": "flaky", "cwd": ".", "restart": "on-failure", "settle_ms": 100,
        "command": ["sh", "-c", "echo up; sleep 1; exit 1"]
    }]}));
    assert!(repo.devctl(&["up", "-d"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let restarts = repo.status()["services"][0]["restarts"]
            .as_u64()
            .unwrap_or(0);
        if restarts >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never restarted twice: {}",
            repo.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(repo.devctl(&["down"]).status.success());
    let left = repo.wait_for_nothing_left(Duration::from_secs(2));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_failed_validation_prints_each_error_with_its_fix_and_starts_nothing() {
    let (repo, _, _) = TestRepo::moments();
    repo.write(
        "config/app/local.yaml",
        "platform:\n  mento-service-identity-base-url: http://localhost:8082\n",
    );
    let up = repo.devctl(&["up", "-d"]);
    assert_eq!(up.status.code(), Some(1));
    let err = stderr(&up);
    assert!(err.contains("consistency.identity-port"), "{err}");
    assert!(
        err.contains("fix:") && err.contains("MOMENTS_PLATFORM_MENTO_SERVICE_IDENTITY_BASE_URL"),
        "{err}"
    );
    assert!(
        err.contains("validation failed (consistency.identity-port"),
        "{err}"
    );
    assert!(err.contains("nothing was started"), "{err}");
    assert!(repo.leftovers().is_empty());
}

#[test]
fn a_service_without_health_check_is_ready_only_once_it_has_settled() {
    let script = |s: &str| json!(["sh", "-c", s]);
    // Exits at once: the start fails with its code and stderr.
    let repo = TestRepo::with_fixture(&json!({"name": "f", "services": [
        {"name": "quick", "cwd": ".", "command": script("echo no-config >&2; exit 3"), "restart": "always"}
    ]}));
    let up = repo.devctl(&["up", "-d"]);
    assert_eq!(up.status.code(), Some(1), "{}", stderr(&up));
    let err = stderr(&up);
    assert!(
        err.contains("service quick exited during start-up with exit code 3")
            && err.contains("no-config"),
        "{err}"
    );
    assert!(repo
        .wait_for_nothing_left(Duration::from_secs(3))
        .is_empty());

    // Stays up past the settle time, then crash-loops: never ready again,
    // shown as restarting, and `down` stops the supervisor.
    let repo = TestRepo::with_fixture(&json!({"name": "f", "services": [
        {"name": "late", "cwd": ".", "command": script("sleep 1; exit 4"), "restart": "always"}
    ]}));
    let up = repo.devctl(&["up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let service = repo.status()["services"][0].clone();
        if service["restarts"].as_u64().unwrap_or(0) >= 1 && service["status"] == "restarting" {
            assert_eq!(service["ready"], false, "{service}");
            break;
        }
        assert!(Instant::now() < deadline, "never restarted: {service}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = repo.devctl(&["status"]);
    assert!(
        stdout(&text).contains("restarting (") && stdout(&text).contains("next in"),
        "{}",
        stdout(&text)
    );
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

    // A settle time of its own: the same service that was ready above now
    // exits before it has settled, and its start fails.
    let repo = TestRepo::with_fixture(&json!({"name": "f", "services": [
        {"name": "late", "cwd": ".", "command": script("sleep 1; exit 4"), "settle_ms": 5000}
    ]}));
    let up = repo.devctl(&["up", "-d"]);
    assert_eq!(up.status.code(), Some(1), "{}", stderr(&up));
    assert!(
        stderr(&up).contains("service late exited during start-up with exit code 4"),
        "{}",
        stderr(&up)
    );
    assert!(repo
        .wait_for_nothing_left(Duration::from_secs(3))
        .is_empty());
}
