//! `devctl`: the orchestrator. Not built yet (see the README's roadmap); this
//! binary says so instead of pretending to work.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "devctl: not implemented yet. Use `moments-dev dev manifest` for the dev contract; \
         the orchestrator lands with the orchestrator issues (see README, Roadmap)."
    );
    ExitCode::from(2)
}
