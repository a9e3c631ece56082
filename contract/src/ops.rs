//! Pipeline op names and their payloads (devctl-compatible).
//!
//! `config` is the orchestrator's merged config object, passed to every op as
//! plain JSON; plugins answer with the shapes below.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifest::ServiceSpec;

pub const CONFIG_MUTATE: &str = "config.mutate";
pub const BUILD_RUN: &str = "build.run";
pub const PREPARE_RUN: &str = "prepare.run";
pub const VALIDATE_RUN: &str = "validate.run";
pub const LAUNCH_PLAN: &str = "launch.plan";
pub const COMMAND_RUN: &str = "command.run";

/// The pipeline ops, in the order hosts run them (`command.run` is not one).
pub const PIPELINE: [&str; 5] = [
    CONFIG_MUTATE,
    BUILD_RUN,
    PREPARE_RUN,
    VALIDATE_RUN,
    LAUNCH_PLAN,
];

/// Input of `config.mutate`, `validate.run` and `launch.plan`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ConfigInput {
    #[serde(default)]
    pub config: Value,
}

/// Input of `validate.run`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ValidateInput {
    #[serde(default)]
    pub config: Value,
    /// Services that are already running (a re-validation while the
    /// environment is up): checks that only make sense before starting, such
    /// as "is this port free", should not flag what these services hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub running: Vec<String>,
}

/// Output of `config.mutate`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ConfigMutateOutput {
    #[serde(default)]
    pub config_patch: ConfigPatch,
}

/// Dotted key paths to set and to remove.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ConfigPatch {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unset: Vec<String>,
}

/// Input of `build.run` and `prepare.run`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct StepsInput {
    #[serde(default)]
    pub config: Value,
    /// Only these steps; `null` means all.
    #[serde(default)]
    pub steps: Option<Vec<String>>,
}

/// Output of `build.run` and `prepare.run`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct StepsOutput {
    #[serde(default)]
    pub steps: Vec<StepResult>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub artifacts: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct StepResult {
    pub name: String,
    pub ok: bool,
    #[serde(default)]
    pub duration_ms: u64,
}

/// Output of `validate.run`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ValidateOutput {
    pub valid: bool,
    #[serde(default)]
    pub errors: Vec<ValidateIssue>,
    #[serde(default)]
    pub warnings: Vec<ValidateIssue>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ValidateIssue {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// Output of `launch.plan`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct LaunchPlanOutput {
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
}

/// Input of `command.run`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct CommandRunInput {
    pub name: String,
    #[serde(default)]
    pub argv: Vec<String>,
    #[serde(default)]
    pub config: Value,
}

/// Output of `command.run`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct CommandRunOutput {
    pub exit_code: i32,
}
