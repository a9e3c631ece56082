//! Stopping a service's process group: SIGTERM, wait until the group has
//! no live member, SIGKILL after the grace, wait again. Used by the
//! supervisor and by `down` when the supervisor is gone.

use std::time::{Duration, Instant};

use devctl_sdk::host::group_members;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How a group ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing was running any more.
    AlreadyGone,
    /// It exited after SIGTERM.
    Terminated,
    /// It ignored SIGTERM for the whole grace and was killed.
    Killed,
    /// Something survived even SIGKILL (e.g. stuck in the kernel).
    Resisted,
}

pub async fn stop_group(pgid: i32, grace: Duration) -> Stopped {
    if group_members(pgid).is_empty() {
        return Stopped::AlreadyGone;
    }
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    if wait_empty(pgid, grace).await {
        return Stopped::Terminated;
    }
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    if wait_empty(pgid, Duration::from_secs(2)).await {
        Stopped::Killed
    } else {
        Stopped::Resisted
    }
}

/// Waits until no live process is in the group; false if `limit` passed.
pub async fn wait_empty(pgid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_micros(500);
    loop {
        if group_members(pgid).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// One line of a stop report, or nothing if there was nothing to stop.
pub fn describe_stop(name: &str, pid: u32, outcome: Stopped, grace: Duration) -> Option<String> {
    match outcome {
        Stopped::AlreadyGone => None,
        Stopped::Terminated => Some(format!("stopped {name} (pid {pid})")),
        Stopped::Killed => Some(format!(
            "{name} (pid {pid}) ignored SIGTERM for {} ms; killed",
            grace.as_millis()
        )),
        Stopped::Resisted => Some(format!("{name} (pid {pid}) RESISTED even SIGKILL")),
    }
}
