//! `moments-dev dev plugin` driven by the SDK host as a real child process,
//! on a temp copy of the example repo: every op, dry runs that change
//! nothing, real builds and key creation, and `ctx.repo_root` winning over
//! the process's cwd.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::RepoCopy;
use devctl_contract::manifest::ServiceSpec;
use devctl_contract::ops::{ConfigMutateOutput, LaunchPlanOutput, StepsOutput, ValidateOutput};
use devctl_contract::ErrorCode;
use devctl_sdk::host::{Client, HostOptions, PluginSpec, RequestMeta, StderrSink};
use serde_json::{json, Value};

const CALL: Duration = Duration::from_secs(30);
const TOKEN: &str = "public-token-test-3f9a1c7e-local";

async fn plugin(repo: &RepoCopy, dry_run: bool) -> Client {
    // Started from an unrelated directory: only ctx.repo_root points at the repo.
    let spec = PluginSpec {
        id: "moments".into(),
        program: assert_cmd::cargo::cargo_bin("moments-dev"),
        args: vec!["dev".into(), "plugin".into()],
        workdir: Some(std::env::temp_dir()),
        env: BTreeMap::new(),
    };
    let meta = RequestMeta {
        repo_root: Some(repo.root.clone()),
        cwd: None,
        dry_run,
    };
    let options = HostOptions {
        stderr: StderrSink::Discard,
        ..HostOptions::default()
    };
    Client::start(&spec, meta, options)
        .await
        .expect("moments-dev dev plugin starts")
}

