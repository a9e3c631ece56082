//! Supervision, measured in one run with real processes:
//!
//! - readiness detection: a port opens at t, devctl records "ready" at t + x
//!   (p50 target ≤ 15 ms);
//! - `up -d` of 20 independent services that each become ready after 100 ms
//!   (target ≤ 250 ms in all);
//! - a service writing 300 MB of log lines (`yes … | head -c`), captured
//!   with a timestamp per line, against the same bytes written to a file
//!   (target ≥ 50% of its throughput, nothing lost), with a stuck `devctl
//!   logs -f` reader running and the supervisor's peak RSS (≤ 30 MB);
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

/// What the flooding service writes: `yes LINE | head -c BYTES`.
const BYTES: u64 = 300_000_000;
const LINE: &str =
    "2026-11-23 14:27:38 INFO request handled path=/rpc/v1/health status=200 duration_ms=3";
/// What the service prints once the flood is out; its command line (which
/// devctl logs when it starts it) says `$((40+2))`, so only the output
/// matches.
const DONE: &str = "DONE-42";

/// What capturing a flood costs, against writing the same bytes to a file.
struct Capture {
    captured_ms: f64,
    baseline_ms: f64,
    rss_mb: f64,
    /// Bytes of text in the log (the service's own bytes, without records'
    /// time and stream), and lines the supervisor said it dropped.
    logged_bytes: u64,
    dropped_notes: usize,
}

/// `yes LINE | head -c BYTES` into a service's log, with a `devctl logs -f`
/// reader that never reads its pipe running all along (a stuck reader).
fn log_capture() -> Result<Capture, Unmeasured> {
    let command = json!([
        "sh",
        "-c",
        format!("yes '{LINE}' | head -c {BYTES}; echo DONE-$((40+2)); exec sleep 600")
    ]);
    let repo = Repo::new(&json!([{ "name": "loud", "cwd": ".", "command": command }]))?;
    // One file for the whole flood (rotation has its own test).
    let config = std::fs::read_to_string(repo.root.join(".devctl.yaml"))
        .map_err(|e| Unmeasured::new(format!(".devctl.yaml: {e}")))?;
    let mut config: Value =
        serde_json::from_str(&config).map_err(|e| Unmeasured::new(format!(".devctl.yaml: {e}")))?;
    config["logs"] = json!({"max_size": "2GB", "max_files": 1});
    std::fs::write(repo.root.join(".devctl.yaml"), config.to_string())
        .map_err(|e| Unmeasured::new(format!(".devctl.yaml: {e}")))?;
    let started = Instant::now();
    repo.devctl(&["up", "-d"])?;
    let mut stuck = Command::new(env!("CARGO_BIN_EXE_devctl"))
        .arg("--repo-root")
        .arg(&repo.root)
        .args(["logs", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Unmeasured::new(format!("devctl logs -f: {e}")))?;
    let log = repo.root.join(".devctl/logs/loud.log");
    let deadline = Instant::now() + Duration::from_secs(180);
    while !tail_has(&log, DONE) {
        if Instant::now() > deadline {
            let _ = stuck.kill();
            return Err(Unmeasured::new(format!(
                "the flood's end never reached {} within 180 s",
                log.display()
            )));
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
    let _ = stuck.kill();
    let _ = stuck.wait();
    repo.devctl(&["down"])?;
    let (logged_bytes, dropped_notes) = logged(&log)?;
    let _ = std::fs::remove_file(&log);

    let baseline_file = repo.root.join("baseline.out");
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "yes '{LINE}' | head -c {BYTES} > {}",
            baseline_file.display()
        ))
        .status()
        .map_err(|e| Unmeasured::new(format!("sh: {e}")))?;
    if !status.success() {
        return Err(Unmeasured::new("the baseline `yes | head > file` failed"));
    }
    let baseline = started.elapsed();
    let _ = std::fs::remove_file(&baseline_file);
    Ok(Capture {
        captured_ms: ms(captured),
        baseline_ms: ms(baseline),
        rss_mb: rss_kb / 1024.0,
        logged_bytes,
        dropped_notes,
    })
}

/// Whether the last 4 KiB of `path` contain `needle`.
fn tail_has(path: &Path, needle: &str) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut end = Vec::new();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).is_ok()
        && file.read_to_end(&mut end).is_ok()
        && String::from_utf8_lossy(&end).contains(needle)
}

