//! `concurrency.pipelined` (recommended): 8 requests in one write, so the
//! plugin finds several in a single read; each must be answered, matched
//! by id, in any order. The fastest op that answered successfully is used
//! (or the unknown op, which every plugin answers).

use std::time::{Duration, Instant};

use serde_json::json;

use super::{minimal_input, UNKNOWN_OP};
use crate::run::Run;

const ID: &str = "concurrency.pipelined";
const PIPELINED: u32 = 8;

pub(crate) async fn run(run: &mut Run) {
    let fastest = run
        .learned
        .answers
        .iter()
        .filter(|(_, answer)| answer.ok && answer.stream_id.is_none())
        .min_by_key(|(_, answer)| answer.took)
        .map(|(op, answer)| (op.clone(), minimal_input(op), answer.took));
    let chosen = fastest.or_else(|| {
        run.learned
            .unknown_op
            .map(|took| (UNKNOWN_OP.to_owned(), json!({}), took))
    });
    let Some((op, input, took)) = chosen else {
        run.skip(
            ID,
            "not judged: the plugin answered no request, so pipelined ones cannot be",
        );
        return;
    };
    if let Some(reason) = run.blocked() {
        run.skip(ID, reason);
        return;
    }
    let mut session = match run.open("concurrency", None).await {
        Ok(session) => session,
        Err(reason) => {
            run.skip(ID, reason);
            return;
        }
    };
    let ids: Vec<String> = (0..PIPELINED)
        .map(|n| format!("cf-pipelined-{n}"))
        .collect();
    let burst: Vec<_> = ids
        .iter()
        .map(|id| run.request(id, &op, input.clone()))
        .collect();
    // A plugin that serves requests one by one needs PIPELINED times as long.
    let wait = run
        .clock
        .capped(run.clock.op() + took.saturating_mul(PIPELINED));
    let started = Instant::now();
    session.send_burst(&burst).await;
    let misaddressed_before = session.misaddressed.count;
    session
        .pump_until(started + wait, |s| {
            let answered = ids.iter().filter(|id| s.is_answered(id)).count() as u64;
            // Every answer arrived, some with ids nobody sent: stop waiting.
            answered + (s.misaddressed.count - misaddressed_before) >= u64::from(PIPELINED)
        })
        .await;
    let took = started.elapsed();
    let missing: Vec<&String> = ids.iter().filter(|id| !session.is_answered(id)).collect();
    let closed = session.closed();
    session.abandon_all();
    let how = session.last_sent().to_owned();
    run.close("concurrency", session).await;
    if missing.is_empty() {
        run.pass(
            ID,
            took,
            format!(
                "{PIPELINED} pipelined {op} requests answered in {} ms",
                took.as_millis()
            ),
        );
    } else {
        let after = if closed {
            format!("the plugin exited after {how}")
        } else {
            format!("{} ms passed", wait.as_millis())
        };
        run.fail(
            ID,
            took.max(Duration::from_millis(1)),
            format!(
                "{} of {PIPELINED} pipelined {op} requests were not answered ({after}), e.g. {}",
                missing.len(),
                missing[0]
            ),
            "Read every line as it arrives, even several in one read, and answer each request by its request_id.",
        );
    }
}
