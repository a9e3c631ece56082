//! Write a protocol-v2 plugin.
//!
//! Register typed handlers on a [`Plugin`]; the handshake is generated from
//! what is registered, so the declared capabilities cannot drift from the
//! implementation. [`Plugin::run`] protects stdout (fd 1 is pointed at stderr,
//! so stray prints and child processes cannot corrupt the protocol) and serves
//! stdin/stdout; [`Plugin::serve`] serves any pair of pipes, which is what the
//! in-memory [`testing::Harness`] uses.
//!
//! ```no_run
//! use devctl_sdk::plugin::{Ctx, OpError, Plugin};
//! use serde_json::{json, Value};
//!
//! fn main() -> std::process::ExitCode {
//!     Plugin::new("hello")
//!         .op("launch.plan", |_ctx: Ctx, _input: Value| async move {
//!             Ok::<_, OpError>(json!({"services": []}))
//!         })
//!         .run()
//! }
//! ```

mod ctx;
mod serve;
mod stdio;
mod takeover;
pub mod testing;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use devctl_contract::ops::{CommandRunInput, COMMAND_RUN};
use devctl_contract::protocol::{
    BuildWatch, Capabilities, CommandSpec, Declares, Handshake, PROTOCOL_VERSION,
};
use devctl_contract::ErrorCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use ctx::{Ctx, EventSink, OpError};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type OpFn = Arc<dyn Fn(Ctx, Value) -> BoxFuture<Result<Value, OpError>> + Send + Sync>;
type StreamFn = Arc<dyn Fn(Ctx, Value, EventSink) -> BoxFuture<Result<(), OpError>> + Send + Sync>;
type CommandFn = Arc<dyn Fn(Ctx, CommandRunInput) -> BoxFuture<Result<i32, OpError>> + Send + Sync>;

/// Handlers that may be waiting (not finished on their first poll) at once.
/// Beyond it, a request whose handler would wait is answered at once with
/// `E_RUNTIME` (and the handler dropped), so a host that keeps asking while
/// nothing gets answered cannot make the plugin grow without bound.
pub const MAX_WAITING: usize = 1024;

/// Default bound on one input line (a request): the protocol's frame limit.
pub const DEFAULT_MAX_LINE: usize = devctl_contract::limits::MAX_FRAME_BYTES;

/// A plugin under construction: its name, handlers and declarations.
pub struct Plugin {
    name: String,
    ops: BTreeMap<String, OpFn>,
    streams: BTreeMap<String, StreamFn>,
    commands: Vec<(CommandSpec, CommandFn)>,
    declares: Declares,
    max_line: usize,
}

impl Plugin {
    pub fn new(name: impl Into<String>) -> Plugin {
        Plugin {
            name: name.into(),
            ops: BTreeMap::new(),
            streams: BTreeMap::new(),
            commands: Vec::new(),
            declares: Declares::default(),
            max_line: DEFAULT_MAX_LINE,
        }
    }

    /// Registers a request/response op. `I` is parsed from `request.input`
    /// (a wrong shape is answered with `E_RUNTIME`, naming the op); `O` is
    /// sent as `response.output`.
    pub fn op<I, O, F, Fut>(mut self, name: &str, handler: F) -> Plugin
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(Ctx, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, OpError>> + Send + 'static,
    {
        let op: Arc<str> = name.into();
        let handler = Arc::new(handler);
        let erased: OpFn = Arc::new(move |ctx, input| {
            let handler = handler.clone();
            let op = op.clone();
            Box::pin(async move {
                let input = parse_input::<I>(&op, input)?;
                let mut output = Some(handler(ctx, input).await?);
                if let Some(output) = same_type::<O, Value>(&mut output) {
                    return Ok(output);
                }
                serde_json::to_value(output)
                    .map_err(|err| OpError::runtime(format!("{op}: cannot encode output: {err}")))
            })
        });
        self.ops.insert(name.to_owned(), erased);
        self
    }

    /// Registers a stream op: the request is answered with `{stream_id}` at
    /// once, then `handler` sends events through its [`EventSink`]. The
    /// stream ends with `end` when the handler returns or the plugin stops.
    pub fn stream<I, F, Fut>(mut self, name: &str, handler: F) -> Plugin
    where
        I: DeserializeOwned + Send + 'static,
        F: Fn(Ctx, I, EventSink) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), OpError>> + Send + 'static,
    {
        let op: Arc<str> = name.into();
        let handler = Arc::new(handler);
        let erased: StreamFn = Arc::new(move |ctx, input, sink| {
            let handler = handler.clone();
            let op = op.clone();
            Box::pin(async move {
                let input = parse_input::<I>(&op, input)?;
                handler(ctx, input, sink).await
            })
        });
        self.streams.insert(name.to_owned(), erased);
        self
    }

