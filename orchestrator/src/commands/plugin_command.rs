//! Plugin-defined commands: `devctl <command> [args…]`.
//!
//! Commands come only from the handshakes of plugins that declare
//! `command.run` (no discovery op exists). Discovery starts every plugin at
//! once. A plugin ahead of the provider (in run order) that has not
//! answered within the 500 ms discovery budget is left out with a warning,
//! so a hung plugin costs at most that; a plugin after the provider is not
//! waited for at all; and while no provider is known every plugin gets the
//! whole handshake time (2 s), so a slow machine never turns a command into
//! "unknown". On a name clash the first plugin in run order wins; `devctl
//! commands` reports clashes.
//!
//! Arguments after the command name go to the plugin untouched, except
//! devctl's own flags (`--repo-root`, `--config`, `--strict`, `--dry-run`,
//! `--timeout`), taken from anywhere before a `--` as the Go devctl does, and
//! `--help`/`-h`, which show the command's help from the handshake without
//! running it. While the command runs, what the providing plugin writes
//! (its stderr: a plugin's stdout carries frames) is the command's output
//! and goes to devctl's stdout; the plugin's `exit_code` becomes devctl's
//! exit status.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devctl::repository::{close_all_within, Repository, HANDSHAKE};
use devctl_contract::ops::{CommandRunOutput, ConfigMutateOutput, COMMAND_RUN, CONFIG_MUTATE};
use devctl_contract::protocol::CommandSpec;
use devctl_sdk::host::{Client, StderrSink};
use serde_json::json;

use super::Usage;
use crate::cli::{parse_duration, Global, PipelineFlags};

/// A plugin command as typed: its name, devctl's flags found among its
/// arguments, and what goes to the plugin.
#[derive(Debug, Clone)]
pub struct Call {
    pub name: String,
    pub argv: Vec<String>,
    pub global: Global,
    pub pipeline: PipelineFlags,
    /// `--help` or `-h` was among the arguments.
    pub wants_help: bool,
}

impl Call {
    /// Splits `words` (the command's name, then its arguments).
    pub fn parse(words: &[String], global: Global, outer: PipelineFlags) -> Result<Call, Usage> {
        let Some((name, rest)) = words.split_first() else {
            return Err(Usage("no command given; see `devctl --help`".into()));
        };
        let mut call = Call {
            name: name.clone(),
            argv: Vec::new(),
            global,
            pipeline: outer,
            wants_help: false,
        };
        let mut words = rest.iter();
        while let Some(word) = words.next() {
            let (flag, inline) = match word.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
                _ => (word.as_str(), None),
            };
            let mut value = |flag: &str| {
                inline
                    .clone()
                    .or_else(|| words.next().cloned())
                    .ok_or_else(|| Usage(format!("{flag} needs a value")))
            };
            match flag {
                "--" => {
                    call.argv.extend(words.by_ref().cloned());
                }
                "--help" | "-h" => call.wants_help = true,
                "--repo-root" => call.global.repo_root = Some(value(flag)?.into()),
                "--config" => call.global.config = Some(value(flag)?.into()),
                "--strict" => call.pipeline.strict = true,
                "--dry-run" => call.pipeline.dry_run = true,
                "--timeout" => {
                    let text = value(flag)?;
                    call.pipeline.timeout = Some(
                        parse_duration(&text).map_err(|err| Usage(format!("--timeout: {err}")))?,
                    );
                }
                _ => call.argv.push(word.clone()),
            }
        }
        Ok(call)
    }
}

/// Routes plugins' stderr: the command's provider, once chosen, writes the
/// command's output (to our stdout, as is); everyone else's lines are
/// diagnostics (to our stderr, prefixed with the plugin id).
#[derive(Clone, Default)]
struct OutputRouter {
    provider: Arc<Mutex<Option<String>>>,
}

impl OutputRouter {
    fn sink(&self) -> StderrSink {
        let provider = self.provider.clone();
        StderrSink::Callback(Arc::new(move |plugin: &str, line: &str| {
            let is_provider = provider
                .lock()
                .map(|p| p.as_deref() == Some(plugin))
                .unwrap_or(false);
            if is_provider {
                use std::io::Write;
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
            } else {
                eprintln!("[{plugin}] {line}");
            }
        }))
    }

