//! `devctl-conformance`: run the suite against a plugin command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use devctl_conformance::{Baseline, Suite, FAMILIES};

const AFTER_HELP: &str = "\
Examples:
  devctl-conformance -- python3 plugin.py
  devctl-conformance --repo-root . --junit conformance.xml -- ./target/debug/my-plugin
  devctl-conformance --only handshake --only stdout -- ./my-plugin

Check ids are `family.name`; families: handshake, stdout, unknown-op, timeout,
response, schema, dry-run, determinism, repo-root, robustness, concurrency,
streams, shutdown, commands. --only/--skip take an id or a family.

Baseline file: one check id per line (# comments). Listed failures do not fail
the run; a listed check that passes does (remove it from the file).

Exit codes:
  0  every required check passed
  1  a required check failed (or the baseline is stale)
  2  usage error, or the plugin could not be started at all";

#[derive(Debug, Parser)]
#[command(
    name = "devctl-conformance",
    version,
    about = "Check that a devctl protocol-v2 plugin behaves: clean stdout, fast answers, E_UNSUPPORTED for unknown ops, honest dry runs, clean shutdown.",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Output on stdout.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// The repo the plugin works on (a scratch copy is used; yours is never touched).
    #[arg(long, value_name = "DIR")]
    repo_root: Option<PathBuf>,
    /// Multiply every deadline by F (e.g. 3 on a slow CI machine). Below 1 it
    /// only shortens waits for missing answers; the protocol's own limits
    /// (handshake 2 s, unknown op 500 ms) are never tightened.
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    timeout_scale: f64,
    /// Report only this check or family (repeatable).
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
    /// The plugin command line, after `--`.
    #[arg(last = true, required = true, value_name = "PLUGIN_ARGV")]
    plugin: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("devctl-conformance: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<bool> {
    if !(cli.timeout_scale.is_finite() && cli.timeout_scale > 0.0) {
        anyhow::bail!(
            "--timeout-scale must be a positive number, got {}",
            cli.timeout_scale
        );
    }
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
                "the baseline lists `{id}`, which is not a check id (families: {})",
                FAMILIES.join(", ")
            );
        }
    }
    let mut suite = Suite::command(cli.plugin.clone())
        .timeout_scale(cli.timeout_scale)
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
    let report = suite.run()?;
    if let Some(path) = &cli.junit {
        write_whole(path, report.junit().as_bytes())
            .with_context(|| format!("cannot write the JUnit report {}", path.display()))?;
    }
    let text = match cli.format {
        Format::Human => report.human(),
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    print!("{text}");
    Ok(report.summary.ok)
}

/// Writes through a temp file and a rename: never half a report.
fn write_whole(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}
