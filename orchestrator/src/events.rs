//! What the supervisor tells the `up` that started it, one JSON object per
//! line on a pipe: pipeline phases, plugin output, validation errors,
//! service progress, and the outcome. `up` renders them (a progress display
//! on a terminal, plain lines otherwise); after `up -d` returns, nobody reads
//! them and the supervisor carries on.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::state::Exit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum UpEvent {
    Phase {
        name: String,
    },
    PluginOutput {
        plugin: String,
        line: String,
    },
    PluginMessage {
        plugin: String,
        level: String,
        text: String,
    },
    Invalid {
        plugin: String,
        code: String,
        message: String,
        fix: Option<String>,
    },
    ServiceStarting {
        name: String,
        pid: u32,
    },
    ServiceReady {
        name: String,
        after_ms: u64,
        /// Where it answers (its health check's URL or address), if known.
        #[serde(default)]
        endpoint: Option<String>,
    },
    ServiceExited {
        name: String,
        exit: Exit,
        restarting: bool,
    },
    Ready {
        services: usize,
        elapsed_ms: u64,
    },
    Failed {
        reason: String,
        service: Option<String>,
        exit: Option<Exit>,
        stderr_tail: Vec<String>,
    },
    Stopped {
        lines: Vec<String>,
    },
    /// `up --watch` re-planned after a change: one line, applied or not.
    Replanned {
        applied: bool,
        line: String,
    },
    /// A plugin started and shook hands: what it offers.
    Plugin {
        id: String,
        name: String,
        ops: Vec<String>,
        streams: Vec<String>,
        commands: Vec<String>,
    },
    /// A build or prepare step ran.
    Step {
        phase: String,
        name: String,
        plugin: String,
        ok: bool,
        duration_ms: u64,
    },
}

/// The first event of a run (and of each `up --watch` re-plan).
pub const RUN_STARTS: &str = "plugins";

/// The events of the supervisor's last run (or re-plan), read back from
/// the copy it keeps in `.devctl/supervisor.log` (its last lines only).
pub fn last_run(dir: &crate::statedir::StateDir) -> Vec<UpEvent> {
    let events: Vec<UpEvent> = dir
        .supervisor_log_tail(4_000)
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let start = events
        .iter()
        .rposition(|e| matches!(e, UpEvent::Phase { name } if name == RUN_STARTS))
        .unwrap_or(0);
    events[start..].to_vec()
}

/// Writes events to stdout (a pipe to `up`); a closed pipe is ignored.
#[derive(Clone, Default)]
pub struct Emitter;

impl Emitter {
    pub fn emit(&self, event: &UpEvent) {
        let mut line = serde_json::to_string(event).unwrap_or_default();
        line.push('\n');
        let mut stdout = std::io::stdout().lock();
        let _ = stdout
            .write_all(line.as_bytes())
            .and_then(|()| stdout.flush());
        // The supervisor's stderr is its log file: keep a copy there.
        eprint!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_run_is_read_back_from_the_supervisor_log() {
        let temp = tempfile::tempdir().unwrap();
        let dir = crate::statedir::StateDir::create(temp.path()).unwrap();
        let mut log = dir.supervisor_log().unwrap();
        let phase = |name: &str| UpEvent::Phase { name: name.into() };
        let older = [phase(RUN_STARTS), phase("build")];
        let newer = [
            phase(RUN_STARTS),
            UpEvent::Step {
                phase: "build".into(),
                name: "web".into(),
                plugin: "moments".into(),
                ok: true,
                duration_ms: 7,
            },
        ];
        for event in older.iter().chain(&newer) {
            writeln!(log, "{}", serde_json::to_string(event).unwrap()).unwrap();
            // The supervisor's own lines are not events.
            writeln!(log, "supervisor: a line of its own").unwrap();
        }
        assert_eq!(last_run(&dir), newer);
    }
}
