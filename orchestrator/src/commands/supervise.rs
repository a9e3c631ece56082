//! `devctl __supervise` (hidden): the background supervisor `up` starts.

use devctl::supervisor::{self, SupervisorOptions};

use crate::cli::{Global, UpArgs};

pub async fn run(global: &Global, args: &UpArgs) -> anyhow::Result<u8> {
    let repo = super::open(global)?;
    let options = SupervisorOptions {
        pipeline: args.pipeline(),
        force: args.force,
        grace: args.grace,
        watch: args.watch,
        settings: super::settings(global),
    };
    Ok(supervisor::run(repo, options).await)
}
