//! `devctl`: parse the command line, run one command, map the outcome to an
//! exit status. The commands live in `commands/`, the engine in the library.

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

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

/// Stdout was closed by its reader; not an error worth reporting.
#[derive(Debug, thiserror::Error)]
#[error("stdout is closed")]
pub struct StdoutClosed;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) if err.downcast_ref::<StdoutClosed>().is_some() => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(if commands::is_usage(&err) { 2 } else { 1 })
        }
    }
}
