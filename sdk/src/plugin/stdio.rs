//! Protecting stdout: frames get a private copy of fd 1, and fd 1 itself is
//! pointed at stderr, so a stray `println!` or a child process writing to its
//! inherited stdout lands in the logs instead of corrupting the protocol.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd};

/// Moves the real stdout aside (close-on-exec, so children never inherit it)
/// and returns it as the frame channel.
pub(crate) fn take_stdout_for_frames() -> std::io::Result<File> {
    std::io::stdout().lock().flush()?;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let copy = nix::fcntl::fcntl(stdout.as_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
        .map_err(std::io::Error::from)?;
    // SAFETY: `copy` is a fresh descriptor we own, returned by F_DUPFD_CLOEXEC.
    let frames = unsafe { File::from_raw_fd(copy) };
    nix::unistd::dup2_stdout(stderr.as_fd()).map_err(std::io::Error::from)?;
    Ok(frames)
}
