//! Replayable transforms (seed 003, option B).
//!
//! Each plugin's contribution to the plan (its config patch, its build and
//! prepare steps, its validation verdict and its services) is recorded as a
//! [`Transform`]. The plan is never edited in place: [`materialize`] replays
//! the enabled transforms, in order, over the base. Removing a plugin's
//! influence is replaying without it; nothing has to be undone by hand. The
//! replay also records who set what, which `plan --explain` shows.

use std::collections::{BTreeMap, BTreeSet};

use devctl_contract::manifest::ServiceSpec;
use devctl_contract::names::{check_name, NameError};
use devctl_contract::ops::{ConfigPatch, StepResult, ValidateIssue, ValidateOutput};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::Strictness;

/// What one plugin contributed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Transform {
    pub plugin: String,
    pub config_patch: Option<ConfigPatch>,
    pub build: Vec<StepResult>,
    pub prepare: Vec<StepResult>,
    pub validation: Option<ValidateOutput>,
    pub services: Vec<ServiceSpec>,
}

/// One write to a config key: who, and the value (`None` for an unset).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    pub plugin: String,
    pub value: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedStep {
    pub step: StepResult,
    pub plugin: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedService {
    pub spec: ServiceSpec,
    pub plugin: String,
    /// Plugins whose service of the same name this one replaced, in order.
    pub overrode: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedIssue {
    pub plugin: String,
    #[serde(flatten)]
    pub issue: ValidateIssue,
}

/// A name contributed by two plugins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Collision {
    /// "service", "build step" or "prepare step".
    pub kind: &'static str,
    pub name: String,
    pub first: String,
    pub second: String,
}

impl std::fmt::Display for Collision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} comes from both {} and {}; {}'s wins",
            self.kind, self.name, self.first, self.second, self.second
        )
    }
}

/// The materialized plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// The plugins whose transforms were replayed, in order.
    pub plugins: Vec<String>,
    pub config: Value,
    /// Every write per dotted key, in replay order (last one wins).
    pub config_history: BTreeMap<String, Vec<Setting>>,
    pub build: Vec<PlannedStep>,
    pub prepare: Vec<PlannedStep>,
    pub valid: bool,
    pub errors: Vec<PlannedIssue>,
    pub warnings: Vec<PlannedIssue>,
    pub services: Vec<PlannedService>,
    pub collisions: Vec<Collision>,
}

impl Plan {
    /// Steps that reported `ok: false`, with their phase.
    pub fn failed_steps(&self) -> Vec<(&'static str, &PlannedStep)> {
        let build = self.build.iter().map(|s| ("build", s));
        let prepare = self.prepare.iter().map(|s| ("prepare", s));
        build.chain(prepare).filter(|(_, s)| !s.step.ok).collect()
    }
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// In strict mode a collision fails the plan.
    #[error("strict mode: {0} (rename one, or disable one of the plugins)")]
    Collision(Collision),
    /// A plugin named a service or step against the rule of
    /// [`devctl_contract::names`] (names become file names).
    #[error("plugin {plugin} names a {kind} badly: {problem}\n  fix: the plugin must use names of letters, digits, '.', '_' and '-' (at most 64); disable it with `devctl plugins disable {plugin}` meanwhile")]
    BadName {
        plugin: String,
        kind: &'static str,
        problem: NameError,
    },
    /// A plugin gave a health check that lacks what its type needs.
    #[error("plugin {plugin}'s service {service}: {problem}\n  fix: the plugin must complete the check (or drop it); disable it with `devctl plugins disable {plugin}` meanwhile")]
    BadHealth {
        plugin: String,
        service: String,
        problem: String,
    },
}

