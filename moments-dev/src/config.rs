//! Loading the layered Moments config exactly as the backend's viper does.
//!
//! Layers, lowest to highest precedence: typed defaults → `base.yaml`
//! (required) → `<env>.yaml` → `local.yaml` (only for `development` or no
//! env) → each `--config-override` → `<PREFIX>_*` env vars → `--set` flags.
//! Maps deep-merge; scalars and lists replace ([`crate::layers`]). Every
//! value keeps its provenance, so errors and `config dump --show-origin` can
//! name the file, env var or flag it came from.
//!
//! Memory stays proportional to the config: files are read event by event
//! into compact layers ([`crate::yaml`]), layers are merged as they are read,
//! and findings about every key (unknown keys, env overrides) are made while
//! walking the layers, never by collecting every key.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use devctl_support::yaml::YamlError;
use serde_json::Value;

use crate::extract::{extract, ExtractError, Problem};
use crate::keys::{env_var_name, KeyTable};
use crate::layers::{Layer, Layers, View};
use crate::settings::MomentsSettings;

/// Where `config/app/*.yaml` live, relative to the repo root.
pub const CONFIG_DIR: &str = "config/app";

/// Everything that decides the config: flags and the process environment.
#[derive(Debug, Clone)]
pub struct ConfigRequest {
    /// `--repo-root`; `None` means "nearest ancestor of `cwd` with base.yaml".
    pub repo_root: Option<PathBuf>,
    pub cwd: PathBuf,
    /// `""` means no env: base + local only.
    pub config_env: String,
    pub env_prefix: String,
    pub overrides: Vec<PathBuf>,
    /// `--set KEY=VALUE` flags, in order.
    pub sets: Vec<String>,
    /// A snapshot of the process environment.
    pub env: BTreeMap<String, String>,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A problem that does not stop loading, e.g. an unknown YAML key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub code: &'static str,
    pub message: String,
    pub fix: String,
}

/// Why the config could not be loaded. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no Moments repo found: neither {} nor any parent directory holds {CONFIG_DIR}/base.yaml\n  fix: run inside the repo, or pass --repo-root DIR",
        start.display()
    )]
    RepoNotFound { start: PathBuf },
    #[error(
        "missing {}: every Moments config starts from base.yaml\n  fix: pass --repo-root with the repo's top directory (the one holding {CONFIG_DIR}/)",
        expected.display()
    )]
    MissingBase { expected: PathBuf },
    #[error(
        "config override {} does not exist\n  fix: check the path given to --config-override",
        path.display()
    )]
    MissingOverride { path: PathBuf },
    #[error(
        "{} is not a regular file (it is {kind}); a config file must be YAML text\n  fix: replace it with a YAML file, or remove it",
        path.display()
    )]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("config env {env:?} is not a name: {problem}\n  fix: pass --config-env with the name of a file in {CONFIG_DIR}/ without .yaml (e.g. development)")]
    BadEnvName { env: String, problem: String },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `file:line:column: malformed YAML: …`
    #[error("{}", .error.at(path))]
    Yaml { path: PathBuf, error: YamlError },
    #[error("{}: {reason}\n  fix: {fix}", path.display())]
    TooBig {
        path: PathBuf,
        reason: String,
        fix: String,
    },
    #[error("--set {arg}: {reason}")]
    BadSet { arg: String, reason: String },
    #[error("{0}")]
    WrongType(Box<WrongType>),
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// A value that does not fit its key's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: expected {expected}, found {found} (from {origin})\n  fix: {fix}")]
pub struct WrongType {
    pub key: String,
    pub expected: String,
    pub found: String,
    pub origin: Origin,
    pub fix: String,
}

/// The loaded config: typed settings plus every raw value with its origin.
#[derive(Debug)]
pub struct LoadedConfig {
    pub repo_root: PathBuf,
    pub config_env: String,
    pub env_prefix: String,
    pub settings: MomentsSettings,
    /// The YAML files read, in precedence order.
    pub files: Vec<PathBuf>,
    /// Non-fatal findings (unknown YAML keys, a missing `<env>.yaml`).
    pub warnings: Vec<ConfigWarning>,
    keys: KeyTable,
    layers: Layers,
    /// The typed settings as JSON, to show coerced values (an env var's
    /// "9000" as the port 9000). Built on first use.
    typed: OnceLock<Value>,
}

