//! `devctl down`: stops everything `up` started, and says what it did.

use std::path::Path;
use std::time::Duration;

use devctl::environment::Environment;

/// Exit 0 when nothing is left running, 1 when something resisted SIGKILL.
pub async fn run(root: &Path, grace: Duration) -> anyhow::Result<u8> {
    let environment = Environment::open(root)?;
    let report = environment.stop(grace).await;
    if report.lines.is_empty() {
        outln!("nothing was running");
    }
    for line in &report.lines {
        outln!("{line}");
    }
    Ok(if report.resisted { 1 } else { 0 })
}
