//! Drive a protocol-v2 plugin.
//!
//! [`Client::start`] spawns the plugin in its own process group and reads
//! its handshake within [`HostOptions::handshake_timeout`]. Every call is
//! capability-enforced: an op the handshake did not declare fails locally
//! with `E_UNSUPPORTED` and writes nothing. Request metadata ([`RequestMeta`])
//! is bound when the client is created; each call's deadline comes from its
//! timeout. Errors are typed ([`OpError`]). [`Client::close`] stops the
//! plugin as DESIGN §2.7 says and waits until its process group is empty
//! ([`Client::close_within`] within a caller-given budget);
//! dropping a client kills the group.

mod connection;
mod error;
mod process;
pub mod raw;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devctl_contract::handshake::parse_handshake_line;
use devctl_contract::limits;
use devctl_contract::protocol::{Event, Frame, Handshake, Note, Request, RequestContext};
use devctl_contract::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, BufReader};
use tokio::task::JoinHandle;

use crate::frame_io::{spawn_writer, LineError, LineReader, Writer};
use connection::{expire_calls, read_frames, Connection, StreamState, Unanswered};
pub use error::OpError;
use process::ProcessGroup;
pub use process::{
    become_child_subreaper, descendants, group_members, is_alive, liveness, process_id,
    reap_adopted, signal_process, CloseReport, ExitedChild, Lineage, Liveness, ProcessId,
    ProcessTable, Signal,
};

/// How to start a plugin.
#[derive(Debug, Clone, Default)]
pub struct PluginSpec {
    /// Used in request ids (`<id>-<n>`), errors and stderr prefixes.
    pub id: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Working directory; the host's own when `None`.
    pub workdir: Option<PathBuf>,
    /// Added to the host's environment.
    pub env: BTreeMap<String, String>,
}

/// Request metadata bound to a client; sent in every request's `ctx`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    pub repo_root: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    pub dry_run: bool,
}

/// Receives `(plugin_id, line)` for each stderr line of a plugin.
pub type StderrCallback = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Where a plugin's stderr lines go.
#[derive(Clone, Default)]
pub enum StderrSink {
    /// Our stderr, each line prefixed with `[plugin-id]`.
    #[default]
    Forward,
    /// Nowhere (the tail is still kept for error messages).
    Discard,
    /// A callback receiving `(plugin_id, line)`.
    Callback(StderrCallback),
}

/// Limits and timeouts of the host side.
#[derive(Clone)]
pub struct HostOptions {
    pub handshake_timeout: Duration,
    /// Longest accepted stdout line; longer is fatal (`E_PROTOCOL_FRAME_TOO_LARGE`).
    pub max_frame_bytes: usize,
    /// Events buffered per stream before the consumer takes them; beyond
    /// it events are counted as dropped, never blocking the reader.
    pub stream_buffer: usize,
    /// After closing stdin, how long the plugin gets to exit by itself.
    pub eof_grace: Duration,
    /// After SIGTERM, how long before SIGKILL.
    pub term_grace: Duration,
    pub stderr: StderrSink,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            handshake_timeout: limits::HANDSHAKE_TIMEOUT,
            max_frame_bytes: limits::MAX_FRAME_BYTES,
            stream_buffer: 65_536,
            eof_grace: Duration::from_millis(500),
            term_grace: Duration::from_secs(2),
            stderr: StderrSink::Forward,
        }
    }
}

/// After the group is gone, how long closing waits for the plugin's pipes
/// to report EOF (a descendant that left the group may still hold them).
const DRAIN_WAIT: Duration = Duration::from_secs(1);
const MIN_DRAIN_WAIT: Duration = Duration::from_millis(50);

/// Lines of plugin stderr kept for error messages.
const STDERR_TAIL: usize = 20;
/// Longest stderr line forwarded whole.
const MAX_STDERR_LINE: usize = 16 * 1024;

/// A successful response.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub output: Value,
    pub warnings: Vec<Note>,
    pub notes: Vec<Note>,
}

/// A running plugin.
pub struct Client {
    id: String,
    handshake: Handshake,
    meta: RequestMeta,
    connection: Arc<Connection>,
    /// Requests go out through it; dropping it closes the plugin's stdin.
    frames: Option<Writer>,
    writer: JoinHandle<std::io::Result<()>>,
    reader: JoinHandle<()>,
    /// Answers calls whose deadline passed.
    deadlines: JoinHandle<()>,
    stderr: Option<JoinHandle<()>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    process: Option<ProcessGroup>,
    options: HostOptions,
}

