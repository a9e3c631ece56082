//! Nothing a service starts escapes `down`.
//!
//! The supervisor is a child subreaper (`PR_SET_CHILD_SUBREAPER`): a
//! service's descendant that leaves its process group (`setsid`, a double
//! fork) is re-parented to the supervisor instead of to init, so it stays
//! findable as a descendant (and, unless it cleared its environment, by its
//! marks) and is stopped with everything else. Such orphans become our
//! children, so the supervisor also reaps them when they exit; tokio reaps
//! only what it spawned, and those are told apart without a registry: every
//! process the supervisor spawns leads its own process group in the
//! supervisor's session, which an orphan that left its service's group never
//! does (it has its own session, or a group it does not lead).

use std::time::Duration;

use devctl_sdk::host::{descendants, ProcessId, ProcessTable};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{getsid, Pid};

/// Every live descendant of the supervisor.
pub fn all_descendants() -> Vec<ProcessId> {
    descendants(std::process::id())
}

/// Reaps exited orphans whenever a child exits; runs until dropped.
pub async fn reap_orphans() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut children) = signal(SignalKind::child()) else {
        return;
    };
    loop {
        // Also on a slow timer: a SIGCHLD may have been coalesced with one
        // tokio consumed for its own child.
        let _ = tokio::time::timeout(Duration::from_secs(5), children.recv()).await;
        reap_once();
    }
}

fn reap_once() {
    let Ok(table) = ProcessTable::read() else {
        return;
    };
    let my_session = getsid(None).ok().map(Pid::as_raw);
    for child in table.exited_children(std::process::id()) {
        let spawned_by_us =
            i64::from(child.group) == i64::from(child.pid) && Some(child.session) == my_session;
        if !spawned_by_us {
            let _ = waitpid(Pid::from_raw(child.pid as i32), Some(WaitPidFlag::WNOHANG));
        }
    }
}