/// Replays `transforms` over `base`, skipping the plugins in `without`.
pub fn materialize(
    base: &Value,
    transforms: &[Transform],
    without: &BTreeSet<String>,
    strictness: Strictness,
) -> Result<Plan, PlanError> {
    let mut plan = Plan {
        config: base.clone(),
        valid: true,
        ..Plan::default()
    };
    for transform in transforms.iter().filter(|t| !without.contains(&t.plugin)) {
        let plugin = &transform.plugin;
        check_names(transform)?;
        check_health(transform)?;
        plan.plugins.push(plugin.clone());
        if let Some(patch) = &transform.config_patch {
            apply_patch(&mut plan.config, patch);
            for (key, value) in &patch.set {
                plan.config_history
                    .entry(key.clone())
                    .or_default()
                    .push(Setting {
                        plugin: plugin.clone(),
                        value: Some(value.clone()),
                    });
            }
            for key in &patch.unset {
                plan.config_history
                    .entry(key.clone())
                    .or_default()
                    .push(Setting {
                        plugin: plugin.clone(),
                        value: None,
                    });
            }
        }
        merge_steps(
            &mut plan.build,
            &transform.build,
            plugin,
            "build step",
            strictness,
            &mut plan.collisions,
        )?;
        merge_steps(
            &mut plan.prepare,
            &transform.prepare,
            plugin,
            "prepare step",
            strictness,
            &mut plan.collisions,
        )?;
        if let Some(validation) = &transform.validation {
            plan.valid &= validation.valid;
            let tag = |issue: &ValidateIssue| PlannedIssue {
                plugin: plugin.clone(),
                issue: issue.clone(),
            };
            plan.errors.extend(validation.errors.iter().map(tag));
            plan.warnings.extend(validation.warnings.iter().map(tag));
        }
        for service in &transform.services {
            match plan
                .services
                .iter_mut()
                .find(|s| s.spec.name == service.name)
            {
                Some(existing) => {
                    let collision = Collision {
                        kind: "service",
                        name: service.name.clone(),
                        first: existing.plugin.clone(),
                        second: plugin.clone(),
                    };
                    if strictness == Strictness::Error {
                        return Err(PlanError::Collision(collision));
                    }
                    let mut overrode = std::mem::take(&mut existing.overrode);
                    overrode.push(existing.plugin.clone());
                    *existing = PlannedService {
                        spec: service.clone(),
                        plugin: plugin.clone(),
                        overrode,
                    };
                    plan.collisions.push(collision);
                }
                None => plan.services.push(PlannedService {
                    spec: service.clone(),
                    plugin: plugin.clone(),
                    overrode: Vec::new(),
                }),
            }
        }
    }
    Ok(plan)
}

fn merge_steps(
    into: &mut Vec<PlannedStep>,
    steps: &[StepResult],
    plugin: &str,
    kind: &'static str,
    strictness: Strictness,
    collisions: &mut Vec<Collision>,
) -> Result<(), PlanError> {
    for step in steps {
        let planned = PlannedStep {
            step: step.clone(),
            plugin: plugin.to_owned(),
        };
        match into.iter_mut().find(|s| s.step.name == step.name) {
            Some(existing) => {
                let collision = Collision {
                    kind,
                    name: step.name.clone(),
                    first: existing.plugin.clone(),
                    second: plugin.to_owned(),
                };
                if strictness == Strictness::Error {
                    return Err(PlanError::Collision(collision));
                }
                *existing = planned;
                collisions.push(collision);
            }
            None => into.push(planned),
        }
    }
    Ok(())
}

/// Every service and step name a plugin gave must be a valid name.
fn check_names(transform: &Transform) -> Result<(), PlanError> {
    let services = transform.services.iter().map(|s| ("service", &s.name));
    let build = transform.build.iter().map(|s| ("build step", &s.name));
    let prepare = transform.prepare.iter().map(|s| ("prepare step", &s.name));
    for (kind, name) in services.chain(build).chain(prepare) {
        check_name(name).map_err(|problem| PlanError::BadName {
            plugin: transform.plugin.clone(),
            kind,
            problem,
        })?;
    }
    Ok(())
}

/// Every health check a plugin gave must have what its type needs: found
/// when planning, not when the service has already started.
fn check_health(transform: &Transform) -> Result<(), PlanError> {
    for service in &transform.services {
        if let Some(problem) = service.health.as_ref().and_then(|h| h.problem()) {
            return Err(PlanError::BadHealth {
                plugin: transform.plugin.clone(),
                service: service.name.clone(),
                problem,
            });
        }
    }
    Ok(())
}

/// Applies `set` (dotted keys, creating maps on the way) then `unset`.
pub fn apply_patch(config: &mut Value, patch: &ConfigPatch) {
    for (key, value) in &patch.set {
        set_path(config, key, value.clone());
    }
    for key in &patch.unset {
        unset_path(config, key);
    }
}

