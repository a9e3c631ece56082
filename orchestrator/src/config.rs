//! `.devctl.yaml`: which plugins to run, in which order, how strictly.
//!
//! ```yaml
//! strictness: warn            # or error: step/service collisions fail
//! plugins:
//!   - id: moments
//!     path: moments-dev       # a bare name is looked up on PATH;
//!     args: [dev, plugin]     # a path with a slash is relative to the repo root
//!     priority: 10            # lower runs first; ties by id
//!     workdir: .              # relative to the repo root
//!     env: {MOMENTS_CONFIG_ENV: development}
//!     enabled: true
//! ```
//!
//! Executables named `plugins/devctl-<id>` are picked up too, as devctl
//! does, unless a configured plugin already has that id.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use devctl_support::yaml::YamlError;
use serde::Deserialize;

use crate::logs::LogLimits;
use crate::statedir::{StateDir, OVERLAY};

/// The priority of configured plugins that do not set one (the Go devctl's).
pub const DEFAULT_PRIORITY: i64 = 0;
/// The priority of auto-discovered `plugins/devctl-<id>` (the Go devctl's).
pub const DISCOVERED_PRIORITY: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strictness {
    #[default]
    Warn,
    Error,
}

/// One plugin, resolved: an absolute program and working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEntry {
    pub id: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub priority: i64,
    pub workdir: PathBuf,
    pub env: BTreeMap<String, String>,
    pub enabled: bool,
    /// Where it was declared (`.devctl.yaml` or `plugins/devctl-<id>`).
    pub source: String,
}

/// The loaded config: plugins in run order (priority, then id).
#[derive(Debug, Clone, Default)]
pub struct DevctlConfig {
    pub strictness: Strictness,
    pub plugins: Vec<PluginEntry>,
    pub warnings: Vec<String>,
    /// Whether the config file exists (plugins may also be discovered).
    pub found: bool,
    /// How big each service's log may grow, and how many old files are kept.
    pub log_limits: LogLimits,
}

/// No `.devctl.yaml` is anywhere near this big.
const CONFIG_LIMIT: u64 = 4 << 20;

/// The config file's text; `None` when there is none. Refuses at once what
/// is not a regular file (a FIFO would hang the read, a device never end),
/// and names the byte where the text stops being UTF-8.
fn read_config(path: &Path) -> Result<Option<String>, ConfigError> {
    use std::io::Read;
    let read_error = |error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(read_error(err)),
    };
    if !meta.is_file() {
        return Err(ConfigError::NotAFile(path.to_path_buf()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(CONFIG_LIMIT + 1).read_to_end(&mut bytes))
        .map_err(read_error)?;
    if bytes.len() as u64 > CONFIG_LIMIT {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            limit: CONFIG_LIMIT,
        });
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|err| ConfigError::NotUtf8 {
            path: path.to_path_buf(),
            offset: err.utf8_error().valid_up_to(),
        })
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}{fix}", located.at(path))]
    Syntax {
        path: PathBuf,
        located: YamlError,
        fix: &'static str,
    },
    #[error("{}: not a regular file\n  fix: point --config at a .devctl.yaml file", .0.display())]
    NotAFile(PathBuf),
    #[error("{}: larger than {limit} bytes; not a devctl config\n  fix: point --config at a .devctl.yaml file", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{}: not UTF-8 text (invalid byte at offset {offset})\n  fix: save the file as UTF-8", path.display())]
    NotUtf8 { path: PathBuf, offset: usize },
    /// `.devctl/` itself is unsafe to use (a link, another user's…).
    #[error(transparent)]
    Unsafe(#[from] devctl_support::fs::FsError),
    #[error("{}: {key}: {message}\n  fix: {fix}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
        fix: String,
    },
}

impl ConfigError {
    fn yaml(path: &Path, err: &yaml_serde::Error) -> ConfigError {
        let located = YamlError::from_parser(err);
        let fix = if located.is_type_error() {
            "\n  fix: give that key a value of the type named (see the README's `.devctl.yaml` section)"
        } else {
            "\n  fix: correct the YAML syntax"
        };
        ConfigError::Syntax {
            path: path.to_path_buf(),
            located,
            fix,
        }
    }
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    strictness: Option<String>,
    /// `logs: {max_size: 50MB, max_files: 3}` (this devctl's; Go ignores it).
    #[serde(default)]
    logs: Option<RawLogs>,
    #[serde(default)]
    plugins: Vec<RawPlugin>,
    #[serde(flatten)]
    other: BTreeMap<String, yaml_serde::Value>,
}

#[derive(Deserialize)]
struct RawLogs {
    max_size: Option<yaml_serde::Value>,
    max_files: Option<u64>,
    #[serde(flatten)]
    other: BTreeMap<String, yaml_serde::Value>,
}

/// Log files are at least this big (smaller would rotate on every line)...
const MIN_LOG_SIZE: u64 = 64 * 1024;
/// ... and there are at most this many old ones.
const MAX_LOG_FILES: u64 = 100;

