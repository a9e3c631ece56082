//! `devctl completion SHELL`: the completion script, from the command
//! line's definition plus the commands the configured plugins provide (when
//! they answer within the discovery budget; without a repo, built-ins only).

use clap::CommandFactory;

use super::open;
use super::plugin_command::discover;
use crate::cli::{Cli, Global, PipelineFlags};

pub async fn run(
    global: &Global,
    pipeline: &PipelineFlags,
    shell: clap_complete::Shell,
) -> anyhow::Result<u8> {
    let mut cli = Cli::command();
    if let Ok(repo) = open(global, pipeline) {
        let discovery = discover(&repo).await;
        for (spec, plugin) in &discovery.commands {
            if cli.find_subcommand(&spec.name).is_some() {
                continue;
            }
            // A shell cannot complete a word with spaces or quotes in it,
            // and clap refuses such a name outright.
            if let Err(problem) = devctl_contract::names::check_name(&spec.name) {
                eprintln!(
                    "devctl: warning: plugin {plugin}'s command is left out of the completion: {problem}"
                );
                continue;
            }
            if spec.name.starts_with('-') {
                eprintln!(
                    "devctl: warning: plugin {plugin}'s command {:?} is left out of the completion: it looks like a flag",
                    spec.name
                );
                continue;
            }
            let about = spec
                .help
                .clone()
                .unwrap_or_else(|| format!("a command of plugin {plugin}"));
            cli = cli.subcommand(
                clap::Command::new(spec.name.clone()).about(about).arg(
                    clap::Arg::new("args")
                        .num_args(0..)
                        .trailing_var_arg(true)
                        .allow_hyphen_values(true),
                ),
            );
        }
        devctl::repository::close_all_within(
            discovery.clients,
            super::plugin_command::CLOSE_BUDGET,
        )
        .await;
    }
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli, "devctl", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(0)
}