fn set_path(config: &mut Value, key: &str, value: Value) {
    let mut node = config;
    let mut segments = key.split('.').peekable();
    while let Some(segment) = segments.next() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { return };
        if segments.peek().is_none() {
            map.insert(segment.to_owned(), value);
            return;
        }
        node = map
            .entry(segment.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

fn unset_path(config: &mut Value, key: &str) {
    let mut segments: Vec<&str> = key.split('.').collect();
    let Some(last) = segments.pop() else { return };
    let mut node = config;
    for segment in segments {
        match node.get_mut(segment) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Value::Object(map) = node {
        map.remove(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(set: &[(&str, Value)], unset: &[&str]) -> Option<ConfigPatch> {
        Some(ConfigPatch {
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            unset: unset.iter().map(|k| k.to_string()).collect(),
        })
    }

    fn service(name: &str, program: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            command: vec![program.into()],
            ..ServiceSpec::default()
        }
    }

    fn transforms() -> Vec<Transform> {
        vec![
            Transform {
                plugin: "a".into(),
                config_patch: patch(
                    &[("services.api.port", json!(1)), ("env.X", json!("a"))],
                    &[],
                ),
                services: vec![service("api", "a-api")],
                build: vec![StepResult {
                    name: "deps".into(),
                    ok: true,
                    duration_ms: 1,
                }],
                ..Transform::default()
            },
            Transform {
                plugin: "b".into(),
                config_patch: patch(&[("services.api.port", json!(2))], &["env.X"]),
                services: vec![service("api", "b-api"), service("web", "b-web")],
                build: vec![StepResult {
                    name: "deps".into(),
                    ok: false,
                    duration_ms: 1,
                }],
                ..Transform::default()
            },
        ]
    }

    #[test]
    fn the_replay_applies_patches_in_order_and_last_wins_with_provenance() {
        let plan = materialize(
            &json!({}),
            &transforms(),
            &BTreeSet::new(),
            Strictness::Warn,
        )
        .unwrap();
        assert_eq!(
            plan.config,
            json!({"services": {"api": {"port": 2}}, "env": {}})
        );
        let history = &plan.config_history["services.api.port"];
        assert_eq!(
            history
                .iter()
                .map(|s| s.plugin.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(plan.config_history["env.X"][1].value, None);
        assert_eq!(plan.services[0].spec.command, ["b-api"]);
        assert_eq!(plan.services[0].overrode, ["a"]);
        assert_eq!(plan.collisions.len(), 2, "{:?}", plan.collisions);
        assert_eq!(plan.failed_steps().len(), 1);
    }

    #[test]
    fn without_a_plugin_its_influence_is_gone() {
        let without = BTreeSet::from(["b".to_owned()]);
        let plan = materialize(&json!({}), &transforms(), &without, Strictness::Warn).unwrap();
        assert_eq!(
            plan.config,
            json!({"services": {"api": {"port": 1}}, "env": {"X": "a"}})
        );
        assert_eq!(plan.services.len(), 1);
        assert_eq!(plan.services[0].plugin, "a");
        assert!(plan.collisions.is_empty());
    }

    #[test]
    fn strict_mode_turns_a_collision_into_an_error_naming_both_plugins() {
        let err = materialize(
            &json!({}),
            &transforms(),
            &BTreeSet::new(),
            Strictness::Error,
        )
        .unwrap_err();
        let PlanError::Collision(collision) = err else {
            panic!("{err}")
        };
        assert_eq!(
            (collision.first.as_str(), collision.second.as_str()),
            ("a", "b")
        );
    }

    #[test]
    fn a_service_or_step_name_that_is_a_path_is_a_plan_error_naming_the_plugin() {
        let mut bad = transforms();
        bad[1].services[1].name = "../../../x".into();
        let err = materialize(&json!({}), &bad, &BTreeSet::new(), Strictness::Warn).unwrap_err();
        assert!(
            matches!(&err, PlanError::BadName { plugin, kind: "service", .. } if plugin == "b"),
            "{err}"
        );
        assert!(err.to_string().contains("plugin b"), "{err}");
        let mut bad = transforms();
        bad[0].build[0].name = "..".into();
        let err = materialize(&json!({}), &bad, &BTreeSet::new(), Strictness::Warn).unwrap_err();
        assert!(
            matches!(
                err,
                PlanError::BadName {
                    kind: "build step",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_incomplete_health_check_is_a_plan_error_naming_plugin_and_service() {
        let mut bad = transforms();
        bad[1].services[0].health = Some(devctl_contract::manifest::HealthCheckSpec {
            kind: devctl_contract::manifest::HealthKind::Tcp,
            ..Default::default()
        });
        let name = bad[1].services[0].name.clone();
        let err = materialize(&json!({}), &bad, &BTreeSet::new(), Strictness::Warn).unwrap_err();
        assert!(
            matches!(&err, PlanError::BadHealth { plugin, service, .. } if plugin == "b" && *service == name),
            "{err}"
        );
        assert!(
            err.to_string().contains("needs an address or a port"),
            "{err}"
        );
    }
}
