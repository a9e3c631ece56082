//! Command-line surface of `devctl`. Parsing only.
//!
//! The Go devctl's command forms are accepted as aliases (`logs --service`,
//! `stream start`, `status --tail-lines`, flags after a plugin command's
//! name); see the README's "Coming from the Go devctl".

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use devctl_contract::flags::{self, DurationRange, ScaleRange};
use devctl_contract::limits;

pub const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    the pipeline failed (an op error, a failed step, an invalid plan, a strict
       collision), a service failed to start, `down` found a process that survived
       SIGKILL, or `restart` failed
  2    usage error (bad flags, unknown command), bad or missing .devctl.yaml
  N    a plugin command's own exit code
  129  SIGHUP, 130 SIGINT (Ctrl-C), 143 SIGTERM (a foreground `up` stops everything first)";

#[derive(Debug, Parser)]
#[command(
    name = "devctl",
    version,
    about = "Run a repo's dev environment from protocol-v2 plugins.",
    long_about = "Run a repo's dev environment from protocol-v2 plugins listed in .devctl.yaml \
(and plugins/devctl-<id> executables). Besides the built-in commands below, every command a \
plugin declares in its handshake is available as `devctl <command> [args…]`; `devctl commands` \
lists them and `devctl help <command>` shows one's help.",
    after_help = EXIT_CODES,
    allow_external_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(flatten)]
    pub pipeline: PipelineFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the repo is: every command takes these.
#[derive(Debug, Args, Clone, Default)]
pub struct Global {
    /// Repo root (default: the nearest ancestor with a .devctl.yaml, else the cwd).
    #[arg(long, global = true, value_name = "DIR")]
    pub repo_root: Option<PathBuf>,
    /// Config file (default: <root>/.devctl.yaml; a relative path is under the repo root).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// How plugins are called: taken by the commands that start plugins
/// (before or after the command's name).
#[derive(Debug, Args, Clone, Default)]
pub struct PipelineFlags {
    /// Treat step and service name collisions between plugins as errors.
    #[arg(long)]
    pub strict: bool,
    /// Send dry_run to every plugin: nothing may be changed.
    #[arg(long)]
    pub dry_run: bool,
    /// Timeout of each plugin call: 30s, 500ms, 2m, or seconds [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

impl PipelineFlags {
    /// These flags, given either before or after the command's name.
    pub fn or(&self, outer: &PipelineFlags) -> PipelineFlags {
        PipelineFlags {
            strict: self.strict || outer.strict,
            dry_run: self.dry_run || outer.dry_run,
            timeout: self.timeout.or(outer.timeout),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(limits::DEFAULT_OP_TIMEOUT)
    }
}

/// Output formats of the commands that print a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Readable text.
    #[default]
    Text,
    /// This devctl's JSON.
    Json,
    /// The JSON the Go devctl prints (same keys and nesting).
    Go,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline, then start and supervise the services.
    Up(UpArgs),
    /// Stop everything `up` started.
    Down {
        /// How long each service gets between SIGTERM and SIGKILL when devctl
        /// has to stop it itself (the supervisor uses its own `up --grace`).
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
        grace: Duration,
    },
    /// Show the services' logs, merged with prefixes.
    Logs(LogsArgs),
    /// A live dashboard: services, their logs, restart/stop/kill, up/down.
    #[command(
        long_about = "A live dashboard in the terminal: every service with its state, pid, \
uptime, restarts, last exit and URL; a service's merged logs (followed, filtered); devctl's \
lifecycle events. Keys: tab next view, j/k select, enter open, r restart, s stop, x kill \
(each asks y/n), u up, d down, f follow, / filter, ctrl+l clear, esc back, ? help, \
q or ctrl+c quit. Quitting leaves the environment running."
    )]
    Tui {
        /// How long each service gets between SIGTERM and SIGKILL on `d`
        /// when devctl has to stop it itself.
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
        grace: Duration,
    },
    /// Restart one service and whatever depends on it, leaving the others alone.
    Restart {
        /// The service (see `devctl status`).
        service: String,
    },
    /// (internal) The background supervisor `up` starts.
    #[command(name = "__supervise", hide = true)]
    Supervise(UpArgs),
    /// Run the pipeline without side effects and show the resulting plan.
    Plan(PlanArgs),
    /// Write the plan for the engine a team moves to: a Compose file,
    /// Kubernetes manifests or a Procfile.
    Export(ExportArgs),
    /// Inspect and check the configured plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// List the commands plugins provide.
    Commands {
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        pipeline: PipelineFlags,
    },
    /// Start a stream op and print its events until it ends (Ctrl-C stops it).
    Stream(StreamArgs),
    /// Show what is running (never starts a plugin).
    Status(StatusArgs),
    /// Print the shell completion script (plugin commands included when the
    /// plugins answer): `source <(devctl completion bash)`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Show the help of a built-in or plugin command.
    Help {
        /// The command (none: devctl's own help).
        command: Option<String>,
    },
    /// A command provided by a plugin.
    #[command(external_subcommand)]
    External(Vec<String>),
}

