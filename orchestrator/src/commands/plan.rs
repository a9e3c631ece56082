//! `devctl plan`: runs the pipeline without side effects (build and prepare
//! with `dry_run`) and shows the plan; `--explain` says who set what.

use std::collections::BTreeSet;

use anyhow::Result;
use devctl::pipeline::{self, PipelineOptions};
use devctl::render::{plan_text, redact_plan};
use devctl::repository::{close_all, Repository};
use devctl::transform::Plan;

use super::Usage;
use crate::cli::{Format, PlanArgs};

/// `devctl plan`: exit 0 when the plan is valid, 1 when it is not.
pub async fn run(repo: &Repository, args: &PlanArgs) -> Result<u8> {
    let options = match args.format() {
        // The Go devctl's plan is config.mutate and launch.plan only.
        Format::Go => PipelineOptions {
            skip_build: true,
            skip_prepare: true,
            skip_validate: true,
            ..PipelineOptions::default()
        },
        _ => PipelineOptions {
            running: devctl::environment::Environment::open(&repo.root)
                .map(|environment| environment.running_services())
                .unwrap_or_default(),
            ..PipelineOptions::default()
        },
    };
    let mut plan = dry_plan(repo, &args.without, &options).await?;
    if !args.show_secrets {
        redact_plan(&mut plan);
    }
    match args.format() {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&plan)?),
        // The Go devctl's document: the merged config and `{services}`.
        Format::Go => {
            let services: Vec<_> = plan.services.iter().map(|s| &s.spec).collect();
            let doc = serde_json::json!({"config": plan.config, "plan": {"services": services}});
            outln!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Format::Text => out!("{}", plan_text(&plan, args.explain, true)),
    }
    Ok(if plan.valid && plan.failed_steps().is_empty() {
        0
    } else {
        1
    })
}

/// The plan without side effects (build and prepare with `dry_run`), the
/// plugins in `without` not even started; what plugins said goes to stderr.
/// Secrets are in it, in clear.
pub async fn dry_plan(
    repo: &Repository,
    without: &[String],
    options: &PipelineOptions,
) -> Result<Plan> {
    let without: BTreeSet<String> = without.iter().cloned().collect();
    for id in &without {
        if !repo.config.plugins.iter().any(|p| &p.id == id) {
            return Err(Usage(format!(
                "--without {id}: no such plugin (configured: {})",
                repo.config
                    .plugins
                    .iter()
                    .map(|p| p.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        }
    }
    // Plugins left out are not even started: their transforms do not exist.
    let clients = repo.start_all(&without, true).await?;
    let outcome = pipeline::run(&clients, options, repo.timeout).await;
    close_all(clients).await;
    let outcome = outcome?;
    for message in &outcome.messages {
        eprintln!(
            "[{}] {} ({}): {}",
            message.plugin, message.level, message.op, message.text
        );
    }
    Ok(outcome.plan(&without, repo.strictness)?)
}
