//! `devctl __supervise` (hidden): the background supervisor `up` starts.

use devctl::supervisor::{self, SupervisorOptions};

use crate::cli::{Global, PipelineFlags, UpArgs};

pub async fn run(global: &Global, pipeline: &PipelineFlags, args: &UpArgs) -> anyhow::Result<u8> {
    let repo = super::open(global, pipeline)?;
    let options = SupervisorOptions {
        pipeline: args.pipeline(),
        force: args.force,
        grace: args.grace,
        watch: args.watch,
        settings: super::settings(global, pipeline),
    };
    Ok(supervisor::run(repo, options).await)
}
