//! From plugins to services: start the plugins, run the pipeline, turn the
//! plan into the services to run (or say why not: a failed step, an invalid
//! plan, a plugin error). Used at start-up and by `up --watch` re-plans,
//! which re-run only the build steps whose sources changed.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;

use devctl_contract::protocol::BuildWatch;
use devctl_sdk::host::StderrSink;

use super::core::{EventSink, Failure, Planned, Planner};
use crate::events::UpEvent;
use crate::pipeline::{self, PipelineOptions};
use crate::repository::{close_all, Repository, Settings};

/// What a plan is for: the advice in its errors differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFor {
    /// `up`: nothing runs yet, and `--skip-validate` is an option.
    StartUp,
    /// An `up --watch` re-plan: the running services stay as they are.
    Replan,
}

/// Runs the pipeline over the repo's plugins and returns the services.
pub async fn plan(
    repo: &Repository,
    options: &PipelineOptions,
    events: &EventSink,
    purpose: PlanFor,
) -> Result<Planned, Failure> {
    let (not_started, skip_advice) = match purpose {
        PlanFor::StartUp => (
            "; nothing was started",
            "; nothing was started (fix the errors above, or pass --skip-validate)",
        ),
        PlanFor::Replan => ("", " (fix the errors above)"),
    };
    events(UpEvent::Phase {
        name: crate::events::RUN_STARTS.into(),
    });
    let clients = repo.start_all(&BTreeSet::new(), false).await?;
    for client in &clients {
        let handshake = client.handshake();
        let capabilities = &handshake.capabilities;
        events(UpEvent::Plugin {
            id: client.id().to_owned(),
            name: handshake.plugin_name.clone(),
            ops: capabilities.ops.clone(),
            streams: capabilities.streams.clone(),
            commands: capabilities
                .commands
                .iter()
                .map(|c| c.name.clone())
                .collect(),
        });
    }
    let declared = clients
        .iter()
        .filter_map(|c| c.handshake().declares.as_ref());
    let watch: Vec<String> = declared
        .clone()
        .flat_map(|d| d.watch.iter().cloned())
        .collect();
    let builds: Vec<BuildWatch> = declared.flat_map(|d| d.builds.iter().cloned()).collect();
    let phase = |name: &str| events(UpEvent::Phase { name: name.into() });
    let outcome = pipeline::run_with(&clients, options, repo.timeout, &phase).await;
    close_all(clients).await;
    let outcome = outcome.map_err(|err| Failure::new(err.to_string()))?;
    for message in &outcome.messages {
        events(UpEvent::PluginMessage {
            plugin: message.plugin.clone(),
            level: message.level.clone(),
            text: message.text.clone(),
        });
    }
    let plan = outcome
        .plan(&BTreeSet::new(), repo.strictness)
        .map_err(|err| Failure::new(err.to_string()))?;
    for (phase, steps) in [("build", &plan.build), ("prepare", &plan.prepare)] {
        for step in steps {
            events(UpEvent::Step {
                phase: phase.into(),
                name: step.step.name.clone(),
                plugin: step.plugin.clone(),
                ok: step.step.ok,
                duration_ms: step.step.duration_ms,
            });
        }
    }
    for collision in &plan.collisions {
        events(UpEvent::PluginMessage {
            plugin: collision.second.clone(),
            level: "warn".into(),
            text: collision.to_string(),
        });
    }
    if let Some((phase, step)) = plan.failed_steps().first() {
        return Err(Failure::new(format!(
            "{phase} step {:?} of plugin {} failed{not_started}",
            step.step.name, step.plugin
        )));
    }
    if !options.skip_validate && !plan.valid {
        for issue in &plan.errors {
            events(UpEvent::Invalid {
                plugin: issue.plugin.clone(),
                code: issue.issue.code.clone(),
                message: issue.issue.message.clone(),
                fix: issue
                    .issue
                    .details
                    .as_ref()
                    .and_then(|d| d.get("fix"))
                    .and_then(|f| f.as_str())
                    .map(str::to_owned),
            });
        }
        let first = plan
            .errors
            .first()
            .map(|e| format!(" ({}: {})", e.issue.code, e.issue.message))
            .unwrap_or_default();
        return Err(Failure::new(format!(
            "validation failed{first}{skip_advice}"
        )));
    }
    let built = if options.skip_build {
        Vec::new()
    } else {
        plan.build
            .iter()
            .map(|s| (s.step.name.clone(), s.step.duration_ms))
            .collect()
    };
    Ok(Planned {
        services: plan.services.into_iter().map(|s| s.spec).collect(),
        watch,
        builds,
        built,
    })
}

/// Re-plans for `up --watch`: reopens `.devctl.yaml` (it may have changed),
/// skips build and prepare, and tells `validate.run` what is running.
pub struct PipelinePlanner {
    pub settings: Settings,
    pub stderr: StderrSink,
    pub events: EventSink,
}

impl Planner for PipelinePlanner {
    fn plan(
        &self,
        running: Vec<String>,
        rebuild: Vec<String>,
    ) -> Pin<Box<dyn Future<Output = Result<Planned, Failure>> + Send + '_>> {
        Box::pin(async move {
            let mut repo = Repository::open(&self.settings)?;
            repo.stderr = self.stderr.clone();
            let options = PipelineOptions {
                skip_build: rebuild.is_empty(),
                build_steps: (!rebuild.is_empty()).then_some(rebuild),
                skip_prepare: true,
                running,
                ..PipelineOptions::default()
            };
            plan(&repo, &options, &self.events, PlanFor::Replan).await
        })
    }
}
