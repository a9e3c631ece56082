//! `devctl up`: starts the supervisor (`devctl __supervise`, in its own
//! session so a closed terminal does not stop it) and shows its progress.
//! With `-d` it returns once every service is ready (and `state.json` says
//! so); otherwise it shows the services' output, prefixed per service, until
//! Ctrl-C (or SIGTERM, or the terminal closing), then has the supervisor
//! stop everything and exits 130 (143, 129). On failure it prints the reason
//! and the tail of the failing service's stderr, and nothing is left
//! running. With `--dry-run` it shows the plan and starts nothing.

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use devctl::control::{self, Request};
use devctl::environment::Environment;
use devctl::events::UpEvent;
use devctl::repository::Repository;
use devctl::statedir::StateDir;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::logs::follow_run;
use super::{devctl_for, Interrupts};
use crate::cli::{Global, PipelineFlags, PlanArgs, UpArgs};

/// The arguments that re-create this `up` in the supervisor process.
fn supervisor_args(repo: &Repository, pipeline: &PipelineFlags, args: &UpArgs) -> Vec<String> {
    let mut out = vec![
        "--repo-root".to_owned(),
        repo.root.display().to_string(),
        "--config".to_owned(),
        repo.config_path.display().to_string(),
        "--timeout".to_owned(),
        format!("{}ms", pipeline.timeout().as_millis()),
    ];
    if pipeline.strict {
        out.push("--strict".into());
    }
    out.push("__supervise".into());
    out.extend(args.to_flags());
    out
}

pub async fn run(global: &Global, pipeline: &PipelineFlags, args: &UpArgs) -> Result<u8> {
    let repo = super::open_with_plugins(global, pipeline)?;
    if pipeline.dry_run {
        let code = super::plan::run(&repo, &PlanArgs::default()).await?;
        eprintln!("--dry-run: nothing was started");
        return Ok(code);
    }
    let mut interrupts = Interrupts::listen().context("cannot listen for signals")?;
    let devctl = devctl_for(&repo.root);
    let environment = Environment::open(&repo.root)?;
    if let Some(pid) = environment.supervisor() {
        if !args.force {
            anyhow::bail!(
                "already up here (supervisor pid {pid}); see `{devctl} status`, stop it with `{devctl} down`, or restart everything with `{devctl} up --force`"
            );
        }
        for line in environment.stop(args.grace).await.lines {
            eprintln!("devctl: {line}");
        }
    }
    let dir = StateDir::create(&repo.root)?;
    let log_start = dir.supervisor_log_len();
    let run_started = std::time::SystemTime::now();
    let log = dir.supervisor_log()?;
    let exe = std::env::current_exe().context("cannot find the devctl executable")?;
    let mut command = std::process::Command::new(exe);
    command
        .args(supervisor_args(&repo, pipeline, args))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of ours.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(false)
        .spawn()
        .context("cannot start the supervisor")?;
    let supervisor_pid = child.id().unwrap_or(0);
    let stdout = child
        .stdout
        .take()
        .context("the supervisor has no stdout pipe")?;
    let mut events = BufReader::new(stdout).lines();
    let progress = Progress::new();
    // The supervisor's own stop can take a grace per dependency level.
    let patience = args.grace * 4 + Duration::from_secs(15);

    // Start-up: until ready or failed (or interrupted: then stop it all).
    let outcome = loop {
        let next = tokio::select! {
            next = events.next_line() => next,
            code = interrupts.next() => break Err(code),
        };
        let Ok(Some(line)) = next else {
            break Ok(None);
        };
        let Ok(event) = serde_json::from_str::<UpEvent>(&line) else {
            continue;
        };
        match &event {
            UpEvent::Ready { .. } | UpEvent::Failed { .. } => break Ok(Some(event)),
            other => progress.show(other),
        }
    };
    match outcome {
        Ok(Some(UpEvent::Ready {
            services,
            elapsed_ms,
        })) => {
            progress.done(&format!("{services} service(s) ready in {elapsed_ms} ms"));
        }
        Err(code) => {
            progress.line("interrupted; stopping…");
            // Our own child: signalling it is safe. It stops what it started.
            terminate(supervisor_pid);
            let _ = tokio::time::timeout(patience, child.wait()).await;
            return Ok(code);
        }
        Ok(Some(UpEvent::Failed {
            reason,
            service,
            exit,
            stderr_tail,
        })) => {
            progress.clear();
            eprintln!("error: {reason}");
            if let (Some(service), false) = (&service, stderr_tail.is_empty()) {
                eprintln!(
                    "--- last lines of {service}'s stderr{} ---",
                    exit.map(|e| format!(" ({e})")).unwrap_or_default()
                );
                for line in &stderr_tail {
                    eprintln!("{line}");
                }
            }
            // The supervisor stops what it started before it exits.
            let _ = tokio::time::timeout(patience, child.wait()).await;
            return Ok(1);
        }
        Ok(_) => {
            progress.clear();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            eprintln!("error: the supervisor stopped unexpectedly; its log says:");
            for line in new_log_lines(&dir, log_start) {
                eprintln!("  {line}");
            }
            environment.stop(args.grace).await;
            return Ok(1);
        }
    }
    if args.detach {
        outln!("running in the background (supervisor pid {supervisor_pid}): `{devctl} status`, `{devctl} logs -f`, `{devctl} down`");
        return Ok(0);
    }

    // Foreground: show the services' output until a signal or the end.
    let services: Vec<String> = dir
        .read_state()
        .found()
        .map(|s| s.services.iter().map(|s| s.name.clone()).collect())
        .unwrap_or_default();
    let socket_dir = StateDir::create(&repo.root)?;
    let watch_events = async move {
        while let Ok(Some(line)) = events.next_line().await {
            if let Ok(event) = serde_json::from_str::<UpEvent>(&line) {
                foreground_event(event);
            }
        }
    };
    let mut code = 0;
    let ended = async {
        tokio::select! {
            _ = watch_events => {}
            signal = interrupts.next() => {
                code = signal;
                eprintln!("\ndevctl: stopping…");
                if control::send(&socket_dir, &Request::Stop, patience).await.is_err() {
                    terminate(supervisor_pid);
                }
            }
        }
        let _ = tokio::time::timeout(patience, child.wait()).await;
    };
    follow_run(&repo.root, &services, run_started, ended).await;
    Ok(code)
}

