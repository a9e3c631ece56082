//! The plan as a Compose file (the Compose Specification, which
//! docker-compose 1.29 and `docker compose` v2 both read).
//!
//! One service per plan service, in the image `--image` names with the repo
//! bind-mounted at [`REPO_MOUNT`]: `command` (exec form), `working_dir`,
//! `environment`, `ports`, `depends_on` (`service_healthy` when the
//! dependency has a health check, else `service_started`), `healthcheck`
//! and `restart`. Health checks become probe commands run in the service's
//! container: http and tcp ones a python3 one-liner (the default image has
//! python3), exec ones the command itself. Secret variables come from an
//! `env_file` per service (`<service>.secrets.env`), written as a skeleton
//! with the names and no values. Every `$` is doubled, since Compose would
//! otherwise substitute variables in it.

use std::collections::BTreeMap;

use devctl_contract::manifest::RestartPolicy;
use serde::Serialize;

use super::{
    duration_text, header, listed, yaml, Check, ExportError, File, Format, Options, Probe, Role,
    Service, Stack, REPO_MOUNT,
};

/// GETs `argv[1]` without a proxy; exits 0 on a 2xx answer.
const HTTP_PROBE: &str = "import sys, urllib.request as u; r = u.build_opener(u.ProxyHandler({})).open(sys.argv[1], timeout=2); sys.exit(0 if 200 <= r.status < 300 else 1)";
/// Connects to `argv[1]`:`argv[2]`.
const TCP_PROBE: &str =
    "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()";
/// Failed probes, after the start period, before a service is unhealthy.
const RETRIES: u32 = 3;

#[derive(Serialize)]
struct ComposeFile {
    services: BTreeMap<String, ComposeService>,
}

#[derive(Serialize)]
struct ComposeService {
    image: String,
    /// A tiny init as PID 1: signals reach the command, zombies are reaped.
    init: bool,
    working_dir: String,
    command: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    environment: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env_file: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<Port>,
    volumes: Vec<Volume>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    depends_on: BTreeMap<String, Dependency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    restart: Option<&'static str>,
}

/// The long syntax: no `80:80` string for a YAML 1.1 reader to take for a
/// base-60 number.
#[derive(Serialize)]
struct Port {
    target: u16,
    published: u16,
}

#[derive(Serialize)]
struct Volume {
    #[serde(rename = "type")]
    kind: &'static str,
    source: String,
    target: &'static str,
}

#[derive(Serialize)]
struct Healthcheck {
    test: Vec<String>,
    interval: String,
    timeout: String,
    retries: u32,
    start_period: String,
}

#[derive(Serialize)]
struct Dependency {
    condition: &'static str,
}

/// `compose.yaml` and a secrets skeleton per service that has secrets.
pub fn files(stack: &Stack, options: &Options) -> Result<Vec<File>, ExportError> {
    let services = stack
        .services
        .iter()
        .map(|service| {
            (
                service.name.clone(),
                compose_service(service, stack, options),
            )
        })
        .collect();
    let body = yaml::document(&ComposeFile { services }, true)?;
    let mut files = vec![File {
        name: Format::Compose.file_name().to_owned(),
        text: format!(
            "{}{body}",
            header(Format::Compose, stack, options, &notes(stack, options))
        ),
        role: Role::Main,
    }];
    for service in stack.services.iter().filter(|s| !s.secrets.is_empty()) {
        let mut text = format!(
            "{} compose: the secrets of the service {}.\n# Fill in the values and keep this file out of version control; devctl export\n# writes it only when it is missing, so your values are never overwritten.\n",
            super::GENERATED_MARK,
            service.name
        );
        for name in &service.secrets {
            text.push_str(&format!("{name}=\n"));
        }
        files.push(File {
            name: secrets_file(service),
            text,
            role: Role::Skeleton,
        });
    }
    Ok(files)
}

fn secrets_file(service: &Service) -> String {
    format!("{}.secrets.env", service.name)
}

fn notes(stack: &Stack, options: &Options) -> Vec<String> {
    let mut notes = vec![
        format!(
            "Each service runs in its image (--image [SERVICE=]IMAGE; default {}) with the repo",
            options.images.default
        ),
        format!("  bind-mounted at {REPO_MOUNT}; to be reached through its ports it must listen on 0.0.0.0."),
        "Readiness: a healthcheck per health check (http and tcp probes run python3 in the".into(),
        "  container); a dependent starts once what it depends on is healthy.".into(),
    ];
    for service in stack.services.iter().filter(|s| !s.secrets.is_empty()) {
        notes.push(format!(
            "Secrets: {} reads {} from {} (fill it in; keep it out of git).",
            service.name,
            listed(&service.secrets),
            secrets_file(service)
        ));
    }
    notes.push("Run: docker compose up -d; logs: docker compose logs -f.".into());
    notes
}

