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
use devctl_support::measure::{present, verdict, Samples, Unmeasured};
use serde_json::{json, Value};

const ROLE: &str = "DEVCTL_BENCH_ROLE";

fn unix_ms_f() -> Result<f64, Unmeasured> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .map_err(|_| Unmeasured::new("the clock is before 1970"))
}

/// A service: waits, opens its port, records when, then serves until killed.
fn service(args: &[String]) -> ExitCode {
    let (Some(port), Some(delay)) = (
        args.first().and_then(|p| p.parse::<u16>().ok()),
        args.get(1).and_then(|d| d.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: service PORT DELAY_MS [MARKER]");
        return ExitCode::from(2);
    };
    std::thread::sleep(Duration::from_millis(delay));
    let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) else {
        return ExitCode::from(1);
    };
    if let Some(file) = args.get(2) {
        // A marker that cannot be written makes the bench refuse the sample.
        let Ok(now) = unix_ms_f() else {
            return ExitCode::from(1);
        };
        if std::fs::write(file, format!("{now}")).is_err() {
            return ExitCode::from(1);
        }
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
    fn new(services: &Value) -> Result<Repo, Unmeasured> {
        Repo::with_services_text(&services.to_string())
    }

    /// `services` is the JSON the plugin answers, where `{port}` stands for
    /// the number in the repo's `port.txt`.
    fn with_services_text(services: &str) -> Result<Repo, Unmeasured> {
        let dir = tempfile::tempdir().map_err(|e| Unmeasured::new(format!("temp dir: {e}")))?;
        let root = dir.path().to_path_buf();
        let exe = own_exe()?;
        let config = json!({"plugins": [{
            "id": "bench", "path": exe, "env": {ROLE: "plugin", "BENCH_SERVICES": services}
        }]});
        std::fs::write(root.join(".devctl.yaml"), config.to_string())
            .map_err(|e| Unmeasured::new(format!("writing .devctl.yaml: {e}")))?;
        Ok(Repo { _dir: dir, root })
    }

    /// Runs devctl; a failure aborts the bench (with devctl's stderr).
    fn devctl(&self, args: &[&str]) -> Result<Duration, Unmeasured> {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_devctl"))
            .arg("--repo-root")
            .arg(&self.root)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| Unmeasured::new(format!("devctl {args:?} did not run: {e}")))?;
        let elapsed = started.elapsed();
        if !output.status.success() {
            return Err(Unmeasured::new(format!(
                "devctl {args:?} failed in {}: {}",
                self.root.display(),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
        Ok(elapsed)
    }

    fn state(&self) -> Result<Value, Unmeasured> {
        let path = self.root.join(".devctl/state.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Unmeasured::new(format!("{}: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| Unmeasured::new(format!("{}: not JSON: {e}", path.display())))
    }
}

fn own_exe() -> Result<PathBuf, Unmeasured> {
    std::env::current_exe().map_err(|e| Unmeasured::new(format!("own path: {e}")))
}

fn free_port() -> Result<u16, Unmeasured> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Unmeasured::new(format!("no free port: {e}")))
}

/// The Unix time (ms, with fractions) a service wrote into `marker`.
fn marker_ms(marker: &Path) -> Result<f64, Unmeasured> {
    let text = std::fs::read_to_string(marker)
        .map_err(|e| Unmeasured::new(format!("the service's marker {}: {e}", marker.display())))?;
    text.trim()
        .parse()
        .map_err(|_| Unmeasured::new(format!("the service's marker holds {text:?}")))
}

fn number(value: &Value, what: &str) -> Result<f64, Unmeasured> {
    present(value.as_f64(), what)
}

fn service_spec(
    name: &str,
    port: u16,
    delay_ms: u64,
    opened: Option<&Path>,
) -> Result<Value, Unmeasured> {
    let mut command = vec![
        own_exe()?.display().to_string(),
        port.to_string(),
        delay_ms.to_string(),
    ];
    command.extend(opened.map(|p| p.display().to_string()));
    Ok(
        json!({"name": name, "cwd": ".", "command": command, "env": {ROLE: "service"},
           "health": {"type": "tcp", "port": port, "timeout_ms": 10000}}),
    )
}

/// Port opened → state file says ready, as read right after `up -d`
/// returns (which it does only once the state says ready).
fn readiness_latency() -> Result<Samples, Unmeasured> {
    let mut latencies = Samples::new("readiness detection (ms)");
    for run in 0..30u64 {
        let marker = tempfile::NamedTempFile::new()
            .map_err(|e| Unmeasured::new(format!("marker file: {e}")))?;
        // Ports open at varied moments, so every stretch of the polling
        // schedule is sampled.
        let delay = 20 + (run * 37) % 380;
        let services = json!([service_spec(
            "svc",
            free_port()?,
            delay,
            Some(marker.path())
        )?]);
        let repo = Repo::new(&services)?;
        repo.devctl(&["up", "-d"])?;
        let state = repo.state()?;
        let ready_at = number(
            &state["services"][0]["ready_at_ms"],
            &format!("run {run}: ready_at_ms right after `up -d` returned"),
        )?;
        let opened_at = marker_ms(marker.path())?;
        repo.devctl(&["down"])?;
        // ready_at is whole milliseconds (rounded down), opened_at has
        // fractions: compare at millisecond resolution.
        latencies.push(ready_at - opened_at.floor())?;
    }
    Ok(latencies)
}

fn twenty_services() -> Result<(Samples, Samples), Unmeasured> {
    let mut ups = Samples::new("up -d of 20 services (ms)");
    let mut downs = Samples::new("down of 20 services (ms)");
    for _ in 0..5 {
        let services = (0..20)
            .map(|n| service_spec(&format!("s{n}"), free_port()?, 100, None))
            .collect::<Result<Vec<Value>, Unmeasured>>()?;
        let repo = Repo::new(&Value::Array(services))?;
        ups.push_ms(repo.devctl(&["up", "-d"])?)?;
        downs.push_ms(repo.devctl(&["down"])?)?;
    }
    Ok((ups, downs))
}

const BYTES: u64 = 500_000_000;

/// (captured ms, baseline ms, supervisor peak RSS MB).
fn log_capture() -> Result<(f64, f64, f64), Unmeasured> {
    let command = json!([
        "sh",
        "-c",
        format!("head -c {BYTES} /dev/zero; exec sleep 60")
    ]);
    let repo = Repo::new(&json!([{ "name": "loud", "cwd": ".", "command": command }]))?;
    let started = Instant::now();
    repo.devctl(&["up", "-d"])?;
    let log = repo.root.join(".devctl/logs/loud.stdout.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) < BYTES {
        if Instant::now() > deadline {
            return Err(Unmeasured::new(
                "the 500 MB never reached the log within 120 s",
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let captured = started.elapsed();
    let supervisor = present(repo.state()?["supervisor_pid"].as_u64(), "supervisor_pid")?;
    let status = std::fs::read_to_string(format!("/proc/{supervisor}/status"))
        .map_err(|e| Unmeasured::new(format!("the supervisor's /proc status: {e}")))?;
    let rss_kb: f64 = present(
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok()),
        "the supervisor's VmHWM",
    )?;
    repo.devctl(&["down"])?;
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
        .map_err(|e| Unmeasured::new(format!("sh: {e}")))?;
    if !status.success() {
        return Err(Unmeasured::new("the baseline `head > file` failed"));
    }
    let baseline = started.elapsed();
    let _ = std::fs::remove_file(&baseline_file);
    Ok((ms(captured), ms(baseline), rss_kb / 1024.0))
}

/// Edit → ready on the new port, minus the service's own start-up.
fn watch_overhead() -> Result<(Samples, Samples), Unmeasured> {
    let marker =
        tempfile::NamedTempFile::new().map_err(|e| Unmeasured::new(format!("marker: {e}")))?;
    let exe = json!(own_exe()?);
    let marker_path = json!(marker.path());
    let services = format!(
        r#"[{{"name": "backend", "cwd": ".", "command": [{exe}, "{{port}}", "0", {marker_path}],
             "env": {{"{ROLE}": "service"}},
             "health": {{"type": "tcp", "port": {{port}}, "timeout_ms": 10000}}}}]"#
    );
    let repo = Repo::with_services_text(&services)?;
    std::fs::write(repo.root.join("port.txt"), free_port()?.to_string())
        .map_err(|e| Unmeasured::new(format!("port.txt: {e}")))?;
    repo.devctl(&["up", "-d", "--watch"])?;
    let mut totals = Samples::new("up --watch, edit to ready (ms)");
    let mut overheads = Samples::new("up --watch, beyond the service's start-up (ms)");
    for _ in 0..10 {
        let generation = present(repo.state()?["generation"].as_u64(), "generation")?;
        let port = free_port()?;
        let edited_at = unix_ms_f()?;
        std::fs::write(repo.root.join("port.txt"), port.to_string())
            .map_err(|e| Unmeasured::new(format!("edit: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let state = loop {
            let state = repo.state()?;
            let service = &state["services"][0];
            if state["generation"].as_u64() == Some(generation + 1) && service["status"] == "ready"
            {
                break state;
            }
            if Instant::now() > deadline {
                return Err(Unmeasured::new(format!(
                    "the edit was not applied: {state}"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let service = &state["services"][0];
        let ready_at = number(&service["ready_at_ms"], "ready_at_ms")?;
        let started_at = number(&service["started_at_ms"], "started_at_ms")?;
        // The state's times are whole ms (rounded down): compare at that
        // resolution, so no difference can come out negative by rounding.
        let opened_at = marker_ms(marker.path())?.floor();
        let edited_at = edited_at.floor();
        let total = ready_at - edited_at;
        let own_start_up = opened_at - started_at;
        totals.push(total)?;
        overheads.push(total - own_start_up)?;
    }
    repo.devctl(&["down"])?;
    Ok((totals, overheads))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn measure() -> Result<(), Unmeasured> {
    let latencies = readiness_latency()?;
    let (ups, downs) = twenty_services()?;
    let (captured, baseline, rss_mb) = log_capture()?;
    let (watch_totals, watch_overheads) = watch_overhead()?;
    let p50 = latencies.median()?;
    let up = ups.median()?;
    let down = downs.median()?;
    let watch = watch_overheads.median()?;
    let ratio = baseline / captured;
    println!("supervision (medians; 2 cores)");
    println!(
        "  readiness detection, port opened -> state ready: p50 {p50:.1} ms, p90 {:.1} ms, max {:.1} ms over {} runs: {}",
        latencies.percentile(0.9)?,
        latencies.percentile(1.0)?,
        latencies.len(),
        verdict(p50 <= 15.0, latencies.len()),
    );
    println!(
        "  up -d, 20 services ready after 100 ms each: {up:.0} ms: {} (target <= 250 ms)",
        verdict(up <= 250.0, ups.len())
    );
    println!("  500 MB on stdout to the log: {captured:.0} ms (up -d included) vs head > file {baseline:.0} ms: {:.0}% of its throughput: {} (target >= 70%)", ratio * 100.0, verdict(ratio >= 0.7, 1));
    println!(
        "  supervisor peak RSS: {rss_mb:.1} MB: {} (target <= 20 MB)",
        verdict(rss_mb <= 20.0, 1)
    );
    println!(
        "  down, 20 services that exit on SIGTERM: {down:.0} ms: {} (target <= 100 ms)",
        verdict(down <= 100.0, downs.len())
    );
    println!(
        "  up --watch, edit to ready on a new port: {:.0} ms, of which beyond the backend's own start-up {watch:.0} ms: {} (target <= 300 ms)",
        watch_totals.median()?,
        verdict(watch <= 300.0, watch_overheads.len())
    );
    Ok(())
}

fn main() -> ExitCode {
    match std::env::var(ROLE).as_deref() {
        Ok("plugin") => return plugin(),
        Ok("service") => return service(&std::env::args().skip(1).collect::<Vec<_>>()),
        _ => {}
    }
    match measure() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench aborted: {err}");
            ExitCode::FAILURE
        }
    }
}
