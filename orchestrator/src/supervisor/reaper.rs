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

use devctl_sdk::host::{descendants, ProcessId};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{getsid, Pid};

/// Makes this process the subreaper of its descendants.
pub fn become_subreaper() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
}

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
    let me = std::process::id();
    let my_session = getsid(None).ok();
    for (pid, stat) in zombie_children(me) {
        let own_group = i64::from(stat.pgrp) == i64::from(pid);
        let same_session = Some(Pid::from_raw(stat.session)) == my_session;
        if !(own_group && same_session) {
            let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
        }
    }
}

struct Stat {
    pgrp: i32,
    session: i32,
}

/// Our children that are zombies, with their group and session.
fn zombie_children(me: u32) -> Vec<(u32, Stat)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
            let state = fields.first()?.chars().next()?;
            let ppid: u32 = fields.get(1)?.parse().ok()?;
            (state == 'Z' && ppid == me).then_some(())?;
            Some((
                pid,
                Stat {
                    pgrp: fields.get(2)?.parse().ok()?,
                    session: fields.get(3)?.parse().ok()?,
                },
            ))
        })
        .collect()
}
