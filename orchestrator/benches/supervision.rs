//! Supervision, measured in one run with real processes:
//!
//! - readiness detection: a port opens at t, devctl records "ready" at t + x
//!   (p50 target ≤ 15 ms);
//! - `up -d` of 20 independent services that each become ready after 100 ms
//!   (target ≤ 250 ms in all);
//! - a service writing 500 MB to stdout, against `head -c … > file` (target
//!   ≥ 70% of its throughput), with the supervisor's peak RSS (≤ 20 MB);
//! - `down` of 20 services that exit on SIGTERM (target ≤ 100 ms);
//! - `up --watch`: from a saved edit to the backend ready on its new port,
//!   the time beyond the backend's own start-up (target ≤ 300 ms).
//!
//! This binary plays the plugin (through the SDK) and the services itself.
//! Run: `cargo bench -p devctl --bench supervision`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use devctl_sdk::plugin::{Ctx, OpError, Plugin};
use serde_json::{json, Value};

const ROLE: &str = "DEVCTL_BENCH_ROLE";

fn unix_ms_f() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// A service: waits, opens its port, records when, then serves until killed.
fn service(args: &[String]) -> ExitCode {
    let port: u16 = args.first().and_then(|p| p.parse().ok()).unwrap_or(0);
    let delay: u64 = args.get(1).and_then(|d| d.parse().ok()).unwrap_or(0);
    std::thread::sleep(Duration::from_millis(delay));
    let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) else {
        return ExitCode::from(1);
    };
    if let Some(file) = args.get(2) {
        let _ = std::fs::write(file, format!("{}", unix_ms_f()));
    }
    for connection in listener.incoming() {
        drop(connection);
    }
    ExitCode::SUCCESS
}

/// The plugin: `launch.plan` answers the services in $BENCH_SERVICES, with
/// `{port}` replaced by the number in the repo's `port.txt` (which it
/// declares for watch mode).
fn plugin() -> ExitCode {
    let services = std::env::var("BENCH_SERVICES").unwrap_or_else(|_| "[]".into());
    Plugin::new("bench")
        .op("launch.plan", move |ctx: Ctx, _: Value| {
            let port = ctx
                .repo_root()
                .and_then(|root| std::fs::read_to_string(root.join("port.txt")).ok())
                .unwrap_or_default();
            let text = services.replace("{port}", port.trim());
            async move {
                let services: Value =
                    serde_json::from_str(&text).map_err(|e| OpError::runtime(e.to_string()))?;
                Ok::<_, OpError>(json!({ "services": services }))
            }
        })
        .watch(&["port.txt"])
        .run()
}

struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Repo {
    fn new(services: &Value) -> Repo {
        Repo::with_services_text(&services.to_string())
    }

    /// `services` is the JSON the plugin answers, where `{port}` stands for
    /// the number in the repo's `port.txt`.
    fn with_services_text(services: &str) -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let exe = std::env::current_exe().expect("own path");
        let config = json!({"plugins": [{
            "id": "bench", "path": exe, "env": {ROLE: "plugin", "BENCH_SERVICES": services}
        }]});
        std::fs::write(root.join(".devctl.yaml"), config.to_string()).expect("config");
        Repo { _dir: dir, root }
    }

    fn devctl(&self, args: &[&str]) -> Duration {
        let started = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_devctl"))
            .arg("--repo-root")
            .arg(&self.root)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("devctl runs");
        assert!(
            status.success(),
            "devctl {args:?} failed in {}",
            self.root.display()
        );
        started.elapsed()
    }

    fn state(&self) -> Value {
        std::fs::read_to_string(self.root.join(".devctl/state.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn service_spec(name: &str, port: u16, delay_ms: u64, opened: Option<&Path>) -> Value {
    let exe = std::env::current_exe().expect("own path");
    let mut command = vec![
        exe.display().to_string(),
        port.to_string(),
        delay_ms.to_string(),
    ];
    command.extend(opened.map(|p| p.display().to_string()));
    json!({"name": name, "cwd": ".", "command": command, "env": {ROLE: "service"},
           "health": {"type": "tcp", "port": port, "timeout_ms": 10000}})
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[((values.len() - 1) as f64 * p).round() as usize]
}

fn readiness_latency() -> Vec<f64> {
    let mut latencies = Vec::new();
    for run in 0..30u64 {
        let marker = tempfile::NamedTempFile::new().expect("marker");
        // Ports open at varied moments, so every stretch of the polling
        // schedule is sampled.
        let delay = 20 + (run * 37) % 380;
        let services = json!([service_spec("svc", free_port(), delay, Some(marker.path()))]);
        let repo = Repo::new(&services);
        repo.devctl(&["up", "-d"]);
        let ready_at = repo.state()["services"][0]["ready_at_ms"]
            .as_f64()
            .unwrap_or(0.0);
        let opened_at: f64 = std::fs::read_to_string(marker.path())
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0.0);
        repo.devctl(&["down"]);
        // ready_at is whole milliseconds; opened_at has fractions.
        latencies.push((ready_at - opened_at.floor()).max(0.0));
    }
    latencies
}

fn twenty_services() -> (Vec<f64>, Vec<f64>) {
    let mut ups = Vec::new();
    let mut downs = Vec::new();
    for _ in 0..5 {
        let services: Vec<Value> = (0..20)
            .map(|n| service_spec(&format!("s{n}"), free_port(), 100, None))
            .collect();
        let repo = Repo::new(&Value::Array(services));
        ups.push(ms(repo.devctl(&["up", "-d"])));
        downs.push(ms(repo.devctl(&["down"])));
    }
    (ups, downs)
}

const BYTES: u64 = 500_000_000;

fn log_capture() -> (f64, f64, f64) {
    let command = json!([
        "sh",
        "-c",
        format!("head -c {BYTES} /dev/zero; exec sleep 60")
    ]);
    let repo = Repo::new(&json!([{ "name": "loud", "cwd": ".", "command": command }]));
    let started = Instant::now();
    repo.devctl(&["up", "-d"]);
    let log = repo.root.join(".devctl/logs/loud.stdout.log");
    while std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) < BYTES {
        std::thread::sleep(Duration::from_millis(1));
    }
    let captured = started.elapsed();
    let supervisor = repo.state()["supervisor_pid"].as_u64().unwrap_or(0);
    let rss_kb: f64 = std::fs::read_to_string(format!("/proc/{supervisor}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);
    repo.devctl(&["down"]);
    let _ = std::fs::remove_file(&log);

    let baseline_file = repo.root.join("baseline.out");
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {BYTES} /dev/zero > {}",
            baseline_file.display()
        ))
        .status()
        .expect("sh runs");
    assert!(status.success());
    let baseline = started.elapsed();
    let _ = std::fs::remove_file(&baseline_file);
    (ms(captured), ms(baseline), rss_kb / 1024.0)
}

