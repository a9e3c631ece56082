//! The JSON Schemas of every contract type, as committed under
//! `contract/schema/`. A test regenerates them and fails when the committed
//! copies are stale.

use schemars::{schema_for, Schema};

use crate::{manifest, ops, protocol, report};

/// `(file stem, schema)` for every published shape.
pub fn all() -> Vec<(&'static str, Schema)> {
    vec![
        ("frame", schema_for!(protocol::Frame)),
        ("handshake", schema_for!(protocol::Handshake)),
        ("request", schema_for!(protocol::Request)),
        ("response", schema_for!(protocol::Response)),
        ("event", schema_for!(protocol::Event)),
        ("manifest", schema_for!(manifest::DevManifest)),
        ("service-spec", schema_for!(manifest::ServiceSpec)),
        ("validation-report", schema_for!(report::ValidationReport)),
        ("op.config-input", schema_for!(ops::ConfigInput)),
        (
            "op.config-mutate-output",
            schema_for!(ops::ConfigMutateOutput),
        ),
        ("op.steps-input", schema_for!(ops::StepsInput)),
        ("op.steps-output", schema_for!(ops::StepsOutput)),
        ("op.validate-input", schema_for!(ops::ValidateInput)),
        ("op.validate-output", schema_for!(ops::ValidateOutput)),
        ("op.launch-plan-output", schema_for!(ops::LaunchPlanOutput)),
        ("op.command-run-input", schema_for!(ops::CommandRunInput)),
        ("op.command-run-output", schema_for!(ops::CommandRunOutput)),
    ]
}
