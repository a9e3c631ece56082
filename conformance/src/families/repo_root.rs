//! `repo-root.follows-ctx`: hosts start a plugin in its own workdir and
//! name the repo in `ctx.repo_root`. Started from an unrelated directory,
//! the plugin must give every declared pipeline op the same answer it gave
//! from inside the repo. Only answers that are stable (`determinism.*`)
//! can be compared; errors are compared by code.

use std::time::Instant;

use super::{answer_digest, describe_response, minimal_input, PIPELINE_OPS};
use crate::run::Run;
use crate::session::Answer;

const ID: &str = "repo-root.follows-ctx";

pub(crate) async fn run(run: &mut Run) {
    let declared: Vec<String> = run
        .learned
        .capabilities_ops()
        .into_iter()
        .filter(|op| PIPELINE_OPS.contains(&op.as_str()))
        .collect();
    if declared.is_empty() {
        run.skip(ID, "not judged: the plugin declares no pipeline op");
        return;
    }
    let mut compared = Vec::new();
    let mut not_compared = Vec::new();
    let mut needs_repo = 0;
    for op in &declared {
        match run.learned.answers.get(op) {
            None => not_compared.push(format!("{op} (no answer)")),
            Some(answer) if answer.ok && !run.learned.stable.contains(op) => {
                not_compared.push(format!("{op} (its answers differ from call to call)"))
            }
            Some(answer) if !answer.ok && !run.has_repo => {
                needs_repo += 1;
                not_compared.push(format!("{op} ({})", answer.summary));
            }
            Some(_) => compared.push(op.clone()),
        }
    }
    if compared.is_empty() {
        let reason = if needs_repo > 0 && !run.has_repo {
            format!(
                "needs --repo-root: in an empty scratch directory no pipeline op answered successfully: {}",
                not_compared.join(", ")
            )
        } else {
            format!(
                "not judged: no answer to compare: {}",
                not_compared.join(", ")
            )
        };
        run.skip(ID, reason);
        return;
    }
    if let Some(reason) = run.blocked() {
        run.skip(ID, reason);
        return;
    }
    let started = Instant::now();
    let elsewhere = run.scratch.elsewhere.clone();
    let mut session = match run.open("repo-root", Some(&elsewhere)).await {
        Ok(session) => session,
        Err(reason) => {
            run.skip(ID, reason);
            return;
        }
    };
    let mut differing = Vec::new();
    let mut same = Vec::new();
    for op in &compared {
        let Some(inside) = run.learned.answers.get(op).cloned() else {
            continue;
        };
        let request = run.request(&format!("cf-{op}-elsewhere"), op, minimal_input(op));
        let wait = run.clock.capped(run.clock.op());
        match session.call(&request, wait).await {
            Answer::Answered { response, .. } if answer_digest(&response) == inside.digest => {
                same.push(op.clone())
            }
            Answer::Answered { response, .. } => differing.push(format!(
                "{op} answered {} (in the repo: {})",
                describe_response(&response),
                inside.preview
            )),
            Answer::Unmatched { why, .. } => not_compared.push(format!("{op} ({why})")),
            Answer::Silent { waited } => {
                differing.push(format!(
                    "{op} gave no answer within {} ms",
                    waited.as_millis()
                ));
                break;
            }
            Answer::Ended { how } => {
                differing.push(format!("{op}: the plugin {how}"));
                break;
            }
        }
    }
    session.abandon_all();
    run.close("repo-root", session).await;
    let unjudged = if not_compared.is_empty() {
        String::new()
    } else {
        format!("; not compared: {}", not_compared.join(", "))
    };
    if differing.is_empty() {
        run.pass(
            ID,
            started.elapsed(),
            format!(
                "{} answered the same with the plugin's cwd outside the repo{unjudged}",
                same.join(", ")
            ),
        );
    } else {
        run.fail(
            ID,
            started.elapsed(),
            format!(
                "started in {}, not in the repo: {}{unjudged}",
                elsewhere.display(),
                differing.join("; ")
            ),
            "Resolve every path from ctx.repo_root, never from the process's working directory.",
        );
    }
}
