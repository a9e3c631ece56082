//! Human rendering of a validation report.

use devctl_contract::report::ValidationReport;

/// One line per check, then each error and warning with its fix.
pub fn render_human(report: &ValidationReport) -> String {
    let mut out = String::new();
    let in_run_order = crate::validate::CHECKS
        .iter()
        .filter_map(|name| Some((*name, report.checks.get(*name)?)));
    for (name, outcome) in in_run_order {
        let status = match (outcome.skipped, outcome.ok) {
            (true, _) => "skip",
            (false, true) => "ok",
            (false, false) => "FAIL",
        };
        let line = format!(
            "{status:<5} {name:<12} {}",
            outcome.message.as_deref().unwrap_or("")
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for (title, issues) in [("error", &report.errors), ("warning", &report.warnings)] {
        for issue in issues.iter() {
            out.push_str(&format!(
                "\n{title} [{}] {}\n  fix: {}\n",
                issue.code, issue.message, issue.fix
            ));
        }
    }
    out.push_str(if report.valid {
        "\nvalid: the dev environment is ready to start\n"
    } else {
        "\ninvalid: fix the errors above\n"
    });
    out
}
