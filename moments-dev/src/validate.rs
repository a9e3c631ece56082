//! `dev validate`: the checks that catch what `startdev.sh` hid.
//!
//! Each check is a function that appends errors and warnings (every one with
//! a `fix` naming the YAML file to edit and the env var to set) and returns
//! its outcome. The checks that touch the machine (`ports`, `db`, `health`)
//! use short timeouts so validation never hangs. They block: async callers
//! run [`validate`] on a blocking thread (`spawn_blocking`).

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use devctl_contract::manifest::DevManifest;
use devctl_contract::report::{CheckOutcome, ReportIssue, ValidationReport};
use devctl_support::http::{get_blocking, HttpError};
use url::Url;

use crate::config::LoadedConfig;
use crate::manifest::backend_health_url;
use crate::settings::PasswordUrl;

/// Every check, in the order it runs.
pub const CHECKS: [&str; 7] = [
    "config",
    "consistency",
    "tools",
    "keys",
    "ports",
    "db",
    "health",
];

const IDENTITY_URL: &str = "platform.mento-service-identity-base-url";
const PUBLIC_URL: &str = "platform.mento-service-public-base-url";
const HOSTED_URL: &str = "integrations.stytch.stytch-hosted-url";
const DATABASE_URL: &str = "sql.database-url";
const PRIVATE_KEY: &str = "keys.internal-jwt-private-key-path";
const PUBLIC_KEY: &str = "keys.internal-jwt-public-key-path";

const NETWORK_TIMEOUT: Duration = Duration::from_millis(1000);

/// What the checks read: the config, its manifest and the process env's PATH.
pub struct Inputs<'a> {
    pub config: &'a LoadedConfig,
    pub manifest: &'a DevManifest,
    pub path_var: Option<&'a str>,
}

/// Runs `selected` checks (all of them when empty). `db` runs only when
/// selected explicitly.
pub fn validate(inputs: &Inputs<'_>, selected: &[String]) -> ValidationReport {
    let mut run = Run::default();
    for warning in &inputs.config.warnings {
        run.warnings.push(ReportIssue {
            component: "config".into(),
            code: warning.code.into(),
            message: warning.message.clone(),
            fix: warning.fix.clone(),
        });
    }
    for name in CHECKS {
        let chosen = selected.iter().any(|s| s == name);
        if !selected.is_empty() && !chosen {
            continue;
        }
        run.component = name;
        let outcome = match name {
            "config" => run.config(inputs),
            "consistency" => run.consistency(inputs),
            "tools" => run.tools(inputs),
            "keys" => run.keys(inputs),
            "ports" => run.ports(inputs),
            "db" if chosen => run.db(inputs),
            "db" => Outcome::Skipped("not asked for; pass --check db to test the database".into()),
            _ => run.health(inputs),
        };
        run.checks.push((name, outcome));
    }
    run.into_report()
}

/// Unknown check names, for a usage error.
pub fn unknown_checks(selected: &[String]) -> Vec<&str> {
    selected
        .iter()
        .map(String::as_str)
        .filter(|name| !CHECKS.contains(name))
        .collect()
}

enum Outcome {
    /// Passed or failed, decided by whether the check added errors.
    Ran,
    Skipped(String),
}

#[derive(Default)]
struct Run {
    component: &'static str,
    errors: Vec<ReportIssue>,
    warnings: Vec<ReportIssue>,
    checks: Vec<(&'static str, Outcome)>,
}

impl Run {
    fn error(&mut self, code: &str, message: String, fix: String) {
        self.errors.push(self.issue(code, message, fix));
    }

    fn warn(&mut self, code: &str, message: String, fix: String) {
        self.warnings.push(self.issue(code, message, fix));
    }

    fn issue(&self, code: &str, message: String, fix: String) -> ReportIssue {
        ReportIssue {
            component: self.component.into(),
            code: format!("{}.{code}", self.component),
            message,
            fix,
        }
    }

