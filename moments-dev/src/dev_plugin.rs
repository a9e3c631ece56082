//! `moments-dev dev plugin`: the Moments dev contract as a protocol-v2 plugin.
//!
//! Every request reloads the config (so edits apply without a restart),
//! from `ctx.repo_root` when the host sends one. Ops:
//!
//! - `config.mutate`: `env.VITE_*` (secrets left out), `services.backend.port`,
//!   `services.backend.url`, `services.web.port`;
//! - `build.run` / `prepare.run`: run the manifest's command plans, honouring
//!   `steps`; prepare first creates missing JWT keys with openssl (step
//!   `jwt-keys`); with `dry_run` they only say on stderr what would run;
//! - `validate.run`: the checks of `dev validate` (input `checks` selects);
//! - `launch.plan`: the manifest's services;
//! - `command.run`: `vite-env` (writes the web app's dotenv file) and
//!   `doctor` (the human validation report, on stderr).
//!
//! It declares `config/app/*.yaml` for the orchestrator's watch mode, and
//! the backend's and the web app's sources (`dev.backend.watch`,
//! `dev.web.watch`) as those of the build groups of the same names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use devctl_contract::manifest::CommandPlan;
use devctl_contract::ops::{
    ConfigMutateOutput, ConfigPatch, LaunchPlanOutput, StepResult, StepsInput, StepsOutput,
    ValidateIssue, ValidateOutput, BUILD_RUN, CONFIG_MUTATE, LAUNCH_PLAN, PREPARE_RUN,
    VALIDATE_RUN,
};
use devctl_contract::protocol::{CommandArg, CommandSpec};
use devctl_sdk::plugin::{Ctx, OpError, Plugin};
use devctl_support::fs::write_atomically;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{display_path, ConfigRequest, LoadedConfig};
use crate::manifest::build_manifest;
use crate::report::render_human;
use crate::secrets::is_secret_vite_var;
use crate::validate::{validate, Inputs};
use crate::vite_env::{derive_vite_env, redacted, to_dotenv};

/// The globs whose edits change what this plugin answers.
pub const WATCH_GLOBS: &[&str] = &["config/app/*.yaml"];

/// The name of the prepare step that creates the JWT keys.
pub const KEYS_STEP: &str = "jwt-keys";

/// Runs the plugin on stdin/stdout until stdin closes.
pub fn run(template: ConfigRequest) -> ExitCode {
    plugin(template).run()
}

/// The plugin, ready to serve (also used by tests through the SDK harness).
pub fn plugin(template: ConfigRequest) -> Plugin {
    // The handshake comes before any request, so the sources it declares
    // for watch mode come from the config as it is at start (from the
    // plugin's working directory, the repo root); a broken config declares
    // none, and every request reports it.
    let sources = LoadedConfig::load(&template)
        .map(|config| build_sources(&config.settings))
        .unwrap_or_default();
    let template = Arc::new(template);
    let with_config = |template: &Arc<ConfigRequest>| {
        let template = template.clone();
        move |ctx: &Ctx| load(&template, ctx)
    };
    let load_mutate = with_config(&template);
    let load_build = with_config(&template);
    let load_prepare = with_config(&template);
    let load_validate = with_config(&template);
    let load_launch = with_config(&template);
    let load_vite = with_config(&template);
    let load_doctor = with_config(&template);

    let plugin = Plugin::new("moments")
        .op(CONFIG_MUTATE, move |ctx: Ctx, _: Value| {
            let config = load_mutate(&ctx);
            async move { config_mutate(&ctx, &config?) }
        })
        .op(BUILD_RUN, move |ctx: Ctx, input: StepsInput| {
            let config = load_build(&ctx);
            async move { run_steps(&ctx, &config?, Phase::Build, input.steps).await }
        })
        .op(PREPARE_RUN, move |ctx: Ctx, input: StepsInput| {
            let config = load_prepare(&ctx);
            async move { run_steps(&ctx, &config?, Phase::Prepare, input.steps).await }
        })
        .op(VALIDATE_RUN, move |ctx: Ctx, input: ValidateInput| {
            let config = load_validate(&ctx);
            async move {
                let checks = if input.checks.is_empty() && !input.running.is_empty() {
                    STATIC_CHECKS.iter().map(|c| c.to_string()).collect()
                } else {
                    input.checks
                };
                let config = config?;
                blocking(move || validate_run(&config, &checks)).await?
            }
        })
        .op(LAUNCH_PLAN, move |ctx: Ctx, _: Value| {
            let config = load_launch(&ctx);
            async move {
                Ok::<_, OpError>(LaunchPlanOutput {
                    services: build_manifest(&config?).services,
                })
            }
        })
        .command(
            CommandSpec {
                name: "vite-env".into(),
                help: Some(
                    "Write the web app's dotenv file (default <web cwd>/.env.local) from the config".into(),
                ),
                args_spec: vec![CommandArg {
                    name: "output".into(),
                    kind: "path".into(),
                }],
            },
            move |ctx: Ctx, input| {
                let config = load_vite(&ctx);
                async move { write_vite_env(&ctx, &config?, input.argv.first()) }
            },
        )
        .command(
            CommandSpec {
                name: "doctor".into(),
                help: Some("Check the dev environment and explain every problem".into()),
                args_spec: Vec::new(),
            },
            move |ctx: Ctx, _| {
                let config = load_doctor(&ctx);
                async move {
                    let config = config?;
                    let report = blocking(move || run_validate(&config, &[])).await?;
                    eprint!("{}", render_human(&report));
                    Ok(if report.valid { 0 } else { 1 })
                }
            },
        )
        .watch(WATCH_GLOBS);
    sources.into_iter().fold(plugin, |plugin, (group, globs)| {
        plugin.build_watch(&group, &globs, &[group.as_str()])
    })
}

