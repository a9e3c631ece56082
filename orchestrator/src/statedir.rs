//! `<repo>/.devctl/`: where a run keeps its state, lock, socket and logs.
//!
//! Everything here is input, not truth: the directory may be missing, a
//! symlink, another user's, or hold a truncated or forged file. So it is
//! opened once without following links ([`PrivateDir`]), files are created
//! 0600 and directories 0700 whatever the umask, the state file is read with
//! a size bound, and every path devctl uses is derived from the repo root,
//! never read from a file: the control socket is always
//! `.devctl/control.sock`, reached through the directory's open handle so
//! that a long repo path does not matter.

use std::fs::File;
use std::path::{Path, PathBuf};

use devctl_support::fs::{FsError, PrivateDir};

use crate::state::{State, StateError};

/// The directory's name under the repo root.
pub const DIR: &str = ".devctl";
const STATE: &str = "state.json";
const LOCK: &str = "lock";
const SOCKET: &str = "control.sock";
const SUPERVISOR_LOG: &str = "supervisor.log";
const LOGS: &str = "logs";
/// Local, uncommitted choices (`devctl plugins enable|disable`).
pub const OVERLAY: &str = "local.yaml";
/// No state file of ours comes near this; a bigger one is not ours.
const STATE_LIMIT: u64 = 8 << 20;

/// What reading the state file found.
#[derive(Debug)]
pub enum StateRead {
    /// There is no state file.
    Missing,
    /// There is one, but it cannot be used; the reason says why.
    Damaged(String),
    Found(State),
}

impl StateRead {
    pub fn found(self) -> Option<State> {
        match self {
            StateRead::Found(state) => Some(state),
            _ => None,
        }
    }
}

/// An opened `.devctl/`.
#[derive(Debug)]
pub struct StateDir {
    root: PathBuf,
    dir: PrivateDir,
}

impl StateDir {
    /// Opens `<root>/.devctl`, creating it when missing.
    pub fn create(root: &Path) -> Result<StateDir, FsError> {
        Ok(StateDir {
            root: root.to_path_buf(),
            dir: PrivateDir::create(&root.join(DIR))?,
        })
    }

    /// Opens `<root>/.devctl` if it exists; creates nothing.
    pub fn open(root: &Path) -> Result<Option<StateDir>, FsError> {
        Ok(PrivateDir::open(&root.join(DIR))?.map(|dir| StateDir {
            root: root.to_path_buf(),
            dir,
        }))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/.devctl`, for messages.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The state file's path, for messages.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE)
    }

    pub fn read_state(&self) -> StateRead {
        let bytes = match self.dir.read(STATE, STATE_LIMIT) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return StateRead::Missing,
            Err(err) => return StateRead::Damaged(err.to_string()),
        };
        match State::parse(&bytes, &self.root) {
            Ok(state) => StateRead::Found(state),
            Err(StateError(reason)) => StateRead::Damaged(format!(
                "{} is not a devctl state file of this repo ({reason})",
                self.state_path().display()
            )),
        }
    }

    pub fn write_state(&self, state: &State) -> Result<(), FsError> {
        self.dir.write_atomically(STATE, &state.to_bytes())
    }

    /// The lock file, opened (created 0600) for `flock`.
    pub fn lock_file(&self) -> Result<File, FsError> {
        self.dir.open_append(LOCK)
    }

    /// The pid of the process holding the lock (the supervisor), read from
    /// the kernel's lock table: a state file cannot fake it.
    pub fn lock_holder(&self) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        let file = self.dir.open_read(LOCK).ok()??;
        let meta = file.metadata().ok()?;
        let dev = meta.dev();
        let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
        let table = std::fs::read_to_string("/proc/locks").ok()?;
        holder_in(&table, major, minor, meta.ino())
    }

    /// The control socket, reached through the directory's handle.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.handle_path(SOCKET)
    }

    /// Removes the control socket (the derived one; nothing else).
    pub fn remove_socket(&self) {
        let _ = self.dir.remove(SOCKET);
    }

    /// The supervisor's own log, for appending.
    pub fn supervisor_log(&self) -> Result<File, FsError> {
        self.dir.open_append(SUPERVISOR_LOG)
    }

    /// The supervisor log's path, for messages.
    pub fn supervisor_log_path(&self) -> PathBuf {
        self.dir.join(SUPERVISOR_LOG)
    }

    /// The last `n` lines the supervisor logged.
    pub fn supervisor_log_tail(&self, n: usize) -> Vec<String> {
        match self.dir.open_read(SUPERVISOR_LOG) {
            Ok(Some(file)) => crate::state::tail_of(file, n),
            _ => Vec::new(),
        }
    }

    /// The size of the supervisor log now (to show only what a run adds).
    pub fn supervisor_log_len(&self) -> u64 {
        self.dir.len(SUPERVISOR_LOG).ok().flatten().unwrap_or(0)
    }

    /// Whether `.devctl` is still this directory (it may have been deleted
    /// and made anew by another `up`).
    pub fn is_current(&self) -> bool {
        self.dir.is_at_path()
    }

    /// `.devctl/logs/`, created when missing.
    pub fn logs(&self) -> Result<PrivateDir, FsError> {
        self.dir.create_subdir(LOGS)
    }

    /// `.devctl/logs/` if it exists.
    pub fn existing_logs(&self) -> Result<Option<PrivateDir>, FsError> {
        self.dir.open_subdir(LOGS)
    }

    /// Reads a small file of ours (the local overlay).
    pub fn read_small(&self, name: &str) -> Result<Option<Vec<u8>>, FsError> {
        self.dir.read(name, STATE_LIMIT)
    }

    pub fn write_small(&self, name: &str, bytes: &[u8]) -> Result<(), FsError> {
        self.dir.write_atomically(name, bytes)
    }
}

/// Finds the holder of a lock on (major:minor, inode) in `/proc/locks`.
/// Lines look like `1: FLOCK  ADVISORY  WRITE 1234 fe:00:10010842 0 EOF`;
/// waiters (`1: -> FLOCK …`) are skipped.
fn holder_in(table: &str, major: u64, minor: u64, inode: u64) -> Option<u32> {
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") {
            return None;
        }
        let pid: u32 = fields.get(4)?.parse().ok()?;
        let mut id = fields.get(5)?.split(':');
        let (ma, mi, ino) = (id.next()?, id.next()?, id.next()?);
        let same = u64::from_str_radix(ma, 16).ok()? == major
            && u64::from_str_radix(mi, 16).ok()? == minor
            && ino.parse::<u64>().ok()? == inode;
        same.then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_holder_is_read_from_the_kernel_table() {
        let table = "1: POSIX  ADVISORY  WRITE 77 fe:00:99 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 fe:00:10010842 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 999 fe:00:10010842 0 EOF\n";
        assert_eq!(holder_in(table, 0xfe, 0, 10010842), Some(1234));
        assert_eq!(holder_in(table, 0xfe, 0, 5), None);
    }

    #[test]
    fn a_real_flock_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::create(dir.path()).unwrap();
        assert_eq!(state.lock_holder(), None);
        let lock = nix::fcntl::Flock::lock(
            state.lock_file().unwrap(),
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        )
        .unwrap();
        assert_eq!(state.lock_holder(), Some(std::process::id()));
        drop(lock);
        assert_eq!(state.lock_holder(), None);
    }
}
