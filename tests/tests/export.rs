//! `devctl export`, checked by the engines' own tools: the Compose file by
//! docker-compose 1.29.2 (`config -q`, and its loader reading the values
//! back) and by the current compose-spec JSON schema (check-jsonschema);
//! the Kubernetes manifests by `kubernetes-validate --strict` and PyYAML
//! (a YAML 1.1 reader, like kubectl's); the example repo's Procfile run by
//! honcho until both services answer.
//!
//! The tools are Python packages `.ci/run` installs under target/ci-py/ and
//! names in DEVCTL_EXPORT_TOOLS; a test that cannot find its tool says
//! SKIPPED (a failure under .ci/run).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::{search_path, TestRepo};
use serde_json::{json, Value};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The directory of one of the Python tools, or `None` after saying
/// SKIPPED.
fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let base = std::env::var_os("DEVCTL_EXPORT_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| e2e::workspace().join("target/ci-py"));
    let dir = base.join(name);
    if dir.join(package).exists() {
        Some(dir)
    } else {
        e2e::skip(&format!(
            "{package} is not installed in {}: run .ci/run (it installs the export tools and sets DEVCTL_EXPORT_TOOLS)",
            dir.display()
        ));
        None
    }
}

/// `python3 ARGS` with `PYTHONPATH` at a tool's directory, in `cwd`.
fn python(tool: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new("python3")
        .args(args)
        .current_dir(cwd)
        .env("PATH", search_path())
        .env("PYTHONPATH", tool)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs")
}

/// `devctl export ARGS` in the repo; asserts it succeeded.
fn export(repo: &TestRepo, args: &[&str]) -> Output {
    let mut all = vec!["export"];
    all.extend(args);
    let output = repo.devctl(&all);
    assert!(
        output.status.success(),
        "devctl {all:?}: {}",
        text(&output.stderr)
    );
    output
}