/// Unknown keys named one by one per file; beyond, one summary warning.
const UNKNOWN_KEYS_SHOWN: usize = 20;

/// Files larger than this are refused before they are read.
const MAX_FILE_BYTES: u64 = 1 << 30;

/// Finds the repo root: the nearest ancestor of `start` holding base.yaml.
pub fn discover_repo_root(start: &Path) -> Result<PathBuf, ConfigError> {
    start
        .ancestors()
        .find(|dir| dir.join(CONFIG_DIR).join("base.yaml").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| ConfigError::RepoNotFound {
            start: start.to_path_buf(),
        })
}

impl LoadedConfig {
    pub fn load(request: &ConfigRequest) -> Result<LoadedConfig, ConfigError> {
        let repo_root = match &request.repo_root {
            Some(root) => absolute(&request.cwd, root),
            None => discover_repo_root(&request.cwd)?,
        };
        let config_dir = repo_root.join(CONFIG_DIR);
        let mut warnings = Vec::new();

        let base = config_dir.join("base.yaml");
        if !present(&base)? {
            return Err(ConfigError::MissingBase { expected: base });
        }
        let mut files = vec![base];
        let env = request.config_env.trim();
        if !env.is_empty() {
            // It names a file in config/app/: never a path out of it.
            devctl_contract::names::check_name(env).map_err(|problem| ConfigError::BadEnvName {
                env: env.to_owned(),
                problem: problem.to_string(),
            })?;
            let env_file = config_dir.join(format!("{env}.yaml"));
            if present(&env_file)? {
                files.push(env_file);
            } else {
                warnings.push(ConfigWarning {
                    code: "config.env-file-missing",
                    message: format!(
                        "config env {env:?} has no {}; using base.yaml, overrides and env vars only",
                        display_path(&repo_root, &env_file)
                    ),
                    fix: format!(
                        "pass --config-env with one of: {} (or create the file)",
                        known_envs(&config_dir).join(", ")
                    ),
                });
            }
        }
        if env.is_empty() || env == "development" {
            let local = config_dir.join("local.yaml");
            if present(&local)? {
                files.push(local);
            }
        }
        for path in &request.overrides {
            let path = absolute(&request.cwd, path);
            if !present(&path)? {
                return Err(ConfigError::MissingOverride { path });
            }
            files.push(path);
        }

        let table = KeyTable::for_settings();
        let mut layers = Layers::default();
        let defaults = serde_json::to_value(MomentsSettings::default()).unwrap_or_default();
        layers.push(json_layer(Origin::Default, &defaults, &repo_root)?);

        // Env vars apply to the typed keys and to every key in the YAML files.
        let mut env_keys: BTreeSet<String> = BTreeSet::new();
        let mut match_env = |key: &str| {
            let var = env_var_name(&request.env_prefix, key);
            if request.env.get(&var).is_some_and(|v| !v.is_empty()) {
                env_keys.insert(key.to_owned());
            }
        };
        table.leaves().for_each(&mut match_env);
        for path in &files {
            let file = display_path(&repo_root, path);
            let layer = read_yaml(path, Origin::File(PathBuf::from(&file)))?;
            let mut unknown = 0usize;
            layer.for_each_leaf(|key| {
                if !table.knows(key) {
                    unknown += 1;
                    if unknown <= UNKNOWN_KEYS_SHOWN {
                        warnings.push(ConfigWarning {
                            code: "config.unknown-key",
                            message: format!("{file}: unknown key `{key}` (not a Moments setting)"),
                            fix: format!("check the spelling of `{key}` in {file}, or remove it"),
                        });
                    }
                }
                match_env(key);
            });
            if unknown > UNKNOWN_KEYS_SHOWN {
                warnings.push(ConfigWarning {
                    code: "config.unknown-key",
                    message: format!(
                        "{file}: {} more unknown keys (not Moments settings)",
                        unknown - UNKNOWN_KEYS_SHOWN
                    ),
                    fix: format!(
                        "see them with `moments-dev dev config dump --show-origin`; remove them from {file} if they are not needed"
                    ),
                });
            }
            layers.push(layer);
        }

        // Empty values count as unset.
        for key in &env_keys {
            let var = env_var_name(&request.env_prefix, key);
            if let Some(value) = request.env.get(&var) {
                let value = nested(key, Value::String(value.clone()));
                layers.push(json_layer(Origin::Env(var), &value, &repo_root)?);
            }
        }

        for arg in &request.sets {
            let (key, value) = arg.split_once('=').ok_or_else(|| ConfigError::BadSet {
                arg: arg.clone(),
                reason: "expected KEY=VALUE, e.g. --set server.port=9000".into(),
            })?;
            let key = key.trim();
            let in_yaml = layers.view(key).is_some_and(|view| view.is_leaf());
            if key.is_empty() || !(in_yaml || table.knows(key)) {
                return Err(ConfigError::BadSet {
                    arg: arg.clone(),
                    reason: format!(
                        "unknown key `{key}` (see `moments-dev dev config dump` for the known keys)"
                    ),
                });
            }
            let value = nested(key, Value::String(value.to_owned()));
            layers.push(json_layer(
                Origin::Flag(format!("--set {key}")),
                &value,
                &repo_root,
            )?);
        }

        let settings: MomentsSettings =
            extract(layers.root()).map_err(|err| type_error(err, &request.env_prefix, &table))?;
        Ok(LoadedConfig {
            repo_root,
            config_env: env.to_owned(),
            env_prefix: request.env_prefix.clone(),
            settings,
            files,
            warnings,
            keys: table,
            layers,
            typed: OnceLock::new(),
        })
    }