    fn into_report(self) -> ValidationReport {
        let mut checks = std::collections::BTreeMap::new();
        for (name, outcome) in &self.checks {
            let errors = self.errors.iter().filter(|e| e.component == *name).count();
            let warnings = self
                .warnings
                .iter()
                .filter(|w| w.component == *name)
                .count();
            let result = match outcome {
                Outcome::Skipped(reason) => CheckOutcome {
                    ok: true,
                    skipped: true,
                    message: Some(reason.clone()),
                },
                Outcome::Ran => CheckOutcome {
                    ok: errors == 0,
                    skipped: false,
                    message: match (errors, warnings) {
                        (0, 0) => None,
                        (0, w) => Some(format!("{w} warning(s)")),
                        (e, _) => Some(format!("{e} error(s)")),
                    },
                },
            };
            checks.insert((*name).to_owned(), result);
        }
        ValidationReport {
            valid: self.errors.is_empty(),
            errors: self.errors,
            warnings: self.warnings,
            checks,
        }
    }

    fn config(&mut self, inputs: &Inputs<'_>) -> Outcome {
        let config = inputs.config;
        let platform = &config.settings.platform;
        let required = [
            (IDENTITY_URL, &platform.mento_service_identity_base_url),
            (PUBLIC_URL, &platform.mento_service_public_base_url),
        ];
        for (key, value) in required {
            match value.as_deref().filter(|v| !v.trim().is_empty()) {
                None => self.error(
                    "missing",
                    format!("{key} is not set (the web app cannot reach the backend without it)"),
                    config.fix_for(key),
                ),
                Some(url) => self.check_http_url(config, key, url),
            }
        }
        if let Some(url) = config
            .settings
            .integrations
            .stytch
            .stytch_hosted_url
            .as_deref()
        {
            self.check_http_url(config, HOSTED_URL, url);
        }
        if let Some(url) = config
            .settings
            .sql
            .database_url
            .as_ref()
            .map(PasswordUrl::expose)
        {
            if let Err(reason) = Url::parse(url) {
                self.error(
                    "invalid-url",
                    format!("{DATABASE_URL} is not a valid URL: {reason}"),
                    config.fix_for(DATABASE_URL),
                );
            }
        }
        for (key, port) in [
            ("server.port", config.settings.server.port),
            ("dev.web-port", config.settings.dev.web_port),
        ] {
            if port == 0 {
                self.error(
                    "port-out-of-range",
                    format!("{key} is 0; a port must be between 1 and 65535"),
                    config.fix_for(key),
                );
            }
        }
        Outcome::Ran
    }

    fn check_http_url(&mut self, config: &LoadedConfig, key: &str, url: &str) {
        match Url::parse(url) {
            Err(reason) => self.error(
                "invalid-url",
                format!("{key} is not a valid URL ({url:?}): {reason}"),
                config.fix_for(key),
            ),
            Ok(parsed) if !matches!(parsed.scheme(), "http" | "https") => self.error(
                "invalid-url",
                format!(
                    "{key} must be an http(s) URL, found scheme {:?}",
                    parsed.scheme()
                ),
                config.fix_for(key),
            ),
            Ok(_) => {}
        }
    }

    fn consistency(&mut self, inputs: &Inputs<'_>) -> Outcome {
        let config = inputs.config;
        let backend_port = config.settings.server.port;
        let web_port = config.settings.dev.web_port;
        let platform = &config.settings.platform;
        let identity = loopback_port(platform.mento_service_identity_base_url.as_deref());
        if let Some(port) = identity.filter(|port| *port != backend_port) {
            self.error(
                "identity-port",
                format!(
                    "{IDENTITY_URL} points at local port {port}, but the backend listens on server.port {backend_port}"
                ),
                format!(
                    "make them agree: use port {backend_port} in `{IDENTITY_URL}` ({} or {}), or set server.port to {port}",
                    config.file_to_edit(),
                    config.env_var(IDENTITY_URL)
                ),
            );
        }
        let public = loopback_port(platform.mento_service_public_base_url.as_deref());
        if let Some(port) = public.filter(|port| *port != backend_port) {
            self.warn(
                "public-port",
                format!(
                    "{PUBLIC_URL} points at local port {port}, not at the backend's server.port {backend_port}"
                ),
                format!(
                    "unless a proxy listens on {port}, use port {backend_port} in `{PUBLIC_URL}` ({} or {})",
                    config.file_to_edit(),
                    config.env_var(PUBLIC_URL)
                ),
            );
        }
        if web_port == backend_port {
            self.error(
                "port-clash",
                format!("dev.web-port and server.port are both {web_port}; the two services cannot share a port"),
                config.fix_for("dev.web-port"),
            );
        }
        Outcome::Ran
    }

