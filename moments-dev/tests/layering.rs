//! Layering and env precedence, case by case, through the library with real
//! files in a temp dir: each layer, empty env values, unknown env vars,
//! kebab-case keys, list replace, map deep-merge, local.yaml skipped outside
//! development.

use std::collections::BTreeMap;
use std::path::PathBuf;

use moments_dev::config::{ConfigRequest, LoadedConfig, Origin};
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    files: &'static [(&'static str, &'static str)],
    config_env: &'static str,
    env: &'static [(&'static str, &'static str)],
    env_prefix: &'static str,
    overrides: &'static [&'static str],
    sets: &'static [&'static str],
    key: &'static str,
    expect: Option<Value>,
    origin: Option<Origin>,
}

const BASE: (&str, &str) = (
    "config/app/base.yaml",
    "server:\n  port: 1000\nplatform:\n  mento-service-identity-base-url: http://base\nintegrations:\n  stytch:\n    stytch-hosted-url: https://hosted\ndev:\n  backend:\n    command: [a, b, c]\nextra:\n  feature-flag: from-base\n",
);
const DEV: (&str, &str) = ("config/app/development.yaml", "server:\n  port: 2000\n");
const LOCAL: (&str, &str) = ("config/app/local.yaml", "server:\n  port: 3000\n");
const PROD: (&str, &str) = ("config/app/production.yaml", "server:\n  port: 4000\n");
const STAGING: (&str, &str) = (
    "config/app/staging.yaml",
    "sql:\n  database-url: postgres://s\n",
);
const OVERRIDE_A: (&str, &str) = ("over/a.yaml", "server:\n  port: 5000\n");
const OVERRIDE_B: (&str, &str) = ("over/b.yaml", "server:\n  port: 5001\n");

fn file(path: &str) -> Option<Origin> {
    Some(Origin::File(PathBuf::from(path)))
}

fn env(var: &str) -> Option<Origin> {
    Some(Origin::Env(var.into()))
}

impl Default for Case {
    fn default() -> Self {
        Case {
            name: "",
            files: &[BASE],
            config_env: "development",
            env: &[],
            env_prefix: "MOMENTS",
            overrides: &[],
            sets: &[],
            key: "server.port",
            expect: None,
            origin: None,
        }
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "base only",
            expect: Some(json!(1000)),
            origin: file("config/app/base.yaml"),
            ..Case::default()
        },
        Case {
            name: "env file beats base",
            files: &[BASE, DEV],
            expect: Some(json!(2000)),
            origin: file("config/app/development.yaml"),
            ..Case::default()
        },
        Case {
            name: "local beats the development file",
            files: &[BASE, DEV, LOCAL],
            expect: Some(json!(3000)),
            origin: file("config/app/local.yaml"),
            ..Case::default()
        },
        Case {
            name: "local.yaml is skipped for production",
            files: &[BASE, LOCAL, PROD],
            config_env: "production",
            expect: Some(json!(4000)),
            origin: file("config/app/production.yaml"),
            ..Case::default()
        },
        Case {
            name: "local.yaml is skipped for staging",
            files: &[BASE, LOCAL, STAGING],
            config_env: "staging",
            expect: Some(json!(1000)),
            origin: file("config/app/base.yaml"),
            ..Case::default()
        },
        Case {
            name: "no env reads base and local only",
            files: &[BASE, DEV, LOCAL],
            config_env: "",
            expect: Some(json!(3000)),
            origin: file("config/app/local.yaml"),
            ..Case::default()
        },
        Case {
            name: "an override beats local",
            files: &[BASE, LOCAL, OVERRIDE_A],
            overrides: &["over/a.yaml"],
            expect: Some(json!(5000)),
            origin: file("over/a.yaml"),
            ..Case::default()
        },
        Case {
            name: "overrides apply in order",
            files: &[BASE, OVERRIDE_A, OVERRIDE_B],
            overrides: &["over/b.yaml", "over/a.yaml"],
            expect: Some(json!(5000)),
            origin: file("over/a.yaml"),
            ..Case::default()
        },
        Case {
            name: "env var beats overrides and coerces to the field type",
            files: &[BASE, OVERRIDE_A],
            overrides: &["over/a.yaml"],
            env: &[("MOMENTS_SERVER_PORT", "6000")],
            expect: Some(json!(6000)),
            origin: env("MOMENTS_SERVER_PORT"),
            ..Case::default()
        },
        Case {
            name: "an empty env var counts as unset",
            files: &[BASE, LOCAL],
            env: &[("MOMENTS_SERVER_PORT", "")],
            expect: Some(json!(3000)),
            origin: file("config/app/local.yaml"),
            ..Case::default()
        },
        Case {
            name: "a --set flag beats env",
            env: &[("MOMENTS_SERVER_PORT", "6000")],
            sets: &["server.port=7000"],
            expect: Some(json!(7000)),
            origin: Some(Origin::Flag("--set server.port".into())),
            ..Case::default()
        },
        Case {
            name: "the prefix is configurable and the default prefix is then ignored",
            env: &[
                ("MOMENTS_SERVER_PORT", "6000"),
                ("ACME_SERVER_PORT", "6001"),
            ],
            env_prefix: "ACME",
            expect: Some(json!(6001)),
            origin: env("ACME_SERVER_PORT"),
            ..Case::default()
        },
        Case {
            name: "kebab-case keys map to underscores",
            env: &[(
                "MOMENTS_PLATFORM_MENTO_SERVICE_IDENTITY_BASE_URL",
                "http://env",
            )],
            key: "platform.mento-service-identity-base-url",
            expect: Some(json!("http://env")),
            origin: env("MOMENTS_PLATFORM_MENTO_SERVICE_IDENTITY_BASE_URL"),
            ..Case::default()
        },
        Case {
            name: "a string field keeps numeric-looking env values as strings",
            env: &[("MOMENTS_INTEGRATIONS_STYTCH_STYTCH_PUBLIC_TOKEN", "12345")],
            key: "integrations.stytch.stytch-public-token",
            expect: Some(json!("12345")),
            ..Case::default()
        },
        Case {
            name: "a key known only from YAML can be overridden by env",
            env: &[("MOMENTS_EXTRA_FEATURE_FLAG", "from-env")],
            key: "extra.feature-flag",
            expect: Some(json!("from-env")),
            origin: env("MOMENTS_EXTRA_FEATURE_FLAG"),
            ..Case::default()
        },
        Case {
            name: "an unknown env var is ignored, never turned into a key",
            env: &[("MOMENTS_NOT_A_KEY", "x")],
            key: "not.a.key",
            expect: None,
            ..Case::default()
        },
        Case {
            name: "nesting is never inferred from an env var name",
            env: &[("MOMENTS_EXTRA_FEATURE", "x")],
            key: "extra.feature",
            expect: None,
            ..Case::default()
        },
        Case {
            name: "lists replace instead of appending",
            files: &[
                BASE,
                (
                    "config/app/local.yaml",
                    "dev:\n  backend:\n    command: [x]\n",
                ),
            ],
            key: "dev.backend.command",
            expect: Some(json!(["x"])),
            origin: file("config/app/local.yaml"),
            ..Case::default()
        },
        Case {
            name: "maps deep-merge (a sibling from base survives)",
            files: &[
                BASE,
                (
                    "config/app/local.yaml",
                    "integrations:\n  stytch:\n    stytch-public-token: tok\n",
                ),
            ],
            key: "integrations.stytch.stytch-hosted-url",
            expect: Some(json!("https://hosted")),
            origin: file("config/app/base.yaml"),
            ..Case::default()
        },
        Case {
            name: "defaults fill keys no layer sets",
            key: "dev.web-port",
            expect: Some(json!(5173)),
            origin: Some(Origin::Default),
            ..Case::default()
        },
    ]
}