    fn choose(&self, plugin: &str) {
        if let Ok(mut provider) = self.provider.lock() {
            *provider = Some(plugin.to_owned());
        }
    }
}

/// The startup budget of each plugin during discovery.
pub const DISCOVERY_BUDGET: Duration = devctl_contract::limits::COMMAND_DISCOVERY_BUDGET;

/// How long a plugin started only to find commands (or one that has run its
/// command) gets to exit before it is killed: a plugin that ignores SIGTERM
/// must not make a command slow.
pub const CLOSE_BUDGET: Duration = Duration::from_millis(100);

/// The commands found, who provides each, and the running clients.
pub struct Discovery {
    /// (command, providing plugin id), in run order, first provider only.
    pub commands: Vec<(CommandSpec, String)>,
    pub warnings: Vec<String>,
    pub clients: Vec<Client>,
}

pub async fn discover(repo: &Repository) -> Discovery {
    let plugins = repo.plugins(&BTreeSet::new());
    // Listing wants every command: each plugin gets the whole handshake time.
    let started = repo.start(&plugins, HANDSHAKE, false).await;
    let mut discovery = Discovery {
        commands: Vec::new(),
        warnings: Vec::new(),
        clients: Vec::new(),
    };
    for (entry, result) in started {
        let client = match result {
            Ok(client) => client,
            Err(err) => {
                discovery.warnings.push(format!(
                    "plugin {} is left out of the commands: {}",
                    entry.id,
                    first_line(&err.message)
                ));
                continue;
            }
        };
        if client.supports(COMMAND_RUN) {
            for command in &client.handshake().capabilities.commands {
                match discovery
                    .commands
                    .iter()
                    .find(|(c, _)| c.name == command.name)
                {
                    Some((_, owner)) => discovery.warnings.push(format!(
                        "command {:?} is provided by both {owner} and {}; {owner}'s is used",
                        command.name, entry.id
                    )),
                    None => discovery.commands.push((command.clone(), entry.id.clone())),
                }
            }
        }
        discovery.clients.push(client);
    }
    discovery
}