/// Build groups named after a service, with that service's sources: an
/// edit re-runs the group and restarts the service.
fn build_sources(settings: &crate::settings::MomentsSettings) -> Vec<(String, Vec<String>)> {
    let dev = &settings.dev;
    [("backend", &dev.backend), ("web", &dev.web)]
        .into_iter()
        .filter(|(group, service)| dev.build.contains_key(*group) && !service.watch.is_empty())
        .map(|(group, service)| (group.to_owned(), service.watch.clone()))
        .collect()
}

/// Runs `work` on tokio's blocking pool: validation probes ports and HTTP
/// with blocking calls, which must not stall the plugin's async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, OpError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| OpError::runtime(format!("validation stopped: {err}")))
}

fn load(template: &ConfigRequest, ctx: &Ctx) -> Result<LoadedConfig, OpError> {
    let mut request = template.clone();
    if let Some(root) = ctx.repo_root() {
        request.repo_root = Some(root.to_path_buf());
    }
    if let Some(cwd) = ctx.cwd() {
        request.cwd = cwd.to_path_buf();
    }
    LoadedConfig::load(&request)
        .map_err(|err| OpError::runtime(err.to_string()).with_details(json!({"kind": "config"})))
}

fn config_mutate(ctx: &Ctx, config: &LoadedConfig) -> Result<ConfigMutateOutput, OpError> {
    for warning in &config.warnings {
        ctx.warn(format!("{} (fix: {})", warning.message, warning.fix));
    }
    let settings = &config.settings;
    let mut set = BTreeMap::new();
    let mut secret = false;
    for (key, value) in derive_vite_env(settings) {
        if is_secret_vite_var(&key) {
            secret = true;
            continue;
        }
        set.insert(format!("env.{key}"), json!(value));
    }
    let port = settings.server.port;
    set.insert("services.backend.port".into(), json!(port));
    set.insert(
        "services.backend.url".into(),
        json!(format!("http://127.0.0.1:{port}")),
    );
    set.insert("services.web.port".into(), json!(settings.dev.web_port));
    if secret {
        ctx.note("secret VITE_* values are passed only in the web service's env (launch.plan)");
    }
    Ok(ConfigMutateOutput {
        config_patch: ConfigPatch {
            set,
            unset: Vec::new(),
        },
    })
}

#[derive(Deserialize, Default)]
struct ValidateInput {
    /// Only these checks (as `dev validate --check`); all by default.
    #[serde(default)]
    checks: Vec<String>,
    /// Services already running (devctl re-validating under `up --watch`):
    /// the pre-start checks (free ports, health) would flag them, so only
    /// the checks of the config itself run.
    #[serde(default)]
    running: Vec<String>,
}

/// The checks that judge the config, not the machine's current state.
const STATIC_CHECKS: [&str; 4] = ["config", "consistency", "tools", "keys"];

fn run_validate(
    config: &LoadedConfig,
    checks: &[String],
) -> devctl_contract::report::ValidationReport {
    let manifest = build_manifest(config);
    let path_var = std::env::var("PATH").ok();
    let inputs = Inputs {
        config,
        manifest: &manifest,
        path_var: path_var.as_deref(),
    };
    validate(&inputs, checks)
}

