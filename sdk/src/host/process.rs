//! The plugin process, its process group, and finding every process it
//! started.
//!
//! Every plugin runs as the leader of its own process group, so everything
//! it starts can be signalled together. Closing follows DESIGN §2.7: give
//! the plugin a grace to exit on stdin EOF, then SIGTERM the group, then
//! SIGKILL, and wait until no live member of the group is left.
//!
//! Processes that leave the group (`setsid`, a double fork) are found by a
//! [`Lineage`] mark in their environment and, once this process is a
//! [child subreaper](become_child_subreaper), they are re-parented here
//! instead of to init. Everything is read from `/proc`; where it cannot be
//! read the answers say so ([`Liveness::Unknown`], an `Err`), never "gone".

use std::time::{Duration, Instant};

use nix::sys::signal::killpg;
pub use nix::sys::signal::Signal;
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
    /// The mark the plugin's processes carry, and the plugin itself: finds
    /// descendants that left the group (`setsid`, a double fork).
    lineage: Option<(Lineage, ProcessId)>,
}

impl ProcessGroup {
    /// `lineage`: the mark the child was started with ([`Lineage::env`]).
    pub fn new(child: Child, lineage: Option<Lineage>) -> Option<ProcessGroup> {
        let pid = child.id()?;
        let pgid = i32::try_from(pid).ok()?;
        let lineage = lineage.and_then(|l| Some((l, process_id(pid)?)));
        Some(ProcessGroup {
            child,
            pgid,
            reaped: false,
            lineage,
        })
    }

