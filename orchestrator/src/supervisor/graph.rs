//! The service graph and the supervisor's decisions, with no processes and
//! no clock of their own (time comes in as arguments), so they are unit
//! tested directly: which services exist and in which order they start,
//! what depends on what (a restart takes the dependents along; a stop takes
//! them first), what changed between two plans, and when a service that
//! exited is started again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use devctl_contract::manifest::{RestartPolicy, ServiceSpec};
use devctl_contract::names::{check_name, NameError};

use crate::state::{Exit, ServiceStatus};

/// A checked set of services.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    specs: BTreeMap<String, ServiceSpec>,
    /// Dependencies before dependents; ties by name.
    order: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("service name: {0}")]
    BadName(NameError),
    #[error("service {0:?} appears twice")]
    Duplicate(String),
    #[error("service {0:?} has an empty command")]
    EmptyCommand(String),
    #[error("service {service:?} depends on {dependency:?}, which no plugin provides")]
    UnknownDependency { service: String, dependency: String },
    #[error("services depend on each other in a cycle: {}", .0.join(", "))]
    Cycle(Vec<String>),
}

impl Graph {
    pub fn new(specs: Vec<ServiceSpec>) -> Result<Graph, GraphError> {
        let mut map = BTreeMap::new();
        for spec in specs {
            check_name(&spec.name).map_err(GraphError::BadName)?;
            if spec.command.is_empty() {
                return Err(GraphError::EmptyCommand(spec.name));
            }
            if map.contains_key(&spec.name) {
                return Err(GraphError::Duplicate(spec.name));
            }
            map.insert(spec.name.clone(), spec);
        }
        for spec in map.values() {
            for dependency in &spec.depends_on {
                if !map.contains_key(dependency) {
                    return Err(GraphError::UnknownDependency {
                        service: spec.name.clone(),
                        dependency: dependency.clone(),
                    });
                }
            }
        }
        let order = start_order(&map)?;
        Ok(Graph { specs: map, order })
    }

    /// Service names, dependencies first.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    pub fn spec(&self, name: &str) -> Option<&ServiceSpec> {
        self.specs.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.specs.contains_key(name)
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Waiting services whose dependencies are all ready, in start order.
    pub fn startable(&self, status: impl Fn(&str) -> ServiceStatus) -> Vec<String> {
        self.order
            .iter()
            .filter(|name| status(name) == ServiceStatus::Waiting)
            .filter(|name| {
                self.specs[*name]
                    .depends_on
                    .iter()
                    .all(|dep| status(dep) == ServiceStatus::Ready)
            })
            .cloned()
            .collect()
    }

    /// `name` and everything that depends on it, directly or not.
    pub fn with_dependents(&self, name: &str) -> BTreeSet<String> {
        let mut set = BTreeSet::from([name.to_owned()]);
        loop {
            let more: Vec<String> = self
                .specs
                .values()
                .filter(|s| !set.contains(&s.name) && s.depends_on.iter().any(|d| set.contains(d)))
                .map(|s| s.name.clone())
                .collect();
            if more.is_empty() {
                return set;
            }
            set.extend(more);
        }
    }

    /// `set` in waves to stop: each wave holds what nothing left in `set`
    /// depends on, so dependents stop before what they use.
    pub fn stop_waves(&self, set: &BTreeSet<String>) -> Vec<Vec<String>> {
        let mut left: BTreeSet<String> = set.iter().filter(|n| self.contains(n)).cloned().collect();
        let mut waves = Vec::new();
        while !left.is_empty() {
            let wave: Vec<String> = left
                .iter()
                .filter(|name| {
                    !left
                        .iter()
                        .any(|other| self.specs[other].depends_on.contains(name))
                })
                .cloned()
                .collect();
            // A cycle cannot be built, but never loop forever on one.
            let wave = if wave.is_empty() {
                left.iter().cloned().collect()
            } else {
                wave
            };
            for name in &wave {
                left.remove(name);
            }
            waves.push(wave);
        }
        waves
    }

    /// What moving from this graph to `next` means.
    pub fn diff(&self, next: &Graph) -> Diff {
        self.diff_rebuilt(next, &BTreeSet::new())
    }

