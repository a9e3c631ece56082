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