    /// Processes of the plugin that left its group and still run.
    fn escaped(&self) -> Vec<ProcessId> {
        match &self.lineage {
            Some((lineage, root)) => lineage
                .members(*root)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| {
                    ProcessTable::read()
                        .map(|t| !t.group(self.pgid).contains(&p.pid))
                        .unwrap_or(true)
                })
                .collect(),
            None => Vec::new(),
        }
    }

    /// SIGKILLs what left the group and waits (briefly) until it is gone.
    fn kill_escaped(&self) {
        let escaped = self.escaped();
        for process in &escaped {
            signal_process(*process, Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        while escaped.iter().any(|p| is_alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
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
        if status.is_none() || group_may_have_members(self.pgid) {
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
        if status.is_none() || group_may_have_members(self.pgid) {
            self.signal(Signal::SIGKILL);
            if status.is_none() {
                how = "killed";
                status = self.wait_leader(Duration::from_secs(5)).await;
            }
            wait_until_empty(self.pgid, Duration::from_secs(5)).await;
        }
        // Whatever the plugin started outside its group goes with it.
        self.kill_escaped();
        use std::os::unix::process::ExitStatusExt;
        let mut leftover = group_members(self.pgid);
        leftover.extend(self.escaped().iter().map(|p| p.pid));
        CloseReport {
            exit_code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            how,
            leftover,
        }
    }

    /// Kills the whole group at once (for `Drop`), and waits (briefly, it
    /// is a SIGKILL) until no live member is left, so that "dropped" really
    /// means "gone" even if the program exits right after.
    pub fn kill_now(&mut self) {
        self.kill_escaped();
        if self.reaped && !group_may_have_members(self.pgid) {
            return;
        }
        self.signal(Signal::SIGKILL);
        let _ = self.child.start_kill();
        let deadline = Instant::now() + Duration::from_millis(500);
        while group_has_members(self.pgid) && Instant::now() < deadline {
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

/// What `/proc` says about a process. `Unknown` is an honest answer: when
/// `/proc` cannot be read, nobody can say a process is gone (or alive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Exited (a zombie counts as gone), or its pid now names another process.
    Gone,
    /// `/proc` is not mounted or not readable here.
    Unknown,
}

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy)]
struct Stat {
    state: char,
    ppid: u32,
    pgrp: i32,
    session: i32,
    start_time: u64,
}

impl Stat {
    fn live(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

fn read_stat(pid: u32) -> std::io::Result<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&stat).ok_or_else(|| std::io::Error::other(format!("unreadable /proc/{pid}/stat")))
}

fn parse_stat(stat: &str) -> Option<Stat> {
    // The command may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Whether `/proc` describes this machine's processes (so that a missing
/// `/proc/<pid>` really means the process is gone).
fn proc_readable() -> bool {
    std::fs::metadata("/proc/self/stat").is_ok()
}

/// A child that exited (a zombie), with the group and session it was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitedChild {
    pub pid: u32,
    pub group: i32,
    pub session: i32,
}

/// A snapshot of every process `/proc` shows.
pub struct ProcessTable {
    processes: Vec<(u32, Stat)>,
}

impl ProcessTable {
    /// Reads `/proc`; an error when it cannot be read at all.
    pub fn read() -> std::io::Result<ProcessTable> {
        if !proc_readable() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "/proc is not readable here, so processes cannot be inspected",
            ));
        }
        let processes = std::fs::read_dir("/proc")?
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            // A process may exit between the listing and the read.
            .filter_map(|pid| read_stat(pid).ok().map(|stat| (pid, stat)))
            .collect();
        Ok(ProcessTable { processes })
    }

    /// Live processes whose process group is `pgid`.
    pub fn group(&self, pgid: i32) -> Vec<u32> {
        self.live()
            .filter(|(_, stat)| stat.pgrp == pgid)
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Every live descendant of `pid` (children, their children, …) by
    /// parent link, wherever their process group or session.
    pub fn descendants(&self, pid: u32) -> Vec<ProcessId> {
        let mut found = Vec::new();
        let mut frontier = vec![pid];
        while let Some(parent) = frontier.pop() {
            for (child, stat) in self.live().filter(|(_, s)| s.ppid == parent) {
                if found.iter().any(|p: &ProcessId| p.pid == child) {
                    continue;
                }
                found.push(ProcessId {
                    pid: child,
                    start_time: stat.start_time,
                });
                frontier.push(child);
            }
        }
        found
    }

    /// The live children of `parent` (not their descendants).
    pub fn children(&self, parent: u32) -> Vec<ProcessId> {
        self.live()
            .filter(|(_, stat)| stat.ppid == parent)
            .map(|(pid, stat)| ProcessId {
                pid,
                start_time: stat.start_time,
            })
            .collect()
    }

    /// Whether that very process (pid and start time) is alive in this
    /// snapshot.
    pub fn alive(&self, process: ProcessId) -> bool {
        self.live()
            .any(|(pid, stat)| pid == process.pid && stat.start_time == process.start_time)
    }

    /// Whether the group `pgid` has a live member in this snapshot.
    pub fn group_alive(&self, pgid: i32) -> bool {
        self.live().any(|(_, stat)| stat.pgrp == pgid)
    }

    /// Children of `parent` that have exited and wait to be reaped.
    pub fn exited_children(&self, parent: u32) -> Vec<ExitedChild> {
        self.processes
            .iter()
            .filter(|(_, stat)| !stat.live() && stat.ppid == parent)
            .map(|(pid, stat)| ExitedChild {
                pid: *pid,
                group: stat.pgrp,
                session: stat.session,
            })
            .collect()
    }

    fn live(&self) -> impl Iterator<Item = (u32, &Stat)> {
        self.processes
            .iter()
            .filter(|(_, stat)| stat.live())
            .map(|(pid, stat)| (*pid, stat))
    }
}

/// Live (non-zombie) processes whose process group is `pgid`. Empty also
/// when `/proc` cannot be read: use [`ProcessTable::read`] to tell.
pub fn group_members(pgid: i32) -> Vec<u32> {
    ProcessTable::read()
        .map(|table| table.group(pgid))
        .unwrap_or_default()
}

/// Every live descendant of `pid`, by parent link. Empty also when `/proc`
/// cannot be read: use [`ProcessTable::read`] to tell. Descendants that were
/// re-parented (a double fork) are not linked to `pid` any more; see
/// [`Lineage`] for those.
pub fn descendants(pid: u32) -> Vec<ProcessId> {
    ProcessTable::read()
        .map(|table| table.descendants(pid))
        .unwrap_or_default()
}

/// The identity of a live process: its pid and start time.
pub fn process_id(pid: u32) -> Option<ProcessId> {
    read_stat(pid)
        .ok()
        .filter(Stat::live)
        .map(|stat| ProcessId {
            pid,
            start_time: stat.start_time,
        })
}

/// Whether that very process (same pid, same start time) still runs.
pub fn liveness(process: ProcessId) -> Liveness {
    match read_stat(process.pid) {
        Ok(stat) if stat.start_time == process.start_time && stat.live() => Liveness::Alive,
        Ok(_) => Liveness::Gone,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && proc_readable() => Liveness::Gone,
        Err(_) => Liveness::Unknown,
    }
}

/// Whether that very process is known to be alive ([`liveness`] tells
/// "gone" from "cannot tell").
pub fn is_alive(process: ProcessId) -> bool {
    liveness(process) == Liveness::Alive
}

/// Sends `signal` to that very process, if it still runs. True when sent.
pub fn signal_process(process: ProcessId, signal: Signal) -> bool {
    let Ok(pid) = i32::try_from(process.pid) else {
        return false;
    };
    is_alive(process) && nix::sys::signal::kill(Pid::from_raw(pid), signal).is_ok()
}

/// Makes this process a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`):
/// a descendant whose parent exits (a double fork, a daemon) is re-parented
/// to us instead of to init, so it stays ours to find and stop. It affects
/// the whole process and lasts until it exits; `fork` clears it in children.
pub fn become_child_subreaper() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "child subreapers exist only on Linux",
        ))
    }
}

