//! Command-line surface of `moments-dev`. Parsing only; `main.rs` runs it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  success (for `validate`: the environment is valid)
  1  the command ran and the answer is negative: `validate` found errors,
     `config get` found no such key
  2  could not run: bad flags, no repo, unreadable or malformed config";

#[derive(Debug, Parser)]
#[command(
    name = "moments-dev",
    version,
    about = "The Moments dev contract: what the backend's config says the dev environment is.",
    long_about = "The Moments dev contract: derives the dev manifest, the Vite env and a validation \
report from config/app/*.yaml exactly as the Go backend layers them: base.yaml, then <env>.yaml, \
then local.yaml (development or no env only), then each --config-override, then MOMENTS_* env vars, \
then --set flags.",
    after_help = EXIT_CODES,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigFlags,
    #[command(subcommand)]
    pub group: Group,
}

/// How to find and layer the config; accepted before or after any subcommand.
#[derive(Debug, Args)]
pub struct ConfigFlags {
    /// Repo root (default: the nearest ancestor of the cwd holding config/app/base.yaml).
    #[arg(long, global = true, value_name = "DIR")]
    pub repo_root: Option<PathBuf>,
    /// Config env: loads config/app/<ENV>.yaml. Default: $MOMENTS_CONFIG_ENV, else
    /// `development`. Pass "" for none (base.yaml and local.yaml only).
    #[arg(long, global = true, value_name = "ENV")]
    pub config_env: Option<String>,
    /// Prefix of env var overrides: PREFIX_SERVER_PORT overrides server.port.
    #[arg(long, global = true, value_name = "PREFIX", default_value = "MOMENTS")]
    pub env_prefix: String,
    /// Extra YAML merged after the repo's files (repeatable, applied in order).
    #[arg(long, global = true, value_name = "FILE")]
    pub config_override: Vec<PathBuf>,
    /// Set a key, highest precedence (repeatable), e.g. --set server.port=9000.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Group {
    /// The dev contract commands.
    #[command(subcommand)]
    Dev(DevCommand),
    /// Print the shell completion script: `source <(moments-dev completion bash)`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Print the dev manifest v1: services, build and prepare plans, vite_env.
    Manifest {
        #[arg(long, value_enum, default_value_t = ManifestFormat::Json)]
        format: ManifestFormat,
        /// Print secret values instead of <redacted>.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Print the VITE_* env of the web app.
    ///
    /// `env` prints `export KEY='…'` lines for `eval "$(moments-dev dev vite-env --format env)"`;
    /// `dotenv` prints a file Vite's loadEnv reads back byte-exact. Both leave secret
    /// variables out (and say so on stderr) unless --show-secrets.
    ViteEnv {
        #[arg(long, value_enum, default_value_t = ViteFormat::Json)]
        format: ViteFormat,
        /// Include secret values.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Check config, consistency, tools, keys, ports, db and health.
    ///
    /// Without --check, every check runs except `db` (reported as skipped);
    /// `health` runs only when something listens on server.port.
    #[command(after_help = EXIT_CODES)]
    Validate {
        #[arg(long, value_enum, default_value_t = ValidateFormat::Human)]
        format: ValidateFormat,
        /// Run only this check (repeatable): config, consistency, tools, keys, ports, db, health.
        #[arg(long = "check", value_name = "NAME")]
        checks: Vec<String>,
    },
    /// Read the effective config.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Serve the dev contract as a protocol-v2 plugin on stdin/stdout (for devctl).
    ///
    /// Ops: config.mutate, build.run, prepare.run, validate.run, launch.plan,
    /// command.run (commands `vite-env` and `doctor`). Each request reloads the
    /// config from its ctx.repo_root (else --repo-root, else the cwd). Logs go
    /// to stderr (level: DEVCTL_PLUGIN_LOG=debug, info, warn…).
    Plugin,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print one key's effective value (strings raw, anything else as JSON).
    Get {
        /// Dotted key path, e.g. server.port or platform.mento-service-identity-base-url.
        key: String,
        /// Print secret values instead of <redacted>.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Print every key's effective value.
    Dump {
        /// Also print where each value came from: a file, an env var, a flag or the default.
        #[arg(long)]
        show_origin: bool,
        /// Print secret values instead of <redacted>.
        #[arg(long)]
        show_secrets: bool,
        #[arg(long, value_enum, default_value_t = DumpFormat::Text)]
        format: DumpFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ManifestFormat {
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ViteFormat {
    Json,
    Env,
    Dotenv,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ValidateFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DumpFormat {
    /// `key = value` lines, sorted.
    Text,
    Json,
}