#[derive(Debug, Args, Clone)]
pub struct UpArgs {
    /// Return once every service is ready; the supervisor keeps running.
    #[arg(short, long)]
    pub detach: bool,
    /// Do not run build.run.
    #[arg(long)]
    pub skip_build: bool,
    /// Do not run prepare.run.
    #[arg(long)]
    pub skip_prepare: bool,
    /// Start even when validation fails.
    #[arg(long)]
    pub skip_validate: bool,
    /// Only this build step (repeatable, or comma-separated).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub build_step: Vec<String>,
    /// Only this prepare step (repeatable, or comma-separated).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub prepare_step: Vec<String>,
    /// Stop whatever is already running here first.
    #[arg(long)]
    pub force: bool,
    /// How long a service gets between SIGTERM and SIGKILL when stopping.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Keep watching .devctl.yaml and the plugins' config files; on a change,
    /// re-plan and restart only what changed.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub pipeline: PipelineFlags,
}

impl UpArgs {
    /// The same options as command-line flags (for the supervisor process).
    pub fn to_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        for (on, flag) in [
            (self.skip_build, "--skip-build"),
            (self.skip_prepare, "--skip-prepare"),
            (self.skip_validate, "--skip-validate"),
            (self.force, "--force"),
            (self.watch, "--watch"),
        ] {
            if on {
                flags.push(flag.to_owned());
            }
        }
        for step in &self.build_step {
            flags.extend(["--build-step".to_owned(), step.clone()]);
        }
        for step in &self.prepare_step {
            flags.extend(["--prepare-step".to_owned(), step.clone()]);
        }
        flags.extend([
            "--grace".to_owned(),
            format!("{}ms", self.grace.as_millis()),
        ]);
        flags
    }

    pub fn pipeline(&self) -> devctl::pipeline::PipelineOptions {
        let steps = |list: &Vec<String>| (!list.is_empty()).then(|| list.clone());
        devctl::pipeline::PipelineOptions {
            skip_build: self.skip_build,
            skip_prepare: self.skip_prepare,
            skip_validate: self.skip_validate,
            build_steps: steps(&self.build_step),
            prepare_steps: steps(&self.prepare_step),
            running: Vec::new(),
        }
    }
}

#[derive(Debug, Args, Default)]
pub struct PlanArgs {
    /// Print the plan as JSON (same as `--format json`).
    #[arg(long)]
    pub json: bool,
    /// How to print the plan (`go`: the Go devctl's {config, plan}).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Show which plugin set each config key and service, and what it overrode.
    #[arg(long)]
    pub explain: bool,
    /// Materialize the plan without this plugin's contributions (repeatable).
    #[arg(long, value_name = "ID")]
    pub without: Vec<String>,
    /// Print secret-looking values (tokens, passwords) instead of <redacted>.
    #[arg(long)]
    pub show_secrets: bool,
    #[command(flatten)]
    pub pipeline: PipelineFlags,
}

impl PlanArgs {
    pub fn format(&self) -> Format {
        if self.json && self.format == Format::Text {
            Format::Json
        } else {
            self.format
        }
    }
}

#[derive(Debug, Args)]
#[command(after_help = "\
From the same plan as `up` (same plugins, --without; build and prepare dry-run). Deterministic,
with a header saying how to regenerate it; a secret's value is never written:
  compose     compose.yaml; secrets from <service>.secrets.env, a skeleton written only when missing
  kubernetes  kubernetes.yaml, one stream: per service a Deployment, a Service, a ConfigMap and a
              Secret skeleton (keys, no values) referenced by secretKeyRef
  procfile    Procfile and .env (what every service shares); secrets come from the environment