/// Every file under `root` with its bytes, to compare before and after.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let key = path.strip_prefix(root).unwrap().display().to_string();
                files.insert(key, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[tokio::test]
async fn the_handshake_declares_every_op_the_commands_and_the_watch_globs() {
    let repo = RepoCopy::new();
    let client = plugin(&repo, false).await;
    let handshake = client.handshake();
    assert_eq!(handshake.plugin_name, "moments");
    assert_eq!(
        handshake.capabilities.ops,
        [
            "build.run",
            "command.run",
            "config.mutate",
            "launch.plan",
            "prepare.run",
            "validate.run"
        ]
    );
    let commands: Vec<&str> = handshake
        .capabilities
        .commands
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(commands, ["vite-env", "doctor"]);
    assert_eq!(
        handshake.declares.as_ref().unwrap().watch,
        ["config/app/*.yaml"]
    );
    client.close().await;
}

#[tokio::test]
async fn config_mutate_patches_vite_env_and_ports_without_secrets() {
    let repo = RepoCopy::new();
    repo.write("config/app/local.yaml", "server:\n  port: 9001\nplatform:\n  mento-service-identity-base-url: http://localhost:9001\ndev:\n  web-port: 5999\nintegrations:\n  stytch:\n    stytch-public-token: secret-token\n");
    let client = plugin(&repo, false).await;
    let (output, reply) = client
        .call_as::<ConfigMutateOutput>("config.mutate", json!({"config": {}}), CALL)
        .await
        .unwrap();
    let set = output.config_patch.set;
    assert_eq!(set["services.backend.port"], json!(9001));
    assert_eq!(set["services.backend.url"], json!("http://127.0.0.1:9001"));
    assert_eq!(set["services.web.port"], json!(5999));
    assert_eq!(
        set["env.VITE_IDENTITY_BACKEND_URL"],
        json!("http://localhost:9001")
    );
    assert!(!set.contains_key("env.VITE_STYTCH_PUBLIC_TOKEN"));
    assert!(!serde_json::to_string(&set)
        .unwrap()
        .contains("secret-token"));
    assert!(reply.notes.iter().any(|n| n.message.contains("secret")));
    client.close().await;
}

#[tokio::test]
async fn launch_plan_returns_the_manifest_services_with_real_values() {
    let repo = RepoCopy::new();
    let client = plugin(&repo, false).await;
    let (output, _) = client
        .call_as::<LaunchPlanOutput>("launch.plan", json!({"config": {}}), CALL)
        .await
        .unwrap();
    let names: Vec<&str> = output
        .services
        .iter()
        .map(|s: &ServiceSpec| s.name.as_str())
        .collect();
    assert_eq!(names, ["backend", "web"]);
    // The web service needs the real token to run.
    assert_eq!(output.services[1].env["VITE_STYTCH_PUBLIC_TOKEN"], TOKEN);
    client.close().await;
}

#[tokio::test]
async fn validate_run_reports_errors_with_their_fix() {
    let repo = RepoCopy::new();
    let client = plugin(&repo, false).await;
    let checks = json!({"config": {}, "checks": ["config", "consistency"]});
    let (ok, _) = client
        .call_as::<ValidateOutput>("validate.run", checks.clone(), CALL)
        .await
        .unwrap();
    assert!(ok.valid, "{ok:?}");

    repo.write(
        "config/app/local.yaml",
        "platform:\n  mento-service-identity-base-url: http://localhost:8082\n",
    );
    let (bad, _) = client
        .call_as::<ValidateOutput>("validate.run", checks, CALL)
        .await
        .unwrap();
    assert!(!bad.valid);
    assert_eq!(bad.errors[0].code, "consistency.identity-port");
    let fix = bad.errors[0].details.as_ref().unwrap()["fix"]
        .as_str()
        .unwrap();
    assert!(
        fix.contains("MOMENTS_PLATFORM_MENTO_SERVICE_IDENTITY_BASE_URL"),
        "{fix}"
    );
    client.close().await;
}

#[tokio::test]
async fn validate_run_probes_the_backend_health_from_inside_the_plugin() {
    // The plugin serves ops on an async runtime: the health probe must work
    // there too (a blocking client started inside it would panic).
    let repo = RepoCopy::new();
    let (port, server) = common::serve_health("503 Service Unavailable", 0);
    repo.write(
        "config/app/local.yaml",
        &format!("server:\n  port: {port}\n"),
    );
    let client = plugin(&repo, false).await;
    let (report, _) = client
        .call_as::<ValidateOutput>("validate.run", json!({"checks": ["health"]}), CALL)
        .await
        .unwrap();
    assert!(!report.valid, "{report:?}");
    assert_eq!(report.errors[0].code, "health.unhealthy");
    assert!(report.errors[0].message.contains("503"), "{report:?}");
    let _ = server.join().unwrap();
    client.close().await;
}

#[tokio::test]
async fn build_runs_the_plans_and_honours_the_step_selection() {
    let repo = RepoCopy::new();
    let client = plugin(&repo, false).await;
    let (all, _) = client
        .call_as::<StepsOutput>("build.run", json!({"config": {}, "steps": null}), CALL)
        .await
        .unwrap();
    let names: Vec<(&str, bool)> = all.steps.iter().map(|s| (s.name.as_str(), s.ok)).collect();
    assert_eq!(names, [("backend", true), ("web", true)]);
    assert!(
        repo.root.join("backend/__pycache__").is_dir(),
        "py_compile really ran"
    );

    let (some, _) = client
        .call_as::<StepsOutput>("build.run", json!({"config": {}, "steps": ["web"]}), CALL)
        .await
        .unwrap();
    assert_eq!(some.steps.len(), 1);
    assert_eq!(some.steps[0].name, "web");

    let err = client
        .call("build.run", json!({"config": {}, "steps": ["nope"]}), CALL)
        .await
        .unwrap_err();
    assert!(
        err.message.contains("known steps: backend, web"),
        "{}",
        err.message
    );
    client.close().await;
}

#[tokio::test]
async fn a_failing_step_fails_the_phase_and_says_why() {
    let repo = RepoCopy::new();
    repo.write(
        "config/app/local.yaml",
        "dev:\n  build:\n    backend:\n      - cwd: backend\n        command: [python3, -c, \"import sys; sys.exit(4)\"]\n",
    );
    let client = plugin(&repo, false).await;
    let (output, reply) = client
        .call_as::<StepsOutput>("build.run", json!({"config": {}}), CALL)
        .await
        .unwrap();
    assert_eq!(output.steps.len(), 1, "the phase stops at the failed step");
    assert!(!output.steps[0].ok);
    assert!(
        reply.warnings[0].message.contains("exit status: 4"),
        "{:?}",
        reply.warnings
    );
    client.close().await;
}

#[tokio::test]
async fn prepare_creates_the_jwt_keys_and_runs_bootstrap() {
    let repo = RepoCopy::new();
    let client = plugin(&repo, false).await;
    let (output, reply) = client
        .call_as::<StepsOutput>("prepare.run", json!({"config": {}}), CALL)
        .await
        .unwrap();
    let names: Vec<(&str, bool)> = output
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.ok))
        .collect();
    assert_eq!(
        names,
        [("jwt-keys", true), ("bootstrap", true)],
        "{reply:?}"
    );
    let private = std::fs::read_to_string(repo.root.join("backend/keys/internal-jwt.pem")).unwrap();
    let public =
        std::fs::read_to_string(repo.root.join("backend/keys/internal-jwt.pub.pem")).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(repo.root.join("backend/keys/internal-jwt.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(repo.root.join("backend/var").is_dir());
    // A second run keeps the keys.
    client
        .call("prepare.run", json!({"config": {}}), CALL)
        .await
        .unwrap();
    let again = std::fs::read_to_string(repo.root.join("backend/keys/internal-jwt.pem")).unwrap();
    assert_eq!(again, private);
    client.close().await;
}

#[tokio::test]
async fn dry_runs_leave_the_repo_byte_identical() {
    let repo = RepoCopy::new();
    let before = snapshot(&repo.root);
    let client = plugin(&repo, true).await;
    for (op, input) in [
        ("build.run", json!({"config": {}})),
        ("prepare.run", json!({"config": {}})),
        (
            "command.run",
            json!({"name": "vite-env", "argv": [], "config": {}}),
        ),
        ("config.mutate", json!({"config": {}})),
        ("launch.plan", json!({"config": {}})),
    ] {
        client
            .call(op, input, CALL)
            .await
            .unwrap_or_else(|e| panic!("{op}: {e}"));
    }
    client.close().await;
    assert_eq!(snapshot(&repo.root), before);
}

#[tokio::test]
async fn the_vite_env_command_writes_the_dotenv_file_whole() {
    let repo = RepoCopy::new();
    let client = plugin(&repo, false).await;
    let reply = client
        .call(
            "command.run",
            json!({"name": "vite-env", "argv": [], "config": {}}),
            CALL,
        )
        .await
        .unwrap();
    assert_eq!(reply.output, json!({"exit_code": 0}));
    let path = repo.root.join("web/.env.local");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("VITE_BACKEND_URL=http://localhost:8083\n"),
        "{text}"
    );
    assert!(text.contains(&format!("VITE_STYTCH_PUBLIC_TOKEN={TOKEN}\n")));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    client.close().await;
}

