//! The verdicts that cover every session of the run: what a plugin wrote
//! on stdout at any time (`stdout.*`, `response.*`, stray events), whether
//! any session changed the repo (`dry-run.*`), and whether any exit on EOF
//! left a process behind (`shutdown.no-leftovers`). Each failure names the
//! family whose session showed it.

use std::time::Duration;

use crate::observe::Sample;
use crate::run::{Run, SessionRecord};

pub(crate) fn judge(run: &mut Run) {
    stdout(run);
    responses(run);
    stray_events(run);
    leftovers(run);
    dry_run(run);
    unknown_op_id(run);
}

/// The sessions where `pick` saw something, summed: the total, a few
/// examples, and the families.
fn gather(run: &Run, pick: impl Fn(&SessionRecord) -> &Sample) -> (Sample, String) {
    let mut total = Sample::default();
    let mut families: Vec<&str> = Vec::new();
    for session in &run.sessions {
        let sample = pick(session);
        if sample.count > 0 {
            total.absorb(sample);
            if !families.contains(&session.family) {
                families.push(session.family);
            }
        }
    }
    let place = match families.len() {
        0 => String::new(),
        1 => format!(" (in the {} session)", families[0]),
        _ => format!(" (in the {} sessions)", families.join(", ")),
    };
    (total, place)
}

fn stdout(run: &mut Run) {
    let (lines, place) = gather(run, |s| &s.non_frames);
    let oversized: u64 = run.sessions.iter().map(|s| s.oversized).sum();
    if lines.count == 0 && oversized == 0 {
        let n = run.sessions.len();
        run.pass(
            "stdout.frames-only",
            Duration::ZERO,
            format!("every stdout line after the handshake was a frame, in {n} session(s)"),
        );
        return;
    }
    let mut message = format!(
        "{} line(s) on stdout after the handshake were not frames{place}, e.g. {:?}",
        lines.count,
        lines.first.first().cloned().unwrap_or_default()
    );
    if oversized > 0 {
        message.push_str(&format!("; {oversized} line(s) were longer than 64 MiB"));
    }
    run.fail(
        "stdout.frames-only",
        Duration::ZERO,
        message,
        "Write logs to stderr: stdout carries protocol frames only, one JSON object per line.",
    );
}

fn responses(run: &mut Run) {
    none_seen(
        run,
        "response.id-echoed",
        |s| &s.misaddressed,
        "every response carried the id of a request that was sent",
        "response(s) carried ids that were never sent",
        "Copy request_id from each request into its response.",
    );
    none_seen(
        run,
        "response.exactly-one",
        |s| &s.duplicates,
        "no request was answered twice",
        "extra response(s) to requests already answered",
        "Send exactly one response per request.",
    );
    none_seen(
        run,
        "response.no-unsolicited",
        |s| &s.unexpected,
        "no handshake or request frames after the handshake",
        "handshake or request frame(s) after the handshake",
        "After the handshake, send only responses and events.",
    );
}

/// Passes `id` when no session saw what `pick` counts; otherwise fails it
/// with the count, where it was seen and examples.
fn none_seen(
    run: &mut Run,
    id: &str,
    pick: impl Fn(&SessionRecord) -> &Sample,
    passed: &str,
    what: &str,
    fix: &str,
) {
    let (seen, place) = gather(run, pick);
    if seen.count == 0 {
        run.pass(id, Duration::ZERO, passed);
    } else {
        run.fail(
            id,
            Duration::ZERO,
            format!("{} {what}{place}: {:?}", seen.count, seen.first),
            fix,
        );
    }
}

fn stray_events(run: &mut Run) {
    const ID: &str = "streams.events-carry-id";
    let (strays, place) = gather(run, |s| &s.stray_events);
    if strays.count > 0 {
        run.fail(
            ID,
            Duration::ZERO,
            format!(
                "{} event(s) for stream ids that no answer returned{place}, e.g. {:?}",
                strays.count, strays.first
            ),
            "Send events only with the stream_id your answer returned, and only for streams a request started.",
        );
    } else if run.learned.stream_ops().is_empty() {
        run.skip(
            ID,
            "not judged: the plugin has no stream op and sent no events",
        );
    } else {
        run.pass(
            ID,
            Duration::ZERO,
            "every event carried the id of a stream the plugin started",
        );
    }
}

fn leftovers(run: &mut Run) {
    const ID: &str = "shutdown.no-leftovers";
    let mut exits = 0;
    let mut left = Vec::new();
    let mut unknown = None;
    for session in &run.sessions {
        match &session.leftovers {
            None => {}
            Some(Ok(list)) => {
                exits += 1;
                if !list.is_empty() {
                    left.push(format!(
                        "after the {} session: {}",
                        session.family,
                        list.join(", ")
                    ));
                }
            }
            Some(Err(err)) => unknown = Some(err.clone()),
        }
    }
    if !left.is_empty() {
        let more = match left.len() {
            n if n > 2 => format!("; and after {} more sessions", n - 2),
            _ => String::new(),
        };
        left.truncate(2);
        run.fail(
            ID,
            Duration::ZERO,
            format!(
                "the plugin exited on stdin EOF and left processes running ({}{more})",
                left.join("; ")
            ),
            "Stop the processes you start before exiting (e.g. signal their process group), including those started with setsid or a double fork.",
        );
    } else if let Some(err) = unknown {
        run.skip(ID, format!("not judged: {err}"));
    } else if exits == 0 {
        run.skip(ID, "not judged: the plugin never exited by itself on stdin EOF (see shutdown.exits-on-eof)");
    } else {
        run.pass(
            ID,
            Duration::ZERO,
            format!("nothing was left running after {exits} exit(s) on stdin EOF"),
        );
    }
}

fn dry_run(run: &mut Run) {
    let changes: Vec<String> = run
        .sessions
        .iter()
        .filter(|s| !s.repo_changes.is_empty())
        .map(|s| {
            let mut shown: Vec<String> = s.repo_changes.iter().take(5).cloned().collect();
            if s.repo_changes.len() > 5 {
                shown.push(format!("and {} more", s.repo_changes.len() - 5));
            }
            format!("during the {} checks: {}", s.family, shown.join(", "))
        })
        .collect();
    if changes.is_empty() {
        let n = run.sessions.len();
        run.pass(
            "dry-run.repo-unchanged",
            Duration::ZERO,
            format!("every request had dry_run: true and the scratch repo stayed byte-identical across {n} session(s)"),
        );
    } else {
        run.fail(
            "dry-run.repo-unchanged",
            Duration::ZERO,
            format!(
                "requests with dry_run: true changed the repo ({})",
                changes.join("; ")
            ),
            "With ctx.dry_run, only report what would be done; change nothing on disk.",
        );
    }
}

/// The unknown op was answered with another id: its own mistake when the
/// plugin echoes ids elsewhere; otherwise `response.id-echoed` says it.
fn unknown_op_id(run: &mut Run) {
    const ID: &str = "unknown-op.id-echoed";
    let Some(id) = run.learned.unknown_op_misaddressed.clone() else {
        return;
    };
    if run.learned.matched_any {
        run.fail(
            ID,
            Duration::ZERO,
            format!("the refusal of an unknown op carried request_id {id:?} instead of \"cf-unknown-1\", though other answers carry their ids"),
            "Copy request_id into the E_UNSUPPORTED answer too.",
        );
    } else {
        run.skip(
            ID,
            "not judged: no answer carries its request's id (see response.id-echoed)",
        );
    }
}
