//! `devctl-conformance`: run the suite against a plugin command.
//!
//! Thin: flags in, report out. Ctrl-C or SIGTERM stop the run: the plugin
//! (and everything it started) is stopped and the scratch copy removed
//! before the exit status 130 or 143.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use devctl_conformance::{
    listing, Baseline, Report, Suite, DEFAULT_OP_TIMEOUT, FAMILIES, OP_TIMEOUT_RANGE, SCALE_RANGE,
};
use devctl_contract::flags::{parse_duration, parse_scale};
use tokio::signal::unix::{signal, SignalKind};

const AFTER_HELP: &str = "\
Examples:
  devctl-conformance -- python3 plugin.py
  devctl-conformance --repo-root . --junit conformance.xml -- ./target/debug/my-plugin
  devctl-conformance --only handshake --skip robustness -- ./my-plugin
  devctl-conformance --list
  source <(devctl-conformance --completion bash)

The repo: the plugin always works on a scratch copy (your checkout is never
touched; .git, target, node_modules and .devctl are left out), and every
request carries ctx.dry_run: true and the copy as ctx.repo_root. Without
--repo-root the copy is an empty directory: checks whose answers need the
plugin's real repo are then reported as skipped (needs --repo-root).

Each family runs in a fresh plugin process. Check ids are `family.name`;
families: handshake, stdout, unknown-op, timeout, response, schema, dry-run,
determinism, repo-root, robustness, concurrency, streams, shutdown, commands.
--only/--skip take an id or a family and decide what runs and is reported.
`required` checks decide the verdict; `recommended` ones only advise
(--list says why each check has its severity).

Baseline file: one check id per line (# comments). Listed failures do not fail
the run; a listed check that passes does (remove it from the file).

Exit codes:
  0    every required check passed
  1    a required check failed (or the baseline is stale)
  2    usage error, or the plugin could not be started at all
  130  interrupted (SIGINT); 143: terminated (SIGTERM)";

#[derive(Debug, Parser)]
#[command(
    name = "devctl-conformance",
    version,
    about = "Check that a devctl protocol-v2 plugin behaves the way hosts rely on: handshake, clean stdout, E_UNSUPPORTED, answers in time and by id, contract shapes, honest dry runs, streams, clean shutdown.",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Output on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// The repo the plugin works on (a scratch copy is used; yours is never
    /// touched). Default: an empty scratch directory.
    #[arg(long, value_name = "DIR")]
    repo_root: Option<PathBuf>,
    /// Multiply every wait by F, from 0.1 to 100 (e.g. 3 on a slow CI
    /// machine). Below 1 it only shortens the suite's own waits; the
    /// protocol's limits (handshake 2 s, unknown op 500 ms) never tighten.
    #[arg(long, value_name = "F", default_value = "1", value_parser = scale, allow_hyphen_values = true)]
    timeout_scale: f64,
    /// How long a declared op may take to answer a minimal dry-run request
    /// [default: 5s], from 100ms to 30s (hosts allow 30s for real work).
    #[arg(long, value_name = "DURATION", value_parser = op_timeout, allow_hyphen_values = true)]
    op_timeout: Option<Duration>,
    /// Run and report only this check or family (repeatable).
    #[arg(long, value_name = "ID")]
    only: Vec<String>,
    /// Leave out this check or family (repeatable).
    #[arg(long, value_name = "ID")]
    skip: Vec<String>,
    /// Known failures, one check id per line.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Also run each plugin command once, with dry_run.
    #[arg(long)]
    probe_commands: bool,
    /// Print every check id with its severity and the reason for it, and exit.
    #[arg(long)]
    list: bool,
    /// Print the shell completion script and exit:
    /// `source <(devctl-conformance --completion bash)`.
    #[arg(long, value_name = "SHELL")]
    completion: Option<clap_complete::Shell>,
    /// The plugin command line, after `--`.
    #[arg(
        last = true,
        required_unless_present_any = ["list", "completion"],
        value_name = "PLUGIN_ARGV"
    )]
    plugin: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

