//! Plugin-defined commands: `devctl <command> [args…]`.
//!
//! Commands come only from the handshakes of plugins that declare
//! `command.run` (no discovery op exists). Discovery starts every plugin at
//! once with a 500 ms handshake budget; a hung or broken plugin costs at most
//! that budget and a warning (and nothing at all when it comes after the
//! plugin providing the command). On a name clash the first plugin in run
//! order wins; `devctl commands` reports clashes. Arguments after the command name go to the plugin untouched, and the
//! plugin's `exit_code` becomes devctl's exit status.

use std::collections::BTreeSet;
use std::time::Duration;

use devctl_contract::ops::{CommandRunOutput, ConfigMutateOutput, COMMAND_RUN, CONFIG_MUTATE};
use devctl_contract::protocol::CommandSpec;
use devctl_sdk::host::Client;
use serde_json::json;

use devctl::repository::{close_all, Repository};

use super::Usage;

/// The startup budget of each plugin during discovery.
pub const DISCOVERY_BUDGET: Duration = Duration::from_millis(500);

/// The commands found, who provides each, and the running clients.
pub struct Discovery {
    /// (command, providing plugin id), in run order, first provider only.
    pub commands: Vec<(CommandSpec, String)>,
    pub warnings: Vec<String>,
    pub clients: Vec<Client>,
}

pub async fn discover(repo: &Repository) -> Discovery {
    let plugins = repo.plugins(&BTreeSet::new());
    let started = repo.start(&plugins, DISCOVERY_BUDGET, false).await;
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
pub async fn run(repo: &Repository, name: &str, argv: &[String]) -> anyhow::Result<u8> {
    let plugins = repo.plugins(&BTreeSet::new());
    let mut arrivals = repo.start_each(&plugins, DISCOVERY_BUDGET);
    let mut slots: Vec<Option<Result<Client, String>>> = plugins.iter().map(|_| None).collect();
    let provider = loop {
        let decided = slots.iter().position(|slot| match slot {
            None => true,
            Some(Ok(client)) => provides(client, name),
            Some(Err(_)) => false,
        });
        match decided {
            Some(index) if slots[index].is_some() => break Some(index),
            None => break None,
            Some(_) => {}
        }
        let Some((index, result)) = arrivals.recv().await else {
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
    let closing = tokio::spawn(close_all(others));
    let Some(client) = chosen else {
        let _ = closing.await;
        return Err(Usage(format!(
            "unknown command `{name}`; built-in commands: plan, plugins, commands, stream, status; plugin commands: {} (see `devctl commands`)",
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        ))
        .into());
    };
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
    client.close().await;
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
    close_all(discovery.clients).await;
    Ok(0)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}