    /// [`Graph::diff`], where the services in `rebuilt` changed too (what
    /// they run was built again).
    pub fn diff_rebuilt(&self, next: &Graph, rebuilt: &BTreeSet<String>) -> Diff {
        let mut diff = Diff::default();
        for name in &next.order {
            match self.specs.get(name) {
                None => diff.added.push(name.clone()),
                Some(old) => {
                    let mut reasons = differences(old, &next.specs[name]);
                    if rebuilt.contains(name) {
                        reasons.push("build");
                    }
                    if !reasons.is_empty() {
                        diff.changed.insert(name.clone(), reasons);
                    }
                }
            }
        }
        diff.removed = self
            .order
            .iter()
            .filter(|n| !next.contains(n))
            .cloned()
            .collect();
        let mut restart: BTreeSet<String> = BTreeSet::new();
        for name in diff.changed.keys() {
            restart.extend(next.with_dependents(name));
        }
        diff.dependents = next
            .order
            .iter()
            .filter(|n| restart.contains(*n) && !diff.changed.contains_key(*n))
            .filter(|n| !diff.added.contains(n))
            .cloned()
            .collect();
        diff
    }
}

/// The difference between two plans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Changed services and which fields changed.
    pub changed: BTreeMap<String, Vec<&'static str>>,
    /// Unchanged services that depend on a changed one (restarted after it).
    pub dependents: Vec<String>,
}

impl Diff {
    /// Services to stop and start again.
    pub fn restart(&self) -> BTreeSet<String> {
        self.changed
            .keys()
            .chain(&self.dependents)
            .cloned()
            .collect()
    }

    /// One line, e.g. `restarted web (env changed); unchanged: backend`.
    pub fn summary(&self, next: &Graph) -> String {
        let mut parts = Vec::new();
        if !self.added.is_empty() {
            parts.push(format!("started {}", self.added.join(", ")));
        }
        for (name, reasons) in &self.changed {
            parts.push(format!("restarted {name} ({} changed)", reasons.join(", ")));
        }
        if !self.dependents.is_empty() {
            parts.push(format!(
                "restarted {} (depends on a changed service)",
                self.dependents.join(", ")
            ));
        }
        if !self.removed.is_empty() {
            parts.push(format!("stopped {}", self.removed.join(", ")));
        }
        let restart = self.restart();
        let untouched: Vec<&str> = next
            .order
            .iter()
            .filter(|n| !restart.contains(*n) && !self.added.contains(n))
            .map(String::as_str)
            .collect();
        if !untouched.is_empty() {
            parts.push(format!("unchanged: {}", untouched.join(", ")));
        }
        if parts.is_empty() {
            parts.push("no services".into());
        }
        parts.join("; ")
    }
}

/// What differs between two versions of a service, as field names.
fn differences(old: &ServiceSpec, new: &ServiceSpec) -> Vec<&'static str> {
    let fields = [
        ("command", old.command != new.command),
        ("env", old.env != new.env),
        ("cwd", old.cwd != new.cwd),
        ("health", old.health != new.health),
        ("depends_on", old.depends_on != new.depends_on),
        ("restart", old.restart != new.restart),
    ];
    fields
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(field, _)| field)
        .collect()
}

/// Dependencies before dependents; a cycle is an error.
fn start_order(specs: &BTreeMap<String, ServiceSpec>) -> Result<Vec<String>, GraphError> {
    let mut order = Vec::new();
    let mut placed = BTreeSet::new();
    while order.len() < specs.len() {
        let ready: Vec<&ServiceSpec> = specs
            .values()
            .filter(|s| {
                !placed.contains(&s.name) && s.depends_on.iter().all(|d| placed.contains(d))
            })
            .collect();
        if ready.is_empty() {
            let stuck = specs
                .keys()
                .filter(|n| !placed.contains(*n))
                .cloned()
                .collect();
            return Err(GraphError::Cycle(stuck));
        }
        for spec in ready {
            placed.insert(spec.name.clone());
            order.push(spec.name.clone());
        }
    }
    Ok(order)
}