/// ` at http://…` when a service's endpoint is known.
fn at(endpoint: &Option<String>) -> String {
    endpoint
        .as_deref()
        .map(|e| format!(" at {e}"))
        .unwrap_or_default()
}

fn terminate(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

/// What this run added to `.devctl/supervisor.log` (not older runs' lines).
fn new_log_lines(dir: &StateDir, start: u64) -> Vec<String> {
    let added = dir.supervisor_log_len().saturating_sub(start);
    let lines = dir.supervisor_log_tail(40);
    let mut kept = Vec::new();
    let mut bytes = 0u64;
    for line in lines.iter().rev() {
        bytes += line.len() as u64 + 1;
        if bytes > added {
            break;
        }
        kept.push(line.clone());
    }
    kept.reverse();
    kept
}

/// What the log stream does not already show: a service's start, ready,
/// exit and a re-plan are `*` records of the logs followed above.
fn foreground_event(event: UpEvent) {
    match event {
        UpEvent::Stopped { lines } => lines.iter().for_each(|l| eprintln!("devctl: {l}")),
        UpEvent::Invalid {
            code, message, fix, ..
        } => eprintln!(
            "devctl: invalid [{code}] {message}{}",
            fix.map(|f| format!("\n  fix: {f}")).unwrap_or_default()
        ),
        _ => {}
    }
}

/// Start-up progress: one updating line on a terminal, plain lines otherwise.
struct Progress {
    live: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            live: std::io::stderr().is_terminal(),
        }
    }

    fn status(&self, text: &str) {
        if self.live {
            eprint!("\r\x1b[2K{text}");
        } else {
            eprintln!("devctl: {text}");
        }
    }

    fn line(&self, text: &str) {
        self.clear();
        eprintln!("{}{text}", if self.live { "" } else { "devctl: " });
    }

    fn clear(&self) {
        if self.live {
            eprint!("\r\x1b[2K");
        }
    }

    fn done(&self, text: &str) {
        self.line(text);
    }

    fn show(&self, event: &UpEvent) {
        match event {
            UpEvent::Phase { name } => self.status(&format!("{name}…")),
            UpEvent::PluginOutput { plugin, line } => self.line(&format!("[{plugin}] {line}")),
            UpEvent::PluginMessage {
                plugin,
                level,
                text,
            } => self.line(&format!("[{plugin}] {level}: {text}")),
            UpEvent::Invalid {
                plugin,
                code,
                message,
                fix,
            } => {
                self.line(&format!("invalid [{code}] {message} ({plugin})"));
                if let Some(fix) = fix {
                    self.line(&format!("  fix: {fix}"));
                }
            }
            UpEvent::ServiceStarting { name, pid } => {
                self.status(&format!("starting {name} (pid {pid})…"))
            }
            UpEvent::ServiceReady {
                name,
                after_ms,
                endpoint,
            } => self.line(&format!("{name} ready after {after_ms} ms{}", at(endpoint))),
            UpEvent::ServiceExited { name, exit, .. } => {
                self.line(&format!("{name} exited with {exit}"))
            }
            UpEvent::Stopped { lines } => lines.iter().for_each(|l| self.line(l)),
            UpEvent::Replanned { line, .. } => self.line(line),
            UpEvent::Ready { .. }
            | UpEvent::Failed { .. }
            | UpEvent::Plugin { .. }
            | UpEvent::Step { .. } => {}
        }
    }
}
