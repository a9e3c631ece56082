//! Building the dev manifest v1 from the loaded config.
//!
//! The manifest carries real values; [`redact_manifest`] hides secrets for
//! display. Service commands may contain `{port}`, replaced by the service's
//! port, so the web command follows `dev.web-port`.

use std::collections::BTreeMap;

use devctl_contract::manifest::{
    CommandPlan, DevManifest, HealthCheckSpec, HealthKind, RepoInfo, ServiceSpec,
    MANIFEST_SCHEMA_VERSION,
};

use crate::config::LoadedConfig;
use crate::secrets::{is_secret_vite_var, REDACTED};
use crate::settings::{PlanStep, ServiceCommand};
use crate::vite_env::derive_vite_env;

/// Where the backend answers readiness probes.
pub const HEALTH_PATH: &str = "/rpc/v1/health";

/// How long the orchestrator should wait for a service to become ready.
const READY_TIMEOUT_MS: u64 = 30_000;

pub fn build_manifest(config: &LoadedConfig) -> DevManifest {
    let settings = &config.settings;
    let backend_port = settings.server.port;
    let web_port = settings.dev.web_port;
    let vite_env = derive_vite_env(settings);

    let backend = ServiceSpec {
        name: "backend".into(),
        env: BTreeMap::from([("PORT".to_owned(), backend_port.to_string())]),
        health: Some(HealthCheckSpec {
            kind: HealthKind::Http,
            url: Some(backend_health_url(backend_port)),
            timeout_ms: Some(READY_TIMEOUT_MS),
            ..HealthCheckSpec::default()
        }),
        ..service(&settings.dev.backend, backend_port)
    };
    let mut web_env = vite_env.clone();
    web_env.insert("PORT".into(), web_port.to_string());
    let web = ServiceSpec {
        name: "web".into(),
        env: web_env,
        health: Some(HealthCheckSpec {
            kind: HealthKind::Tcp,
            address: Some(format!("localhost:{web_port}")),
            timeout_ms: Some(READY_TIMEOUT_MS),
            ..HealthCheckSpec::default()
        }),
        depends_on: vec!["backend".into()],
        ..service(&settings.dev.web, web_port)
    };

    DevManifest {
        schema_version: MANIFEST_SCHEMA_VERSION.into(),
        repo: RepoInfo {
            name: config
                .repo_root
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| "moments".into()),
            root: config.repo_root.display().to_string(),
        },
        services: vec![backend, web],
        build: plans(&settings.dev.build),
        prepare: plans(&settings.dev.prepare),
        vite_env,
    }
}

/// `http://127.0.0.1:<port>/rpc/v1/health`.
pub fn backend_health_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}{HEALTH_PATH}")
}

/// Hides secret values (the Vite token, wherever it appears).
pub fn redact_manifest(manifest: &mut DevManifest) {
    let envs = manifest
        .services
        .iter_mut()
        .map(|service| &mut service.env)
        .chain(std::iter::once(&mut manifest.vite_env));
    for env in envs {
        for (key, value) in env.iter_mut() {
            if is_secret_vite_var(key) {
                *value = REDACTED.into();
            }
        }
    }
}

fn service(command: &ServiceCommand, port: u16) -> ServiceSpec {
    ServiceSpec {
        cwd: command.cwd.clone(),
        command: command
            .command
            .iter()
            .map(|arg| arg.replace("{port}", &port.to_string()))
            .collect(),
        ..ServiceSpec::default()
    }
}

fn plans(groups: &BTreeMap<String, Vec<PlanStep>>) -> BTreeMap<String, Vec<CommandPlan>> {
    groups
        .iter()
        .map(|(group, steps)| {
            let steps = steps
                .iter()
                .map(|step| CommandPlan {
                    cwd: step.cwd.clone(),
                    command: step.command.clone(),
                    env: BTreeMap::new(),
                })
                .collect();
            (group.clone(), steps)
        })
        .collect()
}
