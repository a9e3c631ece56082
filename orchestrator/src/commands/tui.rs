//! `devctl tui`: the live dashboard ([`devctl::tui`]); this only checks
//! that there is a terminal and says how to bring the environment up.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::time::Duration;

use super::{Interrupts, Usage};
use crate::cli::{Global, PipelineFlags};

pub async fn run(global: &Global, pipeline: &PipelineFlags, grace: Duration) -> anyhow::Result<u8> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Usage(
            "devctl tui needs a terminal (stdin and stdout); for scripts use `devctl status --json` and `devctl logs -f`".into(),
        )
        .into());
    }
    let root = super::root(global)?;
    // `u` runs this `up -d`, with the flags this TUI was given.
    let mut up: Vec<OsString> = vec!["--repo-root".into(), root.clone().into()];
    if let Some(config) = &global.config {
        up.extend(["--config".into(), config.clone().into()]);
    }
    if pipeline.strict {
        up.push("--strict".into());
    }
    if let Some(timeout) = pipeline.timeout {
        up.extend([
            "--timeout".into(),
            format!("{}ms", timeout.as_millis()).into(),
        ]);
    }
    up.extend(["up".into(), "-d".into()]);
    let mut interrupts = Interrupts::listen()?;
    let options = devctl::tui::Options { root, up, grace };
    Ok(devctl::tui::run(options, interrupts.next()).await?)
}
