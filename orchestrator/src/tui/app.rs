//! The TUI's model: what is on screen and what each action does to it.
//!
//! It is driven by events (an [`Action`] from a key, a new [`Snapshot`] of
//! the environment, new log records, an operation's outcome) and does no
//! I/O, so tests drive it without a terminal. What a key asks of the
//! environment (restart, stop, up, down) comes back as an [`Op`] for the
//! loop to carry out; its outcome comes back through [`App::finished`].

use std::collections::VecDeque;

use crate::events::UpEvent;
use crate::logs::{Record, Stream};
use crate::state::State;

use super::input::Action;

/// Log lines kept for the open service: older ones are dropped, so memory
/// stays bounded however fast a service writes.
pub const PANE_LINES: usize = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Dashboard,
    Service,
    Events,
    /// The last plan: phases, steps, validation errors and their fixes.
    Pipeline,
    /// Each plugin's handshake and what it printed on stderr.
    Plugins,
}

/// Which of a service's streams the service view shows (`tab` cycles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streams {
    Both,
    Stdout,
    Stderr,
}

impl Streams {
    fn next(self) -> Streams {
        match self {
            Streams::Both => Streams::Stdout,
            Streams::Stdout => Streams::Stderr,
            Streams::Stderr => Streams::Both,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Streams::Both => "stdout+stderr",
            Streams::Stdout => "stdout",
            Streams::Stderr => "stderr",
        }
    }

    fn shows(self, stream: Stream) -> bool {
        match self {
            Streams::Both => true,
            Streams::Stdout => stream != Stream::Stderr,
            Streams::Stderr => stream != Stream::Stdout,
        }
    }
}

/// The environment as the loop last observed it (through
/// [`crate::environment::Environment::observe`]).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The supervisor's pid, while one runs.
    pub supervisor: Option<u32>,
    pub state: Option<State>,
    /// For each service of `state`, whether its process runs.
    pub alive: Vec<bool>,
    /// Why the state file could not be used.
    pub damaged: Option<String>,
    /// Processes of ours running without a supervisor.
    pub orphans: usize,
    /// When it was taken (Unix ms), for uptimes.
    pub now_ms: u64,
}

impl Snapshot {
    pub fn services(&self) -> &[crate::state::ServiceState] {
        self.state.as_ref().map_or(&[], |s| s.services.as_slice())
    }
}

/// What a key asks of the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Restart(String),
    Stop(String),
    Kill(String),
    Up,
    Down,
}

impl Op {
    /// The question asked before it is done.
    pub fn question(&self) -> String {
        match self {
            Op::Restart(s) => format!("restart {s} (and what depends on it)?"),
            Op::Stop(s) => format!("stop {s}?"),
            Op::Kill(s) => format!("kill {s} (SIGKILL, no grace)?"),
            Op::Up => "bring the environment up?".into(),
            Op::Down => "take the whole environment down?".into(),
        }
    }

    /// What is shown while it runs.
    pub fn doing(&self) -> String {
        match self {
            Op::Restart(s) => format!("restarting {s}…"),
            Op::Stop(s) => format!("stopping {s}…"),
            Op::Kill(s) => format!("killing {s}…"),
            Op::Up => "bringing the environment up…".into(),
            Op::Down => "taking the environment down…".into(),
        }
    }
}

/// A question or a text being typed at the bottom line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    Confirm(Op),
    Filter(String),
}

/// One log line as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub stream: Stream,
    /// The service it is about (shown in the events view).
    pub service: String,
    pub text: String,
}

impl LogLine {
    pub fn new(service: &str, record: Record) -> LogLine {
        LogLine {
            time: record.time,
            stream: record.stream,
            service: printable(service.as_bytes()),
            text: printable(&record.text),
        }
    }
}

pub use crate::render::printable;