impl Client {
    /// Spawns the plugin in its own process group and reads its handshake.
    /// On failure the process group is already gone and the error carries
    /// the tail of the plugin's stderr.
    pub async fn start(
        spec: &PluginSpec,
        meta: RequestMeta,
        options: HostOptions,
    ) -> Result<Client, OpError> {
        let mut command = process::plugin_command(spec, None);
        // Descendants that leave the plugin's group are found by this mark.
        let lineage = Lineage::new();
        let (var, value) = lineage.env();
        command.env(var, value);
        let start_error =
            |code, message: String| OpError::new(&spec.id, "handshake", code, message);
        let mut child = command.spawn().map_err(|err| {
            start_error(
                ErrorCode::InvalidHandshake,
                format!("cannot start {}: {err}", spec.program.display()),
            )
        })?;
        let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let Some(mut process) = ProcessGroup::new(child, Some(lineage)) else {
            return Err(start_error(
                ErrorCode::Runtime,
                "the plugin exited at once".into(),
            ));
        };
        let (Some(stdin), Some(stdout), Some(stderr)) = pipes else {
            return Err(start_error(ErrorCode::Runtime, "no stdio pipes".into()));
        };
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_task = tokio::spawn(drain_stderr(
            spec.id.clone(),
            stderr,
            options.stderr.clone(),
            tail.clone(),
        ));
        let connected = Client::connect(&spec.id, stdout, stdin, meta, options.clone()).await;
        match connected {
            Ok(mut client) => {
                client.process = Some(process);
                client.stderr = Some(stderr_task);
                client.stderr_tail = tail;
                Ok(client)
            }
            Err(mut error) => {
                let report = process.terminate(Duration::ZERO, options.term_grace).await;
                // The group is gone, so stderr reaches EOF promptly.
                let _ = tokio::time::timeout(Duration::from_secs(1), stderr_task).await;
                let tail = snapshot(&tail);
                if report.how == "exited" {
                    error.message.push_str(&format!(
                        " (it exited with {})",
                        describe_exit(report.exit_code, report.signal)
                    ));
                }
                if !tail.is_empty() {
                    error.message.push_str(&format!(
                        "; its stderr ended with:\n  {}",
                        tail.join("\n  ")
                    ));
                }
                error.details = Some(serde_json::json!({ "stderr_tail": tail }));
                Err(error)
            }
        }
    }

