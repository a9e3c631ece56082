//! A repo's dev environment as seen from outside the supervisor: the one
//! API that `status`, `down`, `restart` and `logs` use (and a TUI would),
//! so no command reads `.devctl/` its own way.
//!
//! None of it needs `.devctl.yaml` or a plugin: a running environment can be
//! inspected and stopped while the config is broken or a plugin is missing.
//! Nothing in `.devctl/` is trusted on its own: the supervisor is found as
//! the holder of the lock (the kernel's lock table, not a recorded pid), and
//! what it started is found by the marks the services carry, so a damaged
//! or missing state file still lets `down` stop everything, and a forged
//! one cannot make it signal a stranger.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use devctl_sdk::host::is_alive;
use devctl_support::fs::FsError;

use crate::control::{self, ControlError, Reply, Request};
use crate::procs::{describe_stop, marked_processes, stop_all, Marked, Stopped, Targets};
use crate::state::{Phase, State};
use crate::statedir::{StateDir, StateRead};

/// What is known about the environment right now.
#[derive(Debug, Default)]
pub struct Observed {
    /// The supervisor's pid, if one holds the lock.
    pub supervisor: Option<u32>,
    /// The state, from the file or (when the file is unusable) the supervisor.
    pub state: Option<State>,
    /// Why the state file could not be used, if it could not.
    pub damaged: Option<String>,
    /// Processes of ours still running without a supervisor.
    pub orphans: Vec<Marked>,
}

/// What `down` did.
#[derive(Debug, Default)]
pub struct StopReport {
    pub lines: Vec<String>,
    /// Something survived SIGKILL.
    pub resisted: bool,
}

pub struct Environment {
    root: PathBuf,
    dir: Option<StateDir>,
}

