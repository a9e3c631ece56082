//! The plan as Kubernetes manifests: one multi-document YAML stream.
//!
//! Per plan service, in start order: a ConfigMap with its plain env, a
//! Secret skeleton with the names of its secret variables and empty values
//! (referenced by `secretKeyRef`), a Service when it listens on ports, and a
//! Deployment (one replica) running its command in the `--image` image,
//! with the repo mounted from the node (`hostPath`: a one-node dev cluster
//! such as kind or minikube; elsewhere bake the repo into the image).
//! Health checks become readiness probes (`httpGet`, `tcpSocket`, `exec`).
//! `depends_on` becomes init containers (busybox) that wait until the
//! dependency's Service accepts a connection, which Kubernetes allows only
//! once a pod behind it passed its readiness probe. Objects are named after
//! the services (lowercased, `_` and `.` as `-`) and labelled with the repo
//! (`app.kubernetes.io/part-of`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    header, listed, yaml, Check, ExportError, File, Format, Options, Probe, Role, Service, Stack,
    REPO_MOUNT,
};

/// The image of the init containers that wait for dependencies.
const WAIT_IMAGE: &str = "busybox:1.36";
/// Waits until `$0:$1` accepts a connection.
const WAIT_SCRIPT: &str =
    "until nc -z -w 2 \"$0\" \"$1\"; do echo \"waiting for $0:$1\"; sleep 1; done";
/// Failed probes in a row before a ready pod is taken out of its Service.
const FAILURE_THRESHOLD: u64 = 3;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Object<B: Serialize> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    #[serde(flatten)]
    body: B,
}

