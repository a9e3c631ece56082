//! `moments-dev`: parse flags, load the config, print one answer.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use moments_dev::cli::{
    Cli, ConfigCommand, DevCommand, DumpFormat, Group, ManifestFormat, ValidateFormat, ViteFormat,
};
use moments_dev::config::{ConfigRequest, LoadedConfig};
use moments_dev::manifest::{build_manifest, redact_manifest};
use moments_dev::report::render_human;
use moments_dev::secrets::redact_json_text;
use moments_dev::validate::{unknown_checks, validate, Inputs};
use moments_dev::vite_env::{derive_vite_env, redacted, to_dotenv, to_shell, without_secrets};

/// Exit status when the command could not run at all.
const COULD_NOT_RUN: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(COULD_NOT_RUN)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Group::Completion { shell } = cli.group {
        use clap::CommandFactory;
        let mut command = Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "moments-dev", &mut script);
        emit(&String::from_utf8_lossy(&script))?;
        return Ok(ExitCode::SUCCESS);
    }
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let config_env = cli
        .config
        .config_env
        .clone()
        .or_else(|| {
            env.get("MOMENTS_CONFIG_ENV")
                .filter(|v| !v.is_empty())
                .cloned()
        })
        .unwrap_or_else(|| "development".to_owned());
    let request = ConfigRequest {
        repo_root: cli.config.repo_root.clone(),
        cwd: std::env::current_dir().context("cannot read the current directory")?,
        config_env,
        env_prefix: cli.config.env_prefix.clone(),
        overrides: cli.config.config_override.clone(),
        sets: cli.config.sets.clone(),
        env,
    };
    let Group::Dev(command) = cli.group else {
        bail!("no command given; see `moments-dev --help`");
    };
    if let DevCommand::Plugin = command {
        return Ok(moments_dev::dev_plugin::run(request));
    }

    if let DevCommand::Validate { checks, .. } = &command {
        let unknown = unknown_checks(checks);
        if !unknown.is_empty() {
            bail!(
                "unknown check(s): {}; known checks: {}",
                unknown.join(", "),
                moments_dev::validate::CHECKS.join(", ")
            );
        }
    }

    let config = LoadedConfig::load(&request)?;
    if !matches!(command, DevCommand::Validate { .. }) {
        for warning in &config.warnings {
            eprintln!("warning: {}\n  fix: {}", warning.message, warning.fix);
        }
    }

    match command {
        DevCommand::Manifest {
            format,
            show_secrets,
        } => {
            let mut manifest = build_manifest(&config);
            if !show_secrets {
                redact_manifest(&mut manifest);
            }
            let text = match format {
                ManifestFormat::Json => serde_json::to_string_pretty(&manifest)? + "\n",
                ManifestFormat::Yaml => yaml_serde::to_string(&manifest)?,
            };
            emit(&text)?;
        }
        DevCommand::ViteEnv {
            format,
            show_secrets,
        } => {
            let env = derive_vite_env(&config.settings);
            let text = match format {
                ViteFormat::Json => {
                    let shown = if show_secrets { env } else { redacted(&env) };
                    serde_json::to_string_pretty(&shown)? + "\n"
                }
                ViteFormat::Env | ViteFormat::Dotenv => {
                    let shown = if show_secrets {
                        env
                    } else {
                        let (kept, left_out) = without_secrets(&env);
                        if !left_out.is_empty() {
                            eprintln!(
                                "note: left out secret variable(s) {}; pass --show-secrets to include them",
                                left_out.join(", ")
                            );
                        }
                        kept
                    };
                    match format {
                        ViteFormat::Env => to_shell(&shown),
                        _ => to_dotenv(&shown)?,
                    }
                }
            };
            emit(&text)?;
        }
        DevCommand::Validate { format, checks } => {
            let manifest = build_manifest(&config);
            let path_var = request.env.get("PATH").map(String::as_str);
            let inputs = Inputs {
                config: &config,
                manifest: &manifest,
                path_var,
            };
            let report = validate(&inputs, &checks);
            let text = match format {
                ValidateFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
                ValidateFormat::Human => render_human(&report),
            };
            emit(&text)?;
            return Ok(if report.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        DevCommand::Config(ConfigCommand::Get { key, show_secrets }) => {
            let Some(text) = config.json_text(&key) else {
                eprintln!(
                    "error: no key `{key}` in the config (see `moments-dev dev config dump` for every key)"
                );
                return Ok(ExitCode::from(1));
            };
            let text = shown(&config, &key, &text, show_secrets);
            // Strings print raw (for `$(moments-dev dev config get …)`).
            let text = match serde_json::from_str::<String>(&text) {
                Ok(string) if text.starts_with('"') => string,
                _ => text.into_owned(),
            };
            emit(&(text + "\n"))?;
        }
        DevCommand::Plugin => unreachable!("served above"),
        DevCommand::Config(ConfigCommand::Dump {
            show_origin,
            show_secrets,
            format,
        }) => dump(&config, format, show_origin, show_secrets)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON text of a value as it may be shown.
fn shown<'a>(config: &LoadedConfig, key: &str, text: &'a str, show_secrets: bool) -> Cow<'a, str> {
    if show_secrets {
        Cow::Borrowed(text)
    } else {
        redact_json_text(config.keys(), key, text)
    }
}

/// Prints every leaf as it is visited (a big config is never held twice).
/// Values are compact JSON in both formats.
fn dump(
    config: &LoadedConfig,
    format: DumpFormat,
    show_origin: bool,
    show_secrets: bool,
) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut result: std::io::Result<()> = Ok(());
    let mut first = true;
    if let DumpFormat::Json = format {
        result = out.write_all(b"{");
    }
    config.for_each_leaf(|key, text, origin| {
        if result.is_err() {
            return;
        }
        let value = shown(config, key, text, show_secrets);
        let origin = origin.filter(|_| show_origin);
        result = match format {
            DumpFormat::Text => match origin {
                Some(origin) => writeln!(out, "{key} = {value}  # {origin}"),
                None => writeln!(out, "{key} = {value}"),
            },
            DumpFormat::Json => {
                let comma = if first { "" } else { "," };
                let key = serde_json::Value::from(key);
                match origin {
                    Some(origin) => write!(
                        out,
                        "{comma}\n  {key}: {{\n    \"value\": {value},\n    \"origin\": {}\n  }}",
                        serde_json::Value::from(origin.to_string())
                    ),
                    None => write!(out, "{comma}\n  {key}: {value}"),
                }
            }
        };
        first = false;
    });
    if let (Ok(()), DumpFormat::Json) = (&result, format) {
        result = out.write_all(if first { b"}\n" } else { b"\n}\n" });
    }
    match result.and_then(|()| out.flush()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}
