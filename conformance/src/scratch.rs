//! The scratch copy of the repo a plugin works on, and proof that dry runs
//! left it alone, without ever touching the user's own checkout.
//!
//! One temp dir holds the copy (`<tmp>/devctl-conformance-*/<repo name>`)
//! and an unrelated directory (`…/elsewhere`) that `repo-root.*` starts the
//! plugin from; dropping [`Scratch`] removes both. A [`Snapshot`] records
//! every entry's type, mode, size, times and (for files) a content digest;
//! comparing a later walk costs one `stat` per entry and reads only the files
//! whose metadata moved (the change time cannot be forged by a plugin).

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// Directories never copied: VCS data, build output, devctl state.
const SKIPPED: &[&str] = &[".git", "target", "node_modules", ".devctl"];

pub(crate) struct Scratch {
    _dir: TempDir,
    pub root: PathBuf,
    /// A directory outside the repo, for starting the plugin elsewhere.
    pub elsewhere: PathBuf,
}

impl Scratch {
    /// A copy of `source` (or an empty repo when `None`).
    pub fn new(source: Option<&Path>) -> std::io::Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix("devctl-conformance-")
            .tempdir()?;
        let name = source
            .and_then(|s| s.canonicalize().ok())
            .and_then(|s| s.file_name().map(|n| n.to_os_string()))
            .unwrap_or_else(|| "repo".into());
        let root = dir.path().join(name);
        match source {
            Some(source) => copy_tree(source, &root)?,
            None => std::fs::create_dir_all(&root)?,
        }
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere)?;
        Ok(Scratch {
            root: root.canonicalize()?,
            elsewhere: elsewhere.canonicalize()?,
            _dir: dir,
        })
    }

    /// Records the repo as it is now.
    pub fn snapshot(&self) -> Snapshot {
        let mut entries = BTreeMap::new();
        walk(&self.root, &self.root, &mut entries, None);
        Snapshot { entries }
    }

    /// What changed since `before`, and the repo as it is now.
    pub fn changes(&self, before: &Snapshot) -> (Vec<String>, Snapshot) {
        let mut entries = BTreeMap::new();
        walk(&self.root, &self.root, &mut entries, Some(before));
        let now = Snapshot { entries };
        let mut changed = Vec::new();
        for (path, entry) in &now.entries {
            match before.entries.get(path) {
                None => changed.push(format!("created {path}")),
                Some(old) if !old.same_content(entry) => changed.push(format!("changed {path}")),
                _ => {}
            }
        }
        for path in before.entries.keys() {
            if !now.entries.contains_key(path) {
                changed.push(format!("deleted {path}"));
            }
        }
        (changed, now)
    }
}

/// Every entry under the repo root, by relative path (dirs end in `/`).
pub(crate) struct Snapshot {
    entries: BTreeMap<String, Entry>,
}

#[derive(Clone, PartialEq, Eq)]
struct Entry {
    /// File type and permission bits.
    mode: u32,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    /// Content digest of a regular file, target of a symlink.
    digest: u64,
}

impl Entry {
    /// Same type, mode and bytes (times may differ: a rewrite with the
    /// same bytes is not a change of the repo).
    fn same_content(&self, other: &Entry) -> bool {
        self.mode == other.mode && self.len == other.len && self.digest == other.digest
    }