/// A restarted service waits this long the first time.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// ... and at most this long.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A service that stayed ready this long starts over at [`FIRST_BACKOFF`].
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// A service's restart backoff: doubles after each quick crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    /// Whether a service that exited with `exit` is started again, and
    /// after how long. `ready_for` is how long it had been ready (`None`:
    /// it never was).
    pub fn after_exit(
        &mut self,
        policy: RestartPolicy,
        exit: Exit,
        ready_for: Option<Duration>,
    ) -> Option<Duration> {
        let failed = exit.code != Some(0);
        let restart = match policy {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Always => true,
        };
        if !restart {
            return None;
        }
        if ready_for.is_some_and(|ready| ready >= STABLE_AFTER) {
            self.next = FIRST_BACKOFF;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devctl_contract::manifest::HealthCheckSpec;

    fn svc(name: &str, deps: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            command: vec!["run".into(), name.into()],
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            ..ServiceSpec::default()
        }
    }

    fn graph(specs: Vec<ServiceSpec>) -> Graph {
        Graph::new(specs).unwrap()
    }

    #[test]
    fn dependencies_start_first_and_independent_services_together() {
        let g = graph(vec![
            svc("web", &["api"]),
            svc("api", &["db"]),
            svc("db", &[]),
            svc("cache", &[]),
        ]);
        assert_eq!(g.order(), ["cache", "db", "api", "web"]);
        let all_waiting = |_: &str| ServiceStatus::Waiting;
        assert_eq!(g.startable(all_waiting), ["cache", "db"]);
        let db_ready = |n: &str| match n {
            "db" => ServiceStatus::Ready,
            "cache" => ServiceStatus::Starting,
            _ => ServiceStatus::Waiting,
        };
        assert_eq!(g.startable(db_ready), ["api"]);
    }

    #[test]
    fn bad_graphs_are_refused_with_the_reason() {
        assert_eq!(
            Graph::new(vec![svc("a", &["b"]), svc("b", &["a"])]),
            Err(GraphError::Cycle(vec!["a".into(), "b".into()]))
        );
        assert!(matches!(
            Graph::new(vec![svc("a", &["nope"])]),
            Err(GraphError::UnknownDependency { .. })
        ));
        assert!(matches!(
            Graph::new(vec![svc("../x", &[])]),
            Err(GraphError::BadName(_))
        ));
        let mut empty = svc("a", &[]);
        empty.command.clear();
        assert_eq!(
            Graph::new(vec![empty]),
            Err(GraphError::EmptyCommand("a".into()))
        );
        assert_eq!(
            Graph::new(vec![svc("a", &[]), svc("a", &[])]),
            Err(GraphError::Duplicate("a".into()))
        );
    }

    #[test]
    fn dependents_go_with_a_restart_and_stop_first() {
        let g = graph(vec![
            svc("web", &["api"]),
            svc("api", &["db"]),
            svc("db", &[]),
            svc("cache", &[]),
        ]);
        let set = g.with_dependents("api");
        assert_eq!(set, BTreeSet::from(["api".into(), "web".into()]));
        let all: BTreeSet<String> = g.order().iter().cloned().collect();
        assert_eq!(
            g.stop_waves(&all),
            vec![
                vec!["cache".to_owned(), "web".to_owned()],
                vec!["api".into()],
                vec!["db".into()]
            ]
        );
    }

    #[test]
    fn a_diff_names_what_changed_and_restarts_dependents_after_it() {
        let old = graph(vec![svc("web", &["api"]), svc("api", &[]), svc("old", &[])]);
        let mut api = svc("api", &[]);
        api.env.insert("PORT".into(), "1".into());
        api.health = Some(HealthCheckSpec::default());
        let new = graph(vec![svc("web", &["api"]), api, svc("new", &[])]);
        let diff = old.diff(&new);
        assert_eq!(diff.added, ["new"]);
        assert_eq!(diff.removed, ["old"]);
        assert_eq!(diff.changed["api"], ["env", "health"]);
        assert_eq!(diff.dependents, ["web"]);
        assert_eq!(
            diff.summary(&new),
            "started new; restarted api (env, health changed); restarted web (depends on a changed service); stopped old"
        );
        assert_eq!(old.diff(&old).summary(&old), "unchanged: api, old, web");
    }

    #[test]
    fn restarts_follow_the_policy_and_back_off_on_a_fake_clock() {
        let crash = Exit {
            code: Some(3),
            signal: None,
        };
        let clean = Exit {
            code: Some(0),
            signal: None,
        };
        let mut backoff = Backoff::default();
        assert_eq!(backoff.after_exit(RestartPolicy::No, crash, None), None);
        assert_eq!(
            backoff.after_exit(RestartPolicy::OnFailure, clean, None),
            None
        );
        let delays: Vec<Duration> = (0..12)
            .filter_map(|_| {
                backoff.after_exit(RestartPolicy::Always, crash, Some(Duration::from_secs(1)))
            })
            .collect();
        assert_eq!(delays[0], FIRST_BACKOFF);
        assert_eq!(delays[1], FIRST_BACKOFF * 2);
        assert_eq!(delays[2], FIRST_BACKOFF * 4);
        assert_eq!(*delays.last().unwrap(), MAX_BACKOFF, "capped");
        // Ten seconds of being ready earns a fresh start.
        assert_eq!(
            backoff.after_exit(RestartPolicy::OnFailure, crash, Some(STABLE_AFTER)),
            Some(FIRST_BACKOFF)
        );
    }
}
