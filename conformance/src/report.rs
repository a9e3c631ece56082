//! The suite's verdicts and how they are shown: a table for people, JSON for
//! scripts (schema in `conformance/schema/report.json`), JUnit XML for CI,
//! and the baseline of known failures.

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
    /// What happened and, on failure, what the plugin author should change.
    pub message: String,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// The plugin command line.
    pub plugin: Vec<String>,
    /// `plugin_name` from the handshake, when there was one.
    pub plugin_name: Option<String>,
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

impl Report {
    pub(crate) fn new(
        plugin: Vec<String>,
        plugin_name: Option<String>,
        duration_ms: u64,
        mut checks: Vec<CheckResult>,
        baseline: &Baseline,
    ) -> Report {
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
            plugin,
            plugin_name,
            duration_ms,
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

    /// The table for people.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let name = self.plugin_name.as_deref().unwrap_or("(no handshake)");
        let _ = writeln!(
            out,
            "devctl-conformance: {} (plugin {name:?})",
            self.plugin.join(" ")
        );
        let width = self
            .checks
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(10)
            .max(5);
        let _ = writeln!(
            out,
            "{:<6} {:<11} {:<width$} {:>7}  MESSAGE",
            "STATUS", "SEVERITY", "CHECK", "TIME"
        );
        for check in &self.checks {
            let status = match check.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::KnownFailure => "known",
                Status::Skip => "skip",
            };
            let severity = match check.severity {
                Severity::Required => "required",
                Severity::Recommended => "recommended",
            };
            let _ = writeln!(
                out,
                "{status:<6} {severity:<11} {:<width$} {:>5}ms  {}",
                check.id, check.duration_ms, check.message
            );
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "\n{} checks passed, {} failed ({} known from the baseline), {} skipped in {} ms",
            s.passed, s.failed, s.known_failures, s.skipped, self.duration_ms
        );
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

    /// JUnit XML: one testsuite, one testcase per check.
    pub fn junit(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let s = &self.summary;
        let _ = writeln!(
            out,
            "<testsuites name=\"devctl-conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            self.checks.len(),
            s.failed,
            s.skipped + s.known_failures,
            self.duration_ms as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.3}\">",
            xml_escape(&self.plugin.join(" ")),
            self.checks.len(),
            s.failed,
            s.skipped + s.known_failures,
            self.duration_ms as f64 / 1000.0
        );
        for check in &self.checks {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml_escape(&check.family),
                xml_escape(&check.id),
                check.duration_ms as f64 / 1000.0
            );
            let message = xml_escape(&check.message);
            match check.status {
                Status::Pass => out.push_str("/>\n"),
                Status::Fail => {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{message}\" type=\"{:?}\">{message}</failure>\n    </testcase>",
                        check.severity
                    );
                }
                Status::KnownFailure => {
                    let _ = writeln!(out, ">\n      <skipped message=\"known failure (baseline): {message}\"/>\n    </testcase>");
                }
                Status::Skip => {
                    let _ = writeln!(
                        out,
                        ">\n      <skipped message=\"{message}\"/>\n    </testcase>"
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n</testsuites>\n");
        out
    }
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            // XML 1.0 cannot carry other control characters at all.
            c if (c as u32) < 0x20 && c != '\t' => out.push('?'),
            c => out.push(c),
        }
    }
    out
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
        }
    }

    #[test]
    fn the_baseline_turns_failures_into_known_ones_and_notices_fixes() {
        let baseline =
            Baseline::parse("# known\nstdout.frames-only  # chatty\nshutdown.exits-on-eof\n");
        let report = Report::new(
            vec!["p".into()],
            None,
            5,
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
    fn junit_escapes_messages() {
        let report = Report::new(
            vec!["p".into()],
            None,
            5,
            vec![check("a.b", Status::Fail)],
            &Baseline::default(),
        );
        let xml = report.junit();
        assert!(xml.contains("m &lt;&amp;&gt; &quot;q&quot;"));
        assert!(!xml.contains("<&>"));
    }
}