    fn same_metadata(&self, meta: &std::fs::Metadata) -> bool {
        self.mode == meta.mode()
            && self.len == meta.len()
            && self.mtime == (meta.mtime(), meta.mtime_nsec())
            && self.ctime == (meta.ctime(), meta.ctime_nsec())
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>, before: Option<&Snapshot>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mut key = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        if meta.is_dir() {
            key.push('/');
        }
        // Unchanged metadata (ctime included): reuse the digest, read nothing.
        let known = before
            .and_then(|b| b.entries.get(&key))
            .filter(|old| old.same_metadata(&meta));
        let digest = match known {
            Some(old) => old.digest,
            None if meta.file_type().is_symlink() => digest_bytes(
                std::fs::read_link(&path)
                    .unwrap_or_default()
                    .as_os_str()
                    .as_encoded_bytes(),
            ),
            // Only regular files are read: a FIFO would block the suite.
            None if meta.is_file() => digest_file(&path),
            None => 0,
        };
        out.insert(
            key,
            Entry {
                mode: meta.mode(),
                len: meta.len(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                ctime: (meta.ctime(), meta.ctime_nsec()),
                digest,
            },
        );
        if meta.is_dir() {
            walk(root, &path, out, before);
        }
    }
}

fn digest_bytes(bytes: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}

fn digest_file(path: &Path) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let Ok(mut file) = std::fs::File::open(path) else {
        return 0;
    };
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(n) = file.read(&mut buffer) {
        if n == 0 {
            break;
        }
        hasher.write(&buffer[..n]);
    }
    hasher.finish()
}

/// The most a repo copy may hold: a plugin's repo, not a disk.
const MAX_ENTRIES: u64 = 200_000;
const MAX_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Copies regular files, directories and symlinks (as links) of `from`,
/// staying on its file system; sockets, FIFOs and devices are left out
/// (reading a FIFO would block). Refuses a tree larger than a repo can be
/// (`--repo-root /` by mistake), and names the path that failed.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let from = from.canonicalize()?;
    let device = std::fs::metadata(&from)?.dev();
    let mut copy = Copy {
        source: from.clone(),
        dest: to.to_path_buf(),
        device,
        budget: (MAX_ENTRIES, MAX_BYTES),
    };
    copy_dir(&from, to, &mut copy)
}

/// What one copy keeps track of.
struct Copy {
    source: PathBuf,
    dest: PathBuf,
    device: u64,
    budget: (u64, u64),
}

impl Copy {
    /// Where a link at `link_path` (in the source) pointing to `target`
    /// should point in the copy: the same place inside the copy, or `None`
    /// when it leads out of the repo (the plugin would write through it to
    /// the user's files, so it is left out).
    fn relink(&self, link_path: &Path, target: &Path) -> Option<PathBuf> {
        let base = link_path.parent()?;
        let lexical = normalize(&base.join(target));
        let inside = lexical.strip_prefix(&self.source).ok()?;
        Some(if target.is_absolute() {
            self.dest.join(inside)
        } else {
            target.to_path_buf()
        })
    }
}

