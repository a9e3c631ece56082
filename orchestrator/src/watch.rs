//! Watching config inputs for `up --watch`.
//!
//! The watched paths are globs relative to the repo root: `.devctl.yaml`,
//! the local overlay `.devctl/local.yaml`, and whatever plugins declare under
//! `declares.watch` (e.g. `config/app/*.yaml`). The directory part of each
//! glob is watched with inotify (editors that save by renaming are seen
//! too), and a burst of changes is delivered as one batch once nothing has
//! changed for the debounce window.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;

/// Changes closer together than this make one batch.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// What is always watched, besides the plugins' globs.
pub const ALWAYS: &[&str] = &[".devctl.yaml", ".devctl/local.yaml"];

/// `Inotify` as the reactor needs it (it only implements `AsFd`).
struct InotifyFd(Inotify);

impl std::os::fd::AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

pub struct Watcher {
    root: PathBuf,
    inotify: AsyncFd<InotifyFd>,
    /// Watched directory (relative to the root) per watch descriptor.
    dirs: BTreeMap<WatchDescriptor, String>,
    descriptors: BTreeMap<String, WatchDescriptor>,
    globs: Vec<String>,
    pending: BTreeSet<String>,
}

impl Watcher {
    pub fn new(root: &Path, globs: &[String]) -> std::io::Result<Watcher> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(std::io::Error::from)?;
        // SAFETY: the Inotify is moved into the AsyncFd, which owns it.
        let inotify = unsafe { AsyncFd::register(InotifyFd(inotify))? };
        let mut watcher = Watcher {
            root: root.to_path_buf(),
            inotify,
            dirs: BTreeMap::new(),
            descriptors: BTreeMap::new(),
            globs: Vec::new(),
            pending: BTreeSet::new(),
        };
        watcher.set_globs(globs);
        Ok(watcher)
    }

    /// Replaces the watched globs (plugins may have changed).
    pub fn set_globs(&mut self, globs: &[String]) {
        let mut all: Vec<String> = ALWAYS.iter().map(|g| g.to_string()).collect();
        all.extend(globs.iter().cloned());
        all.sort();
        all.dedup();
        for glob in &all {
            for dir in dirs_for(&self.root, glob) {
                self.watch_dir(&dir);
            }
        }
        self.globs = all;
    }

    fn watch_dir(&mut self, dir: &str) {
        if self.descriptors.contains_key(dir) {
            return;
        }
        let path = if dir.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir)
        };
        if !path.is_dir() {
            return;
        }
        let flags = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM;
        if let Ok(wd) = self.inotify.get_ref().0.add_watch(&path, flags) {
            self.dirs.insert(wd, dir.to_owned());
            self.descriptors.insert(dir.to_owned(), wd);
        }
    }

    /// The next batch of changed paths (relative to the root), delivered once
    /// the changes have been quiet for `debounce`.
    pub async fn next_batch(&mut self, debounce: Duration) -> Vec<String> {
        loop {
            let readable = async {
                let mut guard = self.inotify.readable().await.ok()?;
                let events =
                    guard.try_io(|fd| fd.get_ref().0.read_events().map_err(std::io::Error::from));
                match events {
                    Ok(Ok(events)) => Some(events),
                    _ => Some(Vec::new()),
                }
            };
            let events = if self.pending.is_empty() {
                readable.await
            } else {
                match tokio::time::timeout(debounce, readable).await {
                    Ok(events) => events,
                    Err(_) => return std::mem::take(&mut self.pending).into_iter().collect(),
                }
            };
            for event in events.unwrap_or_default() {
                let Some(dir) = self.dirs.get(&event.wd) else {
                    continue;
                };
                let Some(name) = event.name.as_ref().and_then(|n| n.to_str()) else {
                    continue;
                };
                let relative = if dir.is_empty() {
                    name.to_owned()
                } else {
                    format!("{dir}/{name}")
                };
                if self.globs.iter().any(|glob| glob_matches(glob, &relative)) {
                    self.pending.insert(relative);
                }
            }
        }
    }
}

/// The next batch of an optional watcher (never, without one).
pub async fn next_batch(watcher: &mut Option<Watcher>, debounce: Duration) -> Vec<String> {
    match watcher {
        Some(watcher) => watcher.next_batch(debounce).await,
        None => std::future::pending().await,
    }
}

/// Directories to watch for `glob`: its fixed directory part, and every
/// directory below it when the glob contains `**`.
fn dirs_for(root: &Path, glob: &str) -> Vec<String> {
    let segments: Vec<&str> = glob.split('/').collect();
    let fixed: Vec<&str> = segments[..segments.len().saturating_sub(1)]
        .iter()
        .take_while(|s| !s.contains(['*', '?', '[']))
        .copied()
        .collect();
    let base = fixed.join("/");
    if !glob.contains("**") && fixed.len() == segments.len() - 1 {
        return vec![base];
    }
    let mut dirs = vec![base.clone()];
    let mut stack = vec![base];
    while let Some(dir) = stack.pop() {
        let path = if dir.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&dir)
        };
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || name == "node_modules" || name == "target" {
                    continue;
                }
                let child = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                dirs.push(child.clone());
                stack.push(child);
            }
        }
    }
    dirs
}

/// Matches a relative path against a glob: `*` and `?` within a segment,
/// `**` across segments.
pub fn glob_matches(glob: &str, path: &str) -> bool {
    let pattern: Vec<&str> = glob.split('/').collect();
    let parts: Vec<&str> = path.split('/').collect();
    match_segments(&pattern, &parts)
}

fn match_segments(pattern: &[&str], parts: &[&str]) -> bool {
    match pattern.split_first() {
        None => parts.is_empty(),
        Some((&"**", rest)) => (0..=parts.len()).any(|skip| match_segments(rest, &parts[skip..])),
        Some((first, rest)) => match parts.split_first() {
            Some((part, more)) => {
                match_segment(first.as_bytes(), part.as_bytes()) && match_segments(rest, more)
            }
            None => false,
        },
    }
}

fn match_segment(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.split_first(), text.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => (0..=text.len()).any(|skip| match_segment(rest, &text[skip..])),
        (Some((b'?', rest)), Some((_, more))) => match_segment(rest, more),
        (Some((p, rest)), Some((t, more))) => p == t && match_segment(rest, more),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_and_across_segments() {
        assert!(glob_matches("config/app/*.yaml", "config/app/local.yaml"));
        assert!(!glob_matches("config/app/*.yaml", "config/app/local.yml"));
        assert!(!glob_matches("config/app/*.yaml", "config/app/sub/x.yaml"));
        assert!(glob_matches("config/**/*.yaml", "config/app/sub/x.yaml"));
        assert!(glob_matches(".devctl.yaml", ".devctl.yaml"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches(".devctl/local.yaml", ".devctl/state.json"));
    }

    #[tokio::test]
    async fn a_burst_of_writes_is_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config/app")).unwrap();
        let mut watcher = Watcher::new(dir.path(), &["config/app/*.yaml".to_owned()]).unwrap();
        let path = dir.path().join("config/app/local.yaml");
        let writer = tokio::spawn(async move {
            for n in 0..10 {
                std::fs::write(&path, format!("n: {n}\n")).unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let batch = watcher.next_batch(DEBOUNCE).await;
        assert_eq!(batch, ["config/app/local.yaml"]);
        writer.await.unwrap();
        // Nothing else is pending: the ten writes were one batch.
        let more =
            tokio::time::timeout(Duration::from_millis(400), watcher.next_batch(DEBOUNCE)).await;
        assert!(more.is_err(), "a second batch: {more:?}");
    }
}
