//! The `Repository`: everything about this repo that talking to plugins
//! needs, built once per process and passed explicitly (no ambient state):
//! the root, the loaded `.devctl.yaml`, the plugins in run order, the
//! request metadata bound to every client, and the call timeout.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use devctl_sdk::host::{Client, HostOptions, OpError, PluginSpec, RequestMeta, StderrSink};
use tokio::task::JoinSet;

use crate::config::{ConfigError, DevctlConfig, PluginEntry, Strictness};

/// Where the config lives, relative to the repo root.
pub const CONFIG_FILE: &str = ".devctl.yaml";

/// Handshake budget when a command needs the plugins.
pub const HANDSHAKE: Duration = devctl_contract::limits::HANDSHAKE_TIMEOUT;

pub struct Repository {
    pub root: PathBuf,
    pub config_path: PathBuf,
    pub config: DevctlConfig,
    pub strictness: Strictness,
    pub meta: RequestMeta,
    /// Timeout of each pipeline call.
    pub timeout: Duration,
    /// Where plugins' stderr goes.
    pub stderr: StderrSink,
}

/// The global flags that shape a [`Repository`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub repo_root: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub strict: bool,
    pub dry_run: bool,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("cannot read the current directory: {0}")]
    Cwd(std::io::Error),
    #[error("--repo-root {}: {error}\n  fix: give the directory of a repo (the one holding .devctl.yaml)", path.display())]
    Root {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("--config {}: no such file\n  fix: give the path of a .devctl.yaml (relative paths start at the repo root)", .0.display())]
    ConfigMissing(PathBuf),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("plugin {id} ({source_file}) could not start: {message}\n  fix: run `devctl plugins check {id}` to see what is wrong, or `devctl plugins disable {id}`")]
    PluginStart {
        id: String,
        source_file: String,
        message: String,
    },
}

impl RepoError {
    /// Errors in what the user gave (flags, config): exit status 2.
    pub fn is_usage(&self) -> bool {
        !matches!(self, RepoError::PluginStart { .. } | RepoError::Cwd(_))
    }
}

/// The repo root: `--repo-root`, else the nearest ancestor of the cwd with a
/// `.devctl.yaml`, else the cwd; canonical. Reads no config.
pub fn locate_root(repo_root: Option<&Path>) -> Result<PathBuf, RepoError> {
    let cwd = std::env::current_dir().map_err(RepoError::Cwd)?;
    let root = match repo_root {
        Some(root) => cwd.join(root),
        None => cwd
            .ancestors()
            .find(|dir| dir.join(CONFIG_FILE).is_file())
            .unwrap_or(&cwd)
            .to_path_buf(),
    };
    root.canonicalize()
        .map_err(|error| RepoError::Root { path: root, error })
}

impl Repository {
    pub fn open(settings: &Settings) -> Result<Repository, RepoError> {
        let root = locate_root(settings.repo_root.as_deref())?;
        // As the Go devctl: a relative --config is under the repo root.
        let config_path = match &settings.config {
            Some(path) => root.join(path),
            None => root.join(CONFIG_FILE),
        };
        if settings.config.is_some() && !config_path.exists() {
            return Err(RepoError::ConfigMissing(config_path));
        }
        let path_var = std::env::var("PATH").ok();
        let config = DevctlConfig::load(&root, &config_path, path_var.as_deref())?;
        let strictness = if settings.strict {
            Strictness::Error
        } else {
            config.strictness
        };
        Ok(Repository {
            meta: RequestMeta {
                repo_root: Some(root.clone()),
                cwd: Some(root.clone()),
                dry_run: settings.dry_run,
            },
            root,
            config_path,
            config,
            strictness,
            timeout: settings.timeout,
            stderr: StderrSink::Forward,
        })
    }

    /// Starts the enabled plugins (minus `without`); any failure is fatal
    /// here, since a plan without one of its plugins would be wrong.
    pub async fn start_all(
        &self,
        without: &BTreeSet<String>,
        dry_run: bool,
    ) -> Result<Vec<Client>, RepoError> {
        let plugins = self.plugins(without);
        let mut clients = Vec::new();
        let mut failure = None;
        for (entry, result) in self.start(&plugins, HANDSHAKE, dry_run).await {
            match result {
                Ok(client) => clients.push(client),
                Err(err) => {
                    failure.get_or_insert((entry, err));
                }
            }
        }
        if let Some((entry, err)) = failure {
            close_all(clients).await;
            return Err(RepoError::PluginStart {
                id: entry.id,
                source_file: entry.source,
                message: err.message,
            });
        }
        Ok(clients)
    }

