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

/// The command that starts a plugin: its own process group, piped stdio,
/// killed if dropped; `cwd` overrides the spec's workdir.
pub(crate) fn plugin_command(
    spec: &super::PluginSpec,
    cwd: Option<&std::path::Path>,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(&spec.env)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = cwd.or(spec.workdir.as_deref()) {
        command.current_dir(dir);
    }
    command
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
            // One grace for the leader and the rest of the group together.
            let deadline = Instant::now() + term_grace;
            if status.is_none() {
                how = "terminated";
                status = self.wait_leader(term_grace).await;
            }
            wait_until_empty(
                self.pgid,
                deadline.saturating_duration_since(Instant::now()),
            )
            .await;
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

    /// Kills the whole group at once (for `Drop`), and waits (briefly, it
    /// is a SIGKILL) until no live member is left, so that "dropped" really
    /// means "gone" even if the program exits right after.
    pub fn kill_now(&mut self) {
        if self.reaped && group_members(self.pgid).is_empty() {
            return;
        }
        self.signal(Signal::SIGKILL);
        let _ = self.child.start_kill();
        let deadline = Instant::now() + Duration::from_millis(500);
        while !group_members(self.pgid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn signal(&self, signal: Signal) {
        // ESRCH (group already gone) is the outcome we want anyway.
        let _ = killpg(Pid::from_raw(self.pgid), signal);
    }

    pub(crate) async fn wait_leader(
        &mut self,
        grace: Duration,
    ) -> Option<std::process::ExitStatus> {
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

/// A process identified by pid *and* start time, so a reused pid is never
/// mistaken for the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId {
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
}

/// The fields of `/proc/<pid>/stat` we use.
struct Stat {
    state: char,
    ppid: u32,
    pgrp: i32,
    start_time: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn live(stat: &Stat) -> bool {
    stat.state != 'Z' && stat.state != 'X'
}

/// Live (non-zombie) processes whose process group is `pgid`, from /proc.
pub fn group_members(pgid: i32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| read_stat(*pid).is_some_and(|stat| stat.pgrp == pgid && live(&stat)))
        .collect()
}

/// Every live descendant of `pid` (children, their children, …), wherever
/// their process group.
pub fn descendants(pid: u32) -> Vec<ProcessId> {
    let table: Vec<(u32, Stat)> = all_pids()
        .into_iter()
        .filter_map(|p| read_stat(p).map(|stat| (p, stat)))
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for (child, stat) in &table {
            if stat.ppid == parent && live(stat) {
                found.push(ProcessId {
                    pid: *child,
                    start_time: stat.start_time,
                });
                frontier.push(*child);
            }
        }
    }
    found
}

/// The identity of a live process: its pid and start time.
pub fn process_id(pid: u32) -> Option<ProcessId> {
    read_stat(pid).filter(live).map(|stat| ProcessId {
        pid,
        start_time: stat.start_time,
    })
}

/// Whether that very process (same pid, same start time) is still alive.
pub fn is_alive(process: ProcessId) -> bool {
    read_stat(process.pid).is_some_and(|stat| stat.start_time == process.start_time && live(&stat))
}

async fn wait_until_empty(pgid: i32, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    while !group_members(pgid).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
