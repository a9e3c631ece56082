//! Loading the layered Moments config exactly as the backend's viper does.
//!
//! Layers, lowest to highest precedence: typed defaults → `base.yaml`
//! (required) → `<env>.yaml` → `local.yaml` (only for `development` or no
//! env) → each `--config-override` → `<PREFIX>_*` env vars → `--set` flags.
//! Maps deep-merge; scalars and lists replace (figment's `merge`). Every value
//! keeps its provenance, so errors and `config dump --show-origin` can name
//! the file, env var or flag it came from.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use figment::value::{Dict, Map, Value as FigValue};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde_json::Value;

use crate::keys::{env_var_name, KeyTable};
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

impl Origin {
    fn from_metadata(metadata: &Metadata) -> Origin {
        match (&*metadata.name, &metadata.source) {
            (_, Some(Source::File(path))) => Origin::File(path.clone()),
            (ENV_LAYER, Some(Source::Custom(var))) => Origin::Env(var.clone()),
            (FLAG_LAYER, Some(Source::Custom(flag))) => Origin::Flag(flag.clone()),
            _ => Origin::Default,
        }
    }
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
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: malformed YAML: {message}", path.display())]
    Yaml {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
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
    figment: Figment,
    /// Every key, typed values coerced: what the backend would see. Built on
    /// first use; most commands only need `settings`.
    effective: OnceLock<Value>,
}

const DEFAULT_LAYER: &str = "default";
const YAML_LAYER: &str = "YAML file";
const ENV_LAYER: &str = "environment variable";
const FLAG_LAYER: &str = "flag";

/// One layer of config data with its provenance.
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

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
        if !base.is_file() {
            return Err(ConfigError::MissingBase { expected: base });
        }
        let mut files = vec![base];
        let env = request.config_env.trim();
        if !env.is_empty() {
            let env_file = config_dir.join(format!("{env}.yaml"));
            if env_file.is_file() {
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
            if local.is_file() {
                files.push(local);
            }
        }
        for path in &request.overrides {
            let path = absolute(&request.cwd, path);
            if !path.is_file() {
                return Err(ConfigError::MissingOverride { path });
            }
            files.push(path);
        }

        let table = KeyTable::for_settings();
        let defaults = FigValue::serialize(MomentsSettings::default())
            .ok()
            .and_then(|value| value.into_dict())
            .unwrap_or_default();
        let mut figment = Figment::new().merge(Layer {
            metadata: Metadata::named(DEFAULT_LAYER),
            dict: defaults,
        });

        let mut known: BTreeSet<String> = table.leaves().map(str::to_owned).collect();
        for path in &files {
            let dict = read_yaml(path)?;
            let mut leaves = Vec::new();
            collect_leaves(&dict, &mut String::new(), &mut leaves);
            for key in &leaves {
                if !table.knows(key) {
                    let file = display_path(&repo_root, path);
                    warnings.push(ConfigWarning {
                        code: "config.unknown-key",
                        message: format!("{file}: unknown key `{key}` (not a Moments setting)"),
                        fix: format!("check the spelling of `{key}` in {file}, or remove it"),
                    });
                }
            }
            known.extend(leaves);
            figment = figment.merge(Layer {
                metadata: Metadata::from(YAML_LAYER, path.as_path()),
                dict,
            });
        }

        // Env vars only for keys we know; empty values count as unset.
        for key in &known {
            let var = env_var_name(&request.env_prefix, key);
            if let Some(value) = request.env.get(&var).filter(|v| !v.is_empty()) {
                figment = figment.merge(Layer {
                    metadata: Metadata::from(ENV_LAYER, Source::Custom(var.clone())),
                    dict: nested(key, FigValue::from(value.clone())),
                });
            }
        }

        for arg in &request.sets {
            let (key, value) = arg.split_once('=').ok_or_else(|| ConfigError::BadSet {
                arg: arg.clone(),
                reason: "expected KEY=VALUE, e.g. --set server.port=9000".into(),
            })?;
            let key = key.trim();
            if !(known.contains(key) || table.knows(key)) {
                return Err(ConfigError::BadSet {
                    arg: arg.clone(),
                    reason: format!(
                        "unknown key `{key}` (see `moments-dev dev config dump` for the known keys)"
                    ),
                });
            }
            figment = figment.merge(Layer {
                metadata: Metadata::from(FLAG_LAYER, Source::Custom(format!("--set {key}"))),
                dict: nested(key, FigValue::from(value.to_owned())),
            });
        }

        let settings: MomentsSettings = figment
            .extract_lossy()
            .map_err(|err| type_error(err, &repo_root, &request.env_prefix))?;
        Ok(LoadedConfig {
            repo_root,
            config_env: env.to_owned(),
            env_prefix: request.env_prefix.clone(),
            settings,
            files,
            warnings,
            keys: table,
            figment,
            effective: OnceLock::new(),
        })
    }

