//! `devctl`: parse flags, open the repository once, dispatch.

/// Prints to stdout; when stdout has been closed (`devctl status | head`)
/// the command returns [`StdoutClosed`] and devctl ends quietly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if write!(stdout, $($arg)*).and_then(|()| stdout.flush()).is_err() {
            return Err(anyhow::Error::new($crate::StdoutClosed));
        }
    }};
}

macro_rules! outln {
    ($($arg:tt)*) => {{
        out!("{}\n", format_args!($($arg)*))
    }};
}

/// Stdout was closed by its reader; not an error worth reporting.
#[derive(Debug, thiserror::Error)]
#[error("stdout is closed")]
pub struct StdoutClosed;

mod builtins;
mod cli;
mod commands;
mod config;
mod control;
mod events;
mod health;
mod lifecycle;
mod logs;
mod pipeline;
mod procs;
mod render;
mod repository;
mod state;
mod supervisor;
mod transform;
mod up;
mod watch;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, PluginsCommand};
use repository::{Repository, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    // These commands stop what they started on SIGINT/SIGTERM themselves,
    // in order; the blanket handler would cut that short.
    let handles_signals = matches!(
        cli.command,
        Command::Up(_) | Command::Supervise(_) | Command::Stream(_) | Command::Logs { .. }
    );
    let result = if handles_signals {
        runtime.block_on(run(cli))
    } else {
        runtime.block_on(interruptible(run(cli)))
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) if err.downcast_ref::<StdoutClosed>().is_some() => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            let usage = err.downcast_ref::<config::ConfigError>().is_some()
                || err.to_string().starts_with("unknown command");
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// Runs `work` until it ends or the user interrupts (SIGINT/SIGTERM). On an
/// interrupt the work is dropped, which kills every plugin group it started,
/// and the exit status says which signal it was.
async fn interruptible(
    work: impl std::future::Future<Output = anyhow::Result<u8>>,
) -> anyhow::Result<u8> {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return work.await;
    };
    tokio::select! {
        result = work => result,
        _ = interrupt.recv() => Ok(130),
        _ = terminate.recv() => Ok(143),
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let global = cli.global.clone();
    let settings = Settings {
        repo_root: cli.global.repo_root,
        config: cli.global.config,
        strict: cli.global.strict,
        dry_run: cli.global.dry_run,
        timeout: cli.global.timeout,
    };
    let settings_again = settings.clone();
    let repo = Repository::open(&settings)?;
    for warning in &repo.config.warnings {
        eprintln!("warning: {warning}");
    }
    let ok = |passed: bool| if passed { 0 } else { 1 };
    Ok(match cli.command {
        Command::Up(args) => up::up(&repo, &global, &args).await?,
        Command::Supervise(args) => {
            let options = supervisor::SupervisorOptions {
                pipeline: args.pipeline(),
                force: args.force,
                grace: args.grace,
                watch: args.watch,
                settings: settings_again,
            };
            supervisor::run(repo, options).await
        }
        Command::Down { grace } => lifecycle::down(&repo, grace).await?,
        Command::Logs {
            services,
            follow,
            tail,
            stderr,
        } => logs::logs(&repo, &services, follow, tail, stderr).await?,
        Command::Restart { service } => lifecycle::restart(&repo, &service).await?,
        Command::Plan(args) => ok(builtins::plan(&repo, &args).await?),
        Command::Plugins(PluginsCommand::List { json }) => {
            builtins::plugins_list(&repo, json).await?;
            0
        }
        Command::Plugins(PluginsCommand::Disable { id }) => {
            lifecycle::set_enabled(&repo, &id, false)?
        }
        Command::Plugins(PluginsCommand::Enable { id }) => {
            lifecycle::set_enabled(&repo, &id, true)?
        }
        Command::Plugins(PluginsCommand::Check { id, timeout_scale }) => ok(
            builtins::plugins_check(&repo, id.as_deref(), timeout_scale)?,
        ),
        Command::Commands { json } => {
            commands::list(&repo, json).await?;
            0
        }
        Command::Stream(args) => u8::try_from(builtins::stream(&repo, &args).await?).unwrap_or(1),
        Command::Status { json } => lifecycle::status(&repo, json)?,
        Command::External(words) => {
            let Some((name, argv)) = words.split_first() else {
                anyhow::bail!("unknown command ``");
            };
            match commands::run(&repo, name, argv).await? {
                Some(code) => u8::try_from(code.clamp(0, 255)).unwrap_or(1),
                None => 2,
            }
        }
    })
}
