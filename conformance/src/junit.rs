//! The report as JUnit XML, for CI systems that show test results: one test
//! suite (the plugin command), one test case per check (class = family).
//! Failures carry the message and the fix; skips and baselined failures are
//! `skipped`. Serialization (escaping, invalid XML characters) is
//! quick-junit's.

use std::time::Duration;

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

use crate::report::{Report, Status};

impl Report {
    /// JUnit XML: one testsuite, one testcase per check.
    pub fn junit(&self) -> String {
        let mut suite = TestSuite::new(self.plugin.join(" "));
        // Which suite judged the plugin, for whoever reads the CI's record.
        suite.add_property(("devctl-conformance --version", self.suite.as_str()));
        suite.set_time(Duration::from_millis(self.duration_ms));
        for check in &self.checks {
            let description = match &check.fix {
                Some(fix) => format!("{}\nfix: {fix}", check.message),
                None => check.message.clone(),
            };
            let status = match check.status {
                Status::Pass => TestCaseStatus::success(),
                Status::Fail => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status
                        .set_message(check.message.as_str())
                        .set_type(check.severity.as_str())
                        .set_description(description);
                    status
                }
                Status::KnownFailure => {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(format!("known failure (baseline): {}", check.message));
                    status
                }
                Status::Skip => {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(check.message.as_str());
                    status
                }
            };
            let mut case = TestCase::new(check.id.as_str(), status);
            case.set_classname(check.family.as_str())
                .set_time(Duration::from_millis(check.duration_ms));
            suite.add_test_case(case);
        }
        let mut report = quick_junit::Report::new("devctl-conformance");
        report
            .set_time(Duration::from_millis(self.duration_ms))
            .add_test_suite(suite);
        // Serializing plain strings into memory cannot fail; quick-junit's
        // error type covers I/O on the writer.
        report.to_string().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use crate::report::{Baseline, CheckResult, Report, RunFacts, Severity, Status};

    #[test]
    fn junit_escapes_messages_and_counts_failures() {
        let check = |id: &str, status| CheckResult {
            id: id.into(),
            family: id.split('.').next().unwrap_or(id).into(),
            severity: Severity::Required,
            status,
            duration_ms: 1,
            message: "m <&> \"q\" \u{1b}[31m".into(),
            fix: Some("do this".into()),
        };
        let report = Report::new(
            RunFacts {
                plugin: vec!["python3".into(), "p <1>.py".into()],
                plugin_name: None,
                repo_root: None,
                notes: Vec::new(),
                duration_ms: 5,
            },
            vec![
                check("a.b", Status::Fail),
                check("a.c", Status::Pass),
                check("a.d", Status::Skip),
            ],
            &Baseline::default(),
        );
        let xml = report.junit();
        assert!(xml.contains("m &lt;&amp;&gt; &quot;q&quot;"), "{xml}");
        assert!(!xml.contains("<&>"));
        assert!(!xml.contains('\u{1b}'), "no control characters in XML");
        assert!(xml.contains("tests=\"3\""), "{xml}");
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(xml.contains("skipped=\"1\""), "{xml}");
        assert!(xml.contains("fix: do this"), "{xml}");
        let version = format!(
            r#"<property name="devctl-conformance --version" value="devctl-conformance {}"/>"#,
            env!("CARGO_PKG_VERSION")
        );
        assert!(xml.contains(&version), "{xml}");
    }
}
