//! Starting one service process: its own process group (so it and its
//! children can be stopped together), the parent's environment plus its own
//! and devctl's marks ([`crate::procs`]), stdin from /dev/null, stdout and
//! stderr into pipes its log ([`crate::logs::Capture`]) reads.

use std::path::{Path, PathBuf};

use devctl_contract::manifest::ServiceSpec;

use crate::logs::{Capture, Stream};
use crate::procs::marks;

/// Where a service runs: its `cwd` under the repo root, never outside it.
pub fn service_cwd(root: &Path, spec: &ServiceSpec) -> Result<PathBuf, String> {
    let dir = root.join(if spec.cwd.is_empty() {
        "."
    } else {
        spec.cwd.as_str()
    });
    let resolved = dir.canonicalize().map_err(|err| {
        format!(
            "service {}: cwd {} does not exist: {err}",
            spec.name,
            dir.display()
        )
    })?;
    if !resolved.starts_with(root) {
        return Err(format!(
            "service {}: cwd {:?} leaves the repo root ({}); use a directory inside the repo",
            spec.name,
            spec.cwd,
            resolved.display()
        ));
    }
    Ok(resolved)
}

/// What starting a service needs besides its spec.
pub struct Launch<'a> {
    pub root: &'a Path,
    pub log: &'a Capture,
    /// This run's id ([`crate::procs::run_id`]).
    pub run: &'a str,
}

pub fn spawn(
    spec: &ServiceSpec,
    cwd: &Path,
    launch: &Launch<'_>,
) -> std::io::Result<tokio::process::Child> {
    let stdout = launch.log.pipe(Stream::Stdout)?;
    let stderr = launch.log.pipe(Stream::Stderr)?;
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    tokio::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .envs(&spec.env)
        .envs(marks(launch.root, &spec.name, launch.run))
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
}