#[derive(Serialize)]
struct Metadata {
    name: String,
    labels: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct ConfigMapBody {
    data: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SecretBody {
    #[serde(rename = "type")]
    kind: &'static str,
    string_data: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct ServiceBody {
    spec: ServiceSpec,
}

#[derive(Serialize)]
struct ServiceSpec {
    selector: BTreeMap<&'static str, String>,
    ports: Vec<ServicePort>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServicePort {
    name: String,
    port: u16,
    target_port: u16,
}

#[derive(Serialize)]
struct DeploymentBody {
    spec: DeploymentSpec,
}

#[derive(Serialize)]
struct DeploymentSpec {
    replicas: u32,
    selector: Selector,
    template: PodTemplate,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    match_labels: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct PodTemplate {
    metadata: PodMetadata,
    spec: PodSpec,
}

#[derive(Serialize)]
struct PodMetadata {
    labels: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    init_containers: Vec<Container>,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: String,
    image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<String>,
    command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env_from: Vec<EnvFrom>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<ContainerPort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    readiness_probe: Option<ReadinessProbe>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volume_mounts: Vec<VolumeMount>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvFrom {
    config_map_ref: Named,
}

#[derive(Serialize)]
struct Named {
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    name: String,
    value_from: ValueFrom,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ValueFrom {
    secret_key_ref: SecretKeyRef,
}

#[derive(Serialize)]
struct SecretKeyRef {
    name: String,
    key: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    container_port: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReadinessProbe {
    #[serde(skip_serializing_if = "Option::is_none")]
    http_get: Option<HttpGet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_socket: Option<TcpSocket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec: Option<Exec>,
    period_seconds: u64,
    timeout_seconds: u64,
    failure_threshold: u64,
}

#[derive(Serialize)]
struct HttpGet {
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    path: String,
    port: u16,
    scheme: &'static str,
}

#[derive(Serialize)]
struct TcpSocket {
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    port: u16,
}

#[derive(Serialize)]
struct Exec {
    command: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VolumeMount {
    name: &'static str,
    mount_path: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Volume {
    name: &'static str,
    host_path: HostPath,
}

#[derive(Serialize)]
struct HostPath {
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// `kubernetes.yaml`: every object, `---` between them.
pub fn files(stack: &Stack, options: &Options) -> Result<Vec<File>, ExportError> {
    let names = object_names(stack)?;
    let part_of = label_value(&options.repo_name);
    let mut documents = Vec::new();
    for service in &stack.services {
        let name = &names[&service.name];
        let labels = BTreeMap::from([
            ("app.kubernetes.io/name", name.clone()),
            ("app.kubernetes.io/part-of", part_of.clone()),
            ("app.kubernetes.io/managed-by", "devctl".to_owned()),
        ]);
        let selector = BTreeMap::from([
            ("app.kubernetes.io/name", name.clone()),
            ("app.kubernetes.io/part-of", part_of.clone()),
        ]);
        let metadata = |object: String, annotations: BTreeMap<&'static str, String>| Metadata {
            name: object,
            labels: labels.clone(),
            annotations,
        };
        if !service.env.is_empty() {
            documents.push(manifest(
                "v1",
                "ConfigMap",
                metadata(format!("{name}-env"), BTreeMap::new()),
                ConfigMapBody {
                    data: service.env.clone(),
                },
            )?);
        }
        if !service.secrets.is_empty() {
            documents.push(manifest(
                "v1",
                "Secret",
                metadata(format!("{name}-secrets"), BTreeMap::new()),
                SecretBody {
                    kind: "Opaque",
                    string_data: service
                        .secrets
                        .iter()
                        .map(|key| (key.clone(), String::new()))
                        .collect(),
                },
            )?);
        }
        if !service.ports.is_empty() {
            documents.push(manifest(
                "v1",
                "Service",
                metadata(name.clone(), BTreeMap::new()),
                ServiceBody {
                    spec: ServiceSpec {
                        selector: selector.clone(),
                        ports: service
                            .ports
                            .iter()
                            .map(|&port| ServicePort {
                                name: format!("p{port}"),
                                port,
                                target_port: port,
                            })
                            .collect(),
                    },
                },
            )?);
        }
        let annotations = BTreeMap::from([
            ("devctl/service", service.name.clone()),
            ("devctl/plugin", service.plugin.clone()),
        ]);
        documents.push(manifest(
            "apps/v1",
            "Deployment",
            metadata(name.clone(), annotations),
            DeploymentBody {
                spec: DeploymentSpec {
                    replicas: 1,
                    selector: Selector {
                        match_labels: selector.clone(),
                    },
                    template: PodTemplate {
                        metadata: PodMetadata {
                            labels: labels.clone(),
                        },
                        spec: pod(service, name, stack, &names, options),
                    },
                },
            },
        )?);
    }
    let text = format!(
        "{}{}",
        header(
            Format::Kubernetes,
            stack,
            options,
            &notes(stack, &names, options)
        ),
        documents
            .iter()
            .map(|doc| format!("---\n{doc}"))
            .collect::<String>()
    );
    Ok(vec![File {
        name: Format::Kubernetes.file_name().to_owned(),
        text,
        role: Role::Main,
    }])
}

/// One object as a YAML document.
fn manifest(
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    body: impl Serialize,
) -> Result<String, ExportError> {
    let object = Object {
        api_version,
        kind,
        metadata,
        body,
    };
    yaml::document(&object, false)
}

fn notes(stack: &Stack, names: &BTreeMap<String, String>, options: &Options) -> Vec<String> {
    let mut notes = vec![
        "Per service: a Deployment, a Service when it has ports, a ConfigMap for its env and a"
            .into(),
        format!(
            "  Secret for its secrets. Images: --image [SERVICE=]IMAGE (default {}); the repo",
            options.images.default
        ),
        format!(
            "  is mounted from the node (hostPath) at {REPO_MOUNT}: fits a one-node dev cluster"
        ),
        "  (kind, minikube); elsewhere bake the repo into the image and drop the volume.".into(),
        "Readiness: readinessProbe from each health check; containers must listen on 0.0.0.0."
            .into(),
        "  depends_on: init containers wait until the dependency's Service accepts connections,"
            .into(),
        "  i.e. until one of its pods is ready.".into(),
    ];
    for service in &stack.services {
        for dependency in &service.depends_on {
            let portless = stack
                .service(dependency)
                .is_some_and(|d| d.ports.is_empty());
            if portless {
                notes.push(format!(
                    "  {} starts without waiting for {dependency}: it has no port to wait on.",
                    service.name
                ));
            }
        }
    }
    for service in stack.services.iter().filter(|s| !s.secrets.is_empty()) {
        notes.push(format!(
            "Secrets: fill in the Secret {}-secrets ({}) before applying,",
            names[&service.name],
            listed(&service.secrets)
        ));
        notes.push(
            "  or delete it and kubectl create secret generic with that name and keys.".into(),
        );
    }
    notes.push("Restart: a Deployment restarts a container whenever it exits, whatever the".into());
    notes.push("  plan's restart policy. Logs: kubectl logs deployment/NAME -f.".into());
    notes
}

fn pod(
    service: &Service,
    name: &str,
    stack: &Stack,
    names: &BTreeMap<String, String>,
    options: &Options,
) -> PodSpec {
    let mut init_containers = Vec::new();
    for dependency in &service.depends_on {
        let Some(port) = stack
            .service(dependency)
            .and_then(|d| d.ports.iter().next())
        else {
            continue;
        };
        let host = names[dependency].clone();
        let wait_name = format!("wait-for-{host}");
        init_containers.push(Container {
            name: if wait_name.len() <= 63 {
                wait_name
            } else {
                format!("wait-{}", init_containers.len() + 1)
            },
            image: WAIT_IMAGE.to_owned(),
            working_dir: None,
            command: literal_args(&[
                "sh".into(),
                "-c".into(),
                WAIT_SCRIPT.into(),
                host,
                port.to_string(),
            ]),
            env_from: Vec::new(),
            env: Vec::new(),
            ports: Vec::new(),
            readiness_probe: None,
            volume_mounts: Vec::new(),
        });
    }
    let container = Container {
        name: name.to_owned(),
        image: options.images.for_service(&service.name).to_owned(),
        working_dir: Some(if service.cwd.is_empty() {
            REPO_MOUNT.to_owned()
        } else {
            format!("{REPO_MOUNT}/{}", service.cwd)
        }),
        command: literal_args(&service.command),
        env_from: if service.env.is_empty() {
            Vec::new()
        } else {
            vec![EnvFrom {
                config_map_ref: Named {
                    name: format!("{name}-env"),
                },
            }]
        },
        env: service
            .secrets
            .iter()
            .map(|key| EnvVar {
                name: key.clone(),
                value_from: ValueFrom {
                    secret_key_ref: SecretKeyRef {
                        name: format!("{name}-secrets"),
                        key: key.clone(),
                    },
                },
            })
            .collect(),
        ports: service
            .ports
            .iter()
            .map(|&port| ContainerPort {
                container_port: port,
            })
            .collect(),
        readiness_probe: service.probe.as_ref().map(readiness_probe),
        volume_mounts: vec![VolumeMount {
            name: "repo",
            mount_path: REPO_MOUNT,
        }],
    };
    PodSpec {
        init_containers,
        containers: vec![container],
        volumes: vec![Volume {
            name: "repo",
            host_path: HostPath {
                path: options.repo_root.display().to_string(),
                kind: "Directory",
            },
        }],
    }
}

/// Kubernetes expands `$(VAR)` in a container's command; `$$` keeps a `$`.
fn literal_args(args: &[String]) -> Vec<String> {
    args.iter().map(|arg| arg.replace('$', "$$")).collect()
}

fn readiness_probe(probe: &Probe) -> ReadinessProbe {
    let elsewhere = |local: bool, host: &str| (!local).then(|| host.to_owned());
    let (http_get, tcp_socket, exec) = match &probe.check {
        Check::Http {
            https,
            host,
            port,
            path,
            local,
            ..
        } => (
            Some(HttpGet {
                host: elsewhere(*local, host),
                path: path.clone(),
                port: *port,
                scheme: if *https { "HTTPS" } else { "HTTP" },
            }),
            None,
            None,
        ),
        Check::Tcp { host, port, local } => (
            None,
            Some(TcpSocket {
                host: elsewhere(*local, host),
                port: *port,
            }),
            None,
        ),
        Check::Exec { command } => (
            None,
            None,
            Some(Exec {
                command: command.clone(),
            }),
        ),
    };
    ReadinessProbe {
        http_get,
        tcp_socket,
        exec,
        period_seconds: probe.every.as_secs(),
        timeout_seconds: probe.limit.as_secs().max(1),
        failure_threshold: FAILURE_THRESHOLD,
    }
}

/// Each service's object name (a DNS-1035 label); two services may not
/// share one.
fn object_names(stack: &Stack) -> Result<BTreeMap<String, String>, ExportError> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for service in &stack.services {
        let name = object_name(&service.name);
        if let Some((other, _)) = names.iter().find(|(_, taken)| **taken == name) {
            return Err(ExportError::Unsupported {
                engine: "Kubernetes",
                service: service.name.clone(),
                problem: format!(
                    "its object name would be {name:?}, as the service {other}'s (names are lowercase, with '-' for '_' and '.')"
                ),
                fix: "let the plugin give the two services names that differ in more than case, '_' or '.'".into(),
            });
        }
        names.insert(service.name.clone(), name);
    }
    Ok(names)
}

/// `name` as a DNS-1035 label: lowercase letters, digits and `-`, starting
/// with a letter, ending with a letter or digit, at most 63 characters.
fn object_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out = format!("s-{out}");
    }
    out.truncate(63);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// `text` as a label value: letters, digits, `-`, `_` and `.`, starting and
/// ending with a letter or digit, at most 63 characters.
fn label_value(text: &str) -> String {
    let out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut out = out
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned();
    out.truncate(63);
    let out = out.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if out.is_empty() {
        "repo".to_owned()
    } else {
        out.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{moments_plan, options, with_service};
    use super::super::{export, Format};
    use super::*;

    fn documents(plan: &crate::transform::Plan) -> Vec<serde_json::Value> {
        let files = export(Format::Kubernetes, plan, &options()).unwrap();
        assert_eq!(files.len(), 1);
        files[0]
            .text
            .split("\n---\n")
            .skip(1)
            .map(|doc| yaml_serde::from_str(doc).unwrap())
            .collect()
    }

    fn kinds(docs: &[serde_json::Value]) -> Vec<String> {
        docs.iter()
            .map(|d| {
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap(),
                    d["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn the_example_plan_becomes_objects_in_start_order_with_probes_and_waits() {
        let docs = documents(&moments_plan());
        assert_eq!(
            kinds(&docs),
            [
                "ConfigMap/backend-env",
                "Service/backend",
                "Deployment/backend",
                "ConfigMap/web-env",
                "Secret/web-secrets",
                "Service/web",
                "Deployment/web"
            ]
        );
        let backend = &docs[2]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            backend["readinessProbe"]["httpGet"]["path"],
            "/rpc/v1/health"
        );
        assert_eq!(backend["readinessProbe"]["httpGet"]["port"], 8083);
        assert!(backend["readinessProbe"]["httpGet"].get("host").is_none());
        let web_pod = &docs[6]["spec"]["template"]["spec"];
        assert_eq!(web_pod["initContainers"][0]["command"][3], "backend");
        assert_eq!(web_pod["initContainers"][0]["command"][4], "8083");
        let web = &web_pod["containers"][0];
        assert_eq!(web["readinessProbe"]["tcpSocket"]["port"], 5173);
        assert_eq!(
            web["env"][0]["valueFrom"]["secretKeyRef"]["name"],
            "web-secrets"
        );
        assert_eq!(docs[4]["stringData"]["VITE_STYTCH_PUBLIC_TOKEN"], "");
        assert_eq!(docs[0]["data"]["PORT"], "8083", "a string, not a number");
        assert_eq!(
            docs[2]["metadata"]["labels"]["app.kubernetes.io/part-of"],
            "moments"
        );
    }

    #[test]
    fn dollars_in_commands_stay_literal_and_names_become_labels() {
        let plan = with_service("backend", |s| {
            s.command = vec!["echo".into(), "$(HOME)".into()];
        });
        let docs = documents(&plan);
        let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
        assert_eq!(
            deployment["spec"]["template"]["spec"]["containers"][0]["command"][1],
            "$$(HOME)"
        );
        assert_eq!(object_name("Api_V2.x"), "api-v2-x");
        assert_eq!(object_name("9lives"), "s-9lives");
        assert_eq!(object_name(&"a-".repeat(40)).len(), 63);
        assert!(!object_name(&"a-".repeat(40)).ends_with('-'));
        assert_eq!(label_value("my repo (copy)"), "my-repo--copy");
        assert_eq!(label_value("..."), "repo");
    }

    #[test]
    fn services_whose_names_differ_only_in_case_are_refused() {
        let plan = with_service("web", |s| s.name = "Backend".into());
        let err = export(Format::Kubernetes, &plan, &options()).unwrap_err();
        assert!(err.to_string().contains("\"backend\""), "{err}");
    }
}