/// Edit → ready on the new port, minus the service's own start-up.
fn watch_overhead() -> (f64, f64) {
    let marker = tempfile::NamedTempFile::new().expect("marker");
    let exe = json!(std::env::current_exe().expect("own path"));
    let marker_path = json!(marker.path());
    let services = format!(
        r#"[{{"name": "backend", "cwd": ".", "command": [{exe}, "{{port}}", "0", {marker_path}],
             "env": {{"{ROLE}": "service"}},
             "health": {{"type": "tcp", "port": {{port}}, "timeout_ms": 10000}}}}]"#
    );
    let repo = Repo::with_services_text(&services);
    std::fs::write(repo.root.join("port.txt"), free_port().to_string()).expect("port");
    repo.devctl(&["up", "-d", "--watch"]);
    let mut totals = Vec::new();
    let mut overheads = Vec::new();
    for _ in 0..10 {
        let generation = repo.state()["generation"].as_u64().unwrap_or(0);
        let port = free_port();
        let edited_at = unix_ms_f();
        std::fs::write(repo.root.join("port.txt"), port.to_string()).expect("edit");
        let deadline = Instant::now() + Duration::from_secs(10);
        let state = loop {
            let state = repo.state();
            let service = &state["services"][0];
            if state["generation"].as_u64() == Some(generation + 1) && service["status"] == "ready"
            {
                break state;
            }
            assert!(
                Instant::now() < deadline,
                "the edit was not applied: {state}"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        let service = &state["services"][0];
        let ready_at = service["ready_at_ms"].as_f64().unwrap_or(0.0);
        let started_at = service["started_at_ms"].as_f64().unwrap_or(0.0);
        let opened_at: f64 = std::fs::read_to_string(marker.path())
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0.0);
        let own_start_up = (opened_at - started_at).max(0.0);
        let total = ready_at - edited_at;
        totals.push(total);
        overheads.push(total - own_start_up);
    }
    repo.devctl(&["down"]);
    (percentile(totals, 0.5), percentile(overheads, 0.5))
}

fn main() -> ExitCode {
    match std::env::var(ROLE).as_deref() {
        Ok("plugin") => return plugin(),
        Ok("service") => return service(&std::env::args().skip(1).collect::<Vec<_>>()),
        _ => {}
    }
    let latencies = readiness_latency();
    let (ups, downs) = twenty_services();
    let (captured, baseline, rss_mb) = log_capture();
    let (watch_total, watch_overhead) = watch_overhead();
    let p50 = percentile(latencies.clone(), 0.5);
    let up = percentile(ups, 0.5);
    let down = percentile(downs, 0.5);
    let ratio = baseline / captured;
    println!("supervision (medians; 2 cores)");
    println!("  readiness detection after the port opens: p50 {p50:.1} ms, p90 {:.1} ms (target p50 <= 15 ms)", percentile(latencies, 0.9));
    println!("  up -d, 20 services ready after 100 ms each: {up:.0} ms (target <= 250 ms)");
    println!("  500 MB on stdout to the log: {captured:.0} ms (up -d included) vs head > file {baseline:.0} ms: {:.0}% of its throughput (target >= 70%)", ratio * 100.0);
    println!("  supervisor peak RSS: {rss_mb:.1} MB (target <= 20 MB)");
    println!("  down, 20 services that exit on SIGTERM: {down:.0} ms (target <= 100 ms)");
    println!("  up --watch, edit to ready on a new port: {watch_total:.0} ms, of which beyond the backend's own start-up {watch_overhead:.0} ms (target <= 300 ms)");
    let met = p50 <= 15.0
        && up <= 250.0
        && ratio >= 0.7
        && rss_mb <= 20.0
        && down <= 100.0
        && watch_overhead <= 300.0;
    println!("  targets: {}", if met { "met" } else { "MISSED" });
    ExitCode::SUCCESS
}
