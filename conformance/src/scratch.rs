//! A scratch copy of the repo the plugin works on, and a content hash of it,
//! so the suite can run a plugin against a repo and prove a dry run changed
//! nothing, without ever touching the user's own checkout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// Directories never copied: VCS data and build output.
const SKIPPED: &[&str] = &[".git", "target", "node_modules", ".devctl"];

pub(crate) struct Scratch {
    _dir: TempDir,
    pub root: PathBuf,
}

impl Scratch {
    /// A copy of `source` (or an empty repo when `None`).
    pub fn new(source: Option<&Path>) -> std::io::Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix("devctl-conformance-")
            .tempdir()?;
        let name = source
            .and_then(Path::file_name)
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "repo".into());
        let root = dir.path().join(name);
        match source {
            Some(source) => copy_tree(source, &root)?,
            None => std::fs::create_dir_all(&root)?,
        }
        let root = root.canonicalize()?;
        Ok(Scratch { _dir: dir, root })
    }

    /// Every file and directory under the root with its type, mode and bytes.
    pub fn fingerprint(&self) -> BTreeMap<String, (u32, Vec<u8>)> {
        let mut out = BTreeMap::new();
        walk(&self.root, &self.root, &mut out);
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, Vec<u8>)>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let key = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if meta.is_dir() {
            out.insert(key + "/", (mode, Vec::new()));
            walk(root, &path, out);
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap_or_default();
            out.insert(key, (mode, target.display().to_string().into_bytes()));
        } else {
            out.insert(key, (mode, std::fs::read(&path).unwrap_or_default()));
        }
    }
}

/// Names of what differs between two fingerprints (at most a few).
pub(crate) fn differences(
    before: &BTreeMap<String, (u32, Vec<u8>)>,
    after: &BTreeMap<String, (u32, Vec<u8>)>,
) -> Vec<String> {
    let mut changed = Vec::new();
    for (path, value) in after {
        match before.get(path) {
            None => changed.push(format!("created {path}")),
            Some(old) if old != value => changed.push(format!("changed {path}")),
            _ => {}
        }
    }
    for path in before.keys().filter(|p| !after.contains_key(*p)) {
        changed.push(format!("deleted {path}"));
    }
    changed
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if SKIPPED.iter().any(|skip| name == *skip) {
            continue;
        }
        let kind = entry.file_type()?;
        let target = to.join(&name);
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
