//! `devctl tui` under load, measured in one run:
//!
//! - keypress to redraw while 50 services each write 1,000 lines/s (target:
//!   p99 ≤ 50 ms), against the same keys with the services quiet (the
//!   baseline); the key is `j`/`k` on the dashboard, the worst case: each
//!   one opens the newly selected service's log (its last lines, read from
//!   the end of a file of 200,000 lines) and redraws;
//! - the work of one tick (reading what the open log gained, redrawing),
//!   which a key arriving mid-tick waits for;
//! - opening a 1 GB log against opening an empty one;
//! - memory: the open log is bounded (`PANE_LINES`), the RSS before/after;
//! - live state: from the supervisor replacing `state.json` to the
//!   dashboard redrawn with it (inotify, then the engine's `observe`, then a
//!   draw; target ≤ 250 ms), against the observe and draw alone.
//!
//! The screen is drawn by the real crossterm backend into a sink (120×40).
//! Run: `cargo bench -p devctl --bench tui`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use devctl::logs::record::{push, timestamp};
use devctl::logs::Stream;
use devctl::state::{now_ms, Phase, ServiceState, ServiceStatus, State};
use devctl::tui::app::{App, Snapshot, PANE_LINES};
use devctl::tui::{press, view, Feeds};
use devctl_support::measure::{verdict, Samples, Unmeasured};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::{Terminal, TerminalOptions, Viewport};

const SERVICES: usize = 50;
const LINES_PER_SECOND: u64 = 1_000;
const HISTORY_LINES: usize = 200_000;
const KEYS: usize = 400;
const TARGET_P99_MS: f64 = 50.0;

type Screen = Terminal<CrosstermBackend<std::io::Sink>>;

fn line(n: u64, service: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let text = format!("svc{service}: GET /api/items/{n} 200 in 3 ms user=dev request-id={n:016x}");
    push(
        &mut out,
        timestamp(SystemTime::now()).as_bytes(),
        Stream::Stdout,
        false,
        text.as_bytes(),
    );
    out
}

fn logs_of(root: &Path) -> PathBuf {
    root.join(".devctl/logs")
}

/// 50 logs of `HISTORY_LINES` lines each.
fn fill(root: &Path) -> Result<(), Unmeasured> {
    let dir = logs_of(root);
    std::fs::create_dir_all(&dir).map_err(|e| Unmeasured::new(format!("mkdir: {e}")))?;
    let mut block = Vec::new();
    for n in 0..HISTORY_LINES as u64 {
        block.extend(line(n, 0));
    }
    for service in 0..SERVICES {
        std::fs::write(dir.join(format!("svc{service}.log")), &block)
            .map_err(|e| Unmeasured::new(format!("writing a log: {e}")))?;
    }
    Ok(())
}

