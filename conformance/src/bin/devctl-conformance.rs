//! `devctl-conformance`: not built yet; says so instead of pretending to pass.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "devctl-conformance: not implemented yet (see README, Roadmap). \
         It would be wrong to report a plugin as conformant."
    );
    ExitCode::from(2)
}
