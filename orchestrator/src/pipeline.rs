//! The pipeline: `config.mutate → build.run → prepare.run → validate.run →
//! launch.plan` over the plugins in order, each plugin's answers recorded as
//! its [`Transform`]. `config.mutate` is chained: each plugin sees the config
//! the plugins before it produced. An op a plugin does not declare is simply
//! not its part (the client refuses it locally, nothing is sent).

use std::collections::BTreeSet;

use devctl_contract::ops::{
    ConfigMutateOutput, LaunchPlanOutput, StepsOutput, ValidateInput, ValidateOutput, BUILD_RUN,
    CONFIG_MUTATE, LAUNCH_PLAN, PREPARE_RUN, VALIDATE_RUN,
};
use devctl_sdk::host::{Client, OpError, Reply};
use serde_json::{json, Value};

use crate::config::Strictness;
use crate::transform::{apply_patch, materialize, Plan, PlanError, Transform};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct PipelineOptions {
    pub skip_build: bool,
    pub skip_prepare: bool,
    pub skip_validate: bool,
    pub build_steps: Option<Vec<String>>,
    pub prepare_steps: Option<Vec<String>>,
    /// Services already running (re-validation under `up --watch`).
    pub running: Vec<String>,
}

/// A warning or note a plugin attached to a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub plugin: String,
    pub op: &'static str,
    pub level: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Call(#[from] OpError),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// The recorded transforms and what plugins said along the way.
pub struct Outcome {
    pub transforms: Vec<Transform>,
    pub messages: Vec<Message>,
}

impl Outcome {
    pub fn plan(
        &self,
        without: &BTreeSet<String>,
        strictness: Strictness,
    ) -> Result<Plan, PlanError> {
        materialize(&json!({}), &self.transforms, without, strictness)
    }
}

pub async fn run(
    clients: &[Client],
    options: &PipelineOptions,
    timeout: std::time::Duration,
) -> Result<Outcome, PipelineError> {
    run_with(clients, options, timeout, &|_| {}).await
}

/// [`run`], calling `on_phase` with each phase's name as it begins.
pub async fn run_with(
    clients: &[Client],
    options: &PipelineOptions,
    timeout: std::time::Duration,
    on_phase: &(dyn Fn(&str) + Sync),
) -> Result<Outcome, PipelineError> {
    let mut transforms: Vec<Transform> = clients
        .iter()
        .map(|c| Transform {
            plugin: c.id().to_owned(),
            ..Transform::default()
        })
        .collect();
    let mut messages = Vec::new();
    let mut config = json!({});

    on_phase("config");
    for (client, transform) in clients.iter().zip(&mut transforms) {
        if let Some((output, reply)) =
            call::<ConfigMutateOutput>(client, CONFIG_MUTATE, json!({"config": config}), timeout)
                .await?
        {
            collect(&mut messages, client, CONFIG_MUTATE, &reply);
            apply_patch(&mut config, &output.config_patch);
            transform.config_patch = Some(output.config_patch);
        }
    }
    let phases = [
        (BUILD_RUN, options.skip_build, &options.build_steps),
        (PREPARE_RUN, options.skip_prepare, &options.prepare_steps),
    ];
    for (op, skip, steps) in phases {
        if skip {
            continue;
        }
        on_phase(if op == BUILD_RUN { "build" } else { "prepare" });
        for (client, transform) in clients.iter().zip(&mut transforms) {
            let input = json!({"config": config, "steps": steps});
            if let Some((output, reply)) = call::<StepsOutput>(client, op, input, timeout).await? {
                collect(&mut messages, client, op, &reply);
                match op {
                    BUILD_RUN => transform.build = output.steps,
                    _ => transform.prepare = output.steps,
                }
            }
        }
    }
    if !options.skip_validate {
        on_phase("validate");
        let input = json!(ValidateInput {
            config: config.clone(),
            running: options.running.clone(),
        });
        for (client, transform) in clients.iter().zip(&mut transforms) {
            if let Some((output, reply)) =
                call::<ValidateOutput>(client, VALIDATE_RUN, input.clone(), timeout).await?
            {
                collect(&mut messages, client, VALIDATE_RUN, &reply);
                transform.validation = Some(output);
            }
        }
    }
    on_phase("launch plan");
    for (client, transform) in clients.iter().zip(&mut transforms) {
        if let Some((output, reply)) =
            call::<LaunchPlanOutput>(client, LAUNCH_PLAN, json!({"config": config}), timeout)
                .await?
        {
            collect(&mut messages, client, LAUNCH_PLAN, &reply);
            transform.services = output.services;
        }
    }
    Ok(Outcome {
        transforms,
        messages,
    })
}

/// Calls `op` if the plugin declares it; `None` when it does not.
async fn call<T: serde::de::DeserializeOwned>(
    client: &Client,
    op: &str,
    input: Value,
    timeout: std::time::Duration,
) -> Result<Option<(T, Reply)>, OpError> {
    if !client.supports(op) {
        return Ok(None);
    }
    client.call_as::<T>(op, input, timeout).await.map(Some)
}

fn collect(messages: &mut Vec<Message>, client: &Client, op: &'static str, reply: &Reply) {
    let warnings = reply.warnings.iter().map(|note| (note, "warn"));
    let notes = reply.notes.iter().map(|note| (note, "info"));
    for (note, default_level) in warnings.chain(notes) {
        messages.push(Message {
            plugin: client.id().to_owned(),
            op,
            level: if note.level.is_empty() {
                default_level.into()
            } else {
                note.level.clone()
            },
            text: note.message.clone(),
        });
    }
}