/// `a/b/../c` → `a/c`, without asking the file system.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path, copy: &mut Copy) -> std::io::Result<()> {
    let context = |path: &Path| {
        let path = path.display().to_string();
        move |err: std::io::Error| std::io::Error::new(err.kind(), format!("{path}: {err}"))
    };
    std::fs::create_dir_all(to).map_err(context(to))?;
    for entry in std::fs::read_dir(from).map_err(context(from))? {
        let entry = entry.map_err(context(from))?;
        let path = entry.path();
        if SKIPPED.iter().any(|skip| entry.file_name() == *skip) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).map_err(context(&path))?;
        if meta.dev() != copy.device {
            continue;
        }
        copy.budget.0 = copy.budget.0.saturating_sub(1);
        copy.budget.1 = copy.budget.1.saturating_sub(meta.len());
        if copy.budget.0 == 0 || copy.budget.1 == 0 {
            return Err(std::io::Error::other(format!(
                "it holds more than {MAX_ENTRIES} entries or {} GiB (stopped at {}); pass the plugin's repo, not a whole disk",
                MAX_BYTES >> 30,
                path.display()
            )));
        }
        let target = to.join(entry.file_name());
        let kind = meta.file_type();
        if kind.is_dir() {
            copy_dir(&path, &target, copy)?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(&path).map_err(context(&path))?;
            if let Some(link) = copy.relink(&path, &link) {
                std::os::unix::fs::symlink(link, &target).map_err(context(&target))?;
            }
        } else if kind.is_file() {
            std::fs::copy(&path, &target).map_err(context(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_what_was_created_changed_and_deleted_and_nothing_else() {
        let source = tempfile::tempdir().unwrap();
        std::fs::write(source.path().join("a.txt"), "a").unwrap();
        std::fs::write(source.path().join("same.txt"), "same").unwrap();
        std::fs::create_dir(source.path().join("dir")).unwrap();
        std::fs::write(source.path().join("dir/b.txt"), "b").unwrap();
        std::fs::create_dir(source.path().join(".git")).unwrap();
        let scratch = Scratch::new(Some(source.path())).unwrap();
        assert!(!scratch.root.join(".git").exists());
        let before = scratch.snapshot();
        let (none, _) = scratch.changes(&before);
        assert!(none.is_empty(), "{none:?}");

        std::fs::write(scratch.root.join("a.txt"), "A").unwrap();
        std::fs::write(scratch.root.join("same.txt"), "same").unwrap();
        std::fs::remove_file(scratch.root.join("dir/b.txt")).unwrap();
        std::fs::write(scratch.root.join("new.txt"), "").unwrap();
        let (changed, after) = scratch.changes(&before);
        assert_eq!(
            changed,
            ["changed a.txt", "created new.txt", "deleted dir/b.txt"],
            "a rewrite with the same bytes is no change"
        );
        let (again, _) = scratch.changes(&after);
        assert!(again.is_empty(), "{again:?}");
        let root = scratch.root.clone();
        drop(scratch);
        assert!(!root.exists(), "the scratch copy is removed on drop");
    }

    #[test]
    fn a_fifo_in_the_repo_neither_blocks_the_copy_nor_the_snapshot() {
        let source = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(
            &source.path().join("pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let scratch = Scratch::new(Some(source.path())).unwrap();
        nix::unistd::mkfifo(
            &scratch.root.join("made-by-plugin"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let (changed, _) = scratch.changes(&Snapshot {
            entries: BTreeMap::new(),
        });
        assert_eq!(changed, ["created made-by-plugin"]);
    }

    #[test]
    fn links_out_of_the_repo_are_left_out_and_links_inside_point_into_the_copy() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("real.txt"), "yours").unwrap();
        let source = tempfile::tempdir().unwrap();
        let src = source.path().canonicalize().unwrap();
        std::fs::write(src.join("a.txt"), "a").unwrap();
        std::fs::create_dir(src.join("sub")).unwrap();
        let link =
            |target: &Path, name: &str| std::os::unix::fs::symlink(target, src.join(name)).unwrap();
        link(&outside.path().join("real.txt"), "abs-out");
        link(outside.path(), "dir-out");
        link(Path::new("../../../../../../etc/passwd"), "rel-out");
        link(&src.join("a.txt"), "abs-in");
        link(Path::new("a.txt"), "rel-in");
        link(Path::new("sub/../a.txt"), "rel-in-dots");
        let scratch = Scratch::new(Some(&src)).unwrap();
        for gone in ["abs-out", "dir-out", "rel-out"] {
            assert!(
                std::fs::symlink_metadata(scratch.root.join(gone)).is_err(),
                "{gone} was copied"
            );
        }
        assert_eq!(
            std::fs::read_link(scratch.root.join("abs-in")).unwrap(),
            scratch.root.join("a.txt"),
            "an absolute link into the repo points into the copy"
        );
        for kept in ["rel-in", "rel-in-dots"] {
            assert_eq!(
                std::fs::read_to_string(scratch.root.join(kept)).unwrap(),
                "a"
            );
        }
        // Writing through every link of the copy leaves the user's files be.
        std::fs::write(scratch.root.join("abs-in"), "changed").unwrap();
        assert_eq!(std::fs::read_to_string(src.join("a.txt")).unwrap(), "a");
        assert_eq!(
            std::fs::read_to_string(outside.path().join("real.txt")).unwrap(),
            "yours"
        );
    }
}
