//! Files that must not be redirected or half written.
//!
//! [`PrivateDir`] is a directory opened once (`O_NOFOLLOW`), owned by us and
//! mode 0700; every file in it is reached relative to that handle, never
//! through a symlink, and created 0600 whatever the umask. devctl keeps its
//! state, lock, socket and logs in one (`.devctl/`), so a symlink planted
//! there cannot make it write outside the repo.
//!
//! [`write_atomically`] replaces a file through a temp file and a rename, so
//! a reader sees the old file or the whole new one, never half.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{unlinkat, Uid, UnlinkatFlags};

/// Mode of files in a private directory.
pub const PRIVATE_FILE: u32 = 0o600;
/// Mode of a private directory.
pub const PRIVATE_DIR: u32 = 0o700;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{} is a symbolic link; devctl only uses real files and directories there\n  fix: remove the link (`rm {}`) and run the command again", path.display(), path.display())]
    Symlink { path: PathBuf },
    #[error("{} is not a {expected}\n  fix: move it away (`mv {} {}.bak`) and run the command again", path.display(), path.display(), path.display())]
    WrongType {
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{} belongs to user {owner}, not to you (user {me})\n  fix: remove it, or run devctl as its owner", path.display())]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    #[error("{} is larger than {limit} bytes; it is not a file devctl wrote\n  fix: remove it", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
}

impl FsError {
    fn io(action: &'static str, path: &Path, errno: impl Into<std::io::Error>) -> FsError {
        FsError::Io {
            action,
            path: path.to_path_buf(),
            error: errno.into(),
        }
    }

    /// The error the OS gave for `ELOOP` on an `O_NOFOLLOW` open is a symlink.
    fn from_open(action: &'static str, path: &Path, errno: Errno) -> FsError {
        match errno {
            Errno::ELOOP => FsError::Symlink {
                path: path.to_path_buf(),
            },
            Errno::ENOTDIR => FsError::WrongType {
                path: path.to_path_buf(),
                expected: "directory",
            },
            other => FsError::io(action, path, other),
        }
    }

    /// True when the file or directory does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsError::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound)
    }
}

/// A directory only we can use, reached through an open handle.
#[derive(Debug)]
pub struct PrivateDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl PrivateDir {
    /// Opens `path`, creating it (0700) when missing. Refuses a symlink,
    /// something that is not a directory, or a directory of another user;
    /// tightens its mode to 0700.
    pub fn create(path: &Path) -> Result<PrivateDir, FsError> {
        match mkdirat(AT_FDCWD, path, Mode::from_bits_truncate(PRIVATE_DIR)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(FsError::io("create", path, errno)),
        }
        PrivateDir::adopt(open_dir(AT_FDCWD, path, path)?, path)
    }