#[tokio::test]
async fn vite_env_refuses_a_path_that_looks_like_a_flag() {
    let repo = RepoCopy::new();
    let client = plugin(&repo, false).await;
    for flag in ["--help", "-h", "--force"] {
        let reply = client
            .call(
                "command.run",
                json!({"name": "vite-env", "argv": [flag], "config": {}}),
                CALL,
            )
            .await
            .unwrap();
        assert_eq!(reply.output, json!({"exit_code": 2}), "{flag}");
        assert!(!repo.root.join(flag).exists(), "wrote a file named {flag}");
    }
    client.close().await;
}

#[tokio::test]
async fn doctor_exit_code_follows_validity() {
    let repo = RepoCopy::new();
    repo.write(
        "config/app/local.yaml",
        "platform:\n  mento-service-identity-base-url: http://localhost:8082\n",
    );
    let client = plugin(&repo, false).await;
    let reply = client
        .call(
            "command.run",
            json!({"name": "doctor", "argv": [], "config": {}}),
            CALL,
        )
        .await
        .unwrap();
    assert_eq!(reply.output, json!({"exit_code": 1}));
    client.close().await;
}

#[tokio::test]
async fn a_config_error_is_an_e_runtime_naming_the_file() {
    let repo = RepoCopy::new();
    repo.write("config/app/local.yaml", "server: [\n");
    let client = plugin(&repo, false).await;
    let err = client
        .call("launch.plan", Value::Null, CALL)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Runtime);
    assert!(
        err.message.contains("config/app/local.yaml"),
        "{}",
        err.message
    );
    // The plugin survives and answers once the file is fixed.
    repo.write("config/app/local.yaml", "server:\n  port: 8090\n");
    client.call("launch.plan", Value::Null, CALL).await.unwrap();
    client.close().await;
}
