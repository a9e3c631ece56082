//! One file a command. Each opens only what it needs: `status`, `logs`,
//! `down` and `restart` find the repo root and read `.devctl/` through the
//! engine's [`devctl::environment`]; they never parse `.devctl.yaml` or start
//! a plugin, so a running environment can be inspected and stopped while the
//! config is broken or a plugin is missing.

mod completion;
mod down;
mod export;
mod help;
mod logs;
mod plan;
mod plugin_command;
mod plugins;
mod restart;
mod status;
mod stream;
mod supervise;
mod tui;
mod up;

use std::path::PathBuf;

use devctl::repository::{locate_root, RepoError, Repository, Settings, CONFIG_FILE};

use crate::cli::{Cli, Command, Global, PipelineFlags, PluginsCommand};

/// A mistake in how devctl was called (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Whether an error is the caller's (exit 2) rather than a failure (exit 1).
pub fn is_usage(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Usage>().is_some()
        || err
            .downcast_ref::<RepoError>()
            .is_some_and(RepoError::is_usage)
        || err.downcast_ref::<devctl::config::ConfigError>().is_some()
}

pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let global = cli.global;
    let outer = cli.pipeline;
    match cli.command {
        // These stop what they started on SIGINT/SIGTERM themselves, in order.
        Command::Up(args) => up::run(&global, &args.pipeline.or(&outer), &args).await,
        Command::Supervise(args) => supervise::run(&global, &args.pipeline.or(&outer), &args).await,
        Command::Stream(args) => {
            let repo = open_with_plugins(&global, &args.pipeline.or(&outer))?;
            stream::run(&repo, &args).await
        }
        Command::Logs(args) => logs::run(&root(&global)?, &args).await,
        Command::Tui { grace } => tui::run(&global, &outer, grace).await,
        // The rest are cut short by a signal (dropping them stops their plugins).
        Command::Down { grace } => interruptible(down::run(&root(&global)?, grace)).await,
        Command::Status(args) => interruptible(status::run(&root(&global)?, &args)).await,
        Command::Restart { service } => {
            interruptible(restart::run(&root(&global)?, &service)).await
        }
        Command::Plan(args) => {
            let repo = open_with_plugins(&global, &args.pipeline.or(&outer))?;
            interruptible(plan::run(&repo, &args)).await
        }
        Command::Export(args) => {
            let repo = open_with_plugins(&global, &args.pipeline.or(&outer))?;
            interruptible(export::run(&repo, &args)).await
        }
        Command::Plugins(PluginsCommand::List {
            json,
            format,
            pipeline,
        }) => {
            let repo = open(&global, &pipeline.or(&outer))?;
            interruptible(plugins::list(&repo, json, format)).await
        }
        Command::Plugins(PluginsCommand::Disable { id }) => {
            plugins::set_enabled(&open(&global, &outer)?, &id, false)
        }
        Command::Plugins(PluginsCommand::Enable { id }) => {
            plugins::set_enabled(&open(&global, &outer)?, &id, true)
        }
        Command::Plugins(PluginsCommand::Check { id, timeout_scale }) => {
            let repo = open(&global, &outer)?;
            interruptible(plugins::check(&repo, id.as_deref(), timeout_scale)).await
        }
        Command::Commands { json, pipeline } => {
            let repo = open(&global, &pipeline.or(&outer))?;
            interruptible(plugin_command::list(&repo, json)).await
        }
        Command::Completion { shell } => completion::run(&global, &outer, shell).await,
        Command::Help { command } => interruptible(help::run(&global, &outer, command)).await,
        Command::External(words) => {
            let call = plugin_command::Call::parse(&words, global, outer)?;
            if call.wants_help {
                return interruptible(help::run(
                    &call.global,
                    &call.pipeline,
                    Some(call.name.clone()),
                ))
                .await;
            }
            let repo = open(&call.global, &call.pipeline)?;
            interruptible(plugin_command::run(repo, &call.name, &call.argv)).await
        }
    }
}

/// The settings that shape a [`Repository`].
pub fn settings(global: &Global, pipeline: &PipelineFlags) -> Settings {
    Settings {
        repo_root: global.repo_root.clone(),
        config: global.config.clone(),
        strict: pipeline.strict,
        dry_run: pipeline.dry_run,
        timeout: pipeline.timeout(),
    }
}

/// The repo with its config loaded (plugins resolved, nothing started).
pub fn open(global: &Global, pipeline: &PipelineFlags) -> anyhow::Result<Repository> {
    let repo = Repository::open(&settings(global, pipeline))?;
    for warning in &repo.config.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(repo)
}

/// [`open`], for the commands that are pointless without plugins: no
/// `.devctl.yaml` and no `plugins/devctl-*` is a usage error, before
/// anything is created.
pub fn open_with_plugins(global: &Global, pipeline: &PipelineFlags) -> anyhow::Result<Repository> {
    let repo = open(global, pipeline)?;
    if !repo.config.found && repo.config.plugins.is_empty() {
        return Err(Usage(format!(
            "no {CONFIG_FILE} in {} (and no plugins/devctl-* executables): there is nothing to run\n  fix: run devctl in your repo, pass --repo-root DIR, or create {CONFIG_FILE} (see `devctl --help`)",
            repo.root.display()
        ))
        .into());
    }
    Ok(repo)
}

/// Only the repo root (no config read).
pub fn root(global: &Global) -> anyhow::Result<PathBuf> {
    Ok(locate_root(global.repo_root.as_deref())?)
}

/// How to call devctl for this repo from the current directory: with
/// `--repo-root` when the cwd would not find it by itself.
pub fn devctl_for(root: &std::path::Path) -> String {
    match locate_root(None) {
        Ok(found) if found == root => "devctl".to_owned(),
        _ => format!(
            "devctl --repo-root {}",
            devctl::render::shell_word(&root.display().to_string())
        ),
    }
}

/// Runs `work` until it ends or the user interrupts (SIGINT/SIGTERM/SIGHUP).
/// On an interrupt the work is dropped, which kills every plugin group it
/// started, and the exit status says which signal it was.
async fn interruptible(
    work: impl std::future::Future<Output = anyhow::Result<u8>>,
) -> anyhow::Result<u8> {
    let Ok(mut signals) = Interrupts::listen() else {
        return work.await;
    };
    tokio::select! {
        result = work => result,
        code = signals.next() => Ok(code),
    }
}

/// SIGINT, SIGTERM and SIGHUP, as the exit status each one means
/// (128 + the signal number).
pub struct Interrupts {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Interrupts {
    pub fn listen() -> std::io::Result<Interrupts> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Interrupts {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolves at the next one, with its exit status (130, 143, 129).
    pub async fn next(&mut self) -> u8 {
        tokio::select! {
            _ = self.interrupt.recv() => 130,
            _ = self.terminate.recv() => 143,
            _ = self.hangup.recv() => 129,
        }
    }
}