    /// Opens `path` if it exists (`None` when it does not), with the same
    /// checks as [`PrivateDir::create`]; creates nothing.
    pub fn open(path: &Path) -> Result<Option<PrivateDir>, FsError> {
        match open_dir(AT_FDCWD, path, path) {
            Ok(fd) => PrivateDir::adopt(fd, path).map(Some),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// A private subdirectory, created when missing.
    pub fn create_subdir(&self, name: &str) -> Result<PrivateDir, FsError> {
        let path = self.path.join(name);
        match mkdirat(&self.fd, name, Mode::from_bits_truncate(PRIVATE_DIR)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(FsError::io("create", &path, errno)),
        }
        PrivateDir::adopt(open_dir(&self.fd, name, &path)?, &path)
    }

    /// A private subdirectory if it exists.
    pub fn open_subdir(&self, name: &str) -> Result<Option<PrivateDir>, FsError> {
        let path = self.path.join(name);
        match open_dir(&self.fd, name, &path) {
            Ok(fd) => PrivateDir::adopt(fd, &path).map(Some),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn adopt(fd: OwnedFd, path: &Path) -> Result<PrivateDir, FsError> {
        make_private(&fd, path, PRIVATE_DIR)?;
        Ok(PrivateDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory, for messages.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Whether its path still names this very directory (not deleted, not
    /// replaced by another one since it was opened).
    pub fn is_at_path(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(open) = fstat(&self.fd) else {
            return false;
        };
        std::fs::symlink_metadata(&self.path)
            .is_ok_and(|now| now.dev() == open.st_dev && now.ino() == open.st_ino)
    }

    /// This directory as a path through its open handle (`/proc/self/fd/N`):
    /// whatever is later put in its place, reads through it stay here.
    pub fn handle(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// A path to `name` that goes through this directory's open handle
    /// (`/proc/self/fd/N/name`): short enough for a Unix socket whatever the
    /// repo's path, and immune to the directory being swapped for a link.
    pub fn handle_path(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}/{name}", self.fd.as_raw_fd()))
    }

    /// Reads `name` whole, up to `limit` bytes; `None` when it does not exist.
    pub fn read(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, FsError> {
        let Some(file) = self.open_read(name)? else {
            return Ok(None);
        };
        let path = self.join(name);
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| FsError::io("read", &path, err))?;
        if bytes.len() as u64 > limit {
            return Err(FsError::TooLarge { path, limit });
        }
        Ok(Some(bytes))
    }

    /// Opens a regular file for reading; `None` when it does not exist.
    pub fn open_read(&self, name: &str) -> Result<Option<File>, FsError> {
        let path = self.join(name);
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
        let fd = match openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(errno) => return Err(FsError::from_open("open", &path, errno)),
        };
        require_regular(&fd, &path)?;
        clear_nonblock(&fd, &path)?;
        Ok(Some(File::from(fd)))
    }

    /// Opens `name` for appending, creating it 0600.
    pub fn open_append(&self, name: &str) -> Result<File, FsError> {
        let path = self.join(name);
        let flags = OFlag::O_WRONLY
            | OFlag::O_APPEND
            | OFlag::O_CREAT
            | OFlag::O_NOFOLLOW
            | OFlag::O_CLOEXEC
            | OFlag::O_NONBLOCK;
        let fd = openat(
            &self.fd,
            name,
            flags,
            Mode::from_bits_truncate(PRIVATE_FILE),
        )
        .map_err(|errno| FsError::from_open("open", &path, errno))?;
        require_regular(&fd, &path)?;
        clear_nonblock(&fd, &path)?;
        make_private(&fd, &path, PRIVATE_FILE)?;
        Ok(File::from(fd))
    }

    /// Replaces `name` whole with `bytes` (mode 0600). Readers see the old
    /// file or the new one, never half; it is not synced to disk (what a
    /// private directory holds describes processes, which a machine crash
    /// ends too), so frequent rewrites stay cheap.
    pub fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), FsError> {
        write_in(&self.fd, &self.path, name, bytes, PRIVATE_FILE, false)
    }

    /// Renames `from` to `to`, both in this directory (never through links).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), FsError> {
        renameat(&self.fd, from, &self.fd, to)
            .map_err(|errno| FsError::io("rename", &self.join(from), errno))
    }

    /// Removes the file `name` (a link is removed, never followed); a missing
    /// file is fine.
    pub fn remove(&self, name: &str) -> Result<(), FsError> {
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(errno) => Err(FsError::io("remove", &self.join(name), errno)),
        }
    }

    /// The size of the regular file `name` (`None` when missing).
    pub fn len(&self, name: &str) -> Result<Option<u64>, FsError> {
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(u64::try_from(stat.st_size).unwrap_or(0))),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(FsError::io("inspect", &self.join(name), errno)),
        }
    }

    /// The names in this directory (not `.`/`..`), sorted.
    pub fn names(&self) -> Result<Vec<String>, FsError> {
        let mut names: Vec<String> = std::fs::read_dir(self.handle_path(""))
            .map_err(|err| FsError::io("list", &self.path, err))?
            .flatten()
            .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }
}

impl AsFd for PrivateDir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Opens `path` for reading if it is a regular file that is not a symlink;
/// `None` when it does not exist. A FIFO or a device in its place is an
/// error, never a read that blocks forever.
pub fn open_regular(path: &Path) -> Result<Option<File>, FsError> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let fd = match openat(AT_FDCWD, path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(errno) => return Err(FsError::from_open("open", path, errno)),
    };
    require_regular(&fd, path)?;
    clear_nonblock(&fd, path)?;
    Ok(Some(File::from(fd)))
}

