//! `timeout.<op>` and `schema.<op>`: every declared op (but `command.run`,
//! which needs a command: see `commands.*`) gets one minimal valid dry-run
//! request and must answer within the op timeout; pipeline ops must answer
//! in their contract's shape. Answers are remembered for the families that
//! compare them later, and an answer carrying a `stream_id` makes its op a
//! stream op, whether or not `capabilities.streams` lists it.
//!
//! A plugin that dies or wedges on one op is restarted for the next.

use std::time::Duration;

use devctl_contract::ops::COMMAND_RUN;
use devctl_contract::protocol::Response;

use super::{answer_digest, describe_response, minimal_input, output_shape, schema_file};
use crate::observe::stream_id_of;
use crate::run::{OpAnswer, Run};
use crate::session::{Answer, Session};

/// The ops this family calls, in declaration order.
pub(crate) fn plain_ops(run: &Run) -> Vec<String> {
    run.learned
        .capabilities_ops()
        .into_iter()
        .filter(|op| op != COMMAND_RUN)
        .collect()
}

pub(crate) async fn run(run: &mut Run) {
    let mut session: Option<Session> = None;
    let mut stopped: Option<String> = None;
    for op in plain_ops(run) {
        let timeout_id = format!("timeout.{op}");
        let schema_id = output_shape(&op, &serde_json::Value::Null).map(|_| format!("schema.{op}"));
        let skip = |run: &mut Run, reason: &str| {
            run.skip(&timeout_id, reason);
            if let Some(id) = &schema_id {
                run.skip(id, reason);
            }
            run.learned.unusable.insert(op.clone(), reason.to_owned());
        };
        if let Some(reason) = &stopped {
            skip(run, reason);
            continue;
        }
        if run.clock.spent() {
            let reason = run.budget_spent();
            skip(run, &reason);
            continue;
        }
        let mut open = match run.reuse_or_open(&mut session, "timeout").await {
            Ok(open) => open,
            Err(reason) => {
                skip(run, &reason);
                stopped = Some(reason);
                continue;
            }
        };
        let request = run.request(&format!("cf-{op}-1"), &op, minimal_input(&op));
        let full = run.clock.op();
        let answer = open.call(&request, run.clock.capped(full)).await;
        match answer {
            Answer::Answered { response, took } => {
                run.learned.matched_any = true;
                run.pass(
                    &timeout_id,
                    took,
                    format!("answered in {} ms", took.as_millis()),
                );
                if let Some(id) = &schema_id {
                    schema(run, id, &op, &response, took);
                }
                run.learned.answers.insert(
                    op.clone(),
                    OpAnswer {
                        ok: response.ok,
                        digest: answer_digest(&response),
                        preview: describe_response(&response),
                        summary: match &response.error {
                            Some(error) if !response.ok => format!("ok:false with {}", error.code),
                            _ => format!("ok:{}", response.ok),
                        },
                        took,
                        stream_id: stream_id_of(&response).map(str::to_owned),
                    },
                );
                session = Some(open);
            }
            Answer::Unmatched { why, .. } => {
                skip(run, &format!("not judged: it {why}"));
                session = Some(open);
            }
            Answer::Silent { waited } if waited < full => {
                let reason = run.budget_spent();
                skip(run, &reason);
                run.close("timeout", open).await;
            }
            Answer::Silent { waited } => {
                let failure = Failure {
                    took: waited,
                    message: format!(
                        "no answer within {} ms to a minimal {op} request (input {})",
                        waited.as_millis(),
                        request.input
                    ),
                    fix: "Answer every declared op within ctx.deadline_ms, with ok:false and an error if need be.",
                    why: "it did not answer",
                };
                no_answer(run, &op, schema_id.as_deref(), failure);
                // It may be wedged: the next op gets a fresh process.
                run.close("timeout", open).await;
            }
            Answer::Ended { how } => {
                let failure = Failure {
                    took: Duration::ZERO,
                    message: format!("the plugin {how} while handling a minimal {op} request"),
                    fix: "Answer a request you cannot serve with ok:false and an error instead of exiting.",
                    why: "the plugin exited",
                };
                no_answer(run, &op, schema_id.as_deref(), failure);
                run.close("timeout", open).await;
            }
        }
    }
    run.close_kept(session, "timeout").await;
}

/// Why an op has no answer.
struct Failure {
    took: Duration,
    message: String,
    fix: &'static str,
    /// For the families that wanted the answer.
    why: &'static str,
}

/// `timeout.<op>` failed; its schema cannot be judged; later families
/// learn why the op has no answer.
fn no_answer(run: &mut Run, op: &str, schema_id: Option<&str>, failure: Failure) {
    let timeout_id = format!("timeout.{op}");
    run.fail(&timeout_id, failure.took, failure.message, failure.fix);
    if let Some(id) = schema_id {
        run.skip(
            id,
            "not judged: there was no answer (see the timeout check)",
        );
    }
    run.learned
        .unusable
        .insert(op.to_owned(), format!("{} (see {timeout_id})", failure.why));
}

fn schema(run: &mut Run, id: &str, op: &str, response: &Response, took: Duration) {
    let shape = schema_file(op).unwrap_or("contract/schema/");
    if !response.ok {
        let answered = describe_response(response);
        // "Unsupported" for an op the handshake declares is wrong in any
        // repo: no need of the real one to judge that.
        let unsupported = response
            .error
            .as_ref()
            .is_some_and(|e| e.code == devctl_contract::ErrorCode::Unsupported);
        if unsupported {
            run.fail(
                id,
                took,
                format!("{op} is declared in the handshake but was answered {answered}"),
                format!("Answer {op} (its output is described in {shape}), or take it out of capabilities.ops: hosts send declared ops and treat E_UNSUPPORTED as an error."),
            );
        } else if run.has_repo {
            run.fail(
                id,
                took,
                format!("a minimal {op} request (input {}) was answered {answered}", minimal_input(op)),
                format!("Answer it with ok:true and the output in {shape}: hosts send exactly this input when the config is empty."),
            );
        } else {
            run.skip(
                id,
                format!(
                    "needs --repo-root: in an empty scratch directory, {op} answered {answered}"
                ),
            );
        }
        return;
    }
    let output = response.output.clone().unwrap_or(serde_json::Value::Null);
    match output_shape(op, &output) {
        Some(Err(problem)) => run.fail(
            id,
            took,
            problem,
            format!("Return {op}'s output as {shape} describes it."),
        ),
        _ => run.pass(id, took, "the output matches the contract"),
    }
}
