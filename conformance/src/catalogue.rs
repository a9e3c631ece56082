//! Every check the suite can report: its id, its severity, what it checks
//! and why it has that severity. Ids are stable API (`family.name`); a
//! `<op>` or `<name>` part stands for each op or command of the plugin.
//!
//! A check is `required` only where a real host (the Go devctl or ours)
//! depends on the behaviour; surviving input no host sends, determinism and
//! pipelining are `recommended`. `devctl-conformance --list` prints this
//! table, and verdicts take their severity from it, so the two never differ.

use crate::report::Severity;

/// One check (or, for `<op>`/`<name>` ids, one check per op or command).
#[derive(Debug, Clone, Copy)]
pub struct CheckInfo {
    pub id: &'static str,
    pub severity: Severity,
    /// What passes.
    pub checks: &'static str,
    /// Why it has its severity.
    pub why: &'static str,
}

use Severity::{Recommended, Required};

/// Every family, in report order.
pub const FAMILIES: &[&str] = &[
    "handshake",
    "stdout",
    "unknown-op",
    "timeout",
    "response",
    "schema",
    "dry-run",
    "determinism",
    "repo-root",
    "robustness",
    "concurrency",
    "streams",
    "shutdown",
    "commands",
];

pub const CATALOGUE: &[CheckInfo] = &[
    CheckInfo {
        id: "handshake.first-frame",
        severity: Required,
        checks: "the first stdout line is the handshake frame",
        why: "hosts read the first line as the handshake and refuse the plugin otherwise",
    },
    CheckInfo {
        id: "handshake.in-time",
        severity: Required,
        checks: "the handshake arrives within 2 s of the start",
        why: "hosts stop waiting after 2 s (contract::limits::HANDSHAKE_TIMEOUT)",
    },
    CheckInfo {
        id: "handshake.version",
        severity: Required,
        checks: "protocol_version is \"v2\"",
        why: "hosts refuse every other version",
    },
    CheckInfo {
        id: "handshake.commands-unique",
        severity: Required,
        checks: "command names are unique",
        why: "our host refuses a handshake with duplicate command names",
    },
    CheckInfo {
        id: "handshake.valid",
        severity: Required,
        checks: "plugin_name is set; every command and args_spec entry has a name (and a type)",
        why: "our host refuses an invalid handshake",
    },
    CheckInfo {
        id: "stdout.frames-only",
        severity: Required,
        checks: "every stdout line after the handshake, in every session, is a frame",
        why: "a non-frame line is fatal for the plugin in both hosts (E_PROTOCOL_STDOUT_CONTAMINATION)",
    },
    CheckInfo {
        id: "unknown-op.unsupported",
        severity: Required,
        checks: "an op the plugin does not know is refused with ok:false and E_UNSUPPORTED",
        why: "hosts skip optional ops on E_UNSUPPORTED; any other error fails the command",
    },
    CheckInfo {
        id: "unknown-op.id-echoed",
        severity: Required,
        checks: "that refusal carries the request's id (judged when the plugin echoes ids elsewhere)",
        why: "hosts match answers by id; an unmatched answer leaves the call waiting",
    },
    CheckInfo {
        id: "unknown-op.fast",
        severity: Required,
        checks: "that refusal comes within 500 ms",
        why: "hosts probe optional ops inside start-up budgets (contract::limits::UNKNOWN_OP_ANSWER)",
    },
    CheckInfo {
        id: "timeout.<op>",
        severity: Required,
        checks: "each declared op answers a minimal valid dry-run request within --op-timeout (5 s)",
        why: "hosts time calls out (30 s by default) and fail the command",
    },
    CheckInfo {
        id: "response.id-echoed",
        severity: Required,
        checks: "every response carries the id of a request that was sent (answers to probes without an id excepted)",
        why: "hosts route responses by request_id; others are dropped and the call times out",
    },
    CheckInfo {
        id: "response.exactly-one",
        severity: Required,
        checks: "no request is answered twice",
        why: "hosts expect one answer per request; a second one is dropped or confuses the next call",
    },
    CheckInfo {
        id: "response.no-unsolicited",
        severity: Required,
        checks: "the plugin sends no handshake or request frame after its handshake",
        why: "both hosts treat such a frame as fatal for the plugin",
    },
    CheckInfo {
        id: "schema.<op>",
        severity: Required,
        checks: "each pipeline op's output parses as its contract type (launch.plan services complete)",
        why: "hosts merge these outputs into the plan; a wrong shape fails the pipeline",
    },
    CheckInfo {
        id: "dry-run.repo-unchanged",
        severity: Required,
        checks: "requests with ctx.dry_run leave the repo byte-identical (every request the suite sends has it)",
        why: "`devctl plan` and `--dry-run` promise to change nothing",
    },
    CheckInfo {
        id: "determinism.<op>",
        severity: Recommended,
        checks: "the same request twice gives the same answer (duration_ms ignored)",
        why: "hosts call each op once per run and do not depend on it; stable answers keep plans reproducible and watch-mode diffs small",
    },
    CheckInfo {
        id: "repo-root.follows-ctx",
        severity: Required,
        checks: "every declared pipeline op answers the same when the plugin's cwd is not the repo",
        why: "hosts start plugins in the plugin's workdir and name the repo in ctx.repo_root",
    },
    CheckInfo {
        id: "robustness.invalid-json",
        severity: Recommended,
        checks: "after a line of invalid JSON the plugin still answers",
        why: "no host sends malformed JSON",
    },
    CheckInfo {
        id: "robustness.missing-request-id",
        severity: Recommended,
        checks: "after a request without request_id the plugin still answers",
        why: "no host sends a request without an id",
    },
    CheckInfo {
        id: "robustness.wrong-input-types",
        severity: Recommended,
        checks: "a request whose input is a string is answered, and the plugin still answers",
        why: "hosts send the contract's input shapes",
    },
    CheckInfo {
        id: "robustness.blank-lines",
        severity: Recommended,
        checks: "after blank lines the plugin still answers",
        why: "hosts never send blank lines",
    },
    CheckInfo {
        id: "concurrency.pipelined",
        severity: Recommended,
        checks: "8 requests sent in one write are all answered, matched by id, in any order",
        why: "today's hosts wait for each answer before sending a plugin its next request; the protocol allows pipelining",
    },
    CheckInfo {
        id: "streams.stream-id",
        severity: Required,
        checks: "a stream op is listed in capabilities.ops and answers with output.stream_id",
        why: "hosts call only ops listed in ops and subscribe by that id (streams are any op whose answer carries a stream_id)",
    },
    CheckInfo {
        id: "streams.events-carry-id",
        severity: Required,
        checks: "every event, in every session, carries the stream_id of a stream the plugin started",
        why: "hosts route events by stream_id; the others are lost",
    },
    CheckInfo {
        id: "streams.end-arrives",
        severity: Required,
        checks: "every stream ends with an \"end\" event, by itself or once stdin closes",
        why: "hosts wait for \"end\" to finish a stream",
    },
    CheckInfo {
        id: "streams.nothing-after-end",
        severity: Required,
        checks: "no event follows a stream's \"end\" (watched for 200 ms)",
        why: "hosts stop listening at \"end\"",
    },
    CheckInfo {
        id: "shutdown.exits-on-eof",
        severity: Required,
        checks: "the plugin exits within 2 s of its stdin closing",
        why: "hosts close stdin to stop a plugin and signal its group after a short grace",
    },
    CheckInfo {
        id: "shutdown.no-leftovers",
        severity: Required,
        checks: "after exiting on EOF, no process the plugin started is left (setsid and double forks included), in any session",
        why: "hosts cannot stop what escaped the plugin; it keeps ports and files busy",
    },
    CheckInfo {
        id: "commands.<name>",
        severity: Recommended,
        checks: "with --probe-commands, each command answers a dry-run command.run with an exit_code",
        why: "commands run only when a user asks; probing runs plugin code, so it is opt-in",
    },
];

