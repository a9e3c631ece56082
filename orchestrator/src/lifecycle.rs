//! The commands that act on a running environment without the plugins:
//! `down`, `status` and `restart`. They read `state.json` and talk to the
//! supervisor; when the supervisor is gone (say, killed with -9), `down`
//! stops the recorded process groups itself, never signalling a pid the
//! kernel has since given to another process.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use crate::control::{self, Request};
use crate::procs::{describe_stop, stop_group, Stopped};
use crate::repository::Repository;
use crate::state::{now_ms, Paths, Phase, State};

/// Stops every live service recorded in `state`, in parallel; returns one
/// line per service and whether anything resisted.
pub async fn stop_recorded(state: &State, grace: Duration) -> (Vec<String>, bool) {
    let mut stops = tokio::task::JoinSet::new();
    for service in state.live_services() {
        let Some(pgid) = service.pgid else { continue };
        let name = service.name.clone();
        let pid = service.pid.unwrap_or(0);
        stops.spawn(async move { (name, pid, stop_group(pgid, grace).await) });
    }
    let mut lines = Vec::new();
    let mut resisted = false;
    while let Some(Ok((name, pid, outcome))) = stops.join_next().await {
        resisted |= outcome == Stopped::Resisted;
        lines.extend(describe_stop(&name, pid, outcome, grace));
    }
    lines.sort();
    (lines, resisted)
}

/// `devctl down`: exit 0 when nothing is left running, 1 otherwise.
pub async fn down(repo: &Repository, grace: Duration) -> Result<u8> {
    let paths = Paths::new(&repo.root);
    let Some(mut state) = State::read(&paths)? else {
        outln!("nothing to stop (no .devctl/state.json)");
        return Ok(0);
    };
    let mut lines = Vec::new();
    if state.supervisor_alive() {
        // The supervisor stops its services itself (dependents first).
        let wait = grace * 2 + Duration::from_secs(5);
        match control::send(&state.socket, &Request::Stop, wait).await {
            Ok(reply) => lines.extend(reply.lines),
            Err(err) => {
                eprintln!("warning: the supervisor did not answer ({err:#}); sending it SIGTERM");
                if let Some(pid) = state.supervisor() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid.pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
        }
        let deadline = Instant::now() + grace * 2 + Duration::from_secs(5);
        while state.supervisor_alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Some(fresh) = State::read(&paths)? {
            state = fresh;
        }
    } else if state.phase != Phase::Stopped {
        lines.push(format!(
            "the supervisor (pid {}) is gone; stopping what it recorded",
            state.supervisor_pid
        ));
    }
    // Whatever is still alive (supervisor dead, or it failed to stop it).
    let (more, resisted) = stop_recorded(&state, grace).await;
    lines.extend(more);
    state.phase = Phase::Stopped;
    let _ = state.write(&paths);
    let _ = std::fs::remove_file(&state.socket);
    if lines.is_empty() {
        outln!("nothing was running");
    }
    for line in &lines {
        outln!("{line}");
    }
    Ok(if resisted { 1 } else { 0 })
}

/// `devctl status`: never starts a plugin.
pub fn status(repo: &Repository, json_out: bool) -> Result<u8> {
    let paths = Paths::new(&repo.root);
    let Some(state) = State::read(&paths)? else {
        if json_out {
            outln!("{}", json!({"running": false, "services": []}));
        } else {
            outln!(
                "nothing is running in {} (no .devctl/state.json)",
                repo.root.display()
            );
        }
        return Ok(0);
    };
    let now = now_ms();
    let supervisor_alive = state.supervisor_alive();
    let services: Vec<serde_json::Value> = state
        .services
        .iter()
        .map(|s| {
            let alive = s.alive();
            json!({
                "name": s.name,
                "status": s.status,
                "alive": alive,
                "ready": alive && s.status == crate::state::ServiceStatus::Ready,
                "pid": s.pid,
                "uptime_ms": if alive { s.started_at_ms.map(|at| now.saturating_sub(at)) } else { None },
                "restarts": s.restarts,
                "exit": s.exit,
                "stdout_log": s.stdout_log,
                "stderr_log": s.stderr_log,
            })
        })
        .collect();
    if json_out {
        let doc = json!({
            "running": supervisor_alive,
            "phase": state.phase,
            "supervisor_pid": state.supervisor_pid,
            "generation": state.generation,
            "error": state.error,
            "services": services,
        });
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    outln!(
        "supervisor pid {} ({}), phase {:?}, plan generation {}",
        state.supervisor_pid,
        if supervisor_alive { "running" } else { "gone" },
        state.phase,
        state.generation
    );
    if let Some(error) = &state.error {
        outln!("last error: {error}");
    }
    for s in &services {
        let uptime = s["uptime_ms"]
            .as_u64()
            .map(|ms| format!("up {}", human_duration(ms)))
            .unwrap_or_else(|| "down".into());
        let exit = s["exit"]
            .as_object()
            .map(|_| format!(", last exit {}", s["exit"]))
            .unwrap_or_default();
        outln!(
            "{:<12} {:<10} pid {:<8} {uptime}, {} restart(s){exit}\n             logs: {}",
            s["name"].as_str().unwrap_or(""),
            s["status"].as_str().unwrap_or(""),
            s["pid"]
                .as_u64()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            s["restarts"],
            s["stdout_log"].as_str().unwrap_or("")
        );
    }
    Ok(0)
}

/// `devctl restart SVC`: the supervisor restarts it and its dependents.
pub async fn restart(repo: &Repository, service: &str) -> Result<u8> {
    let paths = Paths::new(&repo.root);
    let state = State::read(&paths)?
        .filter(State::supervisor_alive)
        .ok_or_else(|| anyhow::anyhow!("nothing is running here; start it with `devctl up -d`"))?;
    let wait = repo.timeout + Duration::from_secs(30);
    let reply = control::send(
        &state.socket,
        &Request::Restart {
            service: service.to_owned(),
        },
        wait,
    )
    .await?;
    for line in &reply.lines {
        outln!("{line}");
    }
    Ok(if reply.ok { 0 } else { 1 })
}

fn human_duration(ms: u64) -> String {
    match ms / 1000 {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// `devctl plugins enable|disable ID`: records the choice in the local
/// overlay; a running `up --watch` applies it at once.
pub fn set_enabled(repo: &Repository, id: &str, enabled: bool) -> Result<u8> {
    if !repo.config.plugins.iter().any(|p| p.id == id) {
        let known: Vec<&str> = repo.config.plugins.iter().map(|p| p.id.as_str()).collect();
        anyhow::bail!("no plugin {id:?} (plugins: {})", known.join(", "));
    }
    let mut overlay = crate::config::Overlay::load(&repo.root)?;
    overlay.enabled.insert(id.to_owned(), enabled);
    let path = crate::config::Overlay::path(&repo.root);
    crate::state::write_atomically(&path, overlay.render().as_bytes())
        .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", path.display()))?;
    let watching =
        State::read(&Paths::new(&repo.root))?.is_some_and(|s| s.supervisor_alive() && s.watching);
    outln!(
        "{} {id} (recorded in {}){}",
        if enabled { "enabled" } else { "disabled" },
        repo.relative(&path),
        if watching {
            "; the running `up --watch` applies it now"
        } else {
            "; it applies to the next `devctl up`"
        }
    );
    Ok(0)
}
