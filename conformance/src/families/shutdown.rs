//! `shutdown.exits-on-eof`: once its stdin closes, the plugin must exit
//! within 2 s, the way hosts stop it. The first session (handshake and an
//! unknown op, then EOF) usually tells; when it cannot (the plugin was
//! wedged or had died), a fresh session gets only its handshake read and
//! its stdin closed. (`shutdown.no-leftovers` covers every session that
//! ended with an exit on EOF: see `run_wide`.)

use std::time::Duration;

use crate::clock::base;
use crate::run::Run;
use crate::session::{describe_status, Exit};

const ID: &str = "shutdown.exits-on-eof";

/// Judges how a session ended, when it tells; false when it cannot.
pub(crate) fn judge(run: &mut Run, exit: &Exit) -> bool {
    match exit {
        Exit::OnEof { status, after } => run.pass(
            ID,
            *after,
            format!(
                "{} {} ms after stdin closed",
                describe_status(*status),
                after.as_millis()
            ),
        ),
        Exit::IgnoredEof { waited } => run.fail(
            ID,
            *waited,
            format!("still running {} ms after stdin closed", waited.as_millis()),
            "Exit when stdin reaches end of file: that is how hosts stop a plugin.",
        ),
        Exit::Gone { .. } | Exit::Wedged => return false,
    }
    true
}

/// A session just for this check.
pub(crate) async fn run(run: &mut Run) {
    let session = match run.open("shutdown", None).await {
        Ok(session) => session,
        Err(reason) => {
            run.skip(ID, reason);
            return;
        }
    };
    let grace = run.clock.wait(base::EOF_GRACE);
    let ending = run.close_with_grace("shutdown", session, grace).await;
    if !judge(run, &ending.exit) {
        match ending.exit {
            Exit::Gone { how } => run.fail(
                ID,
                Duration::ZERO,
                format!("the plugin {how} right after its handshake, before stdin closed"),
                "Keep reading requests until stdin closes, then exit.",
            ),
            _ => run.skip(ID, "not judged: a request was left unanswered"),
        }
    }
}