/// Collects the exit status of a process this one adopted as a subreaper,
/// once it has exited, so it does not linger as a zombie. Never use it for
/// a child spawned through tokio or std (their owners wait for them).
pub fn reap_adopted(process: ProcessId) {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let Ok(pid) = i32::try_from(process.pid) else {
        return;
    };
    let ours = read_stat(process.pid)
        .is_ok_and(|stat| stat.start_time == process.start_time && stat.ppid == std::process::id());
    if ours {
        let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
    }
}

/// A mark that every process of a tree carries: an environment variable set
/// when the root is spawned and inherited by each descendant. It finds the
/// descendants that left the tree (`setsid`, double fork, re-parented to
/// init or to a subreaper), which no parent link leads to any more. A
/// descendant that clears its environment *and* leaves the tree escapes it;
/// being a [child subreaper](become_child_subreaper) still makes such a
/// process ours, as a child of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lineage {
    var: String,
    value: String,
}

impl Lineage {
    /// The environment variable carrying lineage marks.
    pub const VAR: &'static str = "DEVCTL_LINEAGE";

    /// A mark no other tree carries (this process, a counter, the time).
    pub fn new() -> Lineage {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Lineage {
            var: Lineage::VAR.to_owned(),
            value: format!(
                "{}-{}-{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// The `(name, value)` to add to the root's environment.
    pub fn env(&self) -> (&str, &str) {
        (&self.var, &self.value)
    }

    /// Every live process of the tree rooted at `root`, except `root`
    /// itself: its descendants by parent link, and processes started since
    /// `root` that carry the mark. An error when `/proc` cannot be read.
    pub fn members(&self, root: ProcessId) -> std::io::Result<Vec<ProcessId>> {
        let table = ProcessTable::read()?;
        let mut found = table.descendants(root.pid);
        let needle = format!("{}={}", self.var, self.value);
        for (pid, stat) in table.live() {
            if pid == root.pid
                || stat.start_time < root.start_time
                || found.iter().any(|p| p.pid == pid)
            {
                continue;
            }
            // Other users' processes are unreadable, and not ours anyway.
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            if environ
                .split(|b| *b == 0)
                .any(|entry| entry == needle.as_bytes())
            {
                found.push(ProcessId {
                    pid,
                    start_time: stat.start_time,
                });
            }
        }
        Ok(found)
    }
}

impl Default for Lineage {
    fn default() -> Self {
        Lineage::new()
    }
}

/// False only when `/proc` shows the group empty: when it cannot be read,
/// the group may still have members, so signal it anyway.
fn group_may_have_members(pgid: i32) -> bool {
    ProcessTable::read().map_or(true, |table| !table.group(pgid).is_empty())
}

/// True only when `/proc` shows a live member: when it cannot be read
/// there is nothing to wait for that could ever be seen.
fn group_has_members(pgid: i32) -> bool {
    ProcessTable::read().is_ok_and(|table| !table.group(pgid).is_empty())
}

async fn wait_until_empty(pgid: i32, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    while group_has_members(pgid) && Instant::now() < deadline {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
