//! The check families, one module each, and what they share: the inputs
//! the suite sends and how outputs are judged and compared.
//!
//! Each family runs in its own plugin session (a fresh process), so a
//! plugin that crashes or wedges in one family is judged there and
//! restarted for the next; what cannot be judged because of an earlier
//! fault is skipped with the reason.

pub(crate) mod commands;
pub(crate) mod concurrency;
pub(crate) mod determinism;
pub(crate) mod handshake;
pub(crate) mod ops;
pub(crate) mod repo_root;
pub(crate) mod robustness;
pub(crate) mod run_wide;
pub(crate) mod shutdown;
pub(crate) mod streams;

use std::hash::{Hash, Hasher};

use devctl_contract::manifest::ServiceSpec;
use devctl_contract::names::check_name;
use devctl_contract::ops::{
    CommandRunOutput, ConfigMutateOutput, LaunchPlanOutput, StepsOutput, ValidateOutput, BUILD_RUN,
    COMMAND_RUN, CONFIG_MUTATE, LAUNCH_PLAN, PREPARE_RUN, VALIDATE_RUN,
};
use devctl_contract::protocol::Response;
use serde_json::{json, Value};

use crate::observe::clip;

/// An op no plugin implements.
pub(crate) const UNKNOWN_OP: &str = "devctl.conformance.unknown-op";

/// The pipeline ops, in the order hosts call them.
pub(crate) const PIPELINE_OPS: &[&str] = &devctl_contract::ops::PIPELINE;

/// Ops that only answer questions (a patch, a verdict, a plan): malformed
/// probes go to one of these, so that even a plugin that misreads a probe
/// cannot change the repo.
pub(crate) const QUERY_OPS: &[&str] = &[CONFIG_MUTATE, VALIDATE_RUN, LAUNCH_PLAN];

/// The smallest valid input of each pipeline op; `{}` for others.
pub(crate) fn minimal_input(op: &str) -> Value {
    match op {
        BUILD_RUN | PREPARE_RUN => json!({"config": {}, "steps": null}),
        CONFIG_MUTATE | VALIDATE_RUN | LAUNCH_PLAN => json!({"config": {}}),
        _ => json!({}),
    }
}

/// The committed JSON Schema of an op's output.
pub(crate) fn schema_file(op: &str) -> Option<&'static str> {
    Some(match op {
        CONFIG_MUTATE => "contract/schema/op.config-mutate-output.json",
        BUILD_RUN | PREPARE_RUN => "contract/schema/op.steps-output.json",
        VALIDATE_RUN => "contract/schema/op.validate-output.json",
        LAUNCH_PLAN => "contract/schema/op.launch-plan-output.json",
        COMMAND_RUN => "contract/schema/op.command-run-output.json",
        _ => return None,
    })
}

/// Checks `output` against the contract of `op`; `None` for ops without one.
pub(crate) fn output_shape(op: &str, output: &Value) -> Option<Result<(), String>> {
    fn parse<T: serde::de::DeserializeOwned>(output: &Value, key: &str) -> Result<T, String> {
        if output.get(key).is_none() {
            return Err(format!(
                "the output has no \"{key}\" field: {}",
                clip(&output.to_string(), 120)
            ));
        }
        // The path to the wrong field (`services[0].health.port`) is what
        // an author needs to fix it.
        serde_path_to_error::deserialize(output.clone()).map_err(|err| {
            let path = err.path().to_string();
            let err = err.into_inner();
            if path == "." {
                format!("the output does not match the contract: {err}")
            } else {
                format!("the output does not match the contract at {path}: {err}")
            }
        })
    }
    Some(match op {
        CONFIG_MUTATE => parse::<ConfigMutateOutput>(output, "config_patch").map(drop),
        BUILD_RUN | PREPARE_RUN => parse::<StepsOutput>(output, "steps").and_then(|steps| {
            steps.steps.iter().try_for_each(|step| {
                check_name(&step.name).map_err(|err| format!("step name: {err}"))
            })
        }),
        VALIDATE_RUN => parse::<ValidateOutput>(output, "valid").map(drop),
        COMMAND_RUN => parse::<CommandRunOutput>(output, "exit_code").map(drop),
        LAUNCH_PLAN => parse::<LaunchPlanOutput>(output, "services")
            .and_then(|plan| services_problem(&plan.services)),
        _ => return None,
    })
}