    /// Enabled plugins in run order, minus `without`.
    pub fn plugins(&self, without: &BTreeSet<String>) -> Vec<&PluginEntry> {
        self.config
            .enabled()
            .filter(|p| !without.contains(&p.id))
            .collect()
    }

    /// Starts `plugins` in parallel; each result is sent as soon as it is
    /// known, tagged with the plugin's index in `plugins`. Dropping the
    /// receiver early is fine: plugins still starting are killed with it.
    pub fn start_each(
        &self,
        plugins: &[&PluginEntry],
        handshake_timeout: Duration,
    ) -> tokio::sync::mpsc::UnboundedReceiver<(usize, Result<Client, OpError>)> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for (index, entry) in plugins.iter().enumerate() {
            let spec = spec_of(entry);
            let meta = self.meta.clone();
            let options = HostOptions {
                handshake_timeout,
                stderr: self.stderr.clone(),
                ..HostOptions::default()
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let result = Client::start(&spec, meta, options).await;
                // A closed receiver drops the client, which kills its group.
                let _ = tx.send((index, result));
            });
        }
        rx
    }

    /// Starts `plugins` in parallel, each with `handshake_timeout`; results
    /// come back in the given order. One failing never stops the others.
    pub async fn start(
        &self,
        plugins: &[&PluginEntry],
        handshake_timeout: Duration,
        dry_run: bool,
    ) -> Vec<(PluginEntry, Result<Client, OpError>)> {
        let mut starting = JoinSet::new();
        for (index, entry) in plugins.iter().enumerate() {
            let spec = spec_of(entry);
            let meta = RequestMeta {
                dry_run: dry_run || self.meta.dry_run,
                ..self.meta.clone()
            };
            let options = HostOptions {
                handshake_timeout,
                stderr: self.stderr.clone(),
                ..HostOptions::default()
            };
            starting.spawn(async move { (index, Client::start(&spec, meta, options).await) });
        }
        let mut results: Vec<Option<Result<Client, OpError>>> =
            plugins.iter().map(|_| None).collect();
        while let Some(joined) = starting.join_next().await {
            if let Ok((index, result)) = joined {
                results[index] = Some(result);
            }
        }
        plugins
            .iter()
            .zip(results)
            .map(|(entry, result)| {
                let result = match result {
                    Some(result) => result,
                    None => Err(OpError {
                        plugin_id: entry.id.clone(),
                        op: "handshake".into(),
                        code: devctl_contract::ErrorCode::Runtime,
                        message: "the start task failed".into(),
                        details: None,
                    }),
                };
                ((*entry).clone(), result)
            })
            .collect()
    }

    pub fn relative<'a>(&self, path: &'a Path) -> std::borrow::Cow<'a, str> {
        match path.strip_prefix(&self.root) {
            Ok(inside) => inside.to_string_lossy(),
            Err(_) => path.to_string_lossy(),
        }
    }
}

/// The SDK's spec of a configured plugin.
pub fn spec_of(entry: &PluginEntry) -> PluginSpec {
    PluginSpec {
        id: entry.id.clone(),
        program: entry.program.clone(),
        args: entry.args.clone(),
        workdir: Some(entry.workdir.clone()),
        env: entry.env.clone(),
    }
}

/// Closes every client in parallel (each waits until its group is empty).
pub async fn close_all(clients: Vec<Client>) {
    let mut closing = JoinSet::new();
    for client in clients {
        closing.spawn(client.close());
    }
    while closing.join_next().await.is_some() {}
}

/// [`close_all`], each plugin getting at most `budget` before SIGKILL: for
/// commands that must stay prompt whatever a plugin does on SIGTERM.
pub async fn close_all_within(clients: Vec<Client>, budget: Duration) {
    let mut closing = JoinSet::new();
    for client in clients {
        closing.spawn(client.close_within(budget));
    }
    while closing.join_next().await.is_some() {}
}
