//! `streams.*`: a stream op is any op whose answer carries a `stream_id`
//! (Go plugins often list them only in `capabilities.ops`). In a fresh
//! session each stream op is started once; its `end` must arrive, by itself
//! or, for a follow stream that runs until the host goes away, once stdin
//! closes; nothing may follow `end`. An op listed in `capabilities.streams`
//! but not in `ops` is never called by a host: a failure that names the
//! fix. (`streams.events-carry-id` covers every session: see `run_wide`.)

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use crate::clock::base;
use crate::observe::stream_id_of;
use crate::run::Run;
use crate::session::{Answer, Session};

const STREAM_ID: &str = "streams.stream-id";
const END_ARRIVES: &str = "streams.end-arrives";
const NOTHING_AFTER_END: &str = "streams.nothing-after-end";

/// Problems by check id: (message, fix).
type Problems = BTreeMap<&'static str, Vec<(String, String)>>;

pub(crate) async fn run(run: &mut Run) {
    let Some(handshake) = run.learned.handshake.clone() else {
        return;
    };
    let caps = &handshake.capabilities;
    let mut problems = Problems::new();
    let mut notes = Vec::new();
    for op in &caps.streams {
        if !caps.supports_op(op) {
            problem(
                &mut problems,
                STREAM_ID,
                format!("{op} is listed in capabilities.streams but not in capabilities.ops, so hosts never call it"),
                format!("List {op} in capabilities.ops too."),
            );
        } else if let Some(answer) = run
            .learned
            .answers
            .get(op)
            .filter(|a| a.stream_id.is_none())
        {
            problem(
                &mut problems,
                STREAM_ID,
                format!(
                    "{op} is listed in capabilities.streams, but a start was answered {} with no output.stream_id",
                    answer.preview
                ),
                "Answer a stream op with {\"stream_id\": \"...\"}, then send its events.".into(),
            );
        }
    }
    let ops = run.learned.stream_ops();
    let started = Instant::now();
    if ops.is_empty() && problems.is_empty() {
        for id in [STREAM_ID, END_ARRIVES, NOTHING_AFTER_END] {
            run.skip(
                id,
                "not judged: the plugin has no stream op (no answer carried a stream_id)",
            );
        }
        return;
    }
    if !ops.is_empty() {
        if let Some(reason) = run.blocked() {
            for id in [STREAM_ID, END_ARRIVES, NOTHING_AFTER_END] {
                run.skip(id, reason.clone());
            }
            return;
        }
        match run.open("streams", None).await {
            Ok(session) => watch(run, session, &ops, &mut problems, &mut notes).await,
            Err(reason) => {
                for id in [END_ARRIVES, NOTHING_AFTER_END] {
                    run.skip(id, reason.clone());
                }
            }
        }
    }
    let already: Vec<String> = run.checks.iter().map(|c| c.id.clone()).collect();
    for id in [STREAM_ID, END_ARRIVES, NOTHING_AFTER_END] {
        if already.iter().any(|done| done == id) {
            continue;
        }
        if ops.is_empty() && id != STREAM_ID {
            run.skip(id, "not judged: no stream op could be started");
            continue;
        }
        match problems.remove(id) {
            None => {
                let extra = notes
                    .iter()
                    .filter(|(check, _)| *check == id)
                    .map(|(_, note)| format!("; {note}"))
                    .collect::<String>();
                run.pass(
                    id,
                    started.elapsed(),
                    format!("{} stream op(s) behaved{extra}", ops.len()),
                );
            }
            Some(list) => {
                let message = list
                    .iter()
                    .map(|(m, _)| m.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut fixes: Vec<String> = list.into_iter().map(|(_, f)| f).collect();
                fixes.dedup();
                run.fail(id, started.elapsed(), message, fixes.join(" "));
            }
        }
    }
}

fn problem(problems: &mut Problems, id: &'static str, message: String, fix: String) {
    problems.entry(id).or_default().push((message, fix));
}

async fn watch(
    run: &mut Run,
    mut session: Session,
    ops: &[String],
    problems: &mut Problems,
    notes: &mut Vec<(&'static str, String)>,
) {
    let end_fix = "Send {\"type\":\"event\",\"stream_id\":...,\"event\":\"end\"} when a stream is done, and end open streams when stdin closes.";
    let mut follow = Vec::new();
    for op in ops {
        let request = run.request(&format!("cf-stream-{op}"), op, json!({}));
        let wait = run.clock.capped(run.clock.op());
        let stream_id = match session.call(&request, wait).await {
            Answer::Answered { response, .. } => match stream_id_of(&response) {
                Some(id) => id.to_owned(),
                None => {
                    problem(
                        problems,
                        STREAM_ID,
                        format!(
                            "{op} answered with a stream_id before, but now {}",
                            super::describe_response(&response)
                        ),
                        "Answer every start of a stream op with a stream_id.".into(),
                    );
                    continue;
                }
            },
            Answer::Unmatched { .. } | Answer::Silent { .. } | Answer::Ended { .. } => {
                for id in [END_ARRIVES, NOTHING_AFTER_END] {
                    run.skip(id, format!("not judged: a second start of {op} was not answered (see timeout.{op})"));
                }
                run.close("streams", session).await;
                return;
            }
        };
        let window = run.clock.capped(run.clock.wait(base::STREAM_END));
        let sid = stream_id.clone();
        let ended = session
            .pump_until(Instant::now() + window, |s| ended(s, &sid))
            .await;
        if ended {
            session.observe_for(run.clock.wait(base::AFTER_END)).await;
            after_end(&session, op, &stream_id, problems);
        } else {
            follow.push((op.clone(), stream_id));
        }
    }
    if follow.is_empty() {
        run.close("streams", session).await;
        return;
    }
    if run.learned.ignores_eof {
        run.skip(
            END_ARRIVES,
            format!(
                "not judged: {} did not end within {} ms, and the plugin does not exit on stdin EOF, when follow streams end (see shutdown.exits-on-eof)",
                follow.iter().map(|(op, _)| op.as_str()).collect::<Vec<_>>().join(", "),
                run.clock.wait(base::STREAM_END).as_millis()
            ),
        );
    } else {
        // Follow streams run until the host goes away: close stdin.
        session.close_stdin();
        let closed_at = Instant::now();
        let ids: Vec<String> = follow.iter().map(|(_, id)| id.clone()).collect();
        let grace = run.clock.wait(base::EOF_GRACE);
        session
            .pump_until(closed_at + grace, |s| ids.iter().all(|id| ended(s, id)))
            .await;
        session.observe_for(run.clock.wait(base::AFTER_END)).await;
        for (op, stream_id) in &follow {
            match session.seen.streams.get(stream_id).and_then(|t| t.ended) {
                Some(at) => notes.push((
                    END_ARRIVES,
                    format!(
                        "{op} is a follow stream: it ended {} ms after stdin closed",
                        at.saturating_duration_since(closed_at).as_millis()
                    ),
                )),
                None => problem(
                    problems,
                    END_ARRIVES,
                    format!(
                        "{op}: no \"end\" within {} ms of the start, nor within {} ms of stdin closing",
                        run.clock.wait(base::STREAM_END).as_millis(),
                        grace.as_millis()
                    ),
                    end_fix.into(),
                ),
            }
            after_end(&session, op, stream_id, problems);
        }
    }
    run.close("streams", session).await;
}

fn ended(session: &Session, stream_id: &str) -> bool {
    session
        .seen
        .streams
        .get(stream_id)
        .is_some_and(|tally| tally.ended.is_some())
}

fn after_end(session: &Session, op: &str, stream_id: &str, problems: &mut Problems) {
    let late = session
        .seen
        .streams
        .get(stream_id)
        .map_or(0, |t| t.after_end);
    if late > 0 {
        problem(
            problems,
            NOTHING_AFTER_END,
            format!("{op}: {late} event(s) after \"end\" on stream {stream_id:?}"),
            "Send nothing on a stream after its \"end\" event.".into(),
        );
    }
}
