//! The dev manifest v1: how to run a repo in development, as a contract.
//!
//! It says which services exist, how to build and prepare them and which
//! `VITE_*` values the web app needs. It holds no runtime state (no pids).
//! [`ServiceSpec`] is also the unit of `launch.plan` output.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The manifest's schema version.
pub const MANIFEST_SCHEMA_VERSION: &str = "v1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DevManifest {
    /// Always `"v1"` for this shape.
    pub schema_version: String,
    pub repo: RepoInfo,
    pub services: Vec<ServiceSpec>,
    /// Build command plans, by group name.
    #[serde(default)]
    pub build: BTreeMap<String, Vec<CommandPlan>>,
    /// Prepare (bootstrap) command plans, by group name.
    #[serde(default)]
    pub prepare: BTreeMap<String, Vec<CommandPlan>>,
    /// The environment the web app's Vite build reads.
    #[serde(default)]
    pub vite_env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RepoInfo {
    pub name: String,
    /// Absolute path of the repo root.
    pub root: String,
}

/// A long-running process the orchestrator starts and supervises.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ServiceSpec {
    pub name: String,
    /// Working directory, relative to the repo root (or absolute).
    #[serde(default)]
    pub cwd: String,
    /// argv; the first element is the program.
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheckSpec>,
    /// Services that must be ready before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// What to do when the service exits after it was ready (default `no`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartPolicy>,
    /// Without a health check, the service is ready once it has stayed up
    /// this long (default 500 ms); exiting sooner fails its start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_ms: Option<u64>,
}

/// When a supervisor restarts a service that exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    /// Only after a non-zero exit or a signal.
    OnFailure,
    Always,
}

/// How to tell that a service is ready.
///
/// Read leniently, as the Go devctl reads it (its plugins send these): the
/// type in any case (`"TCP"`), an `http` check's URL in `address`, and a
/// zero `timeout_ms`/`interval_ms` meaning the default. What is kept is
/// the canonical form the schema describes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct HealthCheckSpec {
    #[serde(rename = "type")]
    pub kind: HealthKind,
    /// For `http`: the URL to GET; any 2xx answer means ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// For `tcp`: `host:port` to connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// For `tcp`: a port on 127.0.0.1 (used when `address` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// For `exec`: argv of a command whose exit status 0 means ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Give up after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Upper bound of the polling interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    #[default]
    Http,
    Tcp,
    Exec,
}

impl<'de> Deserialize<'de> for HealthCheckSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(rename = "type")]
            kind: String,
            url: Option<String>,
            address: Option<String>,
            port: Option<u16>,
            command: Option<Vec<String>>,
            timeout_ms: Option<u64>,
            interval_ms: Option<u64>,
        }
        let wire = Wire::deserialize(deserializer)?;
        let kind = match wire.kind.to_ascii_lowercase().as_str() {
            "http" => HealthKind::Http,
            "tcp" => HealthKind::Tcp,
            "exec" => HealthKind::Exec,
            _ => {
                return Err(serde::de::Error::unknown_variant(
                    &wire.kind,
                    &["http", "tcp", "exec"],
                ))
            }
        };
        let (url, address) = match (kind, wire.url, wire.address) {
            (HealthKind::Http, None, Some(address)) => (Some(address), None),
            (_, url, address) => (url, address),
        };
        Ok(HealthCheckSpec {
            kind,
            url,
            address,
            port: wire.port,
            command: wire.command,
            timeout_ms: wire.timeout_ms.filter(|ms| *ms > 0),
            interval_ms: wire.interval_ms.filter(|ms| *ms > 0),
        })
    }
}

impl HealthCheckSpec {
    /// The fields a check of this kind needs, as a message when one is missing.
    pub fn problem(&self) -> Option<String> {
        match self.kind {
            HealthKind::Http if self.url.is_none() => Some("http health check needs a url".into()),
            HealthKind::Tcp if self.address.is_none() && self.port.is_none() => {
                Some("tcp health check needs an address or a port".into())
            }
            HealthKind::Exec if self.command.as_ref().is_none_or(Vec::is_empty) => {
                Some("exec health check needs a non-empty command".into())
            }
            _ => None,
        }
    }
}

/// One command to run to completion (a build or prepare step).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct CommandPlan {
    /// Working directory, relative to the repo root (or absolute).
    #[serde(default)]
    pub cwd: String,
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_devctl_style_tcp_health_check_parses_and_is_complete() {
        let spec: HealthCheckSpec =
            serde_json::from_str(r#"{"type":"tcp","address":"127.0.0.1:5173","timeout_ms":500}"#)
                .unwrap();
        assert_eq!(spec.kind, HealthKind::Tcp);
        assert_eq!(spec.problem(), None);
    }

    #[test]
    fn go_devctl_forms_read_as_the_canonical_check() {
        let spec: HealthCheckSpec = serde_json::from_str(
            r#"{"type":"HTTP","address":"http://127.0.0.1:1/h","timeout_ms":0,"interval_ms":0}"#,
        )
        .unwrap();
        assert_eq!(
            spec,
            HealthCheckSpec {
                kind: HealthKind::Http,
                url: Some("http://127.0.0.1:1/h".into()),
                ..HealthCheckSpec::default()
            }
        );
        let tcp: HealthCheckSpec =
            serde_json::from_str(r#"{"type":"Tcp","address":"127.0.0.1:2"}"#).unwrap();
        assert_eq!(tcp.kind, HealthKind::Tcp);
        assert_eq!(tcp.address.as_deref(), Some("127.0.0.1:2"));
        let unknown = serde_json::from_str::<HealthCheckSpec>(r#"{"type":"grpc"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("grpc") && unknown.contains("tcp"),
            "{unknown}"
        );
    }

    #[test]
    fn incomplete_health_checks_are_named() {
        let http: HealthCheckSpec = serde_json::from_str(r#"{"type":"http"}"#).unwrap();
        assert_eq!(http.problem().unwrap(), "http health check needs a url");
        let exec: HealthCheckSpec =
            serde_json::from_str(r#"{"type":"exec","command":[]}"#).unwrap();
        assert!(exec.problem().unwrap().contains("exec"));
    }
}
