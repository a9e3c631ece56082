//! `devctl help [COMMAND]` and `devctl COMMAND --help` for plugin commands:
//! a built-in's help from the command line's definition, a plugin command's
//! from its plugin's handshake (the command is never run).

use clap::CommandFactory;
use devctl_contract::protocol::CommandSpec;

use super::plugin_command::{discover, unknown_command};
use super::{open, Usage};
use crate::cli::{Cli, Global, PipelineFlags};

pub async fn run(
    global: &Global,
    pipeline: &PipelineFlags,
    command: Option<String>,
) -> anyhow::Result<u8> {
    let mut cli = Cli::command().bin_name("devctl");
    cli.build();
    let Some(name) = command else {
        outln!("{}", cli.render_long_help());
        return Ok(0);
    };
    if let Some(builtin) = cli
        .get_subcommands_mut()
        .find(|c| c.get_name() == name && !c.is_hide_set())
    {
        outln!("{}", builtin.render_long_help());
        return Ok(0);
    }
    let repo = open(global, pipeline)?;
    let discovery = discover(&repo).await;
    let found = discovery
        .commands
        .iter()
        .find(|(spec, _)| spec.name == name)
        .cloned();
    let known: Vec<String> = discovery
        .commands
        .iter()
        .map(|(spec, _)| spec.name.clone())
        .collect();
    devctl::repository::close_all_within(discovery.clients, super::plugin_command::CLOSE_BUDGET)
        .await;
    let Some((spec, plugin)) = found else {
        for warning in &discovery.warnings {
            eprintln!("warning: {warning}");
        }
        return Err(Usage(unknown_command(&name, &known)).into());
    };
    out!("{}", plugin_help(&spec, &plugin));
    Ok(0)
}

/// A plugin command's help, from its handshake.
fn plugin_help(spec: &CommandSpec, plugin: &str) -> String {
    let mut text = format!(
        "{}\n\nProvided by plugin {plugin}; `devctl {}` runs it through the plugin's command.run.\n\nUsage: devctl {} [ARGS]...\n",
        spec.help.as_deref().unwrap_or("(the plugin gives no help for this command)"),
        spec.name,
        spec.name
    );
    if spec.args_spec.is_empty() {
        text.push_str("\nArguments are passed to the plugin as they are.\n");
    } else {
        text.push_str("\nArguments (from the plugin's handshake):\n");
        let width = spec
            .args_spec
            .iter()
            .map(|a| a.name.len())
            .max()
            .unwrap_or(0);
        for arg in &spec.args_spec {
            text.push_str(&format!("  {:<width$}  {}\n", arg.name, arg.kind));
        }
    }
    text.push_str(
        "\ndevctl's own flags (--repo-root, --config, --strict, --dry-run, --timeout) may come\nbefore or after the command's name; put arguments for the plugin that look like\nthem after `--`.\n",
    );
    text
}
