//! Cross-crate end-to-end tests live in `tests/tests/`. This library holds
//! what they share: locating (and if need be building) workspace binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Path of a workspace binary (`--bin`) or SDK example (`--example`), built
/// with the same profile as the tests when it is missing or stale. Cargo is
/// quick when it is up to date.
pub fn built(package: &str, kind: &str, name: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "-q", "-p", package, kind, name])
        .status()
        .unwrap_or_else(|err| panic!("cannot run cargo to build {name}: {err}"));
    assert!(status.success(), "building {name} failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let dir = target.join("debug");
    match kind {
        "--example" => dir.join("examples").join(name),
        _ => dir.join(name),
    }
}
