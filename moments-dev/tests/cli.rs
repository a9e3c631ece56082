//! `moments-dev` as users run it: flags, errors on bad input, exit codes,
//! secrets, and the validate checks against real ports, processes and HTTP.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use common::{moments_dev, serve_health, stderr_of, stdout_of, RepoCopy, STATIC_CHECKS};
use devctl_contract::manifest::DevManifest;
use devctl_contract::report::ValidationReport;
use predicates::prelude::*;

const TOKEN: &str = "public-token-test-3f9a1c7e-local";
const DB_PASSWORD: &str = "moments-dev-password";

fn report_of(output: &std::process::Output) -> ValidationReport {
    serde_json::from_slice(&output.stdout).expect("validate --format json prints a report")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn manifest_describes_both_services_of_the_example() {
    let repo = RepoCopy::new();
    let output = repo.cmd(&["dev", "manifest"]).output().expect("runs");
    assert!(output.status.success(), "{}", stderr_of(&output));
    let manifest: DevManifest = serde_json::from_slice(&output.stdout).expect("manifest JSON");
    assert_eq!(manifest.schema_version, "v1");
    let names: Vec<&str> = manifest.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["backend", "web"]);
    let backend = &manifest.services[0];
    assert_eq!(
        backend.health.as_ref().and_then(|h| h.url.as_deref()),
        Some("http://127.0.0.1:8083/rpc/v1/health")
    );
    assert_eq!(
        manifest.services[1].command.last().map(String::as_str),
        Some("5173")
    );
    assert_eq!(
        manifest.repo.root,
        repo.root.canonicalize().unwrap().display().to_string()
    );

    let yaml = repo
        .cmd(&["dev", "manifest", "--format", "yaml"])
        .output()
        .expect("runs");
    let from_yaml: DevManifest = yaml_serde::from_slice(&yaml.stdout).expect("manifest YAML");
    assert_eq!(from_yaml, manifest);
}

#[test]
fn the_repo_root_is_found_from_a_subdirectory() {
    let repo = RepoCopy::new();
    moments_dev()
        .current_dir(repo.root.join("web"))
        .args(["dev", "config", "get", "server.port"])
        .assert()
        .success()
        .stdout("8083\n");
}

#[test]
fn outside_a_repo_the_error_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    moments_dev()
        .current_dir(dir.path())
        .args(["dev", "manifest"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("config/app/base.yaml"))
        .stderr(predicate::str::contains("--repo-root"));
}

#[test]
fn a_missing_base_yaml_names_the_expected_path() {
    let repo = RepoCopy::new();
    std::fs::remove_file(repo.root.join("config/app/base.yaml")).unwrap();
    repo.cmd(&["dev", "vite-env"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "missing {}",
            repo.root
                .canonicalize()
                .unwrap()
                .join("config/app/base.yaml")
                .display()
        )));
}

