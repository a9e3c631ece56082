//! The validation report of `dev validate`.
//!
//! Each named check records whether it passed or was skipped; every error and
//! warning names the component it concerns and a `fix` the user can apply.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ValidationReport {
    /// True when there are no errors (warnings do not count).
    pub valid: bool,
    #[serde(default)]
    pub errors: Vec<ReportIssue>,
    #[serde(default)]
    pub warnings: Vec<ReportIssue>,
    /// Outcome per check name (`config`, `consistency`, `tools`, …).
    #[serde(default)]
    pub checks: BTreeMap<String, CheckOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ReportIssue {
    /// The check that found it.
    pub component: String,
    /// Stable, machine-matchable code such as `config.missing`.
    pub code: String,
    pub message: String,
    /// What to change: the YAML file to edit and the env var to set.
    pub fix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct CheckOutcome {
    pub ok: bool,
    #[serde(default)]
    pub skipped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
