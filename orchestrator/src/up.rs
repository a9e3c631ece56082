//! `devctl up`: starts the supervisor (`devctl __supervise`, in its own
//! session so a closed terminal does not stop it) and shows its progress.
//! With `-d` it returns once every service is ready; otherwise it shows the
//! services' output, prefixed per service, until Ctrl-C, then asks the
//! supervisor to stop everything. On failure it prints the reason and the
//! tail of the failing service's stderr, and nothing is left running.

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{Global, UpArgs};
use crate::control::{self, Request};
use crate::events::UpEvent;
use crate::logs::{follow, sources};
use crate::repository::Repository;
use crate::state::{tail_lines, Paths, State, Stream};

/// The arguments that re-create this `up` in the supervisor process.
fn supervisor_args(repo: &Repository, global: &Global, args: &UpArgs) -> Vec<String> {
    let mut out = vec!["--repo-root".to_owned(), repo.root.display().to_string()];
    out.extend([
        "--config".to_owned(),
        repo.config_path.display().to_string(),
    ]);
    out.extend([
        "--timeout".to_owned(),
        format!("{}ms", global.timeout.as_millis()),
    ]);
    if global.strict {
        out.push("--strict".into());
    }
    if global.dry_run {
        out.push("--dry-run".into());
    }
    out.push("__supervise".into());
    out.extend(args.to_flags());
    out
}

pub async fn up(repo: &Repository, global: &Global, args: &UpArgs) -> Result<u8> {
    let paths = Paths::new(&repo.root);
    if let Some(state) = State::read(&paths)? {
        if state.supervisor_alive() {
            if !args.force {
                anyhow::bail!(
                    "already up here (supervisor pid {}); see `devctl status`, stop it with `devctl down`, or restart everything with `devctl up --force`",
                    state.supervisor_pid
                );
            }
            crate::lifecycle::down(repo, args.grace).await?;
        }
    }
    std::fs::create_dir_all(&paths.dir)
        .with_context(|| format!("cannot create {}", paths.dir.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.supervisor_log())
        .with_context(|| format!("cannot open {}", paths.supervisor_log().display()))?;
    let exe = std::env::current_exe().context("cannot find the devctl executable")?;
    let mut command = std::process::Command::new(exe);
    command
        .args(supervisor_args(repo, global, args))
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
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let stdout = child
        .stdout
        .take()
        .context("the supervisor has no stdout pipe")?;
    let mut events = BufReader::new(stdout).lines();
    let progress = Progress::new();

    // Start-up: until ready or failed (or interrupted: then stop it all).
    let outcome = loop {
        let next = tokio::select! {
            next = events.next_line() => next,
            _ = interrupt.recv() => break Some(UpEvent::Stopped { lines: Vec::new() }),
            _ = terminate.recv() => break Some(UpEvent::Stopped { lines: Vec::new() }),
        };
        let line = match next {
            Ok(Some(line)) => line,
            _ => break None,
        };
        let Ok(event) = serde_json::from_str::<UpEvent>(&line) else {
            continue;
        };
        match &event {
            UpEvent::Ready { .. } | UpEvent::Failed { .. } => break Some(event),
            other => progress.show(other),
        }
    };
    match outcome {
        Some(UpEvent::Ready {
            services,
            elapsed_ms,
        }) => {
            progress.done(&format!("{services} service(s) ready in {elapsed_ms} ms"));
        }
        Some(UpEvent::Stopped { .. }) => {
            progress.line("interrupted; stopping…");
            // The supervisor stops what it started, whatever phase it is in.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(supervisor_pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ =
                tokio::time::timeout(args.grace * 2 + Duration::from_secs(10), child.wait()).await;
            return Ok(130);
        }
        Some(UpEvent::Failed {
            reason,
            service,
            exit,
            stderr_tail,
        }) => {
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
            let _ =
                tokio::time::timeout(args.grace * 2 + Duration::from_secs(10), child.wait()).await;
            return Ok(1);
        }
        _ => {
            progress.clear();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            eprintln!("error: the supervisor stopped unexpectedly; its log ends with:");
            for line in tail_lines(&paths.supervisor_log(), 10) {
                eprintln!("  {line}");
            }
            crate::lifecycle::down(repo, args.grace).await?;
            return Ok(1);
        }
    }
    if args.detach {
        outln!("running in the background (supervisor pid {supervisor_pid}): `devctl status`, `devctl logs -f`, `devctl down`");
        return Ok(0);
    }

    // Foreground: show the services' output until Ctrl-C or the end.
    let state = State::read(&paths)?;
    let logs = sources(
        &paths,
        state.as_ref(),
        &[],
        &[Stream::Stdout, Stream::Stderr],
    )?;
    let socket = paths.socket();
    let grace = args.grace;
    let watch_events = async move {
        while let Ok(Some(line)) = events.next_line().await {
            if let Ok(event) = serde_json::from_str::<UpEvent>(&line) {
                match event {
                    UpEvent::ServiceExited {
                        name,
                        exit,
                        restarting,
                    } => {
                        eprintln!(
                            "devctl: {name} exited with {exit}{}",
                            if restarting { "; restarting" } else { "" }
                        )
                    }
                    UpEvent::Stopped { lines } => {
                        lines.iter().for_each(|l| eprintln!("devctl: {l}"))
                    }
                    UpEvent::Replanned { line, .. } => eprintln!("devctl: {line}"),
                    UpEvent::Invalid {
                        code, message, fix, ..
                    } => eprintln!(
                        "devctl: invalid [{code}] {message}{}",
                        fix.map(|f| format!("\n  fix: {f}")).unwrap_or_default()
                    ),
                    UpEvent::ServiceReady { name, after_ms } => {
                        eprintln!("devctl: {name} ready after {after_ms} ms")
                    }
                    _ => {}
                }
            }
        }
    };
    let stop_on_signal = async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("\ndevctl: stopping…");
        if control::send(&socket, &Request::Stop, grace * 2 + Duration::from_secs(5))
            .await
            .is_err()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(supervisor_pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        std::future::pending::<()>().await
    };
    let ended = async {
        tokio::select! {
            _ = watch_events => {}
            _ = stop_on_signal => {}
        }
        let _ = child.wait().await;
    };
    follow(logs, true, ended).await;
    Ok(0)
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
            UpEvent::ServiceReady { name, after_ms } => {
                self.line(&format!("{name} ready after {after_ms} ms"))
            }
            UpEvent::ServiceExited { name, exit, .. } => {
                self.line(&format!("{name} exited with {exit}"))
            }
            UpEvent::Stopped { lines } => lines.iter().for_each(|l| self.line(l)),
            UpEvent::Replanned { line, .. } => self.line(line),
            UpEvent::Ready { .. } | UpEvent::Failed { .. } => {}
        }
    }
}