    fn tools(&mut self, inputs: &Inputs<'_>) -> Outcome {
        let config = inputs.config;
        let manifest = inputs.manifest;
        let services = manifest.services.iter().map(|s| {
            (
                format!("service {}", s.name),
                format!("dev.{}.command", s.name),
                &s.cwd,
                &s.command,
            )
        });
        let plans = manifest
            .build
            .iter()
            .map(|(group, steps)| ("build", group, steps))
            .chain(
                manifest
                    .prepare
                    .iter()
                    .map(|(group, steps)| ("prepare", group, steps)),
            )
            .flat_map(|(phase, group, steps)| {
                steps.iter().map(move |step| {
                    (
                        format!("{phase} step {group}"),
                        format!("dev.{phase}.{group}"),
                        &step.cwd,
                        &step.command,
                    )
                })
            });
        let mut seen = std::collections::BTreeSet::new();
        for (user, key, cwd, command) in services.chain(plans) {
            let Some(program) = command.first() else {
                self.error(
                    "empty-command",
                    format!("{user} has an empty command"),
                    config.fix_for(&key),
                );
                continue;
            };
            if !seen.insert((program.clone(), cwd.clone())) {
                continue;
            }
            let dir = config.repo_root.join(cwd);
            if !program_exists(program, &dir, inputs.path_var) {
                self.error(
                    "missing",
                    format!(
                        "`{program}` (started by {user}) is not found{}",
                        where_looked(program)
                    ),
                    format!(
                        "install `{program}`, or change `{key}` in {} (env {})",
                        config.file_to_edit(),
                        config.env_var(&key)
                    ),
                );
            }
        }
        if keys_to_create(config).next().is_some() {
            let openssl = &config.settings.bootstrap.openssl_bin;
            if !program_exists(openssl, &config.repo_root, inputs.path_var) {
                self.error(
                    "missing",
                    format!(
                        "`{openssl}` is needed to create the missing JWT keys but is not found{}",
                        where_looked(openssl)
                    ),
                    format!(
                        "install openssl, or {}",
                        config.fix_for("bootstrap.openssl-bin")
                    ),
                );
            }
        }
        Outcome::Ran
    }

    fn keys(&mut self, inputs: &Inputs<'_>) -> Outcome {
        let config = inputs.config;
        let keys = &config.settings.keys;
        for (key, value) in [
            (PRIVATE_KEY, &keys.internal_jwt_private_key_path),
            (PUBLIC_KEY, &keys.internal_jwt_public_key_path),
        ] {
            let Some(value) = value.as_deref().filter(|v| !v.is_empty()) else {
                self.error(
                    "not-configured",
                    format!("{key} is not set"),
                    config.fix_for(key),
                );
                continue;
            };
            let path = config.repo_root.join(value);
            match std::fs::metadata(&path) {
                Err(_) => self.warn(
                    "missing",
                    format!("{key}: {value} does not exist yet; prepare will create it with openssl"),
                    format!("run the prepare phase (devctl up), or point `{key}` at an existing key ({} or {})", config.file_to_edit(), config.env_var(key)),
                ),
                Ok(meta) if !meta.is_file() => self.error(
                    "not-a-file",
                    format!("{key}: {value} is not a regular file"),
                    config.fix_for(key),
                ),
                Ok(_) => {
                    if let Err(err) = std::fs::File::open(&path) {
                        self.error("unreadable", format!("{key}: cannot read {value}: {err}"), format!("fix the file's permissions, or {}", config.fix_for(key)));
                    }
                }
            }
        }
        Outcome::Ran
    }