    /// Registers a plugin-defined command, run through `command.run`. The
    /// handler returns the command's exit code.
    pub fn command<F, Fut>(mut self, spec: CommandSpec, handler: F) -> Plugin
    where
        F: Fn(Ctx, CommandRunInput) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<i32, OpError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: CommandFn = Arc::new(move |ctx, input| {
            let handler = handler.clone();
            Box::pin(async move { handler(ctx, input).await })
        });
        self.commands.push((spec, erased));
        self
    }

    /// Globs (relative to the repo root) whose changes should re-run the
    /// pipeline in the orchestrator's watch mode.
    pub fn watch(mut self, globs: &[&str]) -> Plugin {
        self.declares
            .watch
            .extend(globs.iter().map(|glob| glob.to_string()));
        self
    }

    /// A build step's sources: in the orchestrator's watch mode, a change to
    /// them re-runs `step` (through this plugin's `build.run`) and restarts
    /// `restarts`.
    pub fn build_watch(mut self, step: &str, globs: &[String], restarts: &[&str]) -> Plugin {
        self.declares.builds.push(BuildWatch {
            step: step.to_owned(),
            watch: globs.to_vec(),
            restarts: restarts.iter().map(|s| s.to_string()).collect(),
        });
        self
    }

    /// Bound on one input line; longer requests are skipped with a log line.
    pub fn max_line(mut self, bytes: usize) -> Plugin {
        self.max_line = bytes;
        self
    }

    /// The handshake this plugin sends: exactly what is registered.
    pub fn handshake(&self) -> Handshake {
        let mut ops: Vec<String> = self
            .ops
            .keys()
            .chain(self.streams.keys())
            .cloned()
            .collect();
        if !self.commands.is_empty() {
            ops.push(COMMAND_RUN.to_owned());
        }
        ops.sort();
        ops.dedup();
        let declares = (self.declares != Declares::default()).then(|| self.declares.clone());
        Handshake {
            protocol_version: PROTOCOL_VERSION.into(),
            plugin_name: self.name.clone(),
            capabilities: Capabilities {
                ops,
                streams: self.streams.keys().cloned().collect(),
                commands: self.commands.iter().map(|(spec, _)| spec.clone()).collect(),
            },
            declares,
        }
    }

    /// Serves stdin/stdout until stdin closes; returns the exit status.
    ///
    /// Before serving, stdin and stdout are moved aside for the protocol and
    /// fd 0/fd 1 are pointed at /dev/null and stderr. Logs (`tracing`, level from `DEVCTL_PLUGIN_LOG`, default
    /// `info`) go to stderr; at `debug`, within a `request{id op}` span.
    pub fn run(self) -> ExitCode {
        init_tracing();
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("{}: cannot start the async runtime: {err}", self.name);
                return ExitCode::from(2);
            }
        };
        let name = self.name.clone();
        let result = runtime.block_on(async move {
            let (input, output) = stdio::take_protocol_stdio().map_err(|err| {
                std::io::Error::new(
                    err.kind(),
                    format!("cannot take stdin/stdout for frames: {err}"),
                )
            })?;
            self.serve(input, output).await
        });
        // Handlers still blocked in system calls must not delay the exit.
        runtime.shutdown_timeout(std::time::Duration::from_millis(100));
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("{name}: plugin stopped: {err}");
                ExitCode::from(1)
            }
        }
    }

    /// Serves requests from `input`, writing frames to `output`, until
    /// `input` ends. Outstanding requests are then cancelled (`E_CANCELED`)
    /// and open streams ended.
    pub async fn serve<R, W>(self, input: R, output: W) -> std::io::Result<()>
    where
        R: tokio::io::AsyncRead + Send + 'static,
        W: tokio::io::AsyncWrite + Send + 'static,
    {
        serve::serve(Arc::new(self.into_registry()), input, output).await
    }

    fn into_registry(self) -> serve::Registry {
        let handshake = self.handshake();
        serve::Registry {
            handshake,
            ops: self.ops,
            streams: self.streams,
            commands: self
                .commands
                .into_iter()
                .map(|(spec, handler)| (spec.name, handler))
                .collect(),
            max_line: self.max_line,
        }
    }
}

fn parse_input<I: DeserializeOwned + 'static>(op: &str, input: Value) -> Result<I, OpError> {
    let mut slot = Some(input);
    // A handler that takes the raw `Value` gets it as is, not rebuilt.
    if let Some(input) = same_type::<Value, I>(&mut slot) {
        return Ok(input);
    }
    let input = slot.take().unwrap_or_default();
    if input.is_null() {
        // A missing input means "no fields" to a handler that wants some.
        return serde_json::from_value::<I>(Value::Null).or_else(|_| {
            serde_json::from_value::<I>(Value::Object(Default::default()))
                .map_err(|err| invalid_input(op, &err))
        });
    }
    serde_json::from_value::<I>(input).map_err(|err| invalid_input(op, &err))
}

/// The value in `slot` as a `U` when `T` and `U` are one type (then it is
/// taken out); `None` otherwise.
fn same_type<T: 'static, U: 'static>(slot: &mut Option<T>) -> Option<U> {
    (slot as &mut dyn std::any::Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
}

fn invalid_input(op: &str, err: &serde_json::Error) -> OpError {
    OpError::new(ErrorCode::Runtime, format!("invalid input for {op}: {err}"))
        .with_details(serde_json::json!({"kind": "invalid_input"}))
}

fn init_tracing() {
    // DEVCTL_PLUGIN_LOG is a level: error, warn, info (default), debug, trace.
    let level = std::env::var("DEVCTL_PLUGIN_LOG")
        .ok()
        .and_then(|level| {
            level
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .ok()
        })
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}