/// `50MB`, `10 MiB`, `1GB` or a number of bytes.
fn parse_size(value: &yaml_serde::Value) -> Option<u64> {
    if let Some(bytes) = value.as_u64() {
        return Some(bytes);
    }
    let text = value.as_str()?.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes.is_finite() && (0.0..=1e13).contains(&bytes)).then_some(bytes as u64)
}

#[derive(Deserialize)]
struct RawPlugin {
    id: Option<String>,
    path: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    priority: Option<i64>,
    workdir: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    enabled: Option<bool>,
    #[serde(flatten)]
    other: BTreeMap<String, yaml_serde::Value>,
}

impl DevctlConfig {
    /// Loads `path` (a missing file means "no configured plugins") and adds
    /// auto-discovered `plugins/devctl-<id>` executables.
    pub fn load(
        repo_root: &Path,
        path: &Path,
        path_var: Option<&str>,
    ) -> Result<DevctlConfig, ConfigError> {
        let mut config = DevctlConfig::default();
        if let Some(text) = read_config(path)? {
            config = parse(repo_root, path, &text, path_var)?;
            config.found = true;
        }
        let configured: BTreeSet<String> = config.plugins.iter().map(|p| p.id.clone()).collect();
        for entry in discover(repo_root) {
            if !configured.contains(&entry.id) {
                config.plugins.push(entry);
            }
        }
        for (id, enabled) in Overlay::load(repo_root)?.enabled {
            match config.plugins.iter_mut().find(|p| p.id == id) {
                Some(plugin) => plugin.enabled = enabled,
                None => config.warnings.push(format!(
                    "{}: plugin {id:?} is not configured any more; `devctl plugins enable {id}` or delete the line",
                    Overlay::path(repo_root).display()
                )),
            }
        }
        config
            .plugins
            .sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
        Ok(config)
    }

    pub fn enabled(&self) -> impl Iterator<Item = &PluginEntry> {
        self.plugins.iter().filter(|p| p.enabled)
    }
}

fn parse(
    repo_root: &Path,
    path: &Path,
    text: &str,
    path_var: Option<&str>,
) -> Result<DevctlConfig, ConfigError> {
    let raw: Option<RawFile> =
        yaml_serde::from_str(text).map_err(|err| ConfigError::yaml(path, &err))?;
    let Some(raw) = raw else {
        return Ok(DevctlConfig::default());
    };
    let invalid = |key: String, message: String, fix: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        key,
        message,
        fix,
    };
    // As the Go devctl: only `error` is strict; any other value means warn
    // (said, when it is not `warn`, since it may have been meant as strict).
    let strictness = match raw.strictness.as_deref() {
        Some("error") => Strictness::Error,
        _ => Strictness::Warn,
    };
    let strictness_warning = raw
        .strictness
        .as_deref()
        .filter(|value| !matches!(*value, "warn" | "error"))
        .map(|value| {
            format!(
                "{}: strictness {value:?} means warn (only `error` makes collisions fail, as in the Go devctl)",
                path.display()
            )
        });
    let mut warnings: Vec<String> = strictness_warning.into_iter().collect();
    warnings.extend(raw.other.keys().map(|key| {
        format!(
            "{}: `{key}` is not used by this devctl (ignored)",
            path.display()
        )
    }));
    let mut log_limits = LogLimits::default();
    if let Some(logs) = raw.logs {
        if let Some(size) = logs.max_size {
            log_limits.bytes = parse_size(&size)
                .filter(|bytes| *bytes >= MIN_LOG_SIZE)
                .ok_or_else(|| {
                    invalid(
                        "logs.max_size".into(),
                        format!("{size:?} is not a size of at least 64KB"),
                        "write it like `50MB`, `512KiB` or a number of bytes (at least 65536)"
                            .into(),
                    )
                })?;
        }
        if let Some(files) = logs.max_files {
            if files > MAX_LOG_FILES {
                return Err(invalid(
                    "logs.max_files".into(),
                    format!("{files} is more than {MAX_LOG_FILES}"),
                    format!("keep at most {MAX_LOG_FILES} old files"),
                ));
            }
            log_limits.files = files as usize;
        }
        for key in logs.other.keys() {
            warnings.push(format!(
                "{}: logs.{key}: unknown key, ignored",
                path.display()
            ));
        }
    }
    let mut plugins = Vec::new();
    let mut seen = BTreeMap::new();
    for (index, plugin) in raw.plugins.into_iter().enumerate() {
        let at = |field: &str| format!("plugins[{index}].{field}");
        let id = plugin
            .id
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| {
                invalid(
                    at("id"),
                    "missing".into(),
                    "give every plugin a unique `id`".into(),
                )
            })?;
        if let Some(first) = seen.insert(id.clone(), index) {
            return Err(invalid(
                at("id"),
                format!("duplicate id {id:?} (also plugins[{first}])"),
                "give every plugin a unique `id`".into(),
            ));
        }
        let raw_path = plugin
            .path
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| {
                invalid(
                    at("path"),
                    "missing".into(),
                    "set `path` to the plugin executable".into(),
                )
            })?;
        let program = resolve_program(repo_root, &raw_path, path_var).ok_or_else(|| {
            let fix = if raw_path.contains('/') {
                format!("the path is relative to the repo root {}; check it, or build the plugin", repo_root.display())
            } else {
                format!("install `{raw_path}` on PATH, or give a path with a slash (relative to the repo root)")
            };
            invalid(at("path"), format!("{raw_path:?} does not exist"), fix)
        })?;
        // An absolute workdir is kept; a relative one is under the root.
        let workdir = match plugin.workdir {
            Some(dir) => repo_root.join(dir),
            None => repo_root.to_path_buf(),
        };
        if !workdir.is_dir() {
            return Err(invalid(
                at("workdir"),
                format!("{} is not a directory", workdir.display()),
                "set `workdir` relative to the repo root, or remove it".into(),
            ));
        }
        for key in plugin.other.keys() {
            warnings.push(format!(
                "{}: {}: unknown key, ignored",
                path.display(),
                at(key)
            ));
        }
        let args = plugin
            .args
            .into_iter()
            .map(|arg| anchor_arg(&workdir, arg))
            .collect();
        plugins.push(PluginEntry {
            id,
            program,
            args,
            priority: plugin.priority.unwrap_or(DEFAULT_PRIORITY),
            workdir,
            env: plugin.env,
            enabled: plugin.enabled.unwrap_or(true),
            source: path.display().to_string(),
        });
    }
    Ok(DevctlConfig {
        strictness,
        plugins,
        warnings,
        found: true,
        log_limits,
    })
}