fn load(case: &Case) -> Result<LoadedConfig, moments_dev::config::ConfigError> {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in case.files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    let request = ConfigRequest {
        repo_root: Some(dir.path().to_path_buf()),
        cwd: dir.path().to_path_buf(),
        config_env: case.config_env.into(),
        env_prefix: case.env_prefix.into(),
        overrides: case.overrides.iter().map(PathBuf::from).collect(),
        sets: case.sets.iter().map(|s| s.to_string()).collect(),
        env: case
            .env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    };
    let loaded = LoadedConfig::load(&request);
    drop(dir);
    loaded
}

#[test]
fn every_layering_case_resolves_as_viper_would() {
    let mut failures = Vec::new();
    for case in cases() {
        let config = match load(&case) {
            Ok(config) => config,
            Err(err) => {
                failures.push(format!("{}: load failed: {err}", case.name));
                continue;
            }
        };
        let got = config.get(case.key);
        if got != case.expect {
            failures.push(format!(
                "{}: {} = {got:?}, expected {:?}",
                case.name, case.key, case.expect
            ));
        }
        if let Some(expected) = &case.origin {
            let origin = config.origin(case.key);
            if origin.as_ref() != Some(expected) {
                failures.push(format!(
                    "{}: origin of {} = {origin:?}, expected {expected:?}",
                    case.name, case.key
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
}

#[test]
fn unknown_yaml_keys_are_warnings_naming_file_and_key() {
    let config = load(&Case {
        files: &[BASE, ("config/app/local.yaml", "server:\n  prot: 1\n")],
        ..Case::default()
    })
    .expect("loads despite the unknown key");
    let warnings: Vec<&str> = config.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(
        warnings
            .contains(&"config/app/local.yaml: unknown key `server.prot` (not a Moments setting)"),
        "{warnings:?}"
    );
    // `extra.feature-flag` in BASE is unknown too; typed keys are not.
    assert!(warnings.iter().any(|w| w.contains("`extra.feature-flag`")));
    assert!(!warnings.iter().any(|w| w.contains("server.port")));
}

#[test]
fn a_wrong_type_names_key_expected_type_and_source() {
    let err = load(&Case {
        env: &[("MOMENTS_DEV_WEB_PORT", "fast")],
        ..Case::default()
    })
    .expect_err("a non-numeric port is an error");
    let text = err.to_string();
    assert!(text.contains("dev.web-port"), "{text}");
    assert!(text.contains("port number"), "{text}");
    assert!(text.contains("MOMENTS_DEV_WEB_PORT"), "{text}");

    let err = load(&Case {
        files: &[BASE, ("config/app/local.yaml", "server:\n  port: [1, 2]\n")],
        ..Case::default()
    })
    .expect_err("a list is not a port");
    let text = err.to_string();
    assert!(text.contains("server.port"), "{text}");
    assert!(text.contains("config/app/local.yaml"), "{text}");
}