/// How much a lifecycle line matters (events view: `e` hides the lesser).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    /// The level of one of devctl's lifecycle lines (its own wording).
    pub fn of(text: &str) -> Level {
        const ERRORS: &[&str] = &[
            "RESISTED",
            "while starting",
            "during start-up",
            "did not become ready",
            "rejected",
            "failed",
        ];
        const WARNINGS: &[&str] = &["exited with", "killed (pid", "cancelled", "restarting in"];
        if ERRORS.iter().any(|e| text.contains(e)) {
            Level::Error
        } else if WARNINGS.iter().any(|w| text.contains(w)) {
            Level::Warn
        } else {
            Level::Info
        }
    }

    fn next(self) -> Level {
        match self {
            Level::Info => Level::Warn,
            Level::Warn => Level::Error,
            Level::Error => Level::Info,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// The last [`PANE_LINES`] lines of some logs.
#[derive(Debug, Clone, Default)]
pub struct Pane {
    pub lines: VecDeque<LogLine>,
    /// Lines dropped from the front to stay bounded.
    pub dropped: u64,
}

impl Pane {
    pub fn push(&mut self, line: LogLine) {
        if self.lines.len() == PANE_LINES {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line);
    }
}

/// The outcome of an [`Op`], as the status line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct App {
    /// The repo root, for the header.
    pub root: String,
    pub view: View,
    pub snapshot: Snapshot,
    /// Index of the selected service.
    pub selected: usize,
    pub prompt: Option<Prompt>,
    /// The selected service's log (dashboard preview, service view).
    pub pane: Pane,
    /// The service `pane` holds, once the loop has opened it.
    pub pane_service: Option<String>,
    /// Lifecycle lines of every service and devctl's own (events view).
    pub events: Pane,
    /// The events view stops taking new lines while paused.
    pub paused: bool,
    /// The events view shows lines of this level and above.
    pub level: Level,
    /// The service view sticks to the newest line.
    pub follow: bool,
    /// Lines scrolled up from the newest, when not following.
    pub scroll: usize,
    pub streams: Streams,
    /// Only lines containing this (service and events views).
    pub filter: Option<String>,
    pub help: bool,
    /// The supervisor's last run (or re-plan), as it reported it.
    pub run: Vec<UpEvent>,
    /// `run` is older than the last observation.
    pub run_stale: bool,
    /// Lines scrolled down in the pipeline and plugins views.
    pub offset: usize,
    /// The operation under way.
    pub busy: Option<Op>,
    pub outcome: Option<Outcome>,
    pub quit: bool,
}

impl App {
    pub fn new(root: &str) -> App {
        App {
            root: printable(root.as_bytes()),
            view: View::Dashboard,
            snapshot: Snapshot::default(),
            selected: 0,
            prompt: None,
            pane: Pane::default(),
            pane_service: None,
            events: Pane::default(),
            paused: false,
            level: Level::Info,
            follow: true,
            scroll: 0,
            streams: Streams::Both,
            filter: None,
            help: false,
            run: Vec::new(),
            run_stale: true,
            offset: 0,
            busy: None,
            outcome: None,
            quit: false,
        }
    }

    /// The selected service's name.
    pub fn selected_service(&self) -> Option<&str> {
        self.snapshot
            .services()
            .get(self.selected)
            .map(|s| s.name.as_str())
    }

    /// Takes a new observation; the selection stays on the same service.
    pub fn observed(&mut self, snapshot: Snapshot) {
        let name = self.selected_service().map(str::to_owned);
        self.snapshot = snapshot;
        self.run_stale = true;
        let services = self.snapshot.services();
        self.selected = name
            .and_then(|n| services.iter().position(|s| s.name == n))
            .unwrap_or(self.selected)
            .min(services.len().saturating_sub(1));
    }

    /// The loop opened `service`'s log: these are its last lines.
    pub fn pane_opened(&mut self, service: &str, lines: Vec<LogLine>) {
        self.pane = Pane::default();
        self.pane_service = Some(service.to_owned());
        lines.into_iter().for_each(|l| self.pane.push(l));
    }

    /// Whether the loop should read the last run's events again.
    pub fn wants_run(&self) -> bool {
        self.run_stale && matches!(self.view, View::Pipeline | View::Plugins)
    }

    /// The last run's events, read back.
    pub fn run_read(&mut self, events: Vec<UpEvent>) {
        self.run = events;
        self.run_stale = false;
    }

    /// New lines of the open service's log.
    pub fn pane_grew(&mut self, lines: Vec<LogLine>) {
        let added = lines.len();
        lines.into_iter().for_each(|l| self.pane.push(l));
        if !self.follow {
            // Keep the lines on screen where they are.
            self.scroll = (self.scroll + added).min(self.pane.lines.len());
        }
    }

    /// New lifecycle lines (ignored while paused).
    pub fn events_grew(&mut self, lines: Vec<LogLine>) {
        if !self.paused {
            lines.into_iter().for_each(|l| self.events.push(l));
        }
    }

    /// An operation ended.
    pub fn finished(&mut self, outcome: Outcome) {
        self.busy = None;
        self.outcome = Some(outcome);
    }

    /// Whether the open log view shows `line`.
    pub fn shows(&self, line: &LogLine) -> bool {
        let shown = match self.view {
            View::Events => Level::of(&line.text) >= self.level,
            _ => self.streams.shows(line.stream),
        };
        shown
            && self
                .filter
                .as_deref()
                .is_none_or(|f| line.text.contains(f) || line.service.contains(f))
    }

    /// Applies one action; returns what it asks of the environment.
    pub fn apply(&mut self, action: Action) -> Option<Op> {
        if action == Action::Quit {
            self.quit = true;
            return None;
        }
        if self.help {
            self.help = false;
            return None;
        }
        match self.prompt.take() {
            Some(Prompt::Confirm(op)) => return self.confirm(op, action),
            Some(Prompt::Filter(text)) => {
                self.edit_filter(text, action);
                return None;
            }
            None => {}
        }
        match action {
            Action::Help => self.help = true,
            Action::NextView => self.next_view(),
            Action::Back => self.view = View::Dashboard,
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-20),
            Action::PageDown => self.move_by(20),
            Action::Open if self.selected_service().is_some() => {
                self.view = View::Service;
                self.follow = true;
                self.scroll = 0;
            }
            Action::Restart => return self.ask_about(Op::Restart),
            Action::Stop => return self.ask_about(Op::Stop),
            Action::Kill => return self.ask_about(Op::Kill),
            Action::EnvUp => {
                if let Some(pid) = self.snapshot.supervisor {
                    self.outcome = Some(Outcome {
                        ok: true,
                        text: format!("already up (supervisor pid {pid})"),
                    });
                } else {
                    self.ask(Op::Up);
                }
            }
            Action::EnvDown => self.ask(Op::Down),
            Action::Follow => {
                self.follow = !self.follow;
                self.scroll = 0;
            }
            Action::Pause => self.paused = !self.paused,
            Action::Level => self.level = self.level.next(),
            Action::Filter => self.prompt = Some(Prompt::Filter(String::new())),
            Action::ClearFilter => self.filter = None,
            _ => {}
        }
        None
    }

    fn confirm(&mut self, op: Op, action: Action) -> Option<Op> {
        match action {
            Action::Yes if self.busy.is_none() => {
                self.busy = Some(op.clone());
                self.outcome = None;
                Some(op)
            }
            Action::Yes => {
                self.outcome = Some(Outcome {
                    ok: false,
                    text: "wait: another operation is under way".into(),
                });
                None
            }
            Action::No | Action::Back => None,
            // Anything else: the question stays.
            _ => {
                self.prompt = Some(Prompt::Confirm(op));
                None
            }
        }
    }

    fn edit_filter(&mut self, mut text: String, action: Action) {
        match action {
            Action::Type(c) => text.push(c),
            Action::Erase => {
                text.pop();
            }
            Action::Submit => {
                self.filter = (!text.is_empty()).then_some(text);
                return;
            }
            Action::Back => return,
            _ => {}
        }
        self.prompt = Some(Prompt::Filter(text));
    }

    fn ask(&mut self, op: Op) {
        self.prompt = Some(Prompt::Confirm(op));
    }

    /// Asks about the selected service (the open one in the service view).
    fn ask_about(&mut self, op: fn(String) -> Op) -> Option<Op> {
        if !matches!(self.view, View::Dashboard | View::Service) {
            return None;
        }
        if let Some(name) = self.selected_service() {
            let op = op(name.to_owned());
            self.ask(op);
        }
        None
    }

    fn next_view(&mut self) {
        self.offset = 0;
        match self.view {
            View::Dashboard => self.view = View::Events,
            View::Events => self.view = View::Pipeline,
            View::Pipeline => self.view = View::Plugins,
            View::Plugins => self.view = View::Dashboard,
            View::Service => self.streams = self.streams.next(),
        }
    }

    fn move_by(&mut self, delta: isize) {
        match self.view {
            View::Dashboard => {
                let last = self.snapshot.services().len().saturating_sub(1);
                self.selected = self.selected.saturating_add_signed(delta).min(last);
            }
            View::Pipeline | View::Plugins => {
                self.offset = self.offset.saturating_add_signed(delta);
            }
            View::Service | View::Events => {
                // Up scrolls back in time; at the bottom, following resumes.
                let len = if self.view == View::Events {
                    self.events.lines.len()
                } else {
                    self.pane.lines.len()
                };
                self.scroll = self.scroll.saturating_add_signed(-delta).min(len);
                self.follow = self.scroll == 0;
            }
        }
    }
}
