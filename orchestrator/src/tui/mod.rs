//! `devctl tui`: a live dashboard of the environment, on the engine's API.
//!
//! - [`app`]: the model — what is on screen, what each action does (no I/O);
//! - [`input`]: which key means which action;
//! - [`view`]: drawing the model (pure, snapshot-tested);
//! - [`feed`]: the environment and its logs, read through the engine;
//! - [`terminal`]: raw mode and the alternate screen, always undone.
//!
//! [`run`] is the loop joining them: it redraws when a key arrives, when
//! `.devctl/state.json` is replaced (inotify, so a change shows within a
//! few ms, not at the next poll), when the open log grows (checked every
//! [`TICK`]), and when an operation ends. The TUI never owns the
//! environment: quitting leaves it running.

pub mod app;
pub mod feed;
pub mod input;
pub mod terminal;
pub mod view;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crossterm::event::Event;
use devctl_support::fs::PrivateDir;
use tokio::sync::mpsc;

use self::app::{App, LogLine, Op, Outcome, Pane, View};
use self::feed::LogFeed;
use self::input::Mode;
use crate::environment::{Environment, RestartError};

/// How often the open log is checked for new lines.
pub const TICK: Duration = Duration::from_millis(50);
/// The environment is re-read at least this often (uptimes; a supervisor
/// killed without a word), besides on every state file change.
const REFRESH: Duration = Duration::from_secs(1);
/// Lines read back when a log is opened.
const HISTORY: usize = 2_000;
/// The files whose change means "look again".
const STATE_FILES: &[&str] = &[".devctl/state.json", ".devctl/lock"];

/// What the TUI is started with.
pub struct Options {
    pub root: PathBuf,
    /// The arguments of `devctl … up -d` for this repo (`u`).
    pub up: Vec<OsString>,
    /// How long a service gets between SIGTERM and SIGKILL on `d`.
    pub grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("cannot use the terminal: {0}")]
    Terminal(#[from] std::io::Error),
    #[error(transparent)]
    State(#[from] devctl_support::fs::FsError),
    #[error("the terminal stopped sending input")]
    InputGone,
}

/// Runs the TUI until `q`/`ctrl+c` (0) or until `stop` resolves (its code).
pub async fn run(
    options: Options,
    stop: impl std::future::Future<Output = u8>,
) -> Result<u8, TuiError> {
    let mut environment = Environment::open(&options.root)?;
    // Read through the directory's handle, never its path (see
    // `StateDir::existing_logs`); opened once it exists.
    let mut logs: Option<PrivateDir> = None;
    let mut app = App::new(&options.root.display().to_string());
    app.observed(feed::observe(&mut environment, &options.root).await);
    let mut guard = terminal::Guard::enter()?;
    let (key_tx, mut keys) = mpsc::unbounded_channel();
    let _reader = input::spawn_reader(key_tx);
    let (done_tx, mut done) = mpsc::unbounded_channel::<Outcome>();
    let globs: Vec<String> = STATE_FILES.iter().map(|s| s.to_string()).collect();
    let mut watcher = crate::watch::Watcher::new(&options.root, &globs).ok();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut feeds = Feeds::default();
    let mut observed_at = Instant::now();
    tokio::pin!(stop);
    let mut dirty = true;
    loop {
        if logs.as_ref().is_some_and(|logs| !logs.is_at_path()) {
            // Deleted (and maybe made anew): start over with the new one.
            logs = None;
            feeds = Feeds::default();
        }
        if logs.is_none() {
            logs = open_logs(&environment, &mut app);
        }
        if let Some(logs) = &logs {
            feeds.follow_screen(&mut app, &logs.handle());
        }
        if app.wants_run() {
            let run = environment.dir().map(crate::events::last_run);
            app.run_read(run.unwrap_or_default());
        }
        if dirty {
            guard.screen.draw(|frame| view::render(frame, &app))?;
            dirty = false;
        }
        if app.quit {
            return Ok(0);
        }
        tokio::select! {
            event = keys.recv() => {
                let Some(event) = event else { return Err(TuiError::InputGone) };
                dirty = true;
                if let Event::Key(key) = event {
                    if let Some(op) = press(&mut app, key) {
                        let task = Task { root: options.root.clone(), up: options.up.clone(), grace: options.grace };
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            let _ = done.send(task.carry_out(op).await);
                        });
                    }
                }
            }
            _ = crate::watch::next_batch(&mut watcher, Duration::from_millis(10)) => {
                app.observed(feed::observe(&mut environment, &options.root).await);
                observed_at = Instant::now();
                dirty = true;
            }
            Some(outcome) = done.recv() => {
                app.finished(outcome);
                app.observed(feed::observe(&mut environment, &options.root).await);
                observed_at = Instant::now();
                dirty = true;
            }
            _ = tick.tick() => {
                dirty |= feeds.poll(&mut app);
                if observed_at.elapsed() >= REFRESH {
                    app.observed(feed::observe(&mut environment, &options.root).await);
                    observed_at = Instant::now();
                    if let Some(watcher) = watcher.as_mut() {
                        // `.devctl/` may have been created since.
                        watcher.set_globs(&globs);
                    }
                    dirty = true;
                }
            }
            code = &mut stop => return Ok(code),
        }
    }
}