#[test]
fn malformed_yaml_names_file_line_and_column() {
    let repo = RepoCopy::new();
    repo.write("config/app/local.yaml", "server:\n  port: 8083\n bad: [\n");
    let output = repo.cmd(&["dev", "manifest"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("config/app/local.yaml:3:"), "{stderr}");
    assert!(stderr.contains("malformed YAML"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn a_wrong_type_names_key_type_and_source() {
    let repo = RepoCopy::new();
    repo.write("config/app/local.yaml", "server:\n  port: eighty\n");
    repo.cmd(&["dev", "manifest"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "server.port: expected a port number",
        ))
        .stderr(predicate::str::contains("config/app/local.yaml"));

    let repo = RepoCopy::new();
    repo.cmd(&["dev", "manifest"])
        .env("MOMENTS_SERVER_PORT", "70000")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("server.port"))
        .stderr(predicate::str::contains("MOMENTS_SERVER_PORT"));

    // A map given a number: no env var can set a map, so none is offered,
    // and the type is named in words.
    let repo = RepoCopy::new();
    repo.write("config/app/local.yaml", "platform: 42\n");
    let output = repo.cmd(&["dev", "manifest"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("platform: expected a map")
            && stderr.contains("fix: correct `platform` in config/app/local.yaml")
            && !stderr.contains("MOMENTS_PLATFORM")
            && !stderr.contains("struct"),
        "{stderr}"
    );
}

#[test]
fn unknown_yaml_keys_warn_but_do_not_fail() {
    let repo = RepoCopy::new();
    repo.write("config/app/local.yaml", "servr:\n  port: 1\n");
    repo.cmd(&["dev", "config", "get", "server.port"])
        .assert()
        .success()
        .stdout("8083\n")
        .stderr(predicate::str::contains(
            "warning: config/app/local.yaml: unknown key `servr.port`",
        ));
}

#[test]
fn config_env_comes_from_the_flag_then_moments_config_env() {
    let repo = RepoCopy::new();
    let key = "platform.mento-service-public-base-url";
    repo.cmd(&["dev", "config", "get", key])
        .env("MOMENTS_CONFIG_ENV", "staging")
        .assert()
        .success()
        .stdout("https://api.staging.moments.example\n");
    repo.cmd(&["dev", "config", "get", key, "--config-env", "production"])
        .env("MOMENTS_CONFIG_ENV", "staging")
        .assert()
        .success()
        .stdout("https://api.moments.example\n");
    // production skips local.yaml, so the example's token is absent there.
    repo.cmd(&[
        "dev",
        "config",
        "get",
        "integrations.stytch.stytch-public-token",
        "--config-env",
        "production",
    ])
    .assert()
    .code(1);
}

#[test]
fn overrides_and_set_flags_layer_on_top() {
    let repo = RepoCopy::new();
    repo.write("extra.yaml", "server:\n  port: 9100\n");
    let extra = repo.root.join("extra.yaml");
    repo.cmd(&["dev", "config", "get", "server.port", "--config-override"])
        .arg(&extra)
        .assert()
        .success()
        .stdout("9100\n");
    repo.cmd(&[
        "dev",
        "config",
        "get",
        "server.port",
        "--set",
        "server.port=9200",
        "--config-override",
    ])
    .arg(&extra)
    .env("MOMENTS_SERVER_PORT", "9150")
    .assert()
    .success()
    .stdout("9200\n");
    repo.cmd(&["dev", "manifest", "--config-override", "missing.yaml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does not exist"));
    repo.cmd(&["dev", "manifest", "--set", "server.port"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("expected KEY=VALUE"));
}

#[test]
fn secrets_stay_hidden_unless_asked_for() {
    let repo = RepoCopy::new();
    let commands: &[&[&str]] = &[
        &["dev", "manifest"],
        &["dev", "manifest", "--format", "yaml"],
        &["dev", "vite-env"],
        &["dev", "vite-env", "--format", "env"],
        &["dev", "vite-env", "--format", "dotenv"],
        &["dev", "validate", "--format", "json"],
        &["dev", "config", "dump", "--show-origin"],
        &["dev", "config", "dump", "--format", "json"],
        &[
            "dev",
            "config",
            "get",
            "integrations.stytch.stytch-public-token",
        ],
        &["dev", "config", "get", "sql.database-url"],
    ];
    for args in commands {
        let output = repo.cmd(args).output().unwrap();
        let all = format!("{}{}", stdout_of(&output), stderr_of(&output));
        assert!(!all.contains(TOKEN), "{args:?} leaked the token:\n{all}");
        assert!(
            !all.contains(DB_PASSWORD),
            "{args:?} leaked the db password:\n{all}"
        );
    }

    let env = repo
        .cmd(&["dev", "vite-env", "--format", "env"])
        .output()
        .unwrap();
    assert!(!stdout_of(&env).contains("VITE_STYTCH_PUBLIC_TOKEN"));
    assert!(stderr_of(&env).contains("VITE_STYTCH_PUBLIC_TOKEN"));
    assert!(stderr_of(&env).contains("--show-secrets"));

    let json = repo.cmd(&["dev", "vite-env"]).output().unwrap();
    assert!(stdout_of(&json).contains(r#""VITE_STYTCH_PUBLIC_TOKEN": "<redacted>""#));

    for args in [
        &["dev", "vite-env", "--format", "dotenv", "--show-secrets"][..],
        &["dev", "manifest", "--show-secrets"],
        &[
            "dev",
            "config",
            "get",
            "integrations.stytch.stytch-public-token",
            "--show-secrets",
        ],
    ] {
        let output = repo.cmd(args).output().unwrap();
        assert!(
            stdout_of(&output).contains(TOKEN),
            "{args:?} should show the token"
        );
    }
    repo.cmd(&["dev", "config", "get", "sql.database-url", "--show-secrets"])
        .assert()
        .stdout(predicate::str::contains(DB_PASSWORD));
}

#[test]
fn parent_keys_redact_the_secrets_nested_in_them() {
    let repo = RepoCopy::new();
    repo.write(
        "config/app/local.yaml",
        &format!(
            "integrations:\n  stytch:\n    stytch-public-token: {TOKEN}\n\
             extra:\n  api-token: odd-secret-1\n  nested:\n    db-password: odd-secret-2\n\
             \x20 list:\n    - password: odd-secret-3\n      user: kept-user\n\
             \x20 credentials:\n    user: kept-user\n    pass: odd-secret-4\n"
        ),
    );
    let secrets = [
        TOKEN,
        DB_PASSWORD,
        "odd-secret-1",
        "odd-secret-2",
        "odd-secret-3",
    ];
    let hidden: &[&[&str]] = &[
        &["dev", "config", "get", "integrations"],
        &["dev", "config", "get", "integrations.stytch"],
        &["dev", "config", "get", "sql"],
        &["dev", "config", "get", "extra"],
        &["dev", "config", "get", "extra.nested"],
        &["dev", "config", "get", "extra.credentials"],
        &["dev", "config", "get", "extra.credentials.pass"],
        &["dev", "config", "dump"],
        &["dev", "config", "dump", "--format", "json", "--show-origin"],
    ];
    for args in hidden {
        let output = repo.cmd(args).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let all = format!("{}{}", stdout_of(&output), stderr_of(&output));
        for secret in secrets {
            assert!(!all.contains(secret), "{args:?} leaked {secret}:\n{all}");
        }
    }
    let sql = stdout_of(&repo.cmd(&["dev", "config", "get", "sql"]).output().unwrap());
    assert!(
        sql.contains("postgres://moments:<redacted>@127.0.0.1:5432"),
        "{sql}"
    );
    let extra = stdout_of(
        &repo
            .cmd(&["dev", "config", "get", "extra"])
            .output()
            .unwrap(),
    );
    assert!(
        extra.contains("kept-user"),
        "only secrets are hidden: {extra}"
    );

    for (key, secret) in [
        ("integrations", TOKEN),
        ("sql", DB_PASSWORD),
        ("extra", "odd-secret-3"),
    ] {
        repo.cmd(&["dev", "config", "get", key, "--show-secrets"])
            .assert()
            .success()
            .stdout(predicate::str::contains(secret));
    }

    // A password the URL rules cannot delimit is hidden with the whole URL.
    let odd_url = "sql.database-url=postgres://app:pa/ss@db.internal/x";
    let shown = stdout_of(
        &repo
            .cmd(&["dev", "config", "get", "sql", "--set", odd_url])
            .output()
            .unwrap(),
    );
    assert!(!shown.contains("pa/ss"), "{shown}");
}

#[test]
fn dotenv_refuses_a_value_it_cannot_write_and_names_the_key() {
    let repo = RepoCopy::new();
    repo.cmd(&["dev", "vite-env", "--format", "dotenv"])
        .env("MOMENTS_PLATFORM_MENTO_SERVICE_PUBLIC_BASE_URL", "a\rb")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("VITE_BACKEND_URL"))
        .stderr(predicate::str::contains("carriage return"));
}

#[test]
fn config_get_and_dump_show_any_key_and_its_origin() {
    let repo = RepoCopy::new();
    repo.write("config/app/local.yaml", "custom:\n  thing: 42\n");
    repo.cmd(&["dev", "config", "get", "custom.thing"])
        .assert()
        .success()
        .stdout("42\n");
    repo.cmd(&["dev", "config", "get", "dev.backend.command"])
        .assert()
        .success()
        .stdout("[\"python3\",\"server.py\"]\n");
    repo.cmd(&["dev", "config", "get", "no.such.key"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no key `no.such.key`"));

    let output = repo
        .cmd(&["dev", "config", "dump", "--show-origin"])
        .env("MOMENTS_DEV_WEB_PORT", "5200")
        .output()
        .unwrap();
    let dump = stdout_of(&output);
    assert!(
        dump.contains("dev.web-port = 5200  # env MOMENTS_DEV_WEB_PORT\n"),
        "{dump}"
    );
    assert!(
        dump.contains("server.port = 8083  # config/app/base.yaml\n"),
        "{dump}"
    );
    assert!(
        dump.contains("custom.thing = 42  # config/app/local.yaml\n"),
        "{dump}"
    );
    assert!(
        dump.contains("bootstrap.openssl-bin = \"openssl\"  # config/app/base.yaml\n"),
        "{dump}"
    );

    let output = repo
        .cmd(&["dev", "config", "dump", "--show-origin", "--format", "json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["server.port"]["value"], 8083);
    assert_eq!(json["server.port"]["origin"], "config/app/base.yaml");
}

#[test]
fn validate_passes_on_the_example_and_lists_every_check() {
    let repo = RepoCopy::new();
    let output = repo
        .cmd(&[&["dev", "validate", "--format", "json"][..], &STATIC_CHECKS].concat())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stdout_of(&output));
    let report = report_of(&output);
    assert!(report.valid);
    let names: Vec<&str> = report.checks.keys().map(String::as_str).collect();
    assert_eq!(names, ["config", "consistency", "keys", "tools"]);
    // Keys are missing in a fresh copy: a warning, because prepare makes them.
    assert!(report.warnings.iter().any(|w| w.code == "keys.missing"));
}

#[test]
fn validate_catches_what_the_legacy_script_hid() {
    let repo = RepoCopy::new();
    repo.write(
        "config/app/local.yaml",
        "platform:\n  mento-service-identity-base-url: http://localhost:8082\n",
    );
    let output = repo
        .cmd(&[
            "dev",
            "validate",
            "--format",
            "json",
            "--check",
            "consistency",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = report_of(&output);
    assert!(!report.valid);
    assert!(!report.checks["consistency"].ok);
    let error = &report.errors[0];
    assert_eq!(error.code, "consistency.identity-port");
    assert!(error.message.contains("8082") && error.message.contains("8083"));
    assert!(error.fix.contains("config/app/local.yaml"), "{}", error.fix);
    assert!(error
        .fix
        .contains("MOMENTS_PLATFORM_MENTO_SERVICE_IDENTITY_BASE_URL"));

    // A remote identity service (staging) is not compared with the local port.
    repo.cmd(&[
        "dev",
        "validate",
        "--check",
        "consistency",
        "--config-env",
        "staging",
    ])
    .assert()
    .code(0);
}

#[test]
fn validate_reports_missing_settings_with_a_fix() {
    let repo = RepoCopy::new();
    let output = repo
        .cmd(&["dev", "validate", "--format", "json", "--check", "config"])
        .env("MOMENTS_SERVER_PORT", "0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = report_of(&output);
    assert!(report
        .errors
        .iter()
        .any(|e| e.code == "config.port-out-of-range" && e.fix.contains("MOMENTS_SERVER_PORT")));

    repo.write("blank.yaml", "platform:\n  mento-service-public-base-url: \"\"\n  mento-service-identity-base-url: \"not a url\"\n");
    let output = repo
        .cmd(&[
            "dev",
            "validate",
            "--format",
            "json",
            "--check",
            "config",
            "--config-override",
        ])
        .arg(repo.root.join("blank.yaml"))
        .output()
        .unwrap();
    let report = report_of(&output);
    let codes: Vec<&str> = report.errors.iter().map(|e| e.code.as_str()).collect();
    assert_eq!(
        codes,
        ["config.invalid-url", "config.missing"],
        "{report:#?}"
    );
}

#[test]
fn validate_exit_code_two_when_it_cannot_run() {
    let repo = RepoCopy::new();
    repo.cmd(&["dev", "validate", "--check", "bogus"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "known checks: config, consistency",
        ));
    repo.write("config/app/local.yaml", "a: [\n");
    repo.cmd(&["dev", "validate"]).assert().code(2);
}

#[test]
fn validate_tools_finds_programs_that_are_not_installed() {
    let repo = RepoCopy::new();
    repo.write(
        "config/app/local.yaml",
        "dev:\n  web:\n    command: [definitely-not-installed-tool-xyz, --port, \"{port}\"]\n",
    );
    let output = repo
        .cmd(&["dev", "validate", "--format", "json", "--check", "tools"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = report_of(&output);
    let error = &report.errors[0];
    assert_eq!(error.code, "tools.missing");
    assert!(error.message.contains("definitely-not-installed-tool-xyz"));
    assert!(error.message.contains("service web"));
    assert!(error.fix.contains("dev.web.command"));

    // openssl is required only while keys are missing.
    let output = repo
        .cmd(&[
            "dev",
            "validate",
            "--format",
            "json",
            "--check",
            "tools",
            "--set",
            "bootstrap.openssl-bin=no-openssl-here",
        ])
        .output()
        .unwrap();
    let report = report_of(&output);
    assert!(report
        .errors
        .iter()
        .any(|e| e.message.contains("no-openssl-here")));
}

#[test]
fn validate_keys_accepts_existing_files_and_rejects_directories() {
    let repo = RepoCopy::new();
    repo.write("backend/keys/internal-jwt.pem", "private");
    repo.write("backend/keys/internal-jwt.pub.pem", "public");
    let report = report_of(
        &repo
            .cmd(&["dev", "validate", "--format", "json", "--check", "keys"])
            .output()
            .unwrap(),
    );
    assert!(report.valid && report.warnings.is_empty(), "{report:#?}");

    let report = report_of(
        &repo
            .cmd(&[
                "dev",
                "validate",
                "--format",
                "json",
                "--check",
                "keys",
                "--set",
                "keys.internal-jwt-private-key-path=backend",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(report.errors[0].code, "keys.not-a-file");
}

#[test]
fn validate_ports_reports_a_port_in_use() {
    let repo = RepoCopy::new();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let output = repo
        .cmd(&["dev", "validate", "--format", "json", "--check", "ports"])
        .env("MOMENTS_SERVER_PORT", &port)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = report_of(&output);
    assert_eq!(report.errors[0].code, "ports.in-use");
    assert!(report.errors[0].message.contains(&port));
    assert!(report.errors[0].fix.contains("MOMENTS_SERVER_PORT"));
}

#[test]
fn validate_db_is_skipped_unless_asked_and_then_really_connects() {
    let repo = RepoCopy::new();
    let report = report_of(
        &repo
            .cmd(&["dev", "validate", "--format", "json"])
            .output()
            .unwrap(),
    );
    assert!(report.checks["db"].skipped);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let url = format!("sql.database-url=postgres://u:p@127.0.0.1:{open}/db");
    let report = report_of(
        &repo
            .cmd(&[
                "dev", "validate", "--format", "json", "--check", "db", "--set", &url,
            ])
            .output()
            .unwrap(),
    );
    assert!(
        report.checks["db"].ok && !report.checks["db"].skipped,
        "{report:#?}"
    );

    let closed = free_port();
    let url = format!("sql.database-url=postgres://u:p@127.0.0.1:{closed}/db");
    let output = repo
        .cmd(&[
            "dev", "validate", "--format", "json", "--check", "db", "--set", &url,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(report_of(&output).errors[0].code, "db.unreachable");
}

/// The example's stand-in backend, started on `port`; killed on drop.
struct Backend(Child);

impl Backend {
    fn start(repo: &RepoCopy, port: u16) -> Backend {
        let child = StdCommand::new("python3")
            .arg("server.py")
            .current_dir(repo.root.join("backend"))
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the stand-in backend");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "stand-in backend did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Backend(child)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn validate_health_probes_a_running_backend() {
    let repo = RepoCopy::new();
    let port = free_port();
    let port_flag = format!("server.port={port}");
    let args = [
        "dev", "validate", "--format", "json", "--check", "health", "--set", &port_flag,
    ];

    let report = report_of(&repo.cmd(&args).output().unwrap());
    assert!(
        report.checks["health"].skipped,
        "nothing runs yet: {report:#?}"
    );

    let _backend = Backend::start(&repo, port);
    let report = report_of(&repo.cmd(&args).output().unwrap());
    assert!(
        report.checks["health"].ok && !report.checks["health"].skipped,
        "{report:#?}"
    );
}

#[test]
fn validate_health_fails_when_the_port_answers_but_not_healthy() {
    let repo = RepoCopy::new();
    let (port, server) = serve_health("503 Service Unavailable", 0);
    let port_flag = format!("server.port={port}");
    let output = repo
        .cmd(&[
            "dev", "validate", "--format", "json", "--check", "health", "--set", &port_flag,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report = report_of(&output);
    assert_eq!(report.errors[0].code, "health.unhealthy");
    assert!(report.errors[0].message.contains("503"), "{report:#?}");
    let _ = server.join().unwrap();
}

#[test]
fn validate_health_reads_the_whole_answer_and_closes_the_connection_cleanly() {
    // A probe that reads only the status line and drops the socket makes the
    // server see a reset (the example backend used to log a
    // ConnectionResetError traceback on most starts).
    let repo = RepoCopy::new();
    let (port, server) = serve_health("200 OK", 64 * 1024);
    let port_flag = format!("server.port={port}");
    let output = repo
        .cmd(&[
            "dev", "validate", "--format", "json", "--check", "health", "--set", &port_flag,
        ])
        .output()
        .unwrap();
    let report = report_of(&output);
    assert!(
        report.checks["health"].ok && !report.checks["health"].skipped,
        "{report:#?}"
    );
    let closed = server.join().unwrap();
    assert!(
        matches!(closed, Ok(0)),
        "the server saw {closed:?} instead of a clean close"
    );
}

#[test]
fn help_teaches_the_layering_and_the_exit_codes() {
    moments_dev()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("local.yaml"))
        .stdout(predicate::str::contains("Exit codes"));
    moments_dev()
        .args(["dev", "vite-env", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("eval"));
    moments_dev().args(["dev", "frobnicate"]).assert().code(2);
}

#[test]
fn completion_scripts_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let output = moments_dev().args(["completion", shell]).output().unwrap();
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            script.contains("vite-env") && script.contains("manifest"),
            "{shell}: {script}"
        );
    }
}

#[test]
fn a_config_path_that_is_not_a_file_is_refused_at_once() {
    let repo = RepoCopy::new();
    let local = repo.root.join("config/app/local.yaml");
    let _ = std::fs::remove_file(&local);
    // A FIFO would block a read forever; a directory was silently skipped.
    nix::unistd::mkfifo(&local, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // (killed after 10 s if it blocks: the status then has no code)
    let output = repo
        .cmd(&["dev", "manifest"])
        .timeout(std::time::Duration::from_secs(10))
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    let status = output.status;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("local.yaml is not a regular file (it is a named pipe)"),
        "{stderr}"
    );

    std::fs::remove_file(&local).unwrap();
    std::fs::create_dir(&local).unwrap();
    let output = repo.cmd(&["dev", "manifest"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("(it is a directory)"),
        "{}",
        stderr_of(&output)
    );
    std::fs::remove_dir(&local).unwrap();

    let output = repo
        .cmd(&["dev", "manifest", "--config-override", "/dev/zero"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("/dev/zero is not a regular file (it is a device)"),
        "{}",
        stderr_of(&output)
    );

    // --config-env names a file in config/app/, never a path out of it.
    let output = repo
        .cmd(&["dev", "manifest", "--config-env", "../../etc/passwd"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("config env \"../../etc/passwd\" is not a name"),
        "{}",
        stderr_of(&output)
    );
}