/// Local, uncommitted choices: `.devctl/local.yaml`, written by `devctl
/// plugins enable|disable`, applied on top of `.devctl.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    pub enabled: BTreeMap<String, bool>,
}

#[derive(Deserialize, serde::Serialize, Default)]
struct RawOverlay {
    #[serde(default)]
    plugins: BTreeMap<String, RawChoice>,
}

#[derive(Deserialize, serde::Serialize)]
struct RawChoice {
    enabled: bool,
}

impl Overlay {
    pub fn path(repo_root: &Path) -> PathBuf {
        repo_root.join(".devctl/local.yaml")
    }

    pub fn load(repo_root: &Path) -> Result<Overlay, ConfigError> {
        let path = Overlay::path(repo_root);
        let read = StateDir::open(repo_root)
            .and_then(|dir| dir.map(|dir| dir.read_small(OVERLAY)).transpose())?;
        let Some(bytes) = read.flatten() else {
            return Ok(Overlay::default());
        };
        let text = String::from_utf8_lossy(&bytes);
        let raw: Option<RawOverlay> =
            yaml_serde::from_str(&text).map_err(|err| ConfigError::yaml(&path, &err))?;
        Ok(Overlay {
            enabled: raw
                .unwrap_or_default()
                .plugins
                .into_iter()
                .map(|(id, c)| (id, c.enabled))
                .collect(),
        })
    }

    /// The overlay as a file, with a header saying what it is.
    pub fn render(&self) -> String {
        let raw = RawOverlay {
            plugins: self
                .enabled
                .iter()
                .map(|(id, on)| (id.clone(), RawChoice { enabled: *on }))
                .collect(),
        };
        format!(
            "# Local plugin choices, written by `devctl plugins enable|disable`.\n# Machine-specific: do not commit (.devctl/ should be in .gitignore).\n{}",
            yaml_serde::to_string(&raw).unwrap_or_default()
        )
    }
}

/// A relative path among a plugin's arguments (`./plugins/x.py`) means a
/// file under its workdir, as the Go devctl runs plugins there: it is made
/// absolute, so the plugin still finds it when something (`plugins check`,
/// the conformance suite) starts it from another directory. Flags and
/// anything that is not an existing file are passed untouched.
fn anchor_arg(workdir: &Path, arg: String) -> String {
    if arg.is_empty() || arg.starts_with('-') || Path::new(&arg).is_absolute() {
        return arg;
    }
    let candidate: PathBuf = workdir
        .join(&arg)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    if candidate.exists() {
        candidate.display().to_string()
    } else {
        arg
    }
}

/// A path with a slash is relative to the repo root; a bare name is looked
/// up on PATH.
fn resolve_program(repo_root: &Path, path: &str, path_var: Option<&str>) -> Option<PathBuf> {
    if path.contains('/') {
        let program = repo_root.join(path);
        return program.is_file().then_some(program);
    }
    path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(path))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `plugins/devctl-<id>` executables under the repo root.
fn discover(repo_root: &Path) -> Vec<PluginEntry> {
    let Ok(entries) = std::fs::read_dir(repo_root.join("plugins")) else {
        return Vec::new();
    };
    let mut found: Vec<PluginEntry> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.to_owned();
            let id = name.strip_prefix("devctl-")?.to_owned();
            let path = entry.path();
            (!id.is_empty() && is_executable(&path)).then(|| PluginEntry {
                id,
                program: path,
                args: Vec::new(),
                priority: DISCOVERED_PRIORITY,
                workdir: repo_root.to_path_buf(),
                env: BTreeMap::new(),
                enabled: true,
                source: format!("plugins/{name}"),
            })
        })
        .collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}