/// The service's bytes in a log (each record's text, plus the newline each
/// whole line had) and how many "dropped" notes devctl wrote.
fn logged(path: &Path) -> Result<(u64, usize), Unmeasured> {
    use std::io::BufRead;
    let file = std::fs::File::open(path)
        .map_err(|e| Unmeasured::new(format!("{}: {e}", path.display())))?;
    let mut bytes = 0u64;
    let mut dropped = 0usize;
    for line in std::io::BufReader::with_capacity(1 << 20, file).split(b'\n') {
        let line = line.map_err(|e| Unmeasured::new(format!("{}: {e}", path.display())))?;
        // `TIME TAG TEXT`: the time is 27 bytes; the tag `o`, `e`, `d` (or
        // with `+` for a continuation, which had no newline of its own).
        let Some(rest) = line.get(28..) else { continue };
        let (tag, text) = match rest.iter().position(|b| *b == b' ') {
            Some(space) => (&rest[..space], &rest[space + 1..]),
            None => (rest, &[][..]),
        };
        match tag {
            b"d" if text.starts_with(b"dropped") => dropped += 1,
            b"o" | b"e" => bytes += text.len() as u64 + 1,
            b"o+" | b"e+" => bytes += text.len() as u64,
            _ => {}
        }
    }
    Ok((bytes, dropped))
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

/// Which parts to run: all, or those named after `--`
/// (`cargo bench -p devctl --bench supervision -- capture`).
fn wanted(part: &str) -> bool {
    const PARTS: [&str; 4] = ["readiness", "services", "capture", "watch"];
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| PARTS.contains(&a.as_str()))
        .collect();
    named.is_empty() || named.iter().any(|n| n == part)
}

fn measure() -> Result<(), Unmeasured> {
    println!("supervision (medians; 2 cores)");
    if wanted("readiness") {
        let latencies = readiness_latency()?;
        let p50 = latencies.median()?;
        println!(
            "  readiness detection, port opened -> state ready: p50 {p50:.1} ms, p90 {:.1} ms, max {:.1} ms over {} runs: {}",
            latencies.percentile(0.9)?,
            latencies.percentile(1.0)?,
            latencies.len(),
            verdict(p50 <= 15.0, latencies.len()),
        );
    }
    if wanted("services") {
        let (ups, downs) = twenty_services()?;
        let (up, down) = (ups.median()?, downs.median()?);
        println!(
            "  up -d, 20 services ready after 100 ms each: {up:.0} ms: {} (target <= 250 ms)",
            verdict(up <= 250.0, ups.len())
        );
        println!(
            "  down, 20 services that exit on SIGTERM: {down:.0} ms: {} (target <= 100 ms)",
            verdict(down <= 100.0, downs.len())
        );
    }
    if wanted("capture") {
        let capture = log_capture()?;
        let ratio = capture.baseline_ms / capture.captured_ms;
        // `head -c` cuts the last line; the marker line then ends it.
        let expected = BYTES + DONE.len() as u64 + 1;
        let complete = capture.logged_bytes == expected && capture.dropped_notes == 0;
        println!(
            "  300 MB of `yes` on stdout, timestamped into the log (a stuck `logs -f` reader running): {:.0} ms (up -d included) vs `yes | head > file` {:.0} ms: {:.0}% of its throughput: {} (target >= 50%)",
            capture.captured_ms,
            capture.baseline_ms,
            ratio * 100.0,
            verdict(ratio >= 0.5 && complete, 1)
        );
        println!(
            "    logged {} of {expected} bytes, {} dropped-lines note(s): {}",
            capture.logged_bytes,
            capture.dropped_notes,
            if complete {
                "nothing lost"
            } else {
                "INCOMPLETE"
            }
        );
        println!(
            "  supervisor peak RSS meanwhile: {:.1} MB: {} (target <= 30 MB)",
            capture.rss_mb,
            verdict(capture.rss_mb <= 30.0, 1)
        );
    }
    if wanted("watch") {
        let (watch_totals, watch_overheads) = watch_overhead()?;
        let watch = watch_overheads.median()?;
        println!(
            "  up --watch, edit to ready on a new port: {:.0} ms, of which beyond the backend's own start-up {watch:.0} ms: {} (target <= 300 ms)",
            watch_totals.median()?,
            verdict(watch <= 300.0, watch_overheads.len())
        );
    }
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