-o DIR writes every file into DIR; -o FILE the main one as FILE and the others beside it. A file
that does not start with devctl export's header is never replaced.")]
pub struct ExportArgs {
    /// The engine.
    #[arg(value_enum)]
    pub format: ExportFormat,
    /// Write to this file, or into this directory (one that exists or ends with /), atomically,
    /// instead of printing the main file.
    #[arg(short, long, value_name = "FILE|DIR")]
    pub output: Option<PathBuf>,
    /// Materialize the plan without this plugin's contributions (repeatable).
    #[arg(long, value_name = "ID")]
    pub without: Vec<String>,
    /// Image to run services in (compose, kubernetes): IMAGE for all, SERVICE=IMAGE for one
    /// (repeatable). The repo is mounted at /repo in it [default: python:3.13-slim].
    #[arg(long, value_name = "[SERVICE=]IMAGE")]
    pub image: Vec<String>,
    #[command(flatten)]
    pub pipeline: PipelineFlags,
}

/// What `devctl export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A Compose file (docker compose, docker-compose 1.29).
    Compose,
    /// Kubernetes manifests (a multi-document YAML stream).
    Kubernetes,
    /// A Procfile and .env (honcho, foreman).
    Procfile,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only these services (default: all).
    pub services: Vec<String>,
    /// Only this service (the Go devctl's form; same as naming it).
    #[arg(long, value_name = "SVC")]
    pub service: Vec<String>,
    /// Keep printing new lines until the environment stops (Ctrl-C ends it sooner).
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each service (then merged).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub tail: Option<usize>,
    /// Show each line's time (when devctl read it, UTC).
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Only lines since then: a duration ago (10m, 1h30m) or a time (2026-11-23T14:00:00Z).
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Only lines until then (same forms as --since).
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Only stderr lines.
    #[arg(long)]
    pub stderr: bool,
    /// No `service |` prefix.
    #[arg(long)]
    pub no_prefix: bool,
    /// One JSON object a line: time, service, stream, line.
    #[arg(long)]
    pub json: bool,
}

impl LogsArgs {
    pub fn services(&self) -> Vec<String> {
        self.services.iter().chain(&self.service).cloned().collect()
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the status as JSON (same as `--format json`).
    #[arg(long)]
    pub json: bool,
    /// How to print the status (`go`: the Go devctl's {exists, services}).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// How many stderr lines to show for services that exited.
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub tail_lines: usize,
}

impl StatusArgs {
    pub fn format(&self) -> Format {
        if self.json && self.format == Format::Text {
            Format::Json
        } else {
            self.format
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Start every plugin and show its handshake.
    List {
        /// Print the list as JSON (same as `--format json`).
        #[arg(long)]
        json: bool,
        /// How to print the list (`go`: the Go devctl's {plugins}).
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        #[command(flatten)]
        pipeline: PipelineFlags,
    },
    /// Switch a plugin off locally (recorded in .devctl/local.yaml, not committed).
    Disable {
        /// The plugin's id (see `devctl plugins list`).
        id: String,
    },
    /// Switch a plugin back on.
    Enable {
        /// The plugin's id (see `devctl plugins list`).
        id: String,
    },
    /// Run the conformance suite against the plugins (or one).
    Check {
        /// Only this plugin.
        id: Option<String>,
        /// Multiply the suite's deadlines (e.g. 3 on a slow machine; 0.1 to 100).
        #[arg(long, default_value = "1", value_parser = parse_timeout_scale)]
        timeout_scale: f64,
    },
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// `start` (the Go devctl's form) or nothing: both start the stream.
    #[arg(value_parser = ["start"], hide = true)]
    pub start: Option<String>,
    /// The stream op to start.
    #[arg(long)]
    pub op: String,
    /// The plugin to ask (default: the first that declares the op).
    #[arg(long, value_name = "ID")]
    pub plugin: Option<String>,
    /// The op's input, as JSON.
    #[arg(long, value_name = "JSON", conflicts_with = "input_file")]
    pub input_json: Option<String>,
    /// The op's input, from a JSON file.
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
    /// How long the plugin may take to answer with its stream id.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub start_timeout: Option<Duration>,
    /// Print each event as a JSON line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub pipeline: PipelineFlags,
}

/// The durations devctl's flags accept: a millisecond to a week.
const DURATIONS: DurationRange = DurationRange {
    min: Duration::from_millis(1),
    max: Duration::from_secs(7 * 24 * 3600),
};

/// `30s`, `500ms`, `2m`, `1h`, or a number of seconds, within [`DURATIONS`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    flags::parse_duration(text, DURATIONS).map_err(|err| err.to_string())
}

/// `--timeout-scale`: 0.1 to 100.
pub fn parse_timeout_scale(text: &str) -> Result<f64, String> {
    flags::parse_scale(
        text,
        ScaleRange {
            min: 0.1,
            max: 100.0,
        },
    )
    .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_or_without_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["99999999999999999999", "1e19", "NaN", "-5s", "8d", "inf"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                err.contains("expected a duration from 1ms to 10080m"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