fn scale(text: &str) -> Result<f64, String> {
    parse_scale(text, SCALE_RANGE).map_err(|err| err.to_string())
}

fn op_timeout(text: &str) -> Result<Duration, String> {
    parse_duration(text, OP_TIMEOUT_RANGE).map_err(|err| err.to_string())
}

/// How the run ended.
enum Outcome {
    Report(Box<Report>),
    Signal { name: &'static str, code: u8 },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(shell) = cli.completion {
        use clap::CommandFactory;
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "devctl-conformance",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    if cli.list {
        print!("{}", listing());
        return ExitCode::SUCCESS;
    }
    // This process runs one suite and starts nothing else: any child it
    // adopts is the plugin's.
    devctl_conformance::claim_adopted_children();
    let outcome = prepare(&cli).and_then(|suite| run(&suite));
    let report = match outcome {
        Ok(Outcome::Report(report)) => *report,
        Err(err) => {
            eprintln!("devctl-conformance: {err:#}");
            return ExitCode::from(2);
        }
        Ok(Outcome::Signal { name, code }) => {
            eprintln!(
                "devctl-conformance: {name}: the plugin was stopped and the scratch copy removed"
            );
            return ExitCode::from(code);
        }
    };
    match output(&cli, &report) {
        Ok(()) if report.summary.ok => ExitCode::SUCCESS,
        Ok(()) => ExitCode::from(1),
        Err(err) => {
            eprintln!("devctl-conformance: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn prepare(cli: &Cli) -> Result<Suite> {
    let baseline = match &cli.baseline {
        Some(path) => Baseline::parse(
            &std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the baseline {}", path.display()))?,
        ),
        None => Baseline::default(),
    };
    for id in &baseline.ids {
        let family = id.split('.').next().unwrap_or_default();
        if !FAMILIES.contains(&family) {
            anyhow::bail!(
                "the baseline lists `{id}`, which is not a check id (families: {}; see --list)",
                FAMILIES.join(", ")
            );
        }
    }
    let mut suite = Suite::command(cli.plugin.clone())
        .timeout_scale(cli.timeout_scale)
        .op_timeout(cli.op_timeout.unwrap_or(DEFAULT_OP_TIMEOUT))
        .probe_commands(cli.probe_commands)
        .baseline(baseline);
    if let Some(root) = &cli.repo_root {
        if !root.is_dir() {
            anyhow::bail!("--repo-root {} is not a directory", root.display());
        }
        suite = suite.repo_root(root);
    }
    for selector in &cli.only {
        suite = suite.only(selector);
    }
    for selector in &cli.skip {
        suite = suite.skip(selector);
    }
    Ok(suite)
}

/// Runs the suite until it ends or a signal arrives; on a signal the run is
/// dropped, which stops the plugin and removes the scratch copy.
fn run(suite: &Suite) -> Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        Ok(tokio::select! {
            report = suite.run_async() => Outcome::Report(Box::new(report?)),
            _ = interrupt.recv() => Outcome::Signal { name: "interrupted", code: 130 },
            _ = terminate.recv() => Outcome::Signal { name: "terminated", code: 143 },
        })
    })
}

fn output(cli: &Cli, report: &Report) -> Result<()> {
    if let Some(path) = &cli.junit {
        write_whole(path, report.junit().as_bytes())
            .with_context(|| format!("cannot write the JUnit report {}", path.display()))?;
    }
    let text = match cli.format {
        Format::Human => report.human(),
        Format::Json => serde_json::to_string_pretty(report)? + "\n",
    };
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (`| head`) is not an error worth a message.
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
    Ok(())
}

/// Writes through a temp file and a rename: never half a report.
fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    devctl_support::fs::write_atomically(path, bytes, 0o644).map_err(std::io::Error::other)
}
