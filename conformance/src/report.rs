//! The suite's verdicts and how they are shown: a table for people and JSON
//! for scripts (schema in `conformance/schema/report.json`; JUnit XML is in
//! [`crate::junit`]), and the baseline of known failures.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Must pass for a plugin to be conformant, or only advised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Required,
    Recommended,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Required => "required",
            Severity::Recommended => "recommended",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    /// Failed, but listed in the baseline.
    KnownFailure,
    Skip,
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckResult {
    /// Stable id, `family.name`.
    pub id: String,
    pub family: String,
    pub severity: Severity,
    pub status: Status,
    pub duration_ms: u64,
    /// What happened (for a skip: why it could not be judged).
    pub message: String,
    /// On failure: what the plugin author should change, as a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// Which suite judged the plugin: the `devctl-conformance --version`
    /// line, e.g. `devctl-conformance 0.1.0`.
    pub suite: String,
    /// The plugin command line.
    pub plugin: Vec<String>,
    /// `plugin_name` from the handshake, when there was one.
    pub plugin_name: Option<String>,
    /// The repo given with `--repo-root` (the plugin saw a scratch copy of
    /// it); `null` when the plugin ran against an empty scratch directory.
    #[serde(default)]
    pub repo_root: Option<String>,
    /// Facts about the run as a whole, as sentences.
    #[serde(default)]
    pub notes: Vec<String>,
    pub duration_ms: u64,
    pub checks: Vec<CheckResult>,
    pub summary: Summary,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub known_failures: usize,
    pub skipped: usize,
    /// Required checks that failed and are not in the baseline.
    pub required_failed: Vec<String>,
    /// Baselined checks that now pass: the baseline is stale.
    pub baseline_fixed: Vec<String>,
    /// True when the run should pass CI.
    pub ok: bool,
}

/// The `devctl-conformance --version` line of this build.
pub fn suite_version() -> String {
    format!("devctl-conformance {}", env!("CARGO_PKG_VERSION"))
}

impl Report {
    pub(crate) fn new(run: RunFacts, mut checks: Vec<CheckResult>, baseline: &Baseline) -> Report {
        let mut fixed = Vec::new();
        for check in &mut checks {
            let known = baseline.ids.contains(&check.id);
            match (check.status, known) {
                (Status::Fail, true) => check.status = Status::KnownFailure,
                (Status::Pass, true) => fixed.push(check.id.clone()),
                _ => {}
            }
        }
        let count = |status| checks.iter().filter(|c| c.status == status).count();
        let required_failed: Vec<String> = checks
            .iter()
            .filter(|c| c.status == Status::Fail && c.severity == Severity::Required)
            .map(|c| c.id.clone())
            .collect();
        let summary = Summary {
            passed: count(Status::Pass),
            failed: count(Status::Fail),
            known_failures: count(Status::KnownFailure),
            skipped: count(Status::Skip),
            ok: required_failed.is_empty() && fixed.is_empty(),
            required_failed,
            baseline_fixed: fixed,
        };
        Report {
            suite: suite_version(),
            plugin: run.plugin,
            plugin_name: run.plugin_name,
            repo_root: run.repo_root,
            notes: run.notes,
            duration_ms: run.duration_ms,
            checks,
            summary,
        }
    }

    /// Panics with the readable report unless every required check passed.
    /// For plugin repos' own tests.
    pub fn assert_passed(&self) {
        assert!(
            self.summary.ok,
            "plugin is not conformant:\n{}",
            self.human()
        );
    }

    pub fn check(&self, id: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// Ids of the checks that failed (baselined ones excluded).
    pub fn failed_ids(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.id.as_str())
            .collect()
    }

