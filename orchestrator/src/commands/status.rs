//! `devctl status [--json]`: what is running, never starting a plugin.

use std::path::{Path, PathBuf};

use devctl_support::fs::PrivateDir;

use devctl::environment::{Environment, Observed};
use devctl::render::printable;
use devctl::state::{human_ms, now_ms, ServiceState, ServiceStatus};
use serde_json::{json, Value};

use crate::cli::{Format, StatusArgs};

/// `.devctl/logs/`: shown by its path, read through its open handle (never
/// through a link put in its place).
struct LogDir {
    shown: PathBuf,
    open: Option<PrivateDir>,
}

impl LogDir {
    fn file(&self, service: &str) -> PathBuf {
        self.shown.join(devctl::logs::log_file(service))
    }
}

/// The last `n` lines a service wrote to stderr.
fn stderr_tail(logs: &LogDir, service: &str, n: usize) -> Vec<String> {
    let Some(dir) = &logs.open else {
        return Vec::new();
    };
    devctl::logs::read::last_lines(&dir.handle(), service, devctl::logs::Stream::Stderr, n)
}

/// The Go devctl's `status` document: `{exists, services: [{name, pid,
/// alive, stdout_log, stderr_log, exit?}]}` (both streams are in one log
/// here, so both keys name it).
fn as_go_json(observed: &Observed, logs: &LogDir, tail_lines: usize) -> Value {
    let Some(state) = &observed.state else {
        return json!({"exists": false, "services": []});
    };
    let services: Vec<Value> = state
        .services
        .iter()
        .map(|s| {
            let alive = s.alive();
            let mut row = json!({
                "name": s.name,
                "pid": s.pid.unwrap_or(0),
                "alive": alive,
                "stdout_log": logs.file(&s.name),
                "stderr_log": logs.file(&s.name),
            });
            if let (false, Some(exit)) = (alive, s.exit) {
                row["exit"] = json!({
                    "service": s.name,
                    "pid": s.pid.unwrap_or(0),
                    "exit_code": exit.code,
                    "signal": exit.signal,
                    "stderr_tail": stderr_tail(logs, &s.name, tail_lines),
                });
            }
            row
        })
        .collect();
    json!({"exists": true, "services": services})
}

pub async fn run(root: &Path, args: &StatusArgs) -> anyhow::Result<u8> {
    let environment = Environment::open(root)?;
    let observed = environment.observe().await;
    let logs = LogDir {
        shown: root.join(".devctl/logs"),
        open: super::logs::open_logs(&environment).ok().flatten(),
    };
    match args.format() {
        Format::Json => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&as_json(&observed, &logs))?
            );
            return Ok(0);
        }
        Format::Go => {
            let doc = as_go_json(&observed, &logs, args.tail_lines);
            outln!("{}", serde_json::to_string_pretty(&doc)?);
            return Ok(0);
        }
        Format::Text => {}
    }
    // What the state file says is shown as text that cannot drive the
    // terminal: the file may be forged.
    let shown = |text: &str| printable(text.as_bytes());
    if let Some(reason) = &observed.damaged {
        eprintln!("warning: {}", shown(reason));
    }
    let Some(state) = &observed.state else {
        if let Some(pid) = observed.supervisor {
            outln!("supervisor pid {pid} is running, but its state is unknown (it did not answer)");
        } else if observed.orphans.is_empty() {
            outln!("nothing is running in {}", root.display());
        }
        show_orphans(&observed, root)?;
        return Ok(0);
    };
    outln!(
        "supervisor pid {} ({}), {}, plan generation {}",
        state.supervisor_pid,
        if observed.supervisor.is_some() {
            "running"
        } else {
            "gone"
        },
        state.phase_name(),
        state.generation
    );
    if let Some(error) = &state.error {
        outln!("last error: {}", shown(error));
    }
    if let Some(line) = &state.last_rebuild {
        outln!("last re-plan: {}", shown(line));
    }
    let now = now_ms();
    for service in &state.services {
        outln!(
            "{}",
            service_line(service, now, observed.supervisor.is_some())
        );
        let mut details = Vec::new();
        if let Some(endpoint) = &service.endpoint {
            details.push(shown(endpoint));
        }
        details.push(format!("logs {}", logs.file(&service.name).display()));
        outln!("    {}", details.join("  "));
        if !service.alive() && service.exit.is_some() {
            for line in stderr_tail(&logs, &service.name, args.tail_lines) {
                outln!("    | {}", shown(&line));
            }
        }
    }
    show_orphans(&observed, root)?;
    Ok(0)
}

fn show_orphans(observed: &Observed, root: &Path) -> anyhow::Result<()> {
    if observed.orphans.is_empty() {
        return Ok(());
    }
    outln!(
        "still running without a supervisor (stop them with `{} down`):",
        super::devctl_for(root)
    );
    for orphan in &observed.orphans {
        outln!(
            "  {} pid {}: {}",
            orphan.service,
            orphan.process.pid,
            orphan.command
        );
    }
    Ok(())
}

fn service_line(service: &ServiceState, now: u64, supervised: bool) -> String {
    let alive = service.alive();
    let status = service.shown_status(now, alive, supervised);
    let uptime = match service.uptime_ms(now, alive) {
        Some(ms) => format!("up {}", human_ms(ms)),
        None => "down".to_owned(),
    };
    let exit = service
        .exit
        .map(|e| format!(", last exit: {e}"))
        .unwrap_or_default();
    format!(
        "{:<14} {:<22} pid {:<8} {uptime}, {} restart(s){exit}",
        service.name,
        status,
        service.pid.map_or("-".to_owned(), |p| p.to_string()),
        service.restarts,
    )
}

fn as_json(observed: &Observed, logs: &LogDir) -> Value {
    let now = now_ms();
    let services: Vec<Value> = observed
        .state
        .iter()
        .flat_map(|s| &s.services)
        .map(|s| {
            let alive = s.alive();
            json!({
                "name": s.name,
                "status": s.status,
                "alive": alive,
                "ready": alive && s.status == ServiceStatus::Ready,
                "pid": s.pid,
                "uptime_ms": if alive { s.started_at_ms.map(|at| now.saturating_sub(at)) } else { None },
                "restarts": s.restarts,
                "next_restart_in_ms": s.next_restart_at_ms.map(|at| at.saturating_sub(now)),
                "exit": s.exit,
                "endpoint": s.endpoint,
                "log": logs.file(&s.name),
            })
        })
        .collect();
    let state = observed.state.as_ref();
    json!({
        "running": observed.supervisor.is_some(),
        "phase": state.map(|s| s.phase),
        "supervisor_pid": observed.supervisor.or(state.map(|s| s.supervisor_pid)),
        "generation": state.map(|s| s.generation),
        "error": state.and_then(|s| s.error.clone()),
        "last_rebuild": state.and_then(|s| s.last_rebuild.clone()),
        "state_damaged": observed.damaged,
        "unsupervised": observed.orphans.iter().map(|o| json!({
            "service": o.service, "pid": o.process.pid, "command": o.command,
        })).collect::<Vec<_>>(),
        "services": services,
    })
}