fn services_problem(services: &[ServiceSpec]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for service in services {
        // Names become file names (logs): a host refuses `../x`.
        check_name(&service.name).map_err(|err| format!("service name: {err}"))?;
        if !names.insert(&service.name) {
            return Err(format!("service {:?} appears twice", service.name));
        }
        if service.command.is_empty() {
            return Err(format!("service {:?} has an empty command", service.name));
        }
        if let Some(problem) = service.health.as_ref().and_then(|h| h.problem()) {
            return Err(format!("service {:?}: {problem}", service.name));
        }
    }
    Ok(())
}

/// A digest of what an answer says, for comparing answers: the output
/// without timing fields (`duration_ms` differs between identical runs)
/// for a success, the error code for a failure. Outputs are not kept: an
/// 8 MB answer costs 8 bytes once judged.
pub(crate) fn answer_digest(response: &Response) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    response.ok.hash(&mut hasher);
    match (&response.error, &response.output) {
        (Some(error), _) if !response.ok => error.code.as_str().hash(&mut hasher),
        (_, Some(output)) => normalised(output.clone()).to_string().hash(&mut hasher),
        _ => {}
    }
    hasher.finish()
}

fn normalised(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(key, _)| key != "duration_ms")
                .map(|(key, value)| (key, normalised(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalised).collect()),
        other => other,
    }
}

/// `ok:true with {...}` / `ok:false with E_RUNTIME: message`, short.
pub(crate) fn describe_response(response: &Response) -> String {
    match (&response.error, response.ok) {
        (Some(error), false) => format!(
            "ok:false with {}: {}",
            error.code,
            clip(&error.message, 120)
        ),
        (_, true) => format!(
            "ok:true with {}",
            clip(
                &response.output.as_ref().unwrap_or(&Value::Null).to_string(),
                120
            )
        ),
        (None, false) => "ok:false without an error".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_that_differ_only_in_timing_have_the_same_digest() {
        let answer = |output: Value| Response::success("x", output);
        let a = answer(json!({"steps": [{"name": "a", "ok": true, "duration_ms": 3}]}));
        let b = answer(json!({"steps": [{"name": "a", "ok": true, "duration_ms": 9}]}));
        let c = answer(json!({"steps": [{"name": "b", "ok": true, "duration_ms": 3}]}));
        assert_eq!(answer_digest(&a), answer_digest(&b));
        assert_ne!(answer_digest(&a), answer_digest(&c));
    }

    #[test]
    fn launch_plan_services_must_be_complete() {
        let shape = |v: Value| output_shape(LAUNCH_PLAN, &v).expect("has a contract");
        assert!(shape(json!({"services": [{"name": "a", "command": ["x"]}]})).is_ok());
        assert!(shape(json!({"services": "none"})).is_err());
        assert!(shape(json!({"services": [{"name": "a", "command": []}]})).is_err());
        assert!(shape(
            json!({"services": [{"name": "a", "command": ["x"]}, {"name": "a", "command": ["y"]}]})
        )
        .is_err());
        assert!(output_shape("ping", &json!({})).is_none());
    }

    #[test]
    fn service_and_step_names_that_are_paths_fail_the_schema() {
        let plan = json!({"services": [{"name": "../../../x", "command": ["true"]}]});
        let err = output_shape(LAUNCH_PLAN, &plan).unwrap().unwrap_err();
        assert!(
            err.contains("service name") && err.contains("../../../x"),
            "{err}"
        );
        let steps = json!({"steps": [{"name": "..", "ok": true, "duration_ms": 1}]});
        let err = output_shape(BUILD_RUN, &steps).unwrap().unwrap_err();
        assert!(err.contains("step name"), "{err}");
    }
}