/// Writes `bytes` to `path` through a temp file in the same directory and a
/// rename, with `mode` whatever the umask, synced to disk before the rename.
/// The parent directory is created when missing. A link at `path` is
/// replaced, never written through.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| FsError::WrongType {
        path: path.to_path_buf(),
        expected: "file name",
    })?;
    std::fs::create_dir_all(parent).map_err(|err| FsError::io("create", parent, err))?;
    let dir = openat(
        AT_FDCWD,
        parent,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| FsError::io("open", parent, errno))?;
    write_in(&dir, parent, name, bytes, mode, true)
}

fn write_in(
    dir: &OwnedFd,
    dir_path: &Path,
    name: impl AsRef<OsStr>,
    bytes: &[u8],
    mode: u32,
    durable: bool,
) -> Result<(), FsError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = name.as_ref();
    let path = dir_path.join(name);
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let temp = temp.as_os_str();
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(dir, temp, flags, Mode::from_bits_truncate(mode))
        .map_err(|errno| FsError::from_open("create", &path, errno))?;
    let result = (|| {
        fchmod(&fd, Mode::from_bits_truncate(mode))
            .map_err(|errno| FsError::io("change the mode of", &path, errno))?;
        let mut file = File::from(fd);
        file.write_all(bytes)
            .and_then(|()| if durable { file.sync_data() } else { Ok(()) })
            .map_err(|err| FsError::io("write", &path, err))?;
        renameat(dir, temp, dir, name).map_err(|errno| FsError::io("replace", &path, errno))
    })();
    if result.is_err() {
        let _ = unlinkat(dir, temp, UnlinkatFlags::NoRemoveDir);
    }
    result
}

fn open_dir<Fd: AsFd, P: ?Sized + nix::NixPath>(
    at: Fd,
    name: &P,
    path: &Path,
) -> Result<OwnedFd, FsError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    openat(at, name, flags, Mode::empty()).map_err(|errno| {
        // O_NOFOLLOW|O_DIRECTORY on a link gives ENOTDIR on Linux: tell the
        // two apart, the fix differs.
        if errno == Errno::ENOTDIR && is_symlink(path) {
            FsError::Symlink {
                path: path.to_path_buf(),
            }
        } else {
            FsError::from_open("open", path, errno)
        }
    })
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// FIFOs and devices would block or never end: only regular files.
fn require_regular(fd: &OwnedFd, path: &Path) -> Result<(), FsError> {
    let stat = fstat(fd).map_err(|errno| FsError::io("inspect", path, errno))?;
    if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
        return Err(FsError::WrongType {
            path: path.to_path_buf(),
            expected: "regular file",
        });
    }
    Ok(())
}

/// Files are opened non-blocking (so a FIFO cannot hang the open itself);
/// once they are known to be regular, normal blocking I/O is wanted.
fn clear_nonblock(fd: &OwnedFd, path: &Path) -> Result<(), FsError> {
    use nix::fcntl::{fcntl, FcntlArg};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|errno| FsError::io("open", path, errno))?;
    let flags = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(|errno| FsError::io("open", path, errno))?;
    Ok(())
}