fn compose_service(service: &Service, stack: &Stack, options: &Options) -> ComposeService {
    let working_dir = if service.cwd.is_empty() {
        REPO_MOUNT.to_owned()
    } else {
        format!("{REPO_MOUNT}/{}", service.cwd)
    };
    let depends_on = service
        .depends_on
        .iter()
        .map(|name| {
            let healthy = stack.service(name).is_some_and(|s| s.probe.is_some());
            let condition = if healthy {
                "service_healthy"
            } else {
                "service_started"
            };
            (name.clone(), Dependency { condition })
        })
        .collect();
    ComposeService {
        image: options.images.for_service(&service.name).to_owned(),
        init: true,
        working_dir,
        command: service.command.clone(),
        environment: service.env.clone(),
        env_file: if service.secrets.is_empty() {
            Vec::new()
        } else {
            vec![secrets_file(service)]
        },
        ports: service
            .ports
            .iter()
            .map(|&port| Port {
                target: port,
                published: port,
            })
            .collect(),
        volumes: vec![Volume {
            kind: "bind",
            source: options.root_from_output.display().to_string(),
            target: REPO_MOUNT,
        }],
        healthcheck: service.probe.as_ref().map(healthcheck),
        depends_on,
        restart: match service.restart {
            // Compose's default; "no" would also need quoting.
            RestartPolicy::No => None,
            RestartPolicy::OnFailure => Some("on-failure"),
            RestartPolicy::Always => Some("always"),
        },
    }
}

fn healthcheck(probe: &Probe) -> Healthcheck {
    let python = |code: &str, args: Vec<String>| {
        let mut test = vec!["CMD".to_owned(), "python3".into(), "-c".into(), code.into()];
        test.extend(args);
        test
    };
    let test = match &probe.check {
        Check::Http { url, .. } => python(HTTP_PROBE, vec![url.clone()]),
        Check::Tcp { host, port, .. } => python(TCP_PROBE, vec![host.clone(), port.to_string()]),
        Check::Exec { command } => {
            let mut test = vec!["CMD".to_owned()];
            test.extend(command.iter().cloned());
            test
        }
    };
    Healthcheck {
        test,
        interval: duration_text(probe.every),
        timeout: duration_text(probe.limit),
        retries: RETRIES,
        start_period: duration_text(probe.deadline),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{moments_plan, options, with_service};
    use super::super::{export, Format, Role};
    use devctl_contract::manifest::{HealthCheckSpec, HealthKind};

    fn compose(plan: &crate::transform::Plan) -> Vec<super::File> {
        export(Format::Compose, plan, &options()).unwrap()
    }

    fn parsed(text: &str) -> serde_json::Value {
        yaml_serde::from_str(text).unwrap()
    }

    #[test]
    fn the_example_plan_becomes_two_services_with_health_ordering_and_no_secret_values() {
        let files = compose(&moments_plan());
        assert_eq!(files[0].name, "compose.yaml");
        let text = &files[0].text;
        assert!(text.starts_with("# Generated by devctl export compose from the plan of moments (plugins: moments).\n"), "{text}");
        assert!(!text.contains("public-token-test"), "{text}");
        let doc = parsed(text);
        let web = &doc["services"]["web"];
        assert_eq!(web["depends_on"]["backend"]["condition"], "service_healthy");
        assert_eq!(web["env_file"][0], "web.secrets.env");
        assert_eq!(web["working_dir"], "/repo/web");
        assert_eq!(web["ports"][0]["published"], 5173);
        assert!(web.get("restart").is_none(), "no is Compose's default");
        let backend = &doc["services"]["backend"];
        assert_eq!(backend["restart"], "on-failure");
        assert_eq!(backend["healthcheck"]["start_period"], "30s");
        assert_eq!(
            backend["healthcheck"]["test"]
                .as_array()
                .unwrap()
                .last()
                .unwrap(),
            "http://127.0.0.1:8083/rpc/v1/health"
        );
        assert_eq!(backend["volumes"][0]["source"], ".");
        assert_eq!(files[1].name, "web.secrets.env");
        assert_eq!(files[1].role, Role::Skeleton);
        assert!(files[1].text.ends_with("\nVITE_STYTCH_PUBLIC_TOKEN=\n"));
    }

    #[test]
    fn the_same_plan_gives_the_same_bytes() {
        assert_eq!(compose(&moments_plan()), compose(&moments_plan()));
    }

    #[test]
    fn dollars_are_kept_literal_and_exec_checks_run_as_given() {
        let plan = with_service("backend", |s| {
            s.command = vec!["sh".into(), "-c".into(), "echo $HOME".into()];
            s.env.insert("PRICE".into(), "5$".into());
            s.health = Some(HealthCheckSpec {
                kind: HealthKind::Exec,
                command: Some(vec!["test".into(), "-f".into(), "ready".into()]),
                ..HealthCheckSpec::default()
            });
        });
        let doc = parsed(&compose(&plan)[0].text);
        let backend = &doc["services"]["backend"];
        assert_eq!(backend["command"][2], "echo $$HOME");
        assert_eq!(backend["environment"]["PRICE"], "5$$");
        assert_eq!(backend["healthcheck"]["test"][0], "CMD");
        assert_eq!(backend["healthcheck"]["test"][1], "test");
    }

    #[test]
    fn a_dependency_without_health_check_only_has_to_start() {
        let plan = with_service("backend", |s| s.health = None);
        let doc = parsed(&compose(&plan)[0].text);
        assert_eq!(
            doc["services"]["web"]["depends_on"]["backend"]["condition"],
            "service_started"
        );
        assert!(doc["services"]["backend"].get("healthcheck").is_none());
    }
}
