//! A raw session with a plugin process: send any line, read every stdout
//! line as it is. For tools that must see protocol mistakes instead of being
//! protected from them (the conformance suite); everything else should use
//! [`super::Client`].

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devctl_contract::protocol::Frame;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::task::JoinHandle;

use super::process::{plugin_command, CloseReport, ProcessGroup};
use super::{drain_stderr, snapshot, PluginSpec, StderrSink};
use crate::frame_io::{frame_line, LineError, LineReader};

/// What one read of the plugin's stdout produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawLine {
    Line(String),
    /// A line longer than the bound (it is skipped).
    TooLarge,
    /// stdout closed.
    Closed,
    /// Nothing arrived before the deadline.
    TimedOut,
}

pub struct RawSession {
    pid: u32,
    process: ProcessGroup,
    stdin: Option<ChildStdin>,
    stdout: LineReader<BufReader<ChildStdout>>,
    stderr: JoinHandle<()>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl RawSession {
    /// Spawns `spec` in its own process group with piped stdio. `cwd`
    /// overrides the spec's workdir.
    pub fn start(
        spec: &PluginSpec,
        cwd: Option<&Path>,
        max_line: usize,
    ) -> std::io::Result<RawSession> {
        let mut command = plugin_command(spec, cwd);
        let mut child = command.spawn()?;
        let missing = || std::io::Error::other("the plugin has no stdio pipes");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        let pid = child
            .id()
            .ok_or_else(|| std::io::Error::other("the plugin exited at once"))?;
        let process = ProcessGroup::new(child, None)
            .ok_or_else(|| std::io::Error::other("no process group"))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = tokio::spawn(drain_stderr(
            spec.id.clone(),
            stderr,
            StderrSink::Discard,
            tail.clone(),
        ));
        Ok(RawSession {
            pid,
            process,
            stdin: Some(stdin),
            stdout: LineReader::new(BufReader::with_capacity(64 * 1024, stdout), max_line),
            stderr,
            tail,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn pgid(&self) -> i32 {
        self.process.pgid()
    }

    /// Writes `line` and a newline. An error means the plugin closed stdin.
    pub async fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        self.write(format!("{line}\n").as_bytes()).await
    }

    pub async fn send_frame(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.write(&frame_line(frame)).await
    }

    /// Writes all `frames` with one write, so the plugin finds several
    /// requests in a single read: the burst a naive line loop mishandles.
    pub async fn send_frames(&mut self, frames: &[Frame]) -> std::io::Result<()> {
        let mut burst = Vec::new();
        for frame in frames {
            frame.write_line(&mut burst);
        }
        self.write(&burst).await
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stdin already closed")
        })?;
        stdin.write_all(bytes).await?;
        stdin.flush().await
    }

    /// The next stdout line, waiting at most `wait`.
    pub async fn next_line(&mut self, wait: Duration) -> RawLine {
        match tokio::time::timeout(wait, self.stdout.next_line()).await {
            Err(_) => RawLine::TimedOut,
            Ok(Ok(Some(line))) => RawLine::Line(String::from_utf8_lossy(line).into_owned()),
            Ok(Ok(None)) | Ok(Err(LineError::Io(_))) => RawLine::Closed,
            Ok(Err(LineError::TooLarge { .. })) => RawLine::TooLarge,
        }
    }

    /// Closes the plugin's stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits up to `wait` for the plugin to exit by itself.
    pub async fn wait_exit(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        self.process.wait_leader(wait).await
    }

    /// Waits up to `wait` for the plugin to exit, reading its stdout all
    /// the while (each line goes to `on_line`): a plugin that is still
    /// writing when its stdin closes must not block on a full pipe and so
    /// never get to exit.
    pub async fn drain_until_exit(
        &mut self,
        wait: Duration,
        mut on_line: impl FnMut(RawLine),
    ) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut open = true;
        while open {
            // Checked before every read: a plugin that never stops writing
            // always has a line ready, and must not hold the deadline off.
            if tokio::time::Instant::now() >= deadline {
                return self.process.wait_leader(Duration::ZERO).await;
            }
            tokio::select! {
                biased;
                status = self.process.wait_leader(wait) => return status,
                line = self.stdout.next_line() => match line {
                    Ok(Some(line)) => on_line(RawLine::Line(String::from_utf8_lossy(line).into_owned())),
                    Ok(None) | Err(LineError::Io(_)) => open = false,
                    Err(LineError::TooLarge { .. }) => on_line(RawLine::TooLarge),
                },
                () = tokio::time::sleep_until(deadline) => return None,
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.process.wait_leader(left).await
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        snapshot(&self.tail)
    }

    /// Stops whatever is left of the group (SIGTERM, then SIGKILL).
    pub async fn kill(mut self, term_grace: Duration) -> CloseReport {
        self.stdin = None;
        let report = self.process.terminate(Duration::ZERO, term_grace).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.stderr).await;
        self.stderr.abort();
        report
    }
}