    /// Speaks the protocol over any pair of pipes (no process): reads and
    /// validates the handshake within the timeout, then starts routing.
    pub async fn connect<R, W>(
        plugin_id: &str,
        stdout: R,
        stdin: W,
        meta: RequestMeta,
        options: HostOptions,
    ) -> Result<Client, OpError>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let mut reader = LineReader::new(
            BufReader::with_capacity(64 * 1024, stdout),
            options.max_frame_bytes,
        );
        let handshake =
            tokio::time::timeout(options.handshake_timeout, read_handshake(&mut reader))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "no handshake within {} ms",
                        options.handshake_timeout.as_millis()
                    ))
                })
                .map_err(|message| {
                    OpError::new(plugin_id, "handshake", ErrorCode::InvalidHandshake, message)
                })?;
        let connection = Arc::new(Connection::new(plugin_id, options.stream_buffer));
        let (frames, writer_task) = spawn_writer(stdin);
        let reader = tokio::spawn(read_frames(connection.clone(), reader));
        let deadlines = tokio::spawn(expire_calls(connection.clone()));
        Ok(Client {
            id: plugin_id.to_owned(),
            handshake,
            meta,
            connection,
            frames: Some(frames),
            writer: writer_task,
            reader,
            deadlines,
            stderr: None,
            stderr_tail: Arc::new(Mutex::new(VecDeque::new())),
            process: None,
            options,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    pub fn meta(&self) -> &RequestMeta {
        &self.meta
    }

    /// Whether the handshake declared `op` (only `capabilities.ops` counts).
    pub fn supports(&self, op: &str) -> bool {
        self.handshake.capabilities.supports_op(op)
    }

    /// The process group id of the plugin (`None` for in-memory clients).
    pub fn pgid(&self) -> Option<i32> {
        self.process.as_ref().map(ProcessGroup::pgid)
    }

    /// The last lines the plugin wrote to stderr.
    pub fn stderr_lines(&self) -> Vec<String> {
        snapshot(&self.stderr_tail)
    }

    /// Calls `op` and waits at most `timeout` for the answer.
    ///
    /// Undeclared op: `E_UNSUPPORTED` at once, nothing written. No answer in
    /// time: `E_TIMEOUT` (a late answer is dropped). Dead connection:
    /// `E_RUNTIME` with `details.cause`. A failed response: its own code.
    pub async fn call(&self, op: &str, input: Value, timeout: Duration) -> Result<Reply, OpError> {
        if !self.supports(op) {
            return Err(OpError::new(
                &self.id,
                op,
                ErrorCode::Unsupported,
                format!("plugin {} does not declare op {op:?}", self.id),
            ));
        }
        // No deadline for a timeout past the clock's range.
        let deadline = std::time::Instant::now().checked_add(timeout);
        let (call, mut answer) = self
            .connection
            .register(deadline)
            .map_err(|fatal| fatal.to_error(&self.id, op))?;
        let frame = Frame::Request(Request {
            request_id: self.connection.request_id(&call),
            op: op.to_owned(),
            ctx: self.request_context(timeout),
            input,
        });
        let reply = match self.frames.as_ref() {
            None => None,
            Some(frames) => tokio::select! {
                biased;
                sent = frames.push(&frame) => match sent {
                    Ok(()) => Some(answer.await),
                    Err(_) => None,
                },
                // The deadline (or the connection's end) while the request
                // waits for room in the writer's queue.
                reply = &mut answer => Some(reply),
            },
        };
        let Some(reply) = reply else {
            self.connection.forget(&call);
            return Err(self.connection.fatal().map_or_else(
                || {
                    OpError::new(
                        &self.id,
                        op,
                        ErrorCode::Runtime,
                        "the plugin's stdin is closed",
                    )
                },
                |fatal| fatal.to_error(&self.id, op),
            ));
        };
        match reply {
            Ok(Ok(response)) if response.ok => Ok(Reply {
                output: response.output.unwrap_or(Value::Null),
                warnings: response.warnings,
                notes: response.notes,
            }),
            Ok(Ok(response)) => Err(match response.error {
                Some(body) => OpError::from_body(&self.id, op, body),
                None => OpError::new(
                    &self.id,
                    op,
                    ErrorCode::Runtime,
                    "the plugin answered ok:false without an error",
                ),
            }),
            Ok(Err(Unanswered::Fatal(fatal))) => Err(fatal.to_error(&self.id, op)),
            Ok(Err(Unanswered::DeadlinePassed)) => Err(OpError::new(
                &self.id,
                op,
                ErrorCode::Timeout,
                format!("no answer within {} ms", timeout.as_millis()),
            )),
            // Its entry went without a word: only the connection's end does that.
            Err(_) => Err(self.connection.fatal().map_or_else(
                || {
                    OpError::new(
                        &self.id,
                        op,
                        ErrorCode::Runtime,
                        "the plugin connection ended",
                    )
                },
                |fatal| fatal.to_error(&self.id, op),
            )),
        }
    }

    /// Calls `op` and parses its output as `T`.
    pub async fn call_as<T: DeserializeOwned>(
        &self,
        op: &str,
        input: Value,
        timeout: Duration,
    ) -> Result<(T, Reply), OpError> {
        let reply = self.call(op, input, timeout).await?;
        let parsed = serde_json::from_value(reply.output.clone()).map_err(|err| {
            OpError::new(
                &self.id,
                op,
                ErrorCode::Runtime,
                format!("unexpected output shape: {err}"),
            )
        })?;
        Ok((parsed, reply))
    }

    /// Starts a stream op and subscribes to its events. Events that arrive
    /// before this returns are buffered, never lost to a race.
    pub async fn start_stream(
        &self,
        op: &str,
        input: Value,
        timeout: Duration,
    ) -> Result<Stream, OpError> {
        let reply = self.call(op, input, timeout).await?;
        let Some(stream_id) = reply.output.get("stream_id").and_then(Value::as_str) else {
            return Err(OpError::new(
                &self.id,
                op,
                ErrorCode::Runtime,
                "the answer has no stream_id",
            ));
        };
        Ok(self.subscribe(stream_id, op))
    }

    /// Subscribes to a stream by id (for ops that return a `stream_id`).
    pub fn subscribe(&self, stream_id: &str, op: &str) -> Stream {
        Stream {
            id: stream_id.to_owned(),
            op: op.to_owned(),
            plugin_id: self.id.clone(),
            state: self.connection.stream(stream_id),
            connection: self.connection.clone(),
        }
    }

    /// Why the connection died, if it did.
    pub fn failure(&self) -> Option<OpError> {
        self.connection
            .fatal()
            .map(|fatal| fatal.to_error(&self.id, "connection"))
    }

    /// Closes stdin, gives the plugin `eof_grace` to exit, then SIGTERM,
    /// then SIGKILL, and waits until its process group is empty.
    pub async fn close(self) -> CloseReport {
        let (eof_grace, term_grace) = (self.options.eof_grace, self.options.term_grace);
        self.shutdown(eof_grace, term_grace, DRAIN_WAIT).await
    }

    /// Like [`Client::close`], but the plugin gets at most `budget` to exit
    /// (half of it, at most `eof_grace`, after stdin EOF, the rest after
    /// SIGTERM); then its group is SIGKILLed. Still waits until the group is
    /// empty. For commands that must stay prompt whatever a plugin does.
    pub async fn close_within(self, budget: Duration) -> CloseReport {
        let eof_grace = self.options.eof_grace.min(budget / 2);
        let term_grace = self.options.term_grace.min(budget - eof_grace);
        let drain = budget.clamp(MIN_DRAIN_WAIT, DRAIN_WAIT);
        self.shutdown(eof_grace, term_grace, drain).await
    }

    /// Stops the plugin with these graces, then gives the stdout reader and
    /// the stderr drain up to `drain` each to see their pipes close.
    async fn shutdown(
        mut self,
        eof_grace: Duration,
        term_grace: Duration,
        drain: Duration,
    ) -> CloseReport {
        let broken = self.connection.fatal().is_some();
        self.frames.take();
        let eof_grace = if broken { Duration::ZERO } else { eof_grace };
        let report = match self.process.as_mut() {
            Some(process) => process.terminate(eof_grace, term_grace).await,
            None => CloseReport {
                exit_code: None,
                signal: None,
                how: "disconnected",
                leftover: Vec::new(),
            },
        };
        self.writer.abort();
        let _ = tokio::time::timeout(drain, &mut self.reader).await;
        self.reader.abort();
        self.deadlines.abort();
        if let Some(stderr) = self.stderr.take() {
            let _ = tokio::time::timeout(drain, stderr).await;
        }
        report
    }

    fn request_context(&self, timeout: Duration) -> RequestContext {
        RequestContext {
            repo_root: self
                .meta
                .repo_root
                .as_ref()
                .map(|p| p.display().to_string()),
            cwd: self.meta.cwd.as_ref().map(|p| p.display().to_string()),
            deadline_ms: Some(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
            dry_run: self.meta.dry_run,
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
        self.deadlines.abort();
        self.writer.abort();
        if let Some(stderr) = &self.stderr {
            stderr.abort();
        }
        // `ProcessGroup`'s own drop kills the whole group.
    }
}

/// Events of one stream, in order, ending after `end`.
pub struct Stream {
    id: String,
    op: String,
    plugin_id: String,
    state: Arc<StreamState>,
    connection: Arc<Connection>,
}

impl Stream {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next event; `Ok(None)` once `end` has been delivered; `Err` when
    /// the plugin connection died first.
    pub async fn next(&mut self) -> Result<Option<Event>, OpError> {
        self.state
            .next()
            .await
            .map_err(|fatal| fatal.to_error(&self.plugin_id, &self.op))
    }

    /// Events dropped because the consumer fell behind the buffer.
    pub fn dropped(&self) -> u64 {
        self.state.dropped()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.connection.release_stream(&self.id);
    }
}

async fn read_handshake<R: AsyncBufRead + Unpin>(
    reader: &mut LineReader<R>,
) -> Result<Handshake, String> {
    loop {
        let line = match reader.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return Err("the plugin closed stdout before sending a handshake".into()),
            Err(LineError::TooLarge { limit }) => {
                return Err(format!(
                    "the first stdout line is longer than {limit} bytes"
                ))
            }
            Err(LineError::Io(err)) => return Err(format!("cannot read stdout: {err}")),
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = String::from_utf8_lossy(line);
        return parse_handshake_line(&text).map_err(|problems| {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            let shown: String = text.chars().take(120).collect();
            format!("{} (the line was {shown:?})", problems.join("; "))
        });
    }
}

pub(crate) async fn drain_stderr(
    plugin_id: String,
    stderr: tokio::process::ChildStderr,
    sink: StderrSink,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut reader = LineReader::new(BufReader::new(stderr), MAX_STDERR_LINE);
    loop {
        let text = match reader.next_line().await {
            Ok(Some(line)) => String::from_utf8_lossy(line).into_owned(),
            Ok(None) | Err(LineError::Io(_)) => return,
            Err(LineError::TooLarge { limit }) => {
                format!("[a stderr line longer than {limit} bytes was cut]")
            }
        };
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(text.clone());
        }
        match &sink {
            StderrSink::Forward => eprintln!("[{plugin_id}] {text}"),
            StderrSink::Discard => {}
            StderrSink::Callback(callback) => callback(&plugin_id, &text),
        }
    }
}

pub(crate) fn snapshot(tail: &Mutex<VecDeque<String>>) -> Vec<String> {
    tail.lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default()
}

fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => "an unknown status".into(),
    }
}
