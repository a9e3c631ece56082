//! `handshake.*` and `unknown-op.*`: the first session. The plugin must
//! print a valid v2 handshake first, within 2 s, and refuse an op it does
//! not know with `E_UNSUPPORTED` within 500 ms. Without a handshake there
//! is nothing else to check.

use std::time::{Duration, Instant};

use devctl_contract::handshake::{validate_handshake, HandshakeProblem};
use devctl_contract::protocol::Handshake;
use devctl_contract::ErrorCode;
use serde_json::json;

use super::{describe_response, UNKNOWN_OP};
use crate::clock::base;
use crate::observe::Sample;
use crate::run::Run;
use crate::session::{Answer, HandshakeOutcome, Session};

/// What the first session found.
pub(crate) struct First {
    /// `None` when there was none.
    pub handshake: Option<Handshake>,
    /// Whether closing it judged `shutdown.exits-on-eof`.
    pub judged_eof: bool,
}

/// Runs the first session. `Err` only when the plugin cannot be started
/// at all.
pub(crate) async fn run(run: &mut Run) -> std::io::Result<First> {
    let started = Instant::now();
    let mut session = Session::start(&run.spec, &run.scratch.root)?;
    let limit = run.clock.handshake();
    let outcome = session
        .handshake(started, limit.mul_f64(base::LATE_HANDSHAKE))
        .await;
    let handshake = match outcome {
        HandshakeOutcome::Missing {
            reason,
            junk_before,
        } => {
            let hint = session
                .stderr_tail()
                .filter(|_| !reason.contains("stderr"))
                .map(|line| format!("; its last stderr line: {line:?}"))
                .unwrap_or_default();
            first_frame(run, started.elapsed(), &junk_before, false);
            run.fail(
                "handshake.in-time",
                started.elapsed(),
                format!("{reason}{hint}"),
                format!(
                    "Print the handshake as the first stdout line within {} ms of starting; do slow set-up after it.",
                    limit.as_millis()
                ),
            );
            for id in [
                "handshake.version",
                "handshake.commands-unique",
                "handshake.valid",
            ] {
                run.skip(id, "not judged: there was no handshake");
            }
            // No handshake: no point waiting for an exit on EOF either.
            run.close_with_grace("handshake", session, Duration::ZERO)
                .await;
            return Ok(First {
                handshake: None,
                judged_eof: false,
            });
        }
        HandshakeOutcome::Malformed {
            error,
            after,
            junk_before,
        } => {
            first_frame(run, after, &junk_before, true);
            run.pass(
                "handshake.in-time",
                after,
                format!("a handshake line after {} ms", after.as_millis()),
            );
            run.fail(
                "handshake.valid",
                after,
                format!("the handshake does not parse: {error}"),
                "Send {\"type\":\"handshake\",\"protocol_version\":\"v2\",\"plugin_name\":\"…\",\"capabilities\":{\"ops\":[…]}} (protocol_version is the string \"v2\"), as one line under 64 MiB; see contract/schema/handshake.json.",
            );
            for id in ["handshake.version", "handshake.commands-unique"] {
                run.skip(id, "not judged: the handshake does not parse");
            }
            run.close_with_grace("handshake", session, Duration::ZERO)
                .await;
            return Ok(First {
                handshake: None,
                judged_eof: false,
            });
        }
        HandshakeOutcome::Received {
            handshake,
            after,
            junk_before,
        } => {
            first_frame(run, after, &junk_before, true);
            run.start_spare();
            if after <= limit {
                run.pass(
                    "handshake.in-time",
                    after,
                    format!("handshake after {} ms", after.as_millis()),
                );
            } else {
                run.fail(
                    "handshake.in-time",
                    after,
                    format!(
                        "the handshake came after {} ms; hosts give up after {} ms",
                        after.as_millis(),
                        limit.as_millis()
                    ),
                    "Print the handshake before any slow set-up (loading config, compiling, connecting).",
                );
            }
            handshake
        }
    };
    judge_handshake(run, &handshake);
    run.learned.handshake = Some(handshake.clone());
    if run
        .selection
        .wants_any(&["unknown-op", "robustness", "concurrency", "response"])
    {
        unknown_op(run, &mut session).await;
    }
    let ending = run.close("handshake", session).await;
    let judged_eof = run.selection.wants("shutdown") && super::shutdown::judge(run, &ending.exit);
    Ok(First {
        handshake: Some(handshake),
        judged_eof,
    })
}

fn first_frame(run: &mut Run, took: Duration, junk: &Sample, received: bool) {
    if junk.count > 0 {
        run.fail(
            "handshake.first-frame",
            took,
            format!(
                "{} line(s) on stdout before the handshake, the first: {:?}",
                junk.count,
                junk.first.first().cloned().unwrap_or_default()
            ),
            "Write nothing to stdout before the handshake; logs belong on stderr.",
        );
    } else if received {
        run.pass(
            "handshake.first-frame",
            took,
            "the first stdout line is the handshake",
        );
    } else {
        run.fail(
            "handshake.first-frame",
            took,
            "no handshake frame was written",
            "Start by printing {\"type\":\"handshake\",\"protocol_version\":\"v2\",...} as one line on stdout.",
        );
    }
}

