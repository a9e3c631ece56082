//! `robustness.*` (recommended): input no host sends. Each probe runs in
//! its own session, so one crash is judged once: the plugin gets the probe,
//! then an ordinary request, and should still answer. Every probe carries
//! `ctx.dry_run` and the scratch `repo_root` (the invalid-JSON line cannot:
//! it is not JSON), and the ones naming an op name a query op
//! (`config.mutate`, `validate.run`, `launch.plan`) or, failing that, the
//! unknown op, so a plugin that misreads a probe still cannot change the
//! repo. Answers to probes without a usable id count against nothing.

use std::time::Duration;

use devctl_contract::protocol::Request;
use serde_json::json;

use super::{minimal_input, QUERY_OPS, UNKNOWN_OP};
use crate::clock::base;
use crate::run::Run;
use crate::session::{Answer, Session};

const INVALID_JSON: &str = "robustness.invalid-json";
const MISSING_ID: &str = "robustness.missing-request-id";
const WRONG_TYPES: &str = "robustness.wrong-input-types";
const BLANK_LINES: &str = "robustness.blank-lines";

const CARRY_ON: &str = "Skip (or answer) input you cannot use, and keep reading.";

/// The request that tells whether the plugin still answers.
struct Liveness {
    op: String,
    wait: Duration,
}

pub(crate) async fn run(run: &mut Run) {
    // The probe most plugins die of goes last.
    let probes: Vec<&str> = [BLANK_LINES, MISSING_ID, WRONG_TYPES, INVALID_JSON]
        .into_iter()
        .filter(|id| run.selection.reports(id))
        .collect();
    if probes.is_empty() {
        return;
    }
    let Some(liveness) = liveness(run) else {
        for id in probes {
            run.skip(id, "not judged: the plugin answered no request, so whether it still answers cannot be told");
        }
        return;
    };
    if let Some(reason) = run.blocked() {
        for id in probes {
            run.skip(id, reason.clone());
        }
        return;
    }
    // The op malformed probes name: one that only answers questions.
    let target = QUERY_OPS
        .iter()
        .find(|op| run.learned.answers.contains_key(**op))
        .map_or(UNKNOWN_OP, |op| *op)
        .to_owned();
    // One session while the plugin survives; a fresh one after it died or
    // stopped answering, so each probe is judged on its own.
    let mut session: Option<Session> = None;
    for id in probes {
        let mut open = match run.reuse_or_open(&mut session, "robustness").await {
            Ok(open) => open,
            Err(reason) => {
                run.skip(id, reason);
                continue;
            }
        };
        let healthy = match probe(run, &mut open, id, &target).await {
            Probed::Sent(what) => still_answers(run, &mut open, id, &what, &liveness).await,
            Probed::Judged => false,
        };
        if healthy {
            session = Some(open);
        } else {
            open.abandon_all();
            run.close("robustness", open).await;
        }
    }
    run.close_kept(session, "robustness").await;
}

enum Probed {
    /// Sent; now see whether the plugin still answers. Says what was sent.
    Sent(String),
    /// The probe's own answer already decided the check (the plugin may
    /// not be in a state to go on).
    Judged,
}

async fn probe(run: &mut Run, session: &mut Session, id: &str, target: &str) -> Probed {
    match id {
        INVALID_JSON => {
            let line = "{\"type\":\"request\",\"request_id\":\"cf-bad\",\"op\": this is not json";
            let what = "a line of invalid JSON";
            session.send_probe(line, what, 1, &["cf-bad"]).await;
            Probed::Sent(what.into())
        }
        MISSING_ID => {
            let line = json!({
                "type": "request",
                "op": target,
                "ctx": run.context(),
                "input": minimal_input(target),
            });
            let what = format!("a {target} request without request_id");
            session.send_probe(&line.to_string(), &what, 1, &[]).await;
            Probed::Sent(what)
        }
        BLANK_LINES => {
            session.send_probe("", "blank lines", 0, &[]).await;
            session.send_probe("   \t", "blank lines", 0, &[]).await;
            Probed::Sent("blank lines".into())
        }
        _ => {
            let request: Request = run.request(
                "cf-wrong-types",
                target,
                json!("this should have been an object"),
            );
            let what = format!("a {target} request whose input was a string");
            let wait = run.clock.capped(run.clock.op());
            match session.call(&request, wait).await {
                Answer::Answered { .. } => Probed::Sent(what),
                Answer::Unmatched { why, .. } => {
                    run.skip(WRONG_TYPES, format!("not judged: it {why}"));
                    Probed::Judged
                }
                Answer::Silent { waited } => {
                    run.fail(
                        WRONG_TYPES,
                        waited,
                        format!("no answer within {} ms to {what}", waited.as_millis()),
                        "Answer a request whose input has the wrong shape with ok:false and an error naming the problem.",
                    );
                    Probed::Judged
                }
                Answer::Ended { how } => {
                    run.fail(
                        WRONG_TYPES,
                        Duration::ZERO,
                        format!("the plugin {how} after {what}"),
                        "Answer a request whose input has the wrong shape with ok:false and an error instead of exiting.",
                    );
                    Probed::Judged
                }
            }
        }
    }
}

/// Judges whether the plugin still answers after `what`; true if it does.
async fn still_answers(
    run: &mut Run,
    session: &mut Session,
    id: &str,
    what: &str,
    liveness: &Liveness,
) -> bool {
    let probe = id.split_once('.').map_or(id, |(_, name)| name);
    let request = run.request(
        &format!("cf-still-there-after-{probe}"),
        &liveness.op,
        minimal_input(&liveness.op),
    );
    let wait = run.clock.capped(liveness.wait);
    match session.call(&request, wait).await {
        Answer::Answered { took, .. } => {
            run.pass(id, took, format!("still answering after {what}"));
            return true;
        }
        Answer::Unmatched { why, .. } => {
            run.skip(id, format!("not judged: the next request was {why}"))
        }
        Answer::Silent { waited } => run.fail(
            id,
            waited,
            format!(
                "after {what}, no answer within {} ms to a {} request",
                waited.as_millis(),
                liveness.op
            ),
            CARRY_ON,
        ),
        Answer::Ended { how } => run.fail(
            id,
            Duration::ZERO,
            format!("the plugin {how} after {what}"),
            CARRY_ON,
        ),
    }
    false
}

/// The unknown op if the plugin refused it in time, else its fastest
/// answered op (a query op first); with a wait a few times what that took.
fn liveness(run: &Run) -> Option<Liveness> {
    let (op, took) = match run.learned.unknown_op {
        Some(took) => (UNKNOWN_OP.to_owned(), took),
        None => run
            .learned
            .answers
            .iter()
            .filter(|(_, answer)| answer.stream_id.is_none())
            .min_by_key(|(op, answer)| (!QUERY_OPS.contains(&op.as_str()), answer.took))
            .map(|(op, answer)| (op.clone(), answer.took))?,
    };
    let wait = run
        .clock
        .wait(base::LIVENESS)
        .max(took.saturating_mul(4))
        .min(run.clock.op());
    Some(Liveness { op, wait })
}