    /// The effective value of any key (typed keys coerced to their type).
    pub fn get(&self, key: &str) -> Option<Value> {
        let view = self.layers.view(key)?;
        let mut value = view.to_json();
        if let Some(typed) = self.typed_at(key) {
            overlay(&mut value, typed.clone());
        }
        Some(value)
    }

    /// The typed settings' value at `key`, if the settings have that key.
    fn typed_at(&self, key: &str) -> Option<&Value> {
        let typed = self
            .typed
            .get_or_init(|| serde_json::to_value(&self.settings).unwrap_or_default());
        key.split('.')
            .try_fold(typed, |value, segment| value.get(segment))
    }

    /// Where the value of `key` came from.
    pub fn origin(&self, key: &str) -> Option<Origin> {
        self.layers.view(key)?.origin().cloned()
    }

    /// The effective value of `key` as compact JSON text. A leaf's text is
    /// used as stored (a huge list is not parsed again); a parent's value is
    /// built from its leaves.
    pub fn json_text(&self, key: &str) -> Option<Cow<'_, str>> {
        let view = self.layers.view(key)?;
        match self.leaf_text(key, &view) {
            Some(text) => Some(text),
            None => self
                .get(key)
                .map(|value| Cow::Owned(serde_json::to_string(&value).unwrap_or_default())),
        }
    }

    fn leaf_text<'a>(&'a self, key: &str, view: &View<'a>) -> Option<Cow<'a, str>> {
        if !view.is_leaf() {
            return None;
        }
        if self.keys.is_typed_leaf(key) {
            if let Some(typed) = self.typed_at(key) {
                return Some(Cow::Owned(serde_json::to_string(typed).unwrap_or_default()));
            }
        }
        Some(Cow::Borrowed(view.json_text().unwrap_or("{}")))
    }

    /// Every leaf key in sorted order, with its effective value (compact
    /// JSON) and where it came from; one at a time, so a huge config is
    /// never held twice.
    pub fn for_each_leaf(&self, mut f: impl FnMut(&str, &str, Option<&Origin>)) {
        self.layers.root().for_each_leaf("", &mut |key, view| {
            let text = self.leaf_text(key, view).unwrap_or(Cow::Borrowed("null"));
            f(key, &text, view.origin());
        });
    }

    /// The known keys of the typed settings (and which of them are secret).
    pub fn keys(&self) -> &KeyTable {
        &self.keys
    }

    /// The env var that overrides `key` under this prefix.
    pub fn env_var(&self, key: &str) -> String {
        env_var_name(&self.env_prefix, key)
    }

    /// The YAML file a developer should edit to change a setting.
    pub fn file_to_edit(&self) -> String {
        file_to_edit(&self.config_env)
    }

    /// "set `key` in FILE or export VAR" — the fix of most config problems.
    pub fn fix_for(&self, key: &str) -> String {
        format!(
            "set `{key}` in {} or export {}",
            self.file_to_edit(),
            self.env_var(key)
        )
    }
}