fn judge_handshake(run: &mut Run, handshake: &Handshake) {
    let problems = validate_handshake(handshake).err().unwrap_or_default();
    let describe = |wanted: fn(&HandshakeProblem) -> bool| {
        problems
            .iter()
            .filter(|p| wanted(p))
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let version = describe(|p| matches!(p, HandshakeProblem::WrongVersion(_)));
    let duplicates = describe(|p| matches!(p, HandshakeProblem::DuplicateCommand(_)));
    let rest = describe(|p| {
        !matches!(
            p,
            HandshakeProblem::WrongVersion(_) | HandshakeProblem::DuplicateCommand(_)
        )
    });
    if version.is_empty() {
        run.pass(
            "handshake.version",
            Duration::ZERO,
            "protocol_version is \"v2\"",
        );
    } else {
        run.fail(
            "handshake.version",
            Duration::ZERO,
            version,
            "Send \"protocol_version\": \"v2\" in the handshake.",
        );
    }
    if duplicates.is_empty() {
        run.pass(
            "handshake.commands-unique",
            Duration::ZERO,
            format!(
                "{} command(s), names unique",
                handshake.capabilities.commands.len()
            ),
        );
    } else {
        run.fail(
            "handshake.commands-unique",
            Duration::ZERO,
            duplicates,
            "Declare each command once in capabilities.commands.",
        );
    }
    if rest.is_empty() {
        run.pass(
            "handshake.valid",
            Duration::ZERO,
            format!(
                "plugin {:?} declares {} op(s)",
                handshake.plugin_name,
                handshake.capabilities.ops.len()
            ),
        );
    } else {
        run.fail(
            "handshake.valid",
            Duration::ZERO,
            rest,
            "Give the plugin a plugin_name, and every command and args_spec entry a name (and a type).",
        );
    }
}

async fn unknown_op(run: &mut Run, session: &mut Session) {
    let request = run.request("cf-unknown-1", UNKNOWN_OP, json!({}));
    let limit = run.clock.unknown_op();
    let wait = run.clock.capped(limit * base::UNKNOWN_OP_WAIT_FACTOR);
    let refuse = "Answer every request for an op you do not implement with ok:false and error.code \"E_UNSUPPORTED\".";
    match session.call(&request, wait).await {
        Answer::Answered { response, took } => {
            run.learned.matched_any = true;
            run.pass(
                "unknown-op.id-echoed",
                took,
                "the refusal carried the request's id",
            );
            let code = response.error.as_ref().map(|e| &e.code);
            if !response.ok && code == Some(&ErrorCode::Unsupported) {
                run.pass("unknown-op.unsupported", took, "answered E_UNSUPPORTED");
            } else {
                run.fail(
                    "unknown-op.unsupported",
                    took,
                    format!(
                        "an unknown op was answered {}",
                        describe_response(&response)
                    ),
                    refuse,
                );
            }
            if took <= limit {
                run.learned.unknown_op = Some(took);
                run.pass(
                    "unknown-op.fast",
                    took,
                    format!("refused in {} ms", took.as_millis()),
                );
            } else {
                run.fail(
                    "unknown-op.fast",
                    took,
                    format!(
                        "refused after {} ms; the limit is {} ms",
                        took.as_millis(),
                        limit.as_millis()
                    ),
                    "Refuse unknown ops at once, before any slow work.",
                );
            }
        }
        Answer::Unmatched { id, why } => {
            // A wrong id is judged at the end: its own mistake only if
            // other answers carry their ids (otherwise response.id-echoed
            // says it).
            let reason = format!("not judged: it {why}");
            match id {
                Some(id) => run.learned.unknown_op_misaddressed = Some(id),
                None => run.skip("unknown-op.id-echoed", reason.clone()),
            }
            run.skip("unknown-op.unsupported", reason.clone());
            run.skip("unknown-op.fast", reason);
        }
        Answer::Silent { waited } => {
            let message = format!(
                "no answer within {} ms to op {UNKNOWN_OP:?}",
                waited.as_millis()
            );
            run.fail("unknown-op.unsupported", waited, message.clone(), refuse);
            run.fail(
                "unknown-op.fast",
                waited,
                message,
                format!("Refuse unknown ops within {} ms.", limit.as_millis()),
            );
            run.skip("unknown-op.id-echoed", "not judged: there was no answer");
        }
        Answer::Ended { how } => {
            run.fail(
                "unknown-op.unsupported",
                Duration::ZERO,
                format!("the plugin {how} when asked for op {UNKNOWN_OP:?}"),
                refuse,
            );
            run.skip("unknown-op.fast", "not judged: there was no answer");
            run.skip("unknown-op.id-echoed", "not judged: there was no answer");
        }
    }
}