/// `.devctl/logs/` if it exists; an unsafe one (a link put in its place)
/// is said on the bottom line and not read.
fn open_logs(environment: &Environment, app: &mut App) -> Option<PrivateDir> {
    match environment.dir()?.existing_logs() {
        Ok(logs) => logs,
        Err(err) => {
            app.outcome = Some(Outcome {
                ok: false,
                text: format!("logs not shown: {err}"),
            });
            None
        }
    }
}

/// Applies a key to the model; returns the operation it confirmed.
pub fn press(app: &mut App, key: crossterm::event::KeyEvent) -> Option<Op> {
    let mode = match app.prompt {
        Some(app::Prompt::Confirm(_)) => Mode::Confirm,
        Some(app::Prompt::Filter(_)) => Mode::Typing,
        None => Mode::Browse,
    };
    match input::action(key, mode) {
        Some(action) => app.apply(action),
        None => {
            // Any key closes the help.
            app.help = false;
            None
        }
    }
}

/// The logs being followed: the selected service's, and while the events
/// view is open, every service's lifecycle lines.
#[derive(Default)]
pub struct Feeds {
    pane: Option<LogFeed>,
    events: Option<LogFeed>,
}

impl Feeds {
    /// Opens (and closes) logs to match what the screen shows.
    pub fn follow_screen(&mut self, app: &mut App, dir: &std::path::Path) {
        let wanted = app.selected_service().map(str::to_owned);
        if wanted != app.pane_service {
            match wanted {
                Some(name) => {
                    let (feed, lines) = LogFeed::service(dir, &name, HISTORY);
                    app.pane_opened(&name, lines);
                    self.pane = Some(feed);
                }
                None => {
                    app.pane = Pane::default();
                    app.pane_service = None;
                    self.pane = None;
                }
            }
        }
        match (app.view == View::Events, self.events.is_some()) {
            (true, false) => {
                let order: Vec<String> = app
                    .snapshot
                    .services()
                    .iter()
                    .map(|s| s.name.clone())
                    .collect();
                let (feed, lines) = LogFeed::events(dir, &order, HISTORY);
                app.events = Pane::default();
                app.events_grew(lines);
                self.events = Some(feed);
            }
            (false, true) => self.events = None,
            _ => {}
        }
    }

    /// Reads what the followed logs gained; whether there was anything.
    pub fn poll(&mut self, app: &mut App) -> bool {
        let pane: Vec<LogLine> = self.pane.as_mut().map(LogFeed::poll).unwrap_or_default();
        let events: Vec<LogLine> = self.events.as_mut().map(LogFeed::poll).unwrap_or_default();
        let grew = !pane.is_empty() || (!events.is_empty() && !app.paused);
        app.pane_grew(pane);
        app.events_grew(events);
        grew
    }
}

/// Carries out an [`Op`] through the engine (or, for `u`, `devctl up -d`).
struct Task {
    root: PathBuf,
    up: Vec<OsString>,
    grace: Duration,
}

impl Task {
    async fn carry_out(self, op: Op) -> Outcome {
        let environment = match Environment::open(&self.root) {
            Ok(environment) => environment,
            Err(err) => return failed(err.to_string()),
        };
        let reply = match op {
            Op::Restart(service) => environment.restart(&service).await,
            Op::Stop(service) => environment.stop_service(&service, false).await,
            Op::Kill(service) => environment.stop_service(&service, true).await,
            Op::Down => {
                let report = environment.stop(self.grace).await;
                let text = report
                    .lines
                    .last()
                    .cloned()
                    .unwrap_or_else(|| "nothing was running".into());
                return Outcome {
                    ok: !report.resisted,
                    text: format!("down: {text}"),
                };
            }
            Op::Up => return self.up().await,
        };
        match reply {
            Ok(reply) => Outcome {
                ok: reply.ok,
                text: reply.lines.join("; "),
            },
            Err(RestartError::NotRunning) => failed("nothing is running; u brings it up".into()),
            Err(err) => failed(err.to_string()),
        }
    }

    /// `devctl up -d` as its own process: the supervisor it starts belongs
    /// to no TUI, so quitting leaves it running.
    async fn up(&self) -> Outcome {
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(err) => return failed(format!("cannot find the devctl executable: {err}")),
        };
        let output = tokio::process::Command::new(exe)
            .args(&self.up)
            .stdin(Stdio::null())
            .output()
            .await;
        match output {
            Ok(output) => {
                let text = if output.status.success() {
                    last_line(&output.stdout)
                } else {
                    error_line(&output.stderr)
                };
                Outcome {
                    ok: output.status.success(),
                    text,
                }
            }
            Err(err) => failed(format!("cannot run devctl up: {err}")),
        }
    }
}

fn failed(text: String) -> Outcome {
    Outcome { ok: false, text }
}

/// The `error: …` line of what a failed devctl printed (its last line if
/// none): the reason, not the advice after it.
fn error_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .find(|l| l.starts_with("error:"))
        .map(str::to_owned)
        .unwrap_or_else(|| last_line(bytes))
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_owned()
}
