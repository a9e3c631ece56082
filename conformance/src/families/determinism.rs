//! `determinism.<op>` (recommended): each op that answered successfully
//! gets the same request twice more, in a fresh session, and should give
//! the same answer each time (timing fields ignored): a new process catches
//! clocks and random values, a second call in it catches counters and
//! caches. Stream ops are left out: each start may name a new stream. The
//! ops found stable are what `repo-root.*` compares.

use std::time::Duration;

use super::{answer_digest, describe_response, minimal_input};
use crate::run::Run;
use crate::session::{Answer, Session};

enum Verdict {
    Fail(Duration, String),
    Skip(String),
    /// Failed, and the plugin may be wedged: the next op gets a new process.
    Wedged(Duration, String),
}

pub(crate) async fn run(run: &mut Run) {
    let mut ops = Vec::new();
    for op in super::ops::plain_ops(run) {
        let id = format!("determinism.{op}");
        match run.learned.answers.get(&op) {
            Some(answer) if answer.ok && answer.stream_id.is_none() => ops.push(op),
            Some(answer) if answer.stream_id.is_some() => {}
            Some(answer) => {
                let why = if run.has_repo {
                    "not judged"
                } else {
                    "needs --repo-root"
                };
                let reason = format!(
                    "{why}: there is no successful answer to repeat ({op} answered {})",
                    answer.summary
                );
                run.skip(&id, reason);
            }
            None => {
                let why = run.learned.unusable.get(&op).cloned().unwrap_or_default();
                run.skip(
                    &id,
                    format!("not judged: there is no answer to repeat ({why})"),
                );
            }
        }
    }
    if ops.is_empty() {
        return;
    }
    if let Some(reason) = run.blocked() {
        for op in ops {
            run.skip(&format!("determinism.{op}"), reason.clone());
        }
        return;
    }
    let mut session: Option<Session> = None;
    for (n, op) in ops.iter().enumerate() {
        let id = format!("determinism.{op}");
        let Some(first) = run.learned.answers.get(op).cloned() else {
            continue;
        };
        let mut open = match run.reuse_or_open(&mut session, "determinism").await {
            Ok(open) => open,
            Err(reason) => {
                for op in &ops[n..] {
                    run.skip(&format!("determinism.{op}"), reason.clone());
                }
                return;
            }
        };
        let fix = "Derive answers from the request and the repo only: no counters, clocks or random values (duration_ms is ignored).";
        let mut verdict = None;
        let mut took = Duration::ZERO;
        for n in 2..=3 {
            let request = run.request(&format!("cf-{op}-{n}"), op, minimal_input(op));
            let wait = run.clock.capped(run.clock.op());
            match open.call(&request, wait).await {
                Answer::Answered { response, took: t }
                    if answer_digest(&response) == first.digest =>
                {
                    took += t;
                }
                Answer::Answered { response, took: t } => {
                    let message = format!(
                        "the same request gave a different answer: first {}, then {}",
                        first.preview,
                        describe_response(&response)
                    );
                    verdict = Some(Verdict::Fail(t, message));
                    break;
                }
                Answer::Unmatched { why, .. } => {
                    verdict = Some(Verdict::Skip(format!("not judged: it {why}")));
                    break;
                }
                Answer::Silent { waited } => {
                    let message = format!(
                        "answered before, but not again within {} ms",
                        waited.as_millis()
                    );
                    verdict = Some(Verdict::Wedged(waited, message));
                    break;
                }
                Answer::Ended { how } => {
                    let message = format!("answered before; asked again, the plugin {how}");
                    verdict = Some(Verdict::Wedged(Duration::ZERO, message));
                    break;
                }
            }
        }
        match verdict {
            None => {
                run.learned.stable.insert(op.clone());
                run.pass(
                    &id,
                    took,
                    "the same request gave the same answer three times",
                );
                session = Some(open);
            }
            Some(Verdict::Fail(took, message)) => {
                run.fail(&id, took, message, fix);
                session = Some(open);
            }
            Some(Verdict::Skip(reason)) => {
                run.skip(&id, reason);
                session = Some(open);
            }
            Some(Verdict::Wedged(took, message)) => {
                run.fail(&id, took, message, fix);
                run.close("determinism", open).await;
            }
        }
    }
    run.close_kept(session, "determinism").await;
}