/// What docker-compose's own loader reads from `compose.yaml` in `dir`.
fn compose_reads(compose: &Path, dir: &Path) -> Value {
    const LOAD: &str = r#"
import json
from compose.config import config
from compose.config.environment import Environment
details = config.find(".", ["compose.yaml"], Environment.from_env_file("."))
print(json.dumps({s["name"]: {
    "command": s.get("command"),
    "environment": s.get("environment"),
    "working_dir": s.get("working_dir"),
    "test": (s.get("healthcheck") or {}).get("test"),
    "depends_on": s.get("depends_on"),
    "restart": s.get("restart"),
    "ports": [[p.target, p.published] for p in s.get("ports", [])],
    "volumes": [v.source for v in s.get("volumes", [])],
} for s in config.load(details).services}))
"#;
    let output = python(compose, dir, &["-c", LOAD]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("json")
}

fn docker_compose_config_q(compose: &Path, dir: &Path) {
    let output = python(
        compose,
        dir,
        &[
            "-c",
            "from compose.cli.main import main; main()",
            "-f",
            "compose.yaml",
            "config",
            "-q",
        ],
    );
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "docker-compose config -q: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn compose_spec_schema(schema: &Path, dir: &Path) {
    let output = python(
        schema,
        dir,
        &[
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            "compose.yaml",
        ],
    );
    assert!(
        output.status.success(),
        "compose-spec schema: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

fn kubernetes_validate(kubernetes: &Path, file: &Path) -> String {
    let output = python(
        kubernetes,
        file.parent().expect("dir"),
        &[
            "-m",
            "kubernetes_validate",
            "--strict",
            &file.display().to_string(),
        ],
    );
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "kubernetes-validate: {said}");
    said
}

/// Every document of a YAML stream as PyYAML (YAML 1.1) reads it.
fn pyyaml_reads(kubernetes: &Path, file: &Path) -> Vec<Value> {
    let output = python(
        kubernetes,
        file.parent().expect("dir"),
        &[
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
            &file.display().to_string(),
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("json")
}

#[test]
fn the_example_compose_file_passes_docker_compose_and_the_compose_spec_schema() {
    let (Some(compose), Some(schema)) = (
        tool("compose", "compose/cli/main.py"),
        tool("compose-schema", "check_jsonschema"),
    ) else {
        return;
    };
    let (repo, backend, web) = TestRepo::moments();
    // Outside the repo: the bind mount's source must find the repo from there.
    let out = tempfile::tempdir().expect("temp dir");
    let dir = out.path().join("deploy");
    let written = export(&repo, &["compose", "-o", &format!("{}/", dir.display())]);
    assert!(
        text(&written.stderr).contains("wrote"),
        "{}",
        text(&written.stderr)
    );
    docker_compose_config_q(&compose, &dir);
    compose_spec_schema(&schema, &dir);
    let services = compose_reads(&compose, &dir);
    let root = repo.root.display().to_string();
    assert_eq!(services["backend"]["volumes"], json!([root]));
    assert_eq!(services["backend"]["working_dir"], "/repo/backend");
    assert_eq!(
        services["backend"]["command"],
        json!(["python3", "server.py"])
    );
    assert_eq!(
        services["backend"]["ports"],
        json!([[backend, backend]]),
        "{services}"
    );
    assert_eq!(
        services["backend"]["test"].as_array().expect("test").last(),
        Some(&json!(format!("http://127.0.0.1:{backend}/rpc/v1/health")))
    );
    assert_eq!(
        services["web"]["depends_on"],
        json!({"backend": {"condition": "service_healthy"}})
    );
    assert_eq!(services["web"]["ports"], json!([[web, web]]));
    // The secret comes from the skeleton env_file, empty until filled in.
    assert_eq!(
        services["web"]["environment"]["VITE_STYTCH_PUBLIC_TOKEN"],
        ""
    );
    assert_eq!(
        services["web"]["environment"]["VITE_BACKEND_URL"],
        format!("http://localhost:{backend}")
    );
}

#[test]
fn the_example_manifests_pass_kubernetes_validate_strict_for_a_current_kubernetes() {
    let Some(kubernetes) = tool("kubernetes", "kubernetes_validate") else {
        return;
    };
    let (repo, backend, _) = TestRepo::moments();
    // Printed: a multi-document stream on stdout.
    let printed = export(&repo, &["kubernetes"]);
    let file = repo.root.join("printed.yaml");
    std::fs::write(&file, &printed.stdout).expect("write");
    let said = kubernetes_validate(&kubernetes, &file);
    for object in [
        "configmap/backend-env",
        "service/backend",
        "deployment/backend",
        "configmap/web-env",
        "secret/web-secrets",
        "service/web",
        "deployment/web",
    ] {
        assert!(
            said.contains(&format!(
                "passed for resource {object} against version 1.37"
            )),
            "{object}: {said}"
        );
    }
    let docs = pyyaml_reads(&kubernetes, &file);
    assert_eq!(docs[0]["data"]["PORT"], backend.to_string());
    let probe = &docs[2]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"];
    assert_eq!(probe["httpGet"]["path"], "/rpc/v1/health");
    assert_eq!(probe["httpGet"]["port"], backend);
}

/// A plan written to trip YAML 1.1 readers, Compose's `$` substitution and
/// shells: service names `no`, `on` and `1_000`, values that look like
/// booleans, dates and base-60 numbers, quotes, newlines, `$`, a password
/// in a URL and health checks of every kind.
fn hostile_repo() -> (TestRepo, Value) {
    let env = json!({
        "Y": "no", "WHEN": "2024-01-02", "TIME": "80:80", "NUM": "1_000", "EMPTY": "",
        "QUOTE": "it's \"q\" #x: y", "MULTI": "a\nb\n", "DOLLAR": "$HOME ${PATH} $$",
        "DATABASE_URL": "postgres://u:hunter2@db/x", "API_TOKEN": "t0k3n-secret",
        "PORT": "8080", "SEPARATORS": "a\u{2028}b\u{85}c\u{c}d\u{1b}e\tf ",
    });
    let services = json!([
        {"name": "no", "cwd": "sub/dir", "command": ["sh", "-c", "echo \"$HOME\" ${X:-y} $$"], "env": env,
         "health": {"type": "http", "url": "http://127.0.0.1:8080/health?x=$y", "timeout_ms": u64::MAX, "interval_ms": 1},
         "restart": "always"},
        {"name": "on", "command": ["yes"], "health": {"type": "tcp", "port": 9000},
         "depends_on": ["no"]},
        {"name": "1_000", "command": ["true", "on", "0777"],
         "health": {"type": "exec", "command": ["test", "-e", "/tmp"]},
         "depends_on": ["on", "no"], "restart": "on-failure"},
    ]);
    let repo = TestRepo::with_fixture(&json!({
        "name": "hostile", "services": services,
        "patch": {"set": {"services.on.port": 9000}},
    }));
    (repo, env)
}

#[test]
fn a_hostile_plan_reads_back_unchanged_in_docker_compose_and_pyyaml() {
    let (Some(compose), Some(schema), Some(kubernetes)) = (
        tool("compose", "compose/cli/main.py"),
        tool("compose-schema", "check_jsonschema"),
        tool("kubernetes", "kubernetes_validate"),
    ) else {
        return;
    };
    let (repo, env) = hostile_repo();
    export(&repo, &["compose", "-o", "deploy/"]);
    export(&repo, &["kubernetes", "-o", "deploy/"]);
    let dir = repo.root.join("deploy");
    for name in ["compose.yaml", "kubernetes.yaml", "no.secrets.env"] {
        let written = std::fs::read_to_string(dir.join(name)).expect(name);
        for secret in ["hunter2", "t0k3n-secret"] {
            assert!(!written.contains(secret), "{secret} in {name}:\n{written}");
        }
    }
    docker_compose_config_q(&compose, &dir);
    compose_spec_schema(&schema, &dir);
    let services = compose_reads(&compose, &dir);
    let mut expected_env = env.clone();
    // Secrets come from the skeleton, empty until filled in.
    expected_env["DATABASE_URL"] = json!("");
    expected_env["API_TOKEN"] = json!("");
    assert_eq!(services["no"]["environment"], expected_env);
    assert_eq!(
        services["no"]["command"],
        json!(["sh", "-c", "echo \"$HOME\" ${X:-y} $$"])
    );
    assert_eq!(
        services["no"]["test"].as_array().expect("test").last(),
        Some(&json!("http://127.0.0.1:8080/health?x=$y"))
    );
    assert_eq!(services["no"]["working_dir"], "/repo/sub/dir");
    assert_eq!(services["no"]["restart"]["Name"], "always", "{services}");
    assert_eq!(services["on"]["command"], json!(["yes"]));
    assert_eq!(services["on"]["ports"], json!([[9000, 9000]]));
    assert_eq!(services["1_000"]["command"], json!(["true", "on", "0777"]));
    assert_eq!(
        services["1_000"]["test"],
        json!(["CMD", "test", "-e", "/tmp"])
    );
    assert_eq!(
        services["1_000"]["depends_on"],
        json!({"no": {"condition": "service_healthy"}, "on": {"condition": "service_healthy"}})
    );

    let file = dir.join("kubernetes.yaml");
    kubernetes_validate(&kubernetes, &file);
    let docs = pyyaml_reads(&kubernetes, &file);
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{kind}/{name} in {docs:?}"))
            .clone()
    };
    let mut plain_env = env.clone();
    let plain = plain_env.as_object_mut().expect("object");
    plain.remove("DATABASE_URL");
    plain.remove("API_TOKEN");
    assert_eq!(find("ConfigMap", "no-env")["data"], plain_env);
    assert_eq!(
        find("Secret", "no-secrets")["stringData"],
        json!({"API_TOKEN": "", "DATABASE_URL": ""})
    );
    let no = find("Deployment", "no");
    let container = &no["spec"]["template"]["spec"]["containers"][0];
    // Kubernetes turns `$$` into `$`: the command runs as planned.
    assert_eq!(
        container["command"],
        json!(["sh", "-c", "echo \"$$HOME\" $${X:-y} $$$$"])
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        "/health?x=$y"
    );
    let thousand = find("Deployment", "s-1-000");
    assert_eq!(
        thousand["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["true", "on", "0777"])
    );
    let waits: Vec<&Value> = thousand["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .expect("init containers")
        .iter()
        .map(|c| &c["command"][3])
        .collect();
    // `no` listens on 8080 (PORT, and its health check), `on` on 9000.
    assert_eq!(waits, [&json!("no"), &json!("on")]);
    assert_eq!(find("Service", "on")["spec"]["ports"][0]["port"], 9000);

    // A Procfile cannot hold MULTI's line break: refused, nothing written.
    let refused = repo.devctl(&["export", "procfile", "-o", "deploy/"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("line break"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!dir.join("Procfile").exists());
}

/// Stops honcho (SIGTERM, then SIGKILL after a deadline) when dropped.
struct Honcho(Child);

impl Drop for Honcho {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let pid = Pid::from_raw(self.0.id() as i32);
        if let Ok(None) = self.0.try_wait() {
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn honcho_runs_the_example_procfile_and_both_services_answer() {
    let Some(honcho) = tool("honcho", "honcho") else {
        return;
    };
    let (repo, backend, web) = TestRepo::moments();
    export(&repo, &["procfile", "-o", "."]);
    let procfile = std::fs::read_to_string(repo.root.join("Procfile")).expect("Procfile");
    assert!(!procfile.contains("e2e-public-token"), "{procfile}");
    let started = Command::new("python3")
        .args(["-m", "honcho", "start"])
        .current_dir(&repo.root)
        .env("PATH", search_path())
        .env("PYTHONPATH", &honcho)
        // The secret comes from the environment the runner starts in.
        .env("VITE_STYTCH_PUBLIC_TOKEN", "from-the-environment")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("honcho starts");
    let mut honcho = Honcho(started);
    let health = format!("http://127.0.0.1:{backend}/rpc/v1/health");
    wait_for(
        "the backend answers its health check",
        Duration::from_secs(20),
        || e2e::http_get(&health).is_some_and(|(status, _)| status == 200),
    );
    let page = format!("http://127.0.0.1:{web}/");
    let mut body = String::new();
    wait_for(
        "the web page is served",
        Duration::from_secs(20),
        || match e2e::http_get(&page) {
            Some((200, text)) => {
                body = text;
                true
            }
            _ => false,
        },
    );
    assert!(body.contains("Moments web"), "{body}");
    assert!(
        body.contains(&format!("http://localhost:{backend}")),
        "the web's env reached it: {body}"
    );
    assert!(body.contains("from-the-environment"), "{body}");
    assert_eq!(
        honcho.0.try_wait().ok().flatten(),
        None,
        "honcho still runs"
    );
    drop(honcho);
    let left = repo.wait_for_nothing_left(Duration::from_secs(10));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn exports_follow_the_plugins_env_and_without_and_are_deterministic() {
    let (repo, _, _) = TestRepo::moments();
    let first = export(&repo, &["compose"]);
    let second = export(&repo, &["compose"]);
    assert_eq!(first.stdout, second.stdout, "same plan, same bytes");
    // --config-env reaches the plugin through its environment.
    let staging = repo
        .command(&["export", "compose"])
        .env("MOMENTS_CONFIG_ENV", "staging")
        .output()
        .expect("devctl");
    assert!(staging.status.success(), "{}", text(&staging.stderr));
    assert!(
        text(&staging.stdout).contains("VITE_BACKEND_URL: https://api.staging.moments.example"),
        "{}",
        text(&staging.stdout)
    );
    let without = repo.devctl(&["export", "procfile", "--without", "moments"]);
    assert_eq!(without.status.code(), Some(1));
    assert!(
        text(&without.stderr).contains("no services"),
        "{}",
        text(&without.stderr)
    );
    let unknown = repo.devctl(&["export", "procfile", "--without", "nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown.stderr));
}

#[test]
fn files_devctl_did_not_write_and_filled_in_secrets_are_never_overwritten() {
    let (repo, _, _) = TestRepo::moments();
    repo.write("deploy/compose.yaml", "services: {mine: {image: x}}\n");
    let refused = repo.devctl(&["export", "compose", "-o", "deploy/"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("not written by devctl export"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        !repo.root.join("deploy/web.secrets.env").exists(),
        "a refusal writes nothing"
    );
    std::fs::remove_file(repo.root.join("deploy/compose.yaml")).expect("rm");
    export(&repo, &["compose", "-o", "deploy/"]);
    let secrets = repo.root.join("deploy/web.secrets.env");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&secrets)
        .expect("skeleton")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::write(&secrets, "VITE_STYTCH_PUBLIC_TOKEN=mine\n").expect("fill in");
    let again = export(&repo, &["compose", "-o", "deploy/compose.yaml"]);
    assert!(
        text(&again.stderr).contains("kept"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&secrets).expect("read"),
        "VITE_STYTCH_PUBLIC_TOKEN=mine\n"
    );
    let header = std::fs::read_to_string(repo.root.join("deploy/compose.yaml")).expect("read");
    assert!(
        header.contains("#   devctl export compose -o deploy/compose.yaml\n"),
        "{header}"
    );
    let images = repo.devctl(&["export", "procfile", "--image", "x"]);
    assert_eq!(images.status.code(), Some(2));
}

#[test]
fn the_readme_shows_the_example_compose_file_as_it_is_exported() {
    let readme = std::fs::read_to_string(e2e::workspace().join("README.md")).expect("README");
    let intro = "`devctl --repo-root examples/moments export compose`:\n\n```yaml\n";
    let start = readme
        .find(intro)
        .expect("the README shows the compose export")
        + intro.len();
    let shown = &readme[start..start + readme[start..].find("```").expect("block end")];
    let repo = TestRepo::empty("readme");
    let exported = repo
        .command(&["--repo-root", "examples/moments", "export", "compose"])
        .current_dir(e2e::workspace())
        .output()
        .expect("devctl");
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    assert_eq!(
        shown,
        text(&exported.stdout),
        "update the README's compose example"
    );
}

#[test]
fn an_invalid_plan_is_not_exported_and_says_why() {
    let repo = TestRepo::with_fixture(&json!({
        "name": "broken", "valid": false,
        "errors": [{"code": "port.taken", "message": "port 8083 is taken"}],
        "services": [{"name": "api", "command": ["true"]}],
    }));
    let refused = repo.devctl(&["export", "compose", "-o", "deploy/"]);
    assert_eq!(refused.status.code(), Some(1));
    let said = text(&refused.stderr);
    assert!(
        said.contains("not valid") && said.contains("port 8083 is taken"),
        "{said}"
    );
    assert!(!repo.root.join("deploy").exists(), "nothing written");
    let empty = repo.devctl(&["export", "compose", "-o", ""]);
    assert_eq!(empty.status.code(), Some(2), "{}", text(&empty.stderr));
}
