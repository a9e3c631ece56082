//! The typed Moments settings: the single source of truth for which keys
//! exist, their types and their defaults.
//!
//! Key names are the backend's YAML spelling (kebab-case in nested maps, e.g.
//! `platform.mento-service-identity-base-url`). The list of known keys, the
//! env var names and the unknown-key warnings are all derived from these
//! structs (see [`crate::keys`]), so adding a field here is the whole change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct MomentsSettings {
    pub server: ServerSettings,
    pub platform: PlatformSettings,
    pub integrations: IntegrationSettings,
    pub sql: SqlSettings,
    pub keys: KeySettings,
    pub bootstrap: BootstrapSettings,
    pub dev: DevSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct ServerSettings {
    /// The port the backend listens on.
    pub port: u16,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings { port: 8083 }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct PlatformSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mento_service_identity_base_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mento_service_public_base_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct IntegrationSettings {
    pub stytch: StytchSettings,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct StytchSettings {
    /// Secret: redacted unless `--show-secrets`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stytch_public_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stytch_hosted_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct SqlSettings {
    /// Its password is secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct KeySettings {
    /// Relative paths are under the repo root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_jwt_private_key_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_jwt_public_key_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct BootstrapSettings {
    pub openssl_bin: String,
}

impl Default for BootstrapSettings {
    fn default() -> Self {
        BootstrapSettings {
            openssl_bin: "openssl".into(),
        }
    }
}

/// How the dev environment runs. In each service command, `{port}` is
/// replaced by that service's port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct DevSettings {
    pub web_port: u16,
    pub backend: ServiceCommand,
    pub web: ServiceCommand,
    /// Build command plans by group.
    pub build: BTreeMap<String, Vec<PlanStep>>,
    /// Prepare command plans by group.
    pub prepare: BTreeMap<String, Vec<PlanStep>>,
}

impl Default for DevSettings {
    fn default() -> Self {
        let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        DevSettings {
            web_port: 5173,
            backend: ServiceCommand {
                cwd: "backend".into(),
                command: argv(&["go", "run", "./cmd/moments-server", "serve"]),
            },
            web: ServiceCommand {
                cwd: "web".into(),
                command: argv(&["pnpm", "run", "dev", "--", "--port", "{port}"]),
            },
            build: BTreeMap::from([
                (
                    "backend".into(),
                    vec![PlanStep {
                        cwd: "backend".into(),
                        command: argv(&["go", "build", "./..."]),
                    }],
                ),
                (
                    "web".into(),
                    vec![PlanStep {
                        cwd: "web".into(),
                        command: argv(&["pnpm", "install", "--prefer-offline"]),
                    }],
                ),
            ]),
            prepare: BTreeMap::from([(
                "bootstrap".into(),
                vec![PlanStep {
                    cwd: "backend".into(),
                    command: argv(&["make", "bootstrap"]),
                }],
            )]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct ServiceCommand {
    /// Relative to the repo root.
    pub cwd: String,
    pub command: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct PlanStep {
    pub cwd: String,
    pub command: Vec<String>,
}