impl Environment {
    /// Opens the environment of `root` (creates nothing). Fails only when
    /// `.devctl` is unsafe to use (a symlink, another user's, not a dir).
    pub fn open(root: &Path) -> Result<Environment, FsError> {
        Ok(Environment {
            root: root.to_path_buf(),
            dir: StateDir::open(root)?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self) -> Option<&StateDir> {
        self.dir.as_ref()
    }

    /// The running supervisor, as the holder of the lock.
    pub fn supervisor(&self) -> Option<u32> {
        self.dir.as_ref()?.lock_holder()
    }

    /// The services a supervisor of this repo runs now (their processes
    /// checked, not only the state file's word): what `validate.run` is told
    /// so a running environment's own ports are not "in use".
    pub fn running_services(&self) -> Vec<String> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        if dir.lock_holder().is_none() {
            return Vec::new();
        }
        dir.read_state().found().map_or_else(Vec::new, |state| {
            state
                .services
                .iter()
                .filter(|s| s.alive())
                .map(|s| s.name.clone())
                .collect()
        })
    }

    pub async fn observe(&self) -> Observed {
        let Some(dir) = &self.dir else {
            return Observed {
                orphans: marked_processes(&self.root),
                ..Observed::default()
            };
        };
        let supervisor = dir.lock_holder();
        let (mut state, damaged) = match dir.read_state() {
            StateRead::Found(state) => (Some(state), None),
            StateRead::Missing => (None, None),
            StateRead::Damaged(reason) => (None, Some(reason)),
        };
        if state.is_none() && supervisor.is_some() {
            // The supervisor knows; asking also makes it rewrite the file.
            if let Ok(reply) = control::send(dir, &Request::Status, Duration::from_secs(2)).await {
                state = reply.state;
            }
        }
        let orphans = if supervisor.is_none() {
            marked_processes(&self.root)
        } else {
            Vec::new()
        };
        Observed {
            supervisor,
            state,
            damaged,
            orphans,
        }
    }

    /// Asks the supervisor to restart `service` (and its dependents).
    pub async fn restart(&self, service: &str) -> Result<Reply, RestartError> {
        self.ask(&Request::Restart {
            service: service.to_owned(),
        })
        .await
    }

    /// Asks the supervisor to stop `service` (kill it at once with `kill`);
    /// it stays stopped until restarted.
    pub async fn stop_service(&self, service: &str, kill: bool) -> Result<Reply, RestartError> {
        self.ask(&Request::StopService {
            service: service.to_owned(),
            kill,
        })
        .await
    }

    async fn ask(&self, request: &Request) -> Result<Reply, RestartError> {
        let dir = self.dir.as_ref().ok_or(RestartError::NotRunning)?;
        if dir.lock_holder().is_none() {
            return Err(RestartError::NotRunning);
        }
        // The supervisor answers once the services are ready again (or
        // stopped), or have failed their own health timeouts; this only
        // guards against a hang.
        Ok(control::send(dir, request, Duration::from_secs(600)).await?)
    }

    /// `down`: asks the supervisor to stop everything; when it does not
    /// answer, stops it; then stops whatever of ours is still running.
    pub async fn stop(&self, grace: Duration) -> StopReport {
        let mut report = StopReport::default();
        let state = self.dir.as_ref().map(StateDir::read_state);
        let recorded = match &state {
            Some(StateRead::Found(state)) => Some(state.clone()),
            _ => None,
        };
        if let Some(StateRead::Damaged(reason)) = &state {
            report.lines.push(format!(
                "{reason}; looking for devctl's processes by their marks instead"
            ));
        }
        if let (Some(dir), Some(pid)) = (&self.dir, self.supervisor()) {
            let services = recorded.as_ref().map_or(10, |s| s.services.len().max(1));
            let limit = (grace + Duration::from_secs(2)) * u32::try_from(services).unwrap_or(10)
                + Duration::from_secs(5);
            stop_supervisor(dir, pid, limit, &mut report).await;
        } else if recorded.as_ref().is_some_and(|s| s.phase != Phase::Stopped) {
            report
                .lines
                .push("the supervisor is gone; stopping what it started".to_owned());
        }
        self.stop_leftovers(recorded.as_ref(), grace, &mut report)
            .await;
        if let Some(dir) = &self.dir {
            if let Some(mut state) = dir.read_state().found() {
                if state.phase != Phase::Stopped && dir.lock_holder().is_none() {
                    state.phase = Phase::Stopped;
                    let _ = dir.write_state(&state);
                }
            }
            if dir.lock_holder().is_none() {
                dir.remove_socket();
            }
        }
        report
    }

    /// Stops every process of ours left running (found by its marks), and
    /// the recorded groups whose leader is provably ours.
    pub async fn stop_leftovers(
        &self,
        recorded: Option<&State>,
        grace: Duration,
        report: &mut StopReport,
    ) {
        let marked = marked_processes(&self.root);
        let mut by_service: BTreeMap<String, (Targets, u32)> = BTreeMap::new();
        for process in &marked {
            let entry = by_service
                .entry(process.service.clone())
                .or_insert_with(|| (Targets::default(), process.process.pid));
            entry.0.processes.push(process.process);
        }
        for service in recorded.map(|s| s.services.as_slice()).unwrap_or_default() {
            let Some(leader) = service.process() else {
                continue;
            };
            if !is_alive(leader) {
                continue;
            }
            let ours = marked.iter().any(|m| m.process == leader);
            if !ours {
                report.lines.push(format!(
                    "pid {} (recorded for {}) does not carry devctl's mark; it was not signalled (check it with `ps -p {}`)",
                    leader.pid, service.name, leader.pid
                ));
                continue;
            }
            if let (Some(pgid), Some(entry)) = (service.pgid, by_service.get_mut(&service.name)) {
                if i64::from(pgid) == i64::from(leader.pid) {
                    entry.0.groups.push(pgid);
                    entry.1 = leader.pid;
                }
            }
        }
        let (names, sets): (Vec<(String, u32)>, Vec<Targets>) = by_service
            .into_iter()
            .map(|(name, (targets, pid))| ((name, pid), targets))
            .unzip();
        let mut lines = Vec::new();
        for ((name, pid), outcome) in names.into_iter().zip(stop_all(&sets, grace).await) {
            report.resisted |= outcome == Stopped::Resisted;
            let name = if name.is_empty() {
                "a service".to_owned()
            } else {
                name
            };
            lines.extend(describe_stop(&name, pid, outcome, grace));
        }
        lines.sort();
        report.lines.extend(lines);
    }
}

/// Asks the supervisor to stop; SIGTERM (then SIGKILL) when it does not
/// answer. It is signalled only as the holder of our lock.
async fn stop_supervisor(dir: &StateDir, pid: u32, limit: Duration, report: &mut StopReport) {
    match control::send(dir, &Request::Stop, limit).await {
        Ok(reply) => report.lines.extend(reply.lines),
        Err(err) => {
            report.lines.push(format!(
                "the supervisor (pid {pid}) did not answer ({err}); sent it SIGTERM"
            ));
            signal_holder(dir, pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
    if !wait_released(dir, pid, limit).await {
        report.lines.push(format!(
            "the supervisor (pid {pid}) did not exit; killed it"
        ));
        signal_holder(dir, pid, nix::sys::signal::Signal::SIGKILL);
        wait_released(dir, pid, Duration::from_secs(2)).await;
    }
}

fn signal_holder(dir: &StateDir, pid: u32, signal: nix::sys::signal::Signal) {
    if dir.lock_holder() == Some(pid) {
        if let Ok(raw) = i32::try_from(pid) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal);
        }
    }
}

/// Waits until `pid` no longer holds the lock (it exited).
async fn wait_released(dir: &StateDir, pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    while dir.lock_holder() == Some(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    true
}

#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("nothing is running here")]
    NotRunning,
    #[error(transparent)]
    Control(#[from] ControlError),
}
