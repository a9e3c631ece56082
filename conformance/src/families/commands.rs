//! `commands.<name>` (recommended): a declared command is offered by hosts
//! only when the plugin also declares `command.run` (judged always); with
//! `--probe-commands` each command is run once, with `dry_run`, and must
//! answer `{"exit_code": N}`. Probing is opt-in: it runs plugin code.

use std::time::Duration;

use devctl_contract::ops::{CommandRunOutput, COMMAND_RUN};
use serde_json::json;

use super::describe_response;
use crate::run::Run;
use crate::session::{Answer, Session};

pub(crate) async fn run(run: &mut Run) {
    let Some(handshake) = run.learned.handshake.clone() else {
        return;
    };
    let commands: Vec<String> = handshake
        .capabilities
        .commands
        .iter()
        .map(|c| c.name.clone())
        .filter(|name| !name.trim().is_empty())
        .collect();
    if commands.is_empty() {
        return;
    }
    if !handshake.capabilities.supports_op(COMMAND_RUN) {
        for name in &commands {
            run.fail(
                &format!("commands.{name}"),
                Duration::ZERO,
                "the command is declared, but command.run is not in capabilities.ops, so hosts never offer it",
                "Add \"command.run\" to capabilities.ops.",
            );
        }
        return;
    }
    if !run.probe_commands {
        for name in &commands {
            run.skip(
                &format!("commands.{name}"),
                "not run: pass --probe-commands to run each command once with dry_run",
            );
        }
        return;
    }
    if let Some(reason) = run.blocked() {
        for name in &commands {
            run.skip(&format!("commands.{name}"), reason.clone());
        }
        return;
    }
    let mut session: Option<Session> = None;
    for (n, name) in commands.iter().enumerate() {
        let id = format!("commands.{name}");
        let mut open = match run.reuse_or_open(&mut session, "commands").await {
            Ok(open) => open,
            Err(reason) => {
                for name in &commands[n..] {
                    run.skip(&format!("commands.{name}"), reason.clone());
                }
                return;
            }
        };
        let input = json!({"name": name, "argv": [], "config": {}});
        let request = run.request(&format!("cf-command-{n}"), COMMAND_RUN, input);
        let wait = run.clock.capped(run.clock.op());
        let shape = "Answer command.run with ok:true and {\"exit_code\": N}; with dry_run, only report what the command would do.";
        match open.call(&request, wait).await {
            Answer::Answered { response, took } => {
                let exit = response
                    .output
                    .clone()
                    .filter(|_| response.ok)
                    .and_then(|o| serde_json::from_value::<CommandRunOutput>(o).ok());
                match exit {
                    Some(output) => run.pass(
                        &id,
                        took,
                        format!(
                            "the dry run exited {} in {} ms",
                            output.exit_code,
                            took.as_millis()
                        ),
                    ),
                    None => run.fail(
                        &id,
                        took,
                        format!("answered {}", describe_response(&response)),
                        shape,
                    ),
                }
                session = Some(open);
            }
            Answer::Unmatched { why, .. } => {
                run.skip(&id, format!("not judged: it {why}"));
                session = Some(open);
            }
            Answer::Silent { waited } => {
                run.fail(
                    &id,
                    waited,
                    format!("no answer within {} ms", waited.as_millis()),
                    shape,
                );
                run.close("commands", open).await;
            }
            Answer::Ended { how } => {
                run.fail(
                    &id,
                    Duration::ZERO,
                    format!("the plugin {how} while running the command"),
                    shape,
                );
                run.close("commands", open).await;
            }
        }
    }
    run.close_kept(session, "commands").await;
}