fn validate_run(config: &LoadedConfig, checks: &[String]) -> Result<ValidateOutput, OpError> {
    let unknown = crate::validate::unknown_checks(checks);
    if !unknown.is_empty() {
        return Err(OpError::runtime(format!(
            "unknown check(s) {}; known: {}",
            unknown.join(", "),
            crate::validate::CHECKS.join(", ")
        )));
    }
    let report = run_validate(config, checks);
    let issue = |issue: &devctl_contract::report::ReportIssue| ValidateIssue {
        code: issue.code.clone(),
        message: issue.message.clone(),
        details: Some(json!({"component": issue.component, "fix": issue.fix})),
    };
    Ok(ValidateOutput {
        valid: report.valid,
        errors: report.errors.iter().map(issue).collect(),
        warnings: report.warnings.iter().map(issue).collect(),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Build,
    Prepare,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Build => "build",
            Phase::Prepare => "prepare",
        }
    }
}

async fn run_steps(
    ctx: &Ctx,
    config: &LoadedConfig,
    phase: Phase,
    selection: Option<Vec<String>>,
) -> Result<StepsOutput, OpError> {
    let manifest = build_manifest(config);
    let groups = match phase {
        Phase::Build => manifest.build,
        Phase::Prepare => manifest.prepare,
    };
    let mut known: Vec<String> = Vec::new();
    if phase == Phase::Prepare {
        known.push(KEYS_STEP.into());
    }
    known.extend(groups.keys().cloned());
    let chosen: Vec<String> = match selection {
        None => known.clone(),
        Some(wanted) => {
            let unknown: Vec<&String> = wanted.iter().filter(|w| !known.contains(w)).collect();
            if !unknown.is_empty() {
                return Err(OpError::runtime(format!(
                    "unknown {} step(s) {}; known steps: {}",
                    phase.name(),
                    unknown
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    known.join(", ")
                )));
            }
            known
                .iter()
                .filter(|k| wanted.contains(k))
                .cloned()
                .collect()
        }
    };
    if ctx.dry_run() {
        ctx.note(format!("dry run: no {} step was run", phase.name()));
    }
    let mut steps = Vec::new();
    for name in chosen {
        let started = Instant::now();
        let ok = if name == KEYS_STEP {
            ensure_keys(ctx, config).await
        } else {
            run_plans(ctx, config, phase, &name, &groups[&name]).await
        };
        steps.push(StepResult {
            name,
            ok,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
        if !ok {
            break;
        }
    }
    Ok(StepsOutput {
        steps,
        artifacts: BTreeMap::new(),
    })
}

async fn run_plans(
    ctx: &Ctx,
    config: &LoadedConfig,
    phase: Phase,
    step: &str,
    plans: &[CommandPlan],
) -> bool {
    for plan in plans {
        let dir = config.repo_root.join(&plan.cwd);
        let shown = format!(
            "`{}` in {}",
            plan.command.join(" "),
            display_path(&config.repo_root, &dir)
        );
        if ctx.dry_run() {
            eprintln!("[dry-run] {} {step}: would run {shown}", phase.name());
            continue;
        }
        let Some((program, args)) = plan.command.split_first() else {
            ctx.warn(format!("{} step {step}: empty command", phase.name()));
            return false;
        };
        eprintln!("{} {step}: running {shown}", phase.name());
        let mut command = tokio::process::Command::new(program);
        command.args(args).current_dir(&dir).envs(&plan.env);
        match run_to_end(command).await {
            Ok(status) if status.success() => {}
            Ok(status) => {
                ctx.warn(format!(
                    "{} step {step}: {shown} failed ({status})",
                    phase.name()
                ));
                return false;
            }
            Err(err) => {
                ctx.warn(format!(
                    "{} step {step}: cannot start {shown}: {err}",
                    phase.name()
                ));
                return false;
            }
        }
    }
    true
}

/// Runs a command in its own process group; if the caller gives up (deadline,
/// shutdown), the whole group is killed, not just the first process.
async fn run_to_end(
    mut command: tokio::process::Command,
) -> std::io::Result<std::process::ExitStatus> {
    command
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let guard = GroupGuard(child.id().and_then(|pid| i32::try_from(pid).ok()));
    let status = child.wait().await;
    std::mem::forget(guard);
    status
}

struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Creates the JWT key pair when it is missing: the `jwt-keys` prepare step.
async fn ensure_keys(ctx: &Ctx, config: &LoadedConfig) -> bool {
    let keys = &config.settings.keys;
    let (Some(private), Some(public)) = (
        keys.internal_jwt_private_key_path.as_deref(),
        keys.internal_jwt_public_key_path.as_deref(),
    ) else {
        ctx.warn(format!(
            "{KEYS_STEP}: the key paths are not configured; {}",
            config.fix_for("keys.internal-jwt-private-key-path")
        ));
        return false;
    };
    let private = config.repo_root.join(private);
    let public = config.repo_root.join(public);
    if private.is_file() && public.is_file() {
        return true;
    }
    let openssl = &config.settings.bootstrap.openssl_bin;
    if ctx.dry_run() {
        eprintln!(
            "[dry-run] prepare {KEYS_STEP}: would create {} and {} with {openssl}",
            display_path(&config.repo_root, &private),
            display_path(&config.repo_root, &public)
        );
        return true;
    }
    if !private.is_file() {
        if public.is_file() {
            ctx.warn(format!(
                "{KEYS_STEP}: {} has no private key; making a new pair",
                display_path(&config.repo_root, &public)
            ));
        }
        let made = openssl_to(
            ctx,
            openssl,
            &private,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ],
        )
        .await;
        if !made {
            return false;
        }
    }
    let private_arg = private.display().to_string();
    let made = openssl_to(
        ctx,
        openssl,
        &public,
        &["pkey", "-in", &private_arg, "-pubout", "-out"],
    )
    .await;
    if made {
        eprintln!(
            "prepare {KEYS_STEP}: created {}",
            display_path(&config.repo_root, &public)
        );
    }
    made
}

/// Runs `openssl <args> <temp>` and renames the temp file to `target`, so a
/// failed or interrupted run never leaves half a key behind.
async fn openssl_to(ctx: &Ctx, openssl: &str, target: &Path, args: &[&str]) -> bool {
    let dir = target
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    if let Err(err) = std::fs::create_dir_all(&dir) {
        ctx.warn(format!(
            "{KEYS_STEP}: cannot create {}: {err}",
            dir.display()
        ));
        return false;
    }
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut command = tokio::process::Command::new(openssl);
    // openssl reports progress on stderr; keep it for an error message only.
    let transcript = dir.join(format!(".{name}.stderr-{}", std::process::id()));
    let captured = std::fs::File::create(&transcript).map(std::process::Stdio::from);
    command
        .args(args)
        .arg(&temp)
        .stderr(captured.unwrap_or_else(|_| std::process::Stdio::null()));
    let outcome = run_to_end(command).await;
    let said = std::fs::read_to_string(&transcript).unwrap_or_default();
    let _ = std::fs::remove_file(&transcript);
    let result = match outcome {
        Ok(status) if status.success() => restrict(&temp)
            .and_then(|()| std::fs::rename(&temp, target))
            .map_err(|e| e.to_string()),
        Ok(status) => Err(format!(
            "`{openssl} {}` failed ({status}): {}",
            args[0],
            said.trim()
        )),
        Err(err) => Err(format!(
            "cannot start `{openssl}`: {err} (install openssl or set bootstrap.openssl-bin)"
        )),
    };
    match result {
        Ok(()) => true,
        Err(message) => {
            let _ = std::fs::remove_file(&temp);
            ctx.warn(format!("{KEYS_STEP}: {message}"));
            false
        }
    }
}

fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

fn write_vite_env(
    ctx: &Ctx,
    config: &LoadedConfig,
    output: Option<&String>,
) -> Result<i32, OpError> {
    let target = match output {
        // `--help` and friends are devctl's to answer; as a file name here
        // they would be a file holding the token, named like a flag.
        Some(path) if path.starts_with('-') => {
            eprintln!(
                "vite-env: {path:?} looks like a flag, not a file; usage: vite-env [PATH] (default: the web app's .env.local); write ./{path} for a file named so"
            );
            return Ok(2);
        }
        Some(path) => config.repo_root.join(path),
        None => config
            .repo_root
            .join(&config.settings.dev.web.cwd)
            .join(".env.local"),
    };
    let shown = display_path(&config.repo_root, &target);
    let env = derive_vite_env(&config.settings);
    if ctx.dry_run() {
        let preview =
            to_dotenv(&redacted(&env)).map_err(|err| OpError::runtime(err.to_string()))?;
        eprintln!("[dry-run] would write {shown}:\n{preview}");
        return Ok(0);
    }
    let text = match to_dotenv(&env) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("vite-env: {err}");
            return Ok(1);
        }
    };
    // The file holds the Stytch token: owner-only.
    write_atomically(&target, text.as_bytes(), 0o600)
        .map_err(|err| OpError::runtime(err.to_string()))?;
    eprintln!("vite-env: wrote {shown} ({} variables)", env.len());
    Ok(0)
}
