//! The typed Moments settings: the single source of truth for which keys
//! exist, their types and their defaults.
//!
//! Key names are the backend's YAML spelling (kebab-case in nested maps, e.g.
//! `platform.mento-service-identity-base-url`). The list of known keys, the
//! env var names and the unknown-key warnings are all derived from these
//! structs (see [`crate::keys`]), so adding a field here is the whole change.
//! Secret values have their own types ([`Secret`], [`PasswordUrl`]): the key
//! table reads the markers off the types, and redaction follows the table.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stytch_public_token: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stytch_hosted_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct SqlSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<PasswordUrl>,
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
                watch: argv(&["backend/**/*.go", "backend/go.mod", "backend/go.sum"]),
            },
            web: ServiceCommand {
                cwd: "web".into(),
                command: argv(&["pnpm", "run", "dev", "--", "--port", "{port}"]),
                watch: argv(&["web/package.json", "web/pnpm-lock.yaml"]),
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
    /// The service's sources (globs relative to the repo root): under
    /// `devctl up --watch`, an edit re-runs the build group of the same name
    /// and restarts the service.
    pub watch: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct PlanStep {
    pub cwd: String,
    pub command: Vec<String>,
}

/// How much of a setting's value is secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    /// The whole value.
    Whole,
    /// The password inside a URL (`postgres://user:<password>@host/db`).
    UrlPassword,
}

impl Secrecy {
    /// The name a secret type passes to `deserialize_newtype_struct`, which
    /// is how [`crate::keys::KeyTable`] learns which keys are secret.
    pub fn marker(self) -> &'static str {
        match self {
            Secrecy::Whole => "moments_dev::Secret",
            Secrecy::UrlPassword => "moments_dev::PasswordUrl",
        }
    }

    pub fn from_marker(name: &str) -> Option<Secrecy> {
        [Secrecy::Whole, Secrecy::UrlPassword]
            .into_iter()
            .find(|secrecy| secrecy.marker() == name)
    }
}

/// A secret string: shown only with `--show-secrets`; `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

/// A URL whose password is secret (the rest of it is not).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PasswordUrl(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The real value, for the places that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl PasswordUrl {
    pub fn new(value: impl Into<String>) -> PasswordUrl {
        PasswordUrl(value.into())
    }

    /// The whole URL, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(devctl_contract::secrets::REDACTED)
    }
}

impl fmt::Debug for PasswordUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&devctl_contract::secrets::redact_text(&self.0))
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl Serialize for PasswordUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        marked_string(deserializer, Secrecy::Whole).map(Secret)
    }
}

impl<'de> Deserialize<'de> for PasswordUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        marked_string(deserializer, Secrecy::UrlPassword).map(PasswordUrl)
    }
}

/// A string announced as a newtype named after its secrecy.
fn marked_string<'de, D: Deserializer<'de>>(
    deserializer: D,
    secrecy: Secrecy,
) -> Result<String, D::Error> {
    struct Marked;
    impl<'de> serde::de::Visitor<'de> for Marked {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_newtype_struct<D: Deserializer<'de>>(self, inner: D) -> Result<String, D::Error> {
            String::deserialize(inner)
        }

        // Deserializers that do not model newtypes hand over the string itself.
        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<String, E> {
            Ok(value.to_owned())
        }
    }
    deserializer.deserialize_newtype_struct(secrecy.marker(), Marked)
}
