//! Which processes are ours, and stopping them.
//!
//! devctl signals only what it can prove it started. Every service is
//! started with marks in its environment ([`REPO_MARK`], [`SERVICE_MARK`],
//! [`RUN_MARK`]) that its descendants inherit, and the kernel keeps a
//! process's initial environment readable (`/proc/<pid>/environ`, same user
//! only). A pid recorded in a state file is used only together with its
//! start time, so a pid the kernel has since given to another program is
//! never signalled; a process group is signalled only while its recorded
//! leader is alive and carries our mark. That is how `down` can stop a run
//! whose supervisor died and whose state file is gone, and how it refuses a
//! forged one.
//!
//! Stopping is: SIGTERM, wait until every target is gone, SIGKILL after the
//! grace, wait again.

use std::path::Path;
use std::time::{Duration, Instant};

use devctl_sdk::host::{is_alive, process_id, signal_process, ProcessId, ProcessTable};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The repo a process was started for (its canonical root).
pub const REPO_MARK: &str = "DEVCTL_REPO_ROOT";
/// The service a process belongs to.
pub const SERVICE_MARK: &str = "DEVCTL_SERVICE";
/// The run (supervisor pid and start time) that started it.
pub const RUN_MARK: &str = "DEVCTL_RUN";

/// The marks a service's process carries.
pub fn marks(root: &Path, service: &str, run: &str) -> [(&'static str, String); 3] {
    [
        (REPO_MARK, root.display().to_string()),
        (SERVICE_MARK, service.to_owned()),
        (RUN_MARK, run.to_owned()),
    ]
}

/// The id of the run of this supervisor process.
pub fn run_id() -> String {
    let me = std::process::id();
    let start = process_id(me).map(|p| p.start_time).unwrap_or(0);
    format!("{me}-{start}")
}

/// A live process carrying our marks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    pub process: ProcessId,
    /// Its process group now.
    pub group: i32,
    pub service: String,
    pub run: String,
    /// Its command line, for reports.
    pub command: String,
}

/// The marks of one process, if it carries ours for `root`.
pub fn marked(pid: u32, root: &Path) -> Option<Marked> {
    let process = process_id(pid)?;
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let root = root.display().to_string();
    let mut repo = None;
    let mut service = None;
    let mut run = None;
    for entry in environ.split(|b| *b == 0) {
        let Ok(entry) = std::str::from_utf8(entry) else {
            continue;
        };
        if let Some((key, value)) = entry.split_once('=') {
            match key {
                REPO_MARK => repo = Some(value),
                SERVICE_MARK => service = Some(value.to_owned()),
                RUN_MARK => run = Some(value.to_owned()),
                _ => {}
            }
        }
    }
    if repo != Some(root.as_str()) {
        return None;
    }
    // The process may have ended while we read it: confirm it is the same.
    let group = nix::unistd::getpgid(Some(Pid::from_raw(i32::try_from(pid).ok()?)))
        .ok()?
        .as_raw();
    is_alive(process).then(|| Marked {
        process,
        group,
        service: service.unwrap_or_default(),
        run: run.unwrap_or_default(),
        command: command_of(pid),
    })
}

/// Every live process (of this user) carrying our marks for `root`.
pub fn marked_processes(root: &Path) -> Vec<Marked> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|pid| *pid != me)
        .filter_map(|pid| marked(pid, root))
        .collect()
}

/// A process's command line, for reports (`?` when unreadable).
pub fn command_of(pid: u32) -> String {
    let text = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        "?".into()
    } else {
        text.chars().take(120).collect()
    }
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// What to stop: process groups proved ours, and single processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    pub groups: Vec<i32>,
    pub processes: Vec<ProcessId>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.processes.is_empty()
    }

    fn alive_in(&self, table: &Option<ProcessTable>) -> bool {
        let Some(table) = table else { return false };
        self.groups.iter().any(|g| table.group_alive(*g))
            || self.processes.iter().any(|p| table.alive(*p))
    }

    fn signal(&self, table: &Option<ProcessTable>, signal: Signal) {
        for group in &self.groups {
            // Only a group that still has members: an empty group's id may
            // be handed out again.
            if table.as_ref().is_none_or(|t| t.group_alive(*group)) {
                let _ = killpg(Pid::from_raw(*group), signal);
            }
        }
        for process in &self.processes {
            signal_process(*process, signal);
        }
    }
}

/// One read of /proc for a round of checks: a stop of many services checks
/// them all against one snapshot instead of reading /proc once per service.
/// When /proc cannot be read nothing can be seen alive, and stops report
/// nothing left (the signals were still sent).
fn snapshot() -> Option<ProcessTable> {
    ProcessTable::read().ok()
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing was running any more.
    AlreadyGone,
    /// Everything exited after SIGTERM.
    Terminated,
    /// Something ignored SIGTERM for the whole grace and was killed.
    Killed,
    /// Something survived even SIGKILL (e.g. stuck in the kernel).
    Resisted,
}

/// SIGTERM, wait until all is gone, SIGKILL after `grace`, wait again.
pub async fn stop(targets: &Targets, grace: Duration) -> Stopped {
    stop_all(std::slice::from_ref(targets), grace)
        .await
        .first()
        .copied()
        .unwrap_or(Stopped::AlreadyGone)
}

