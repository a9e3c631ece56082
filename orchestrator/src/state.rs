//! `state.json`: what the supervisor started and how it is doing.
//!
//! The supervisor writes it whole (temp file and rename) after every change,
//! and before it tells anyone a change happened, so `devctl status` right
//! after `up -d` sees what `up` reported. Per service it records the pid,
//! process group and process start time (so a pid the kernel has since
//! reused is never mistaken for ours), readiness, restarts, how it exited and
//! the tail of its stderr. Service environments are never written (they hold
//! secrets). Readers treat the file as a hint (see [`crate::statedir`]).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use devctl_sdk::host::{is_alive, ProcessId};
use serde::{Deserialize, Serialize};

pub const STATE_VERSION: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Starting,
    Running,
    Stopping,
    Stopped,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceStatus {
    Waiting,
    Starting,
    Ready,
    Restarting,
    Exited,
    Failed,
    Stopped,
}

impl ServiceStatus {
    pub fn name(self) -> &'static str {
        match self {
            ServiceStatus::Waiting => "waiting",
            ServiceStatus::Starting => "starting",
            ServiceStatus::Ready => "ready",
            ServiceStatus::Restarting => "restarting",
            ServiceStatus::Exited => "exited",
            ServiceStatus::Failed => "failed",
            ServiceStatus::Stopped => "stopped",
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "signal {signal}"),
            _ => f.write_str("an unknown status"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    pub name: String,
    pub status: ServiceStatus,
    pub pid: Option<u32>,
    pub pgid: Option<i32>,
    /// `/proc/<pid>/stat` start time of the process we started.
    pub start_time: Option<u64>,
    /// Unix time in ms when the current process started / became ready.
    pub started_at_ms: Option<u64>,
    pub ready_at_ms: Option<u64>,
    pub restarts: u32,
    pub exit: Option<Exit>,
    #[serde(default)]
    pub stderr_tail: Vec<String>,
    /// Where the service answers (its health check's URL or address), if known.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// When a restart is due (Unix ms), while `status` is `restarting`.
    #[serde(default)]
    pub next_restart_at_ms: Option<u64>,
}

impl ServiceState {
    pub fn new(name: &str) -> ServiceState {
        ServiceState {
            name: name.to_owned(),
            status: ServiceStatus::Waiting,
            pid: None,
            pgid: None,
            start_time: None,
            started_at_ms: None,
            ready_at_ms: None,
            restarts: 0,
            exit: None,
            stderr_tail: Vec::new(),
            endpoint: None,
            next_restart_at_ms: None,
        }
    }

    pub fn process(&self) -> Option<ProcessId> {
        Some(ProcessId {
            pid: self.pid?,
            start_time: self.start_time?,
        })
    }

    /// Is the process we started still running (same pid, same start time)?
    pub fn alive(&self) -> bool {
        self.process().is_some_and(is_alive)
    }

    /// The status a person sees (`status`, the TUI): a ready service whose
    /// process is gone is `gone`, one without a supervisor `unsupervised`,
    /// a restart pending says when.
    pub fn shown_status(&self, now: u64, alive: bool, supervised: bool) -> String {
        match self.status {
            ServiceStatus::Restarting => {
                let next = self
                    .next_restart_at_ms
                    .map(|at| format!(", next in {}", human_ms(at.saturating_sub(now))))
                    .unwrap_or_default();
                format!("restarting ({}{next})", self.restarts)
            }
            ServiceStatus::Ready if !alive => "gone".to_owned(),
            ServiceStatus::Ready if !supervised => "unsupervised".to_owned(),
            other => other.name().to_owned(),
        }
    }

    /// How long the current process has run, while it runs.
    pub fn uptime_ms(&self, now: u64, alive: bool) -> Option<u64> {
        alive
            .then_some(self.started_at_ms)
            .flatten()
            .map(|at| now.saturating_sub(at))
    }
}

/// A duration for people: `850ms`, `42s`, `3m7s`, `2h5m`.
pub fn human_ms(ms: u64) -> String {
    match ms / 1000 {
        0 => format!("{ms}ms"),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub repo_root: PathBuf,
    pub supervisor_pid: u32,
    pub supervisor_start_time: Option<u64>,
    pub phase: Phase,
    /// Bumped each time the plan is (re)applied.
    pub generation: u64,
    pub services: Vec<ServiceState>,
    /// Why the run failed, when it did.
    pub error: Option<String>,
    /// Whether the supervisor re-plans on config changes (`up --watch`).
    #[serde(default)]
    pub watching: bool,
    /// One line about the last re-plan (applied or rejected).
    #[serde(default)]
    pub last_rebuild: Option<String>,
}

/// Why a state file was refused.
#[derive(Debug)]
pub struct StateError(pub String);

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
        }
    }
}

impl State {
    pub fn phase_name(&self) -> &'static str {
        self.phase.name()
    }

    pub fn new(repo_root: &Path, watching: bool) -> State {
        let me = std::process::id();
        State {
            version: STATE_VERSION,
            repo_root: repo_root.to_path_buf(),
            supervisor_pid: me,
            supervisor_start_time: devctl_sdk::host::process_id(me).map(|p| p.start_time),
            phase: Phase::Starting,
            generation: 1,
            services: Vec::new(),
            error: None,
            watching,
            last_rebuild: None,
        }
    }

    pub fn supervisor(&self) -> Option<ProcessId> {
        Some(ProcessId {
            pid: self.supervisor_pid,
            start_time: self.supervisor_start_time?,
        })
    }

    pub fn supervisor_alive(&self) -> bool {
        self.supervisor().is_some_and(is_alive)
    }

    pub fn service(&self, name: &str) -> Option<&ServiceState> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Parses a state file and checks that it is about `root`.
    pub fn parse(bytes: &[u8], root: &Path) -> Result<State, StateError> {
        let state: State =
            serde_json::from_slice(bytes).map_err(|err| StateError(err.to_string()))?;
        if state.repo_root != root {
            return Err(StateError(format!(
                "it describes {}",
                state.repo_root.display()
            )));
        }
        // Names become log file names: a forged `../x` must not be read.
        for service in &state.services {
            devctl_contract::names::check_name(&service.name)
                .map_err(|problem| StateError(format!("a service name: {problem}")))?;
        }
        Ok(state)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain data into memory cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The last `n` lines of a file (read from its last 64 KiB only).
pub fn tail_of(mut file: std::fs::File, n: usize) -> Vec<String> {
    const WINDOW: u64 = 64 * 1024;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if file
        .seek(SeekFrom::Start(len.saturating_sub(WINDOW)))
        .is_err()
    {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.take(WINDOW).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_of_another_repo_or_garbage_is_refused() {
        let state = State::new(Path::new("/repo/a"), false);
        let bytes = state.to_bytes();
        assert_eq!(State::parse(&bytes, Path::new("/repo/a")).unwrap(), state);
        let other = State::parse(&bytes, Path::new("/repo/b")).unwrap_err();
        assert!(other.0.contains("/repo/a"), "{}", other.0);
        assert!(State::parse(b"{\"version\": 2", Path::new("/repo/a")).is_err());
        assert!(State::parse(b"", Path::new("/repo/a")).is_err());
        let mut forged = State::new(Path::new("/repo/a"), false);
        forged.services.push(ServiceState::new("../../etc/passwd"));
        let err = State::parse(&forged.to_bytes(), Path::new("/repo/a")).unwrap_err();
        assert!(err.0.contains("a service name"), "{}", err.0);
    }
}