fn file_to_edit(env: &str) -> String {
    let name = match env {
        "" | "development" => "local.yaml".to_owned(),
        other => format!("{other}.yaml"),
    };
    format!("{CONFIG_DIR}/{name}")
}

fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    joined.canonicalize().unwrap_or(joined)
}

/// `config/app/local.yaml` for files inside the repo, the full path otherwise.
pub fn display_path(repo_root: &Path, path: &Path) -> String {
    path.strip_prefix(repo_root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn known_envs(config_dir: &Path) -> Vec<String> {
    let mut envs: Vec<String> = std::fs::read_dir(config_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".yaml")?.to_owned();
            (stem != "base" && stem != "local").then_some(stem)
        })
        .collect();
    envs.sort();
    envs
}

/// Whether a config file exists: a regular file (through symlinks, which
/// users make for local.yaml). Anything else in its place (a directory, a
/// FIFO that would block the read, a device) is an error, never skipped.
fn present(path: &Path) -> Result<bool, ConfigError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    let kind = if kind.is_file() {
        return Ok(true);
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a named pipe"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a file"
    };
    Err(ConfigError::NotAFile {
        path: path.to_path_buf(),
        kind,
    })
}

fn read_yaml(path: &Path, origin: Origin) -> Result<Layer, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_FILE_BYTES {
        return Err(ConfigError::TooBig {
            path: path.to_path_buf(),
            reason: format!("{size} bytes; config files of up to {MAX_FILE_BYTES} bytes are read"),
            fix: "split it, or move the data out of the config".into(),
        });
    }
    let file = std::fs::File::open(path).map_err(read_error)?;
    // `take`: a file that grows while it is read stays bounded too.
    crate::yaml::read_layer(file.take(MAX_FILE_BYTES), origin).map_err(|error| ConfigError::Yaml {
        path: path.to_path_buf(),
        error,
    })
}

fn json_layer(origin: Origin, value: &Value, repo_root: &Path) -> Result<Layer, ConfigError> {
    Layer::from_json(origin, value).map_err(|_| ConfigError::TooBig {
        path: repo_root.to_path_buf(),
        reason: "a value is larger than 4 GiB".into(),
        fix: "use a smaller value".into(),
    })
}

/// `a.b.c` + value → `{a: {b: {c: value}}}`.
fn nested(key: &str, value: Value) -> Value {
    key.rsplit('.').fold(value, |inner, segment| {
        let mut outer = serde_json::Map::new();
        outer.insert(segment.to_owned(), inner);
        Value::Object(outer)
    })
}

/// Writes every leaf of `top` into `base`.
fn overlay(base: &mut Value, top: Value) {
    match (base, top) {
        (Value::Object(base), Value::Object(top)) => {
            for (key, value) in top {
                match base.get_mut(&key) {
                    Some(slot) => overlay(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, top) => *slot = top,
    }
}

fn type_error(err: ExtractError, env_prefix: &str, table: &KeyTable) -> ConfigError {
    let key = err.key;
    let origin = err.origin.unwrap_or(Origin::Default);
    let (expected, found) = match err.kind {
        Problem::WrongType { expected, found } => (friendly_type(&expected), found),
        Problem::Other(message) => return ConfigError::Invalid(format!("{key}: {message}")),
    };
    let fix = match &origin {
        Origin::Env(var) => format!("fix or unset {var}"),
        Origin::Flag(flag) => format!("fix the value of {flag}"),
        // An env var can only set a single value: name one only where it
        // would be read and could fix the type.
        Origin::File(file) if table.is_typed_leaf(&key) => format!(
            "correct `{key}` in {} (or override it with {})",
            file.display(),
            env_var_name(env_prefix, &key)
        ),
        Origin::File(file) => format!("correct `{key}` in {}", file.display()),
        Origin::Default => format!("set `{key}` to {expected}"),
    };
    ConfigError::WrongType(Box::new(WrongType {
        key,
        expected,
        found,
        origin,
        fix,
    }))
}

/// serde's type names, in words a config author knows.
fn friendly_type(expected: &str) -> String {
    devctl_support::yaml::type_in_words(expected)
}