/// Runs `name` with `argv`; returns the plugin's exit code.
///
/// The first plugin in run order that provides `name` wins, so discovery
/// stops as soon as that plugin is known and every plugin before it has
/// answered or used up its budget; plugins after it are not waited for.
pub async fn run(mut repo: Repository, name: &str, argv: &[String]) -> anyhow::Result<u8> {
    let router = OutputRouter::default();
    repo.stderr = router.sink();
    let repo = &repo;
    let plugins = repo.plugins(&BTreeSet::new());
    // Every plugin may take the whole handshake time: a healthy plugin on a
    // busy machine can be slow. Only a plugin *ahead of* a known provider is
    // given up on after the discovery budget, so a hung plugin costs at most
    // that budget, and a slow one never makes a command "unknown".
    let mut arrivals = repo.start_each(&plugins, HANDSHAKE);
    let started = tokio::time::Instant::now();
    let mut slots: Vec<Option<Result<Client, String>>> = plugins.iter().map(|_| None).collect();
    let provider = loop {
        let decided = slots.iter().position(|slot| match slot {
            None => true,
            Some(Ok(client)) => provides(client, name),
            Some(Err(_)) => false,
        });
        let pending = match decided {
            Some(index) if slots[index].is_some() => break Some(index),
            None => break None,
            Some(index) => index,
        };
        let provider_behind = slots[pending..]
            .iter()
            .any(|slot| matches!(slot, Some(Ok(client)) if provides(client, name)));
        if provider_behind && started.elapsed() >= DISCOVERY_BUDGET {
            slots[pending] = Some(Err(format!(
                "no handshake within {} ms",
                DISCOVERY_BUDGET.as_millis()
            )));
            continue;
        }
        let budget_spent = tokio::time::sleep_until(started + DISCOVERY_BUDGET);
        let arrival = tokio::select! {
            arrival = arrivals.recv() => arrival,
            () = budget_spent, if provider_behind => continue,
        };
        let Some((index, result)) = arrival else {
            break None;
        };
        slots[index] = Some(result.map_err(|err| first_line(&err.message).to_owned()));
    };
    drop(arrivals);
    let mut others = Vec::new();
    let mut chosen = None;
    let mut known = Vec::new();
    for (index, slot) in slots.into_iter().enumerate() {
        match slot {
            Some(Ok(client)) if Some(index) == provider => chosen = Some(client),
            Some(Ok(client)) => {
                known.extend(commands_of(&client));
                others.push(client);
            }
            Some(Err(message)) => eprintln!(
                "warning: plugin {} is left out of the commands: {message}",
                plugins[index].id
            ),
            None => {}
        }
    }
    let closing = tokio::spawn(close_all_within(others, CLOSE_BUDGET));
    let Some(client) = chosen else {
        let _ = closing.await;
        return Err(Usage(unknown_command(name, &known)).into());
    };
    router.choose(client.id());
    // As devctl does: the command sees the config its plugin produces.
    let mut config = json!({});
    if client.supports(CONFIG_MUTATE) {
        let (output, _) = client
            .call_as::<ConfigMutateOutput>(CONFIG_MUTATE, json!({"config": config}), repo.timeout)
            .await?;
        devctl::transform::apply_patch(&mut config, &output.config_patch);
    }
    let input = json!({"name": name, "argv": argv, "config": config});
    let result = client
        .call_as::<CommandRunOutput>(COMMAND_RUN, input, repo.timeout)
        .await;
    client.close_within(CLOSE_BUDGET).await;
    let _ = closing.await;
    let code = result?.0.exit_code;
    Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

fn provides(client: &Client, name: &str) -> bool {
    client.supports(COMMAND_RUN)
        && client
            .handshake()
            .capabilities
            .commands
            .iter()
            .any(|c| c.name == name)
}

fn commands_of(client: &Client) -> Vec<String> {
    if !client.supports(COMMAND_RUN) {
        return Vec::new();
    }
    client
        .handshake()
        .capabilities
        .commands
        .iter()
        .map(|c| c.name.clone())
        .collect()
}

/// `devctl commands`: every plugin command with its help.
pub async fn list(repo: &Repository, json: bool) -> anyhow::Result<u8> {
    let discovery = discover(repo).await;
    for warning in &discovery.warnings {
        eprintln!("warning: {warning}");
    }
    if json {
        let rows: Vec<serde_json::Value> = discovery
            .commands
            .iter()
            .map(|(c, plugin)| json!({"name": c.name, "help": c.help, "args_spec": c.args_spec, "plugin": plugin}))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else if discovery.commands.is_empty() {
        outln!("no plugin provides commands");
    } else {
        let width = discovery
            .commands
            .iter()
            .map(|(c, _)| c.name.len())
            .max()
            .unwrap_or(0);
        for (command, plugin) in &discovery.commands {
            outln!(
                "{:<width$}  {}  [{plugin}]",
                command.name,
                command.help.as_deref().unwrap_or("")
            );
        }
    }
    close_all_within(discovery.clients, CLOSE_BUDGET).await;
    Ok(0)
}

/// "unknown command", with every command there is and the nearest one.
pub fn unknown_command(name: &str, plugin_commands: &[String]) -> String {
    use clap::CommandFactory;
    let cli = crate::cli::Cli::command();
    let builtins: Vec<String> = cli
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_owned())
        .collect();
    let nearest = builtins
        .iter()
        .chain(plugin_commands)
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 3))
        .min();
    let hint = nearest
        .map(|(_, candidate)| format!("; did you mean `{candidate}`?"))
        .unwrap_or_default();
    format!(
        "unknown command `{name}`{hint}\n  built-in commands: {}\n  plugin commands: {} (see `devctl commands`)",
        builtins.join(", "),
        if plugin_commands.is_empty() {
            "none".to_owned()
        } else {
            plugin_commands.join(", ")
        }
    )
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}