/// Appends `LINES_PER_SECOND` lines a second to every log until stopped;
/// counts what it wrote.
fn writers(
    root: &Path,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let dir = logs_of(root);
    std::thread::spawn(move || {
        let mut files: Vec<std::fs::File> = (0..SERVICES)
            .filter_map(|s| {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(dir.join(format!("svc{s}.log")))
                    .ok()
            })
            .collect();
        let started = Instant::now();
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            // Catch up with the rate (in 10 ms steps).
            let due = started.elapsed().as_millis() as u64 * LINES_PER_SECOND / 1000;
            while n < due {
                for (service, file) in files.iter_mut().enumerate() {
                    let _ = file.write_all(&line(n, service));
                }
                n += 1;
            }
            written.store(n * SERVICES as u64, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

fn app_for(root: &Path) -> App {
    let mut state = State::new(root, false);
    state.phase = Phase::Running;
    let now = now_ms();
    state.services = (0..SERVICES)
        .map(|i| {
            let mut s = ServiceState::new(&format!("svc{i}"));
            s.status = ServiceStatus::Ready;
            s.pid = Some(10_000 + i as u32);
            s.started_at_ms = Some(now - 60_000);
            s.endpoint = Some(format!("http://127.0.0.1:{}/health", 9000 + i));
            s
        })
        .collect();
    let mut app = App::new(&root.display().to_string());
    app.observed(Snapshot {
        supervisor: Some(std::process::id()),
        alive: vec![true; SERVICES],
        state: Some(state),
        damaged: None,
        orphans: 0,
        now_ms: now,
    });
    app
}

fn screen() -> Result<Screen, Unmeasured> {
    Terminal::with_options(
        CrosstermBackend::new(std::io::sink()),
        TerminalOptions {
            viewport: Viewport::Fixed(Rect::new(0, 0, 120, 40)),
        },
    )
    .map_err(|e| Unmeasured::new(format!("terminal: {e}")))
}

/// Key presses and ticks as the TUI's loop runs them; their durations.
fn drive(root: &Path, label: &str) -> Result<(Samples, Samples, App), Unmeasured> {
    let mut app = app_for(root);
    let mut feeds = Feeds::default();
    let mut screen = screen()?;
    let dir = logs_of(root);
    let mut keys = Samples::new(format!("{label}: keypress to redraw"));
    let mut ticks = Samples::new(format!("{label}: tick"));
    feeds.follow_screen(&mut app, &dir);
    for n in 0..KEYS {
        // A tick: what the open log gained, then a redraw.
        let tick = Instant::now();
        feeds.poll(&mut app);
        draw(&mut screen, &app)?;
        ticks.push_ms(tick.elapsed())?;
        // A key: down for a while, then up (a new log opens each time).
        let code = if (n / 25) % 2 == 0 {
            KeyCode::Char('j')
        } else {
            KeyCode::Char('k')
        };
        let key = Instant::now();
        press(&mut app, KeyEvent::new(code, KeyModifiers::NONE));
        feeds.follow_screen(&mut app, &dir);
        draw(&mut screen, &app)?;
        keys.push_ms(key.elapsed())?;
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok((keys, ticks, app))
}

fn draw(screen: &mut Screen, app: &App) -> Result<(), Unmeasured> {
    screen
        .draw(|frame| view::render(frame, app))
        .map(drop)
        .map_err(|e| Unmeasured::new(format!("draw: {e}")))
}

fn rss_kb() -> Result<u64, Unmeasured> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Unmeasured::new(format!("/proc/self/status: {e}")))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| Unmeasured::new("no VmRSS in /proc/self/status"))
}

/// Opening a log of `bytes` (its last lines) in the service view, ms.
fn open_log(root: &Path, bytes: u64) -> Result<Samples, Unmeasured> {
    let dir = logs_of(root);
    let name = format!("big{bytes}");
    let path = dir.join(format!("{name}.log"));
    let mut file =
        std::fs::File::create(&path).map_err(|e| Unmeasured::new(format!("create: {e}")))?;
    let mut block = Vec::new();
    let mut n = 0;
    while (block.len() as u64) < (8 << 20).min(bytes.max(1)) && bytes > 0 {
        block.extend(line(n, 0));
        n += 1;
    }
    let mut size = 0u64;
    while size < bytes {
        file.write_all(&block)
            .map_err(|e| Unmeasured::new(format!("write: {e}")))?;
        size += block.len() as u64;
    }
    drop(file);
    let mut samples = Samples::new(format!("open a {} MB log (ms)", size >> 20));
    for _ in 0..20 {
        let started = Instant::now();
        let (_, lines) = devctl::tui::feed::LogFeed::service(&dir, &name, 2_000);
        samples.push_ms(started.elapsed())?;
        if bytes > 0 && lines.len() != 2_000 {
            return Err(Unmeasured::new(format!(
                "the {name} log gave {} lines, not 2000",
                lines.len()
            )));
        }
    }
    std::fs::remove_file(&path).map_err(|e| Unmeasured::new(format!("remove: {e}")))?;
    Ok(samples)
}

fn measure() -> Result<(), Unmeasured> {
    let temp = tempfile::tempdir().map_err(|e| Unmeasured::new(format!("temp dir: {e}")))?;
    let root = temp.path();
    println!("filling {SERVICES} logs with {HISTORY_LINES} lines each…");
    fill(root)?;
    let rss_before = rss_kb()?;

    let (quiet_keys, quiet_ticks, _) = drive(root, "quiet")?;

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = writers(root, stop.clone(), written.clone());
    let started = Instant::now();
    let (loud_keys, loud_ticks, app) = drive(root, "50 × 1000 lines/s")?;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    let rate = written.load(Ordering::Relaxed) as f64 / elapsed;
    if rate < (SERVICES as u64 * LINES_PER_SECOND) as f64 * 0.9 {
        return Err(Unmeasured::new(format!(
            "the writers managed {rate:.0} lines/s, not {}: the load was not applied",
            SERVICES as u64 * LINES_PER_SECOND
        )));
    }
    let rss_after = rss_kb()?;

    println!("load: {rate:.0} lines/s written across {SERVICES} logs during the run");
    for (what, samples) in [
        ("keypress to redraw, quiet", &quiet_keys),
        ("keypress to redraw, 50 × 1000 lines/s", &loud_keys),
        ("tick, quiet", &quiet_ticks),
        ("tick, 50 × 1000 lines/s", &loud_ticks),
    ] {
        println!(
            "  {what:<40} p50 {:>6.2} ms  p99 {:>6.2} ms  ({} samples)",
            samples.median()?,
            samples.percentile(0.99)?,
            samples.len()
        );
    }
    let key_p99 = loud_keys.percentile(0.99)?;
    let tick_p99 = loud_ticks.percentile(0.99)?;
    println!(
        "keypress to redraw under load: p99 {key_p99:.2} ms, {:.2}× the quiet p99; with a tick ahead of it {:.2} ms (target ≤ {TARGET_P99_MS} ms): {}",
        key_p99 / quiet_keys.percentile(0.99)?.max(1e-6),
        key_p99 + tick_p99,
        verdict(key_p99 + tick_p99 <= TARGET_P99_MS, loud_keys.len())
    );
    println!(
        "memory: the open log holds {} lines (bound {PANE_LINES}); RSS {} MB before, {} MB after",
        app.pane.lines.len(),
        rss_before / 1024,
        rss_after / 1024
    );

    let live_root = tempfile::tempdir().map_err(|e| Unmeasured::new(format!("temp dir: {e}")))?;
    let (changes, alone) = live_state(live_root.path())?;
    let p99 = changes.percentile(0.99)?;
    println!(
        "state.json replaced to dashboard redrawn: p50 {:.2} ms, p99 {p99:.2} ms ({:.1}× the observe and draw alone, p99 {:.2} ms; target ≤ 250 ms): {}",
        changes.median()?,
        p99 / alone.percentile(0.99)?.max(1e-6),
        alone.percentile(0.99)?,
        verdict(p99 <= 250.0, changes.len())
    );

    let empty = open_log(root, 0)?;
    let big = open_log(root, 1 << 30)?;
    println!(
        "opening a log: empty p50 {:.2} ms, 1 GB p50 {:.2} ms ({:.1}× the empty one; {} and {} samples)",
        empty.median()?,
        big.median()?,
        big.median()? / empty.median()?.max(1e-6),
        empty.len(),
        big.len()
    );
    Ok(())
}

/// State file replaced → dashboard redrawn, through the watcher the TUI
/// uses; and the observe + draw alone (what a poll would cost per round).
fn live_state(root: &Path) -> Result<(Samples, Samples), Unmeasured> {
    use devctl::environment::Environment;
    use devctl::statedir::StateDir;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Unmeasured::new(format!("runtime: {e}")))?;
    let dir = StateDir::create(root).map_err(|e| Unmeasured::new(e.to_string()))?;
    let mut state = State::new(root, false);
    state.phase = Phase::Running;
    dir.write_state(&state)
        .map_err(|e| Unmeasured::new(e.to_string()))?;
    let mut changes = Samples::new("state change to redraw");
    let mut alone = Samples::new("observe and draw alone");
    runtime.block_on(async {
        let globs = [".devctl/state.json".to_owned(), ".devctl/lock".to_owned()];
        let mut watcher = Some(
            devctl::watch::Watcher::new(root, &globs)
                .map_err(|e| Unmeasured::new(format!("watcher: {e}")))?,
        );
        let mut environment =
            Environment::open(root).map_err(|e| Unmeasured::new(e.to_string()))?;
        let mut app = App::new(&root.display().to_string());
        let mut screen = screen()?;
        for round in 0..50u64 {
            let started = Instant::now();
            app.observed(devctl::tui::feed::observe(&mut environment, root).await);
            draw(&mut screen, &app)?;
            alone.push_ms(started.elapsed())?;

            state.generation = round + 2;
            let writer_state = state.clone();
            let writer_root = root.to_path_buf();
            let writer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                let written = Instant::now();
                StateDir::create(&writer_root)
                    .and_then(|d| d.write_state(&writer_state))
                    .map(|()| written)
            });
            let generation = loop {
                devctl::watch::next_batch(&mut watcher, Duration::from_millis(10)).await;
                app.observed(devctl::tui::feed::observe(&mut environment, root).await);
                draw(&mut screen, &app)?;
                let seen = app.snapshot.state.as_ref().map(|s| s.generation);
                if seen == Some(state.generation) {
                    break seen;
                }
            };
            let done = Instant::now();
            let written = writer
                .join()
                .map_err(|_| Unmeasured::new("the writer thread panicked"))?
                .map_err(|e| Unmeasured::new(e.to_string()))?;
            if generation != Some(state.generation) {
                return Err(Unmeasured::new("the new state was not seen"));
            }
            changes.push_ms(done.duration_since(written))?;
        }
        Ok::<(), Unmeasured>(())
    })?;
    Ok((changes, alone))
}

fn main() -> ExitCode {
    match measure() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench aborted: {err}");
            ExitCode::FAILURE
        }
    }
}