/// The catalogue entry of a concrete check id (`timeout.build.run` finds
/// `timeout.<op>`).
pub fn info(id: &str) -> Option<&'static CheckInfo> {
    CATALOGUE.iter().find(|info| info.id == id).or_else(|| {
        let family = id.split('.').next()?;
        CATALOGUE.iter().find(|info| {
            info.id
                .strip_prefix(family)
                .is_some_and(|rest| rest.starts_with(".<"))
        })
    })
}

/// The family of a check id: the part before the first dot.
pub fn family_of(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

/// Where the protocol's prose states the rule a check judges: a section
/// per family in the toolkit's `docs/protocol.md` ("What plugins must do").
pub fn rule_anchor(id: &str) -> String {
    format!("docs/protocol.md#{}", family_of(id))
}

/// The `--list` table.
pub fn listing() -> String {
    use std::fmt::Write as _;
    let width = CATALOGUE.iter().map(|c| c.id.len()).max().unwrap_or(10);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:<11}  CHECKS / WHY THAT SEVERITY",
        "CHECK", "SEVERITY"
    );
    for info in CATALOGUE {
        let _ = writeln!(
            out,
            "{:<width$}  {:<11}  {}\n{:<width$}  {:<11}  why: {}",
            info.id,
            info.severity.as_str(),
            info.checks,
            "",
            "",
            info.why
        );
    }
    let _ = writeln!(
        out,
        "\nThe rules in prose, a section per family: docs/protocol.md#what-plugins-must-do"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_checks_and_every_check_a_family() {
        for family in FAMILIES {
            assert!(
                CATALOGUE.iter().any(|c| family_of(c.id) == *family),
                "{family} has no check"
            );
        }
        for check in CATALOGUE {
            assert!(FAMILIES.contains(&family_of(check.id)), "{}", check.id);
        }
    }

    #[test]
    fn every_family_has_its_rule_in_the_protocol_doc() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
        let doc = std::fs::read_to_string(path).expect("docs/protocol.md");
        let rules = doc
            .split("\n## What plugins must do\n")
            .nth(1)
            .expect("docs/protocol.md has a section \"What plugins must do\"");
        for family in FAMILIES {
            assert!(
                rules.lines().any(|line| line == format!("### {family}")),
                "docs/protocol.md, \"What plugins must do\", has no section for {family} (the anchor {} points at it)",
                rule_anchor(family)
            );
        }
    }

    #[test]
    fn per_op_ids_find_their_template() {
        assert_eq!(
            info("timeout.build.run").map(|c| c.id),
            Some("timeout.<op>")
        );
        assert_eq!(
            info("commands.vite-env").map(|c| c.id),
            Some("commands.<name>")
        );
        assert_eq!(
            info("handshake.in-time").map(|c| c.id),
            Some("handshake.in-time")
        );
        assert!(info("handshake.nonsense").is_none());
    }
}