/// Refuses what another user owns; sets `mode` (whatever the umask made).
fn make_private(fd: &OwnedFd, path: &Path, mode: u32) -> Result<(), FsError> {
    let stat = fstat(fd).map_err(|errno| FsError::io("inspect", path, errno))?;
    let me = Uid::effective().as_raw();
    if stat.st_uid != me {
        return Err(FsError::NotOwned {
            path: path.to_path_buf(),
            owner: stat.st_uid,
            me,
        });
    }
    if stat.st_mode & 0o7777 != mode {
        fchmod(fd, Mode::from_bits_truncate(mode))
            .map_err(|errno| FsError::io("change the mode of", path, errno))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn files_and_dirs_are_private_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let old = nix::sys::stat::umask(Mode::empty());
        let private = PrivateDir::create(&dir.path().join(".devctl")).unwrap();
        let logs = private.create_subdir("logs").unwrap();
        private.write_atomically("state.json", b"{}").unwrap();
        drop(logs.open_append("a.log").unwrap());
        nix::sys::stat::umask(old);
        assert_eq!(mode(&dir.path().join(".devctl")), 0o700);
        assert_eq!(mode(&dir.path().join(".devctl/logs")), 0o700);
        assert_eq!(mode(&dir.path().join(".devctl/state.json")), 0o600);
        assert_eq!(mode(&dir.path().join(".devctl/logs/a.log")), 0o600);
    }

    #[test]
    fn symlinks_are_refused_and_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join(".devctl")).unwrap();
        let err = PrivateDir::create(&dir.path().join(".devctl")).unwrap_err();
        assert!(matches!(err, FsError::Symlink { .. }), "{err}");
        assert!(
            err.to_string().contains(".devctl is a symbolic link"),
            "{err}"
        );

        std::fs::remove_file(dir.path().join(".devctl")).unwrap();
        let private = PrivateDir::create(&dir.path().join(".devctl")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("x"), dir.path().join(".devctl/a.log"))
            .unwrap();
        let err = private.open_append("a.log").unwrap_err();
        assert!(matches!(err, FsError::Symlink { .. }), "{err}");
        assert!(
            !outside.path().join("x").exists(),
            "nothing written outside"
        );
        std::os::unix::fs::symlink(outside.path(), dir.path().join(".devctl/logs")).unwrap();
        let err = private.create_subdir("logs").unwrap_err();
        assert!(matches!(err, FsError::Symlink { .. }), "{err}");
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let private = PrivateDir::create(dir.path()).unwrap();
        nix::unistd::mkfifo(&dir.path().join("state.json"), Mode::S_IRWXU).unwrap();
        let err = private.read("state.json", 1024).unwrap_err();
        assert!(matches!(err, FsError::WrongType { .. }), "{err}");
    }

    #[test]
    fn reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let private = PrivateDir::create(dir.path()).unwrap();
        private.write_atomically("big", &[b'x'; 100]).unwrap();
        assert!(matches!(
            private.read("big", 10),
            Err(FsError::TooLarge { .. })
        ));
        assert_eq!(private.read("big", 100).unwrap().unwrap().len(), 100);
        assert_eq!(private.read("missing", 100).unwrap(), None);
    }

    #[test]
    fn atomic_writes_replace_whole_and_leave_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/.env.local");
        write_atomically(&path, b"A=1\n", 0o600).unwrap();
        write_atomically(&path, b"A=2\n", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "A=2\n");
        assert_eq!(mode(&path), 0o644);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(".env.local")]);
    }

    #[test]
    fn a_link_at_the_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("out")).unwrap();
        write_atomically(&dir.path().join("out"), b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out")).unwrap(),
            "new"
        );
    }

    #[test]
    fn a_directory_deleted_and_made_anew_is_not_the_one_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d");
        let private = PrivateDir::create(&path).unwrap();
        assert!(private.is_at_path());
        std::fs::remove_dir(&path).unwrap();
        assert!(!private.is_at_path());
        std::fs::create_dir(&path).unwrap();
        assert!(!private.is_at_path());
        assert!(PrivateDir::create(&path).unwrap().is_at_path());
    }

    #[test]
    fn handle_paths_reach_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let private = PrivateDir::create(dir.path()).unwrap();
        private.write_atomically("x", b"1").unwrap();
        assert_eq!(std::fs::read(private.handle_path("x")).unwrap(), b"1");
        assert!(private.handle_path("control.sock").as_os_str().len() < 40);
    }
}