    /// The effective value of any key (typed keys coerced to their type).
    pub fn get(&self, key: &str) -> Option<&Value> {
        key.split('.')
            .try_fold(self.effective(), |value, segment| value.get(segment))
    }

    fn effective(&self) -> &Value {
        self.effective.get_or_init(|| {
            // Both conversions read data that figment already parsed and
            // `settings` already extracted, so they do not fail in practice;
            // an empty tree is the safe answer if they ever did.
            let mut effective: Value = self.figment.extract().unwrap_or_default();
            if let Ok(typed) = serde_json::to_value(&self.settings) {
                overlay(&mut effective, typed);
            }
            effective
        })
    }

    /// Where the value of `key` came from.
    pub fn origin(&self, key: &str) -> Option<Origin> {
        self.figment
            .find_metadata(key)
            .map(Origin::from_metadata)
            .map(|origin| match origin {
                Origin::File(path) => Origin::File(display_path(&self.repo_root, &path).into()),
                other => other,
            })
    }

    /// Every leaf key with its effective value, sorted by key.
    pub fn leaves(&self) -> Vec<(String, &Value)> {
        let mut out = Vec::new();
        flatten_json(self.effective(), &mut String::new(), &mut out);
        out
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

fn read_yaml(path: &Path) -> Result<Dict, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parsed: Option<Dict> = yaml_serde::from_str(&text).map_err(|err| {
        let (line, column) = err
            .location()
            .map(|at| (at.line(), at.column()))
            .unwrap_or((1, 1));
        let message = err.to_string();
        let message = match message.find(" at line ") {
            Some(cut) => message[..cut].to_owned(),
            None => message,
        };
        ConfigError::Yaml {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    })?;
    Ok(parsed.unwrap_or_default())
}

/// `a.b.c` + value → `{a: {b: {c: value}}}`.
fn nested(key: &str, value: FigValue) -> Dict {
    let mut segments: Vec<&str> = key.split('.').collect();
    let last = segments.pop().unwrap_or_default();
    let mut dict = Dict::new();
    dict.insert(last.to_owned(), value);
    for segment in segments.into_iter().rev() {
        let mut outer = Dict::new();
        outer.insert(segment.to_owned(), FigValue::from(dict));
        dict = outer;
    }
    dict
}

fn collect_leaves(dict: &Dict, prefix: &mut String, out: &mut Vec<String>) {
    for (key, value) in dict {
        let len = prefix.len();
        if !prefix.is_empty() {
            prefix.push('.');
        }
        prefix.push_str(key);
        match value {
            FigValue::Dict(_, inner) if !inner.is_empty() => collect_leaves(inner, prefix, out),
            _ => out.push(prefix.clone()),
        }
        prefix.truncate(len);
    }
}

fn flatten_json<'a>(value: &'a Value, prefix: &mut String, out: &mut Vec<(String, &'a Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, inner) in map {
                let len = prefix.len();
                if !prefix.is_empty() {
                    prefix.push('.');
                }
                prefix.push_str(key);
                flatten_json(inner, prefix, out);
                prefix.truncate(len);
            }
        }
        leaf => out.push((prefix.clone(), leaf)),
    }
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

fn type_error(err: figment::Error, repo_root: &Path, env_prefix: &str) -> ConfigError {
    use figment::error::Kind;
    let key = err.path.join(".");
    let origin = match err.metadata.as_ref().map(Origin::from_metadata) {
        Some(Origin::File(path)) => Origin::File(display_path(repo_root, &path).into()),
        Some(other) => other,
        None => Origin::Default,
    };
    let (expected, found) = match &err.kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            (friendly_type(expected), actual.to_string())
        }
        _ => return ConfigError::Invalid(err.to_string()),
    };
    let fix = match &origin {
        Origin::Env(var) => format!("fix or unset {var}"),
        Origin::Flag(flag) => format!("fix the value of {flag}"),
        Origin::File(file) => format!(
            "correct `{key}` in {} (or override it with {})",
            file.display(),
            env_var_name(env_prefix, &key)
        ),
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
    match expected {
        "u16" => "a port number (0 to 65535)".into(),
        "u32" | "u64" | "usize" => "a non-negative whole number".into(),
        "i32" | "i64" => "a whole number".into(),
        "a sequence" => "a list".into(),
        "a boolean" | "bool" => "true or false".into(),
        other => other.into(),
    }
}