    fn ports(&mut self, inputs: &Inputs<'_>) -> Outcome {
        let config = inputs.config;
        for (key, port) in [
            ("server.port", config.settings.server.port),
            ("dev.web-port", config.settings.dev.web_port),
        ] {
            if port == 0 {
                continue;
            }
            if let Err(err) = TcpListener::bind(("127.0.0.1", port)) {
                self.error(
                    "in-use",
                    format!("port {port} ({key}) is not free: {err}"),
                    format!(
                        "stop whatever listens on {port}, or choose another port: {}",
                        config.fix_for(key)
                    ),
                );
            }
        }
        Outcome::Ran
    }

    fn db(&mut self, inputs: &Inputs<'_>) -> Outcome {
        let config = inputs.config;
        let Some(url) = config
            .settings
            .sql
            .database_url
            .as_ref()
            .map(PasswordUrl::expose)
        else {
            return Outcome::Skipped(format!("{DATABASE_URL} is not set"));
        };
        let Ok(parsed) = Url::parse(url) else {
            return Outcome::Skipped(format!(
                "{DATABASE_URL} is not a valid URL (see the config check)"
            ));
        };
        let host = parsed.host_str().unwrap_or("localhost").to_owned();
        let port = parsed.port().unwrap_or(match parsed.scheme() {
            "mysql" => 3306,
            _ => 5432,
        });
        if let Err(err) = connect(&host, port) {
            self.error(
                "unreachable",
                format!("cannot reach the database at {host}:{port}: {err}"),
                format!("start the database, or {}", config.fix_for(DATABASE_URL)),
            );
        }
        Outcome::Ran
    }

    fn health(&mut self, inputs: &Inputs<'_>) -> Outcome {
        let config = inputs.config;
        let port = config.settings.server.port;
        if connect("127.0.0.1", port).is_err() {
            return Outcome::Skipped(format!(
                "the backend is not running (nothing listens on 127.0.0.1:{port})"
            ));
        }
        // The URL devctl will probe (http or https), so the two never disagree.
        let url = inputs
            .manifest
            .services
            .iter()
            .find(|service| service.name == "backend")
            .and_then(|service| service.health.as_ref()?.url.clone())
            .unwrap_or_else(|| backend_health_url(port));
        match get_blocking(&url, NETWORK_TIMEOUT) {
            Ok(answer) if answer.is_success() => {}
            Ok(answer) => self.error(
                "unhealthy",
                format!("GET {url} answered {}", answer.status),
                "look at the backend's log; something listens on server.port but is not healthy"
                    .into(),
            ),
            Err(err) => {
                let reason = match err {
                    HttpError::Timeout { after, .. } => {
                        format!("no answer within {} ms", after.as_millis())
                    }
                    HttpError::BadUrl { reason, .. } | HttpError::Failed { reason, .. } => reason,
                };
                self.error(
                    "unhealthy",
                    format!("GET {url} failed: {reason}"),
                    format!(
                        "check what listens on port {port}, or {}",
                        config.fix_for("server.port")
                    ),
                )
            }
        }
        Outcome::Ran
    }
}

/// The port of a URL whose host is this machine; `None` for remote hosts.
fn loopback_port(url: Option<&str>) -> Option<u16> {
    let parsed = Url::parse(url?).ok()?;
    let local = matches!(
        parsed.host_str()?,
        "localhost" | "127.0.0.1" | "[::1]" | "::1" | "0.0.0.0"
    );
    local.then(|| parsed.port_or_known_default()).flatten()
}

fn keys_to_create(config: &LoadedConfig) -> impl Iterator<Item = &str> {
    let keys = &config.settings.keys;
    [
        &keys.internal_jwt_private_key_path,
        &keys.internal_jwt_public_key_path,
    ]
    .into_iter()
    .filter_map(|path| path.as_deref())
    .filter(|path| !config.repo_root.join(path).exists())
}

fn where_looked(program: &str) -> &'static str {
    if program.contains('/') {
        " (relative to the step's cwd)"
    } else {
        " on PATH"
    }
}

/// Whether `program` would start: a path relative to `cwd`, or a name on PATH.
pub fn program_exists(program: &str, cwd: &Path, path_var: Option<&str>) -> bool {
    if program.contains('/') {
        return is_executable(&cwd.join(program));
    }
    path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .any(|dir| is_executable(&dir.join(program)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, NETWORK_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(err) => last = err,
        }
    }
    Err(last)
}
