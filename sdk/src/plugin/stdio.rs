//! The plugin's private protocol pipes.
//!
//! At start-up the SDK moves stdin and stdout aside into close-on-exec
//! descriptors that only the protocol uses, then points fd 0 at /dev/null
//! and fd 1 at stderr. So a stray `println!`, or a child process a handler
//! starts, can neither corrupt the frames nor swallow requests.
//!
//! Input is read with plain blocking reads: only the plugin's reading thread
//! reads it (never a runtime worker), and a blocking read wakes it straight
//! from the kernel, whatever the runtime's workers are doing. Output, when it
//! is a pipe or socket (the normal case under a host), is driven
//! non-blocking through the reactor; anything else (a terminal, a file)
//! falls back to tokio's blocking-pool file I/O.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::stat::{fstat, SFlag};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(crate) type Input = Pin<Box<dyn AsyncRead + Send>>;
pub(crate) type Output = Pin<Box<dyn AsyncWrite + Send>>;

/// Takes fd 0 and fd 1 for the protocol and neutralises them for everyone
/// else. Must run inside the runtime (the pipes register with its reactor).
pub(crate) fn take_protocol_stdio() -> std::io::Result<(Input, Output)> {
    std::io::stdout().lock().flush()?;
    let input = private_copy(std::io::stdin().as_fd())?;
    let output = private_copy(std::io::stdout().as_fd())?;
    let null = File::open("/dev/null")?;
    nix::unistd::dup2_stdin(null.as_fd()).map_err(std::io::Error::from)?;
    nix::unistd::dup2_stdout(std::io::stderr().as_fd()).map_err(std::io::Error::from)?;
    let input: Input = Box::pin(BlockingInput::new(input)?);
    let output: Output = match Pipe::new(output)? {
        Ok(pipe) => Box::pin(pipe),
        Err(fd) => Box::pin(tokio::fs::File::from_std(File::from(fd))),
    };
    Ok((input, output))
}

fn private_copy(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    let copy = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(3)).map_err(std::io::Error::from)?;
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// A descriptor read with blocking reads, for the reading thread only (its
/// "async" reads complete before they return).
struct BlockingInput {
    file: File,
}

impl BlockingInput {
    fn new(fd: OwnedFd) -> std::io::Result<BlockingInput> {
        // Whoever started us may have left the description non-blocking.
        let flags = fcntl(&fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
        let flags = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
        fcntl(&fd, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
        Ok(BlockingInput {
            file: File::from(fd),
        })
    }
}

impl AsyncRead for BlockingInput {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            match std::io::Read::read(&mut self.file, buf.initialize_unfilled()) {
                Ok(read) => {
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }
}

/// A pipe or socket written through the reactor.
struct Pipe {
    fd: AsyncFd<OwnedFd>,
}

impl Pipe {
    /// `Ok(Err(fd))` when `fd` is not a pipe or socket.
    fn new(fd: OwnedFd) -> std::io::Result<Result<Pipe, OwnedFd>> {
        let kind = fstat(&fd).map_err(std::io::Error::from)?.st_mode & SFlag::S_IFMT.bits();
        if kind != SFlag::S_IFIFO.bits() && kind != SFlag::S_IFSOCK.bits() {
            return Ok(Err(fd));
        }
        // Only this process holds these descriptions now (the copies are
        // close-on-exec and fd 0/1 point elsewhere), so O_NONBLOCK is private.
        let flags = fcntl(&fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
        let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
        fcntl(&fd, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
        // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, which owns it
        // until the pipe is dropped; nothing else closes or replaces it.
        let fd = unsafe { AsyncFd::register(fd)? };
        Ok(Ok(Pipe { fd }))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard
                .try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(std::io::Error::from))
            {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