    /// The table for people: one line per check, and a `fix:` line under
    /// each failure.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let name = self.plugin_name.as_deref().unwrap_or("(no handshake)");
        let _ = writeln!(
            out,
            "{}: {} (plugin {name:?})",
            self.suite,
            self.plugin.join(" ")
        );
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let width = self
            .checks
            .iter()
            .map(|c| one_line(&c.id).chars().count().min(80))
            .max()
            .unwrap_or(10)
            .max(5);
        let _ = writeln!(
            out,
            "{:<6} {:<11} {:<width$} {:>7}  MESSAGE",
            "STATUS", "SEVERITY", "CHECK", "TIME"
        );
        let indent = 6 + 1 + 11 + 1 + width + 1 + 7 + 2;
        for check in &self.checks {
            let status = match check.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::KnownFailure => "known",
                Status::Skip => "skip",
            };
            let _ = writeln!(
                out,
                "{status:<6} {:<11} {:<width$} {:>5}ms  {}",
                check.severity.as_str(),
                one_line(&check.id),
                check.duration_ms,
                one_line(&check.message)
            );
            if let (Some(fix), Status::Fail | Status::KnownFailure) = (&check.fix, check.status) {
                let rule = crate::catalogue::rule_anchor(&check.id);
                let _ = writeln!(out, "{:indent$}fix: {fix} (the rule: {rule})", "");
            }
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "\n{} checks passed, {} failed ({} known from the baseline), {} skipped in {} ms",
            s.passed, s.failed, s.known_failures, s.skipped, self.duration_ms
        );
        let recommended: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail && c.severity == Severity::Recommended)
            .map(|c| c.id.as_str())
            .collect();
        if !recommended.is_empty() {
            let _ = writeln!(
                out,
                "recommended checks failed (they do not fail the run): {}",
                recommended.join(", ")
            );
        }
        if !s.baseline_fixed.is_empty() {
            let _ = writeln!(
                out,
                "the baseline is stale: {} now pass; remove them from the baseline file",
                s.baseline_fixed.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "{}",
            if s.ok {
                "verdict: conformant"
            } else {
                "verdict: NOT conformant"
            }
        );
        out
    }
}

/// Plugin-chosen text (op and command names end up in ids) on one line of
/// the table, within reason.
fn one_line(text: &str) -> String {
    crate::observe::clip(text, 2000)
}

/// What the report says about the run besides the checks.
pub(crate) struct RunFacts {
    pub plugin: Vec<String>,
    pub plugin_name: Option<String>,
    pub repo_root: Option<String>,
    pub notes: Vec<String>,
    pub duration_ms: u64,
}

/// Known failures: one check id per line, `#` starts a comment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baseline {
    pub ids: BTreeSet<String>,
}

impl Baseline {
    pub fn parse(text: &str) -> Baseline {
        Baseline {
            ids: text
                .lines()
                .map(|line| line.split('#').next().unwrap_or("").trim())
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, status: Status) -> CheckResult {
        CheckResult {
            id: id.into(),
            family: id.split('.').next().unwrap().into(),
            severity: Severity::Required,
            status,
            duration_ms: 1,
            message: "m <&> \"q\"".into(),
            fix: Some("do this".into()),
        }
    }

    pub(crate) fn facts() -> RunFacts {
        RunFacts {
            plugin: vec!["p".into()],
            plugin_name: None,
            repo_root: None,
            notes: Vec::new(),
            duration_ms: 5,
        }
    }

    #[test]
    fn the_baseline_turns_failures_into_known_ones_and_notices_fixes() {
        let baseline =
            Baseline::parse("# known\nstdout.frames-only  # chatty\nshutdown.exits-on-eof\n");
        let report = Report::new(
            facts(),
            vec![
                check("stdout.frames-only", Status::Fail),
                check("shutdown.exits-on-eof", Status::Pass),
                check("handshake.in-time", Status::Pass),
            ],
            &baseline,
        );
        assert_eq!(report.checks[0].status, Status::KnownFailure);
        assert_eq!(report.summary.baseline_fixed, ["shutdown.exits-on-eof"]);
        assert!(!report.summary.ok, "a stale baseline fails the run");
    }

    #[test]
    fn failures_show_their_fix_and_recommended_ones_do_not_fail_the_run() {
        let mut advice = check("robustness.blank-lines", Status::Fail);
        advice.severity = Severity::Recommended;
        let report = Report::new(
            facts(),
            vec![advice, check("handshake.in-time", Status::Pass)],
            &Baseline::default(),
        );
        assert!(report.summary.ok);
        let text = report.human();
        assert!(text.contains("fix: do this"), "{text}");
        assert!(text.contains("recommended checks failed"), "{text}");
        assert!(text.ends_with("verdict: conformant\n"), "{text}");
    }
}
