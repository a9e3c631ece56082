//! `.devctl/`: the state file, the lock, the logs and the control socket.
//!
//! `state.json` records what the supervisor started: its own pid, and per
//! service the pid, process group and process start time (so a pid the
//! kernel has reused is never signalled), readiness, restarts, how it
//! exited and the tail of its stderr. It is always written whole (temp file
//! and rename). Service environments are never written (they hold secrets).

use std::io::Write;
use std::path::{Path, PathBuf};

use devctl_sdk::host::{group_members, is_alive, process_id, ProcessId};
use serde::{Deserialize, Serialize};

pub const STATE_VERSION: u32 = 1;

/// Paths under `<root>/.devctl/`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(root: &Path) -> Paths {
        Paths {
            dir: root.join(".devctl"),
        }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn lock(&self) -> PathBuf {
        self.dir.join("lock")
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }

    pub fn log(&self, service: &str, stream: Stream) -> PathBuf {
        self.logs().join(format!("{service}.{}.log", stream.name()))
    }

    /// The control socket; outside `.devctl/` when the path would be too
    /// long for a Unix socket (108 bytes).
    pub fn socket(&self) -> PathBuf {
        let inside = self.dir.join("control.sock");
        if inside.as_os_str().len() < 100 {
            return inside;
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.dir.as_os_str().as_encoded_bytes() {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        std::env::temp_dir().join(format!("devctl-{hash:016x}.sock"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

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
    pub stderr_tail: Vec<String>,
    pub stdout_log: PathBuf,
    pub stderr_log: PathBuf,
}

impl ServiceState {
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

    /// Live members of the service's process group, if that group is still
    /// ours: its leader is our process, or the leader is gone and members
    /// remain (a group id cannot be reused while it has members).
    pub fn group_members(&self) -> Vec<u32> {
        let Some(pgid) = self.pgid else {
            return Vec::new();
        };
        let leader_is_ours = match (self.pid.and_then(process_id), self.start_time) {
            (Some(now), Some(recorded)) => now.start_time == recorded,
            (None, _) => true,
            (Some(_), None) => false,
        };
        if leader_is_ours {
            group_members(pgid)
        } else {
            Vec::new()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub repo_root: PathBuf,
    pub supervisor_pid: u32,
    pub supervisor_start_time: Option<u64>,
    pub socket: PathBuf,
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

impl State {
    pub fn supervisor(&self) -> Option<ProcessId> {
        Some(ProcessId {
            pid: self.supervisor_pid,
            start_time: self.supervisor_start_time?,
        })
    }

    pub fn supervisor_alive(&self) -> bool {
        self.supervisor().is_some_and(is_alive)
    }

    /// Services with any live process left.
    pub fn live_services(&self) -> Vec<&ServiceState> {
        self.services
            .iter()
            .filter(|s| s.alive() || !s.group_members().is_empty())
            .collect()
    }

    pub fn read(paths: &Paths) -> anyhow::Result<Option<State>> {
        let path = paths.state();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(anyhow::anyhow!("cannot read {}: {err}", path.display())),
        };
        let state = serde_json::from_str(&text).map_err(|err| {
            anyhow::anyhow!("{} is not a devctl state file ({err}); remove it once nothing from the previous run is running", path.display())
        })?;
        Ok(Some(state))
    }

    /// Writes the state whole: a temp file in the same directory, then a rename.
    pub fn write(&self, paths: &Paths) -> std::io::Result<()> {
        write_atomically(
            &paths.state(),
            &serde_json::to_vec_pretty(self).unwrap_or_default(),
        )
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Keeps the last `n` lines of a file (for stderr tails in errors).
pub fn tail_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(bytes) = read_end(path, 64 * 1024) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

fn read_end(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}