/// [`stop`] for several sets at once (in parallel, one clock); the outcome
/// of each, in order.
pub async fn stop_all(sets: &[Targets], grace: Duration) -> Vec<Stopped> {
    let table = snapshot();
    let mut outcome: Vec<Option<Stopped>> = sets
        .iter()
        .map(|t| (!t.alive_in(&table)).then_some(Stopped::AlreadyGone))
        .collect();
    for (set, done) in sets.iter().zip(&outcome) {
        if done.is_none() {
            set.signal(&table, Signal::SIGTERM);
        }
    }
    wait_gone(sets, &mut outcome, grace, Stopped::Terminated).await;
    let table = snapshot();
    for (set, done) in sets.iter().zip(&outcome) {
        if done.is_none() {
            set.signal(&table, Signal::SIGKILL);
        }
    }
    wait_gone(sets, &mut outcome, Duration::from_secs(2), Stopped::Killed).await;
    outcome
        .into_iter()
        .map(|o| o.unwrap_or(Stopped::Resisted))
        .collect()
}

/// Marks each set that is gone (within `limit`) with `gone`.
async fn wait_gone(
    sets: &[Targets],
    outcome: &mut [Option<Stopped>],
    limit: Duration,
    gone: Stopped,
) {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_micros(500);
    loop {
        let table = snapshot();
        for (set, done) in sets.iter().zip(outcome.iter_mut()) {
            if done.is_none() && !set.alive_in(&table) {
                *done = Some(gone);
            }
        }
        if outcome.iter().all(Option::is_some) || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// The same, as a line in the service's own log (which names it already).
pub fn stop_note(pid: u32, outcome: Stopped, grace: Duration) -> Option<String> {
    match outcome {
        Stopped::AlreadyGone => None,
        Stopped::Terminated => Some(format!("stopped (pid {pid})")),
        // A grace of zero is a kill asked for (`x` in the TUI), not a
        // service that ignored anything.
        Stopped::Killed if grace.is_zero() => Some(format!("killed (pid {pid})")),
        Stopped::Killed => Some(format!(
            "killed (pid {pid}) after it ignored SIGTERM for {} ms",
            grace.as_millis()
        )),
        Stopped::Resisted => Some(format!("pid {pid} RESISTED even SIGKILL")),
    }
}

/// One line of a stop report, or nothing if there was nothing to stop.
pub fn describe_stop(name: &str, pid: u32, outcome: Stopped, grace: Duration) -> Option<String> {
    match outcome {
        Stopped::AlreadyGone => None,
        Stopped::Terminated => Some(format!("stopped {name} (pid {pid})")),
        Stopped::Killed if grace.is_zero() => Some(format!("killed {name} (pid {pid})")),
        Stopped::Killed => Some(format!(
            "{name} (pid {pid}) ignored SIGTERM for {} ms; killed",
            grace.as_millis()
        )),
        Stopped::Resisted => Some(format!("{name} (pid {pid}) RESISTED even SIGKILL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_found_only_for_our_repo() {
        let root = Path::new("/tmp/devctl-marks-test-repo");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .envs(marks(root, "web", "1-2"))
            .spawn()
            .unwrap();
        // The environment is the new program's once it has exec'd.
        let deadline = Instant::now() + Duration::from_secs(5);
        let found = loop {
            match marked(child.id(), root) {
                Some(found) => break found,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
                None => panic!("the marks never showed"),
            }
        };
        assert_eq!(found.service, "web");
        assert_eq!(found.run, "1-2");
        assert!(found.command.starts_with("sleep 30"), "{}", found.command);
        assert!(marked(child.id(), Path::new("/tmp/other")).is_none());
        assert!(marked_processes(root)
            .iter()
            .any(|m| m.process.pid == child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(marked(child.id(), root).is_none(), "gone");
    }

    #[tokio::test]
    async fn a_process_that_ignores_sigterm_is_killed_after_the_grace() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let id = process_id(child.id()).unwrap();
        let targets = Targets {
            groups: Vec::new(),
            processes: vec![id],
        };
        let reaper = std::thread::spawn(move || child.wait());
        assert_eq!(
            stop(&targets, Duration::from_millis(100)).await,
            Stopped::Killed
        );
        reaper.join().unwrap().unwrap();
        assert_eq!(
            stop(&targets, Duration::from_millis(100)).await,
            Stopped::AlreadyGone
        );
    }

    #[test]
    fn a_kill_asked_for_is_not_reported_as_an_ignored_sigterm() {
        let zero = Duration::ZERO;
        assert_eq!(
            describe_stop("web", 7, Stopped::Killed, zero).as_deref(),
            Some("killed web (pid 7)")
        );
        assert_eq!(
            stop_note(7, Stopped::Killed, zero).as_deref(),
            Some("killed (pid 7)")
        );
        let grace = Duration::from_secs(5);
        assert!(describe_stop("web", 7, Stopped::Killed, grace)
            .is_some_and(|line| line.contains("ignored SIGTERM for 5000 ms")));
    }
}
