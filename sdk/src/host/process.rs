//! The plugin process and its process group.
//!
//! Every plugin runs as the leader of its own process group, so everything
//! it starts can be signalled together. Closing follows DESIGN §2.7: give
//! the plugin a grace to exit on stdin EOF, then SIGTERM the group, then
//! SIGKILL, and wait until no live member of the group is left.

use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Child;

/// How a plugin process ended when it was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReport {
    /// `None` when the status could not be collected.
    pub exit_code: Option<i32>,
    /// The signal that ended the leader, if any.
    pub signal: Option<i32>,
    /// What we had to do: "exited", "terminated" (SIGTERM) or "killed" (SIGKILL).
    pub how: &'static str,
    /// Live members of the group still there after the final SIGKILL.
    pub leftover: Vec<u32>,
}

pub(crate) struct ProcessGroup {
    child: Child,
    pgid: i32,
    reaped: bool,
}

impl ProcessGroup {
    pub fn new(child: Child) -> Option<ProcessGroup> {
        let pgid = i32::try_from(child.id()?).ok()?;
        Some(ProcessGroup {
            child,
            pgid,
            reaped: false,
        })
    }

    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// Stops the group: wait `eof_grace` for the leader to exit by itself,
    /// then SIGTERM, wait `term_grace`, then SIGKILL. Members the leader
    /// left behind get the same treatment.
    pub async fn terminate(&mut self, eof_grace: Duration, term_grace: Duration) -> CloseReport {
        let mut how = "exited";
        let mut status = self.wait_leader(eof_grace).await;
        if status.is_none() || !group_members(self.pgid).is_empty() {
            self.signal(Signal::SIGTERM);
            if status.is_none() {
                how = "terminated";
                status = self.wait_leader(term_grace).await;
            }
            wait_until_empty(self.pgid, term_grace).await;
        }
        if status.is_none() || !group_members(self.pgid).is_empty() {
            self.signal(Signal::SIGKILL);
            if status.is_none() {
                how = "killed";
                status = self.wait_leader(Duration::from_secs(5)).await;
            }
            wait_until_empty(self.pgid, Duration::from_secs(5)).await;
        }
        use std::os::unix::process::ExitStatusExt;
        CloseReport {
            exit_code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            how,
            leftover: group_members(self.pgid),
        }
    }

    /// Kills the whole group at once, without waiting (for `Drop`).
    pub fn kill_now(&mut self) {
        if !self.reaped || !group_members(self.pgid).is_empty() {
            self.signal(Signal::SIGKILL);
        }
        let _ = self.child.start_kill();
    }

    fn signal(&self, signal: Signal) {
        // ESRCH (group already gone) is the outcome we want anyway.
        let _ = killpg(Pid::from_raw(self.pgid), signal);
    }

    async fn wait_leader(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.reaped = true;
                Some(status)
            }
            _ => None,
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Live (non-zombie) processes whose process group is `pgid`, from /proc.
pub fn group_members(pgid: i32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Fields after the parenthesised command: state ppid pgrp …
            let Some(rest) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("");
            let group = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
            group == Some(pgid) && state != "Z" && state != "X"
        })
        .collect()
}

async fn wait_until_empty(pgid: i32, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    while !group_members(pgid).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
