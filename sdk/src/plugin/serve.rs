//! The plugin's protocol loop: handshake, then read requests and answer
//! each through the single frame writer. Bad input is answered where it
//! names a request id and logged otherwise; it never stops the loop. At end
//! of input, work in flight is cancelled.
//!
//! Where the time goes decides the shape. Requests are read on a thread of
//! their own (not a runtime worker, so a handler blocking the workers cannot
//! stop reading), which runs each handler right there, once: a handler that
//! finishes at once (most do) is answered with no hand-off to another thread,
//! and answers collect in one batch written when no more whole request is
//! buffered (pipelined requests share a write, a lone one is never held
//! back). A handler that has to wait goes on in a runtime task of its own,
//! within its deadline. One that blocks its thread is noticed by the
//! watchdog ([`super::takeover`]), which hands reading to a new thread, so it
//! never stalls the others for long.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use devctl_contract::ops::{CommandRunInput, CommandRunOutput, COMMAND_RUN};
use devctl_contract::protocol::{ErrorBody, Frame, Handshake, Request, Response};
use devctl_contract::ErrorCode;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use super::takeover::Role;
use super::MAX_WAITING;
use super::{BoxFuture, CommandFn, Ctx, EventSink, OpError, OpFn, StreamFn};
use crate::frame_io::{frame_line, spawn_writer, FrameSender, LineError, LineReader, Writer};

/// After stdin closes: how long work in flight may still finish normally…
const FINISH_GRACE: Duration = Duration::from_millis(200);
/// …and then how long cancelled handlers get to answer `E_CANCELED`.
const CANCEL_GRACE: Duration = Duration::from_millis(200);
/// Then how long the host gets to read what is still to be written (twice:
/// all of it, then the frame under way).
const WRITE_GRACE: Duration = Duration::from_millis(500);
/// Answers batched beyond this many bytes are sent without waiting for the
/// buffered requests to run out.
const BATCH_LIMIT: usize = 64 * 1024;

pub(crate) struct Registry {
    pub handshake: Handshake,
    pub ops: BTreeMap<String, OpFn>,
    pub streams: BTreeMap<String, StreamFn>,
    pub commands: BTreeMap<String, CommandFn>,
    pub max_line: usize,
}

type Input = Pin<Box<dyn AsyncRead + Send>>;

/// What the holder of the reading role reads with and answers into.
struct Reading {
    lines: LineReader<BufReader<Input>>,
    /// Answers not yet handed to the writer, whole lines.
    batch: Vec<u8>,
}

/// What every reading thread and the end of `serve` share.
struct Loop {
    registry: Arc<Registry>,
    /// The runtime handlers' tasks run on (reading threads enter it).
    runtime: tokio::runtime::Handle,
    /// Answers from the reading task: written at once when the pipe is idle.
    writer: Writer,
    /// The writer's queue, for handlers' tasks and streams.
    frames: FrameSender,
    shutdown: watch::Receiver<bool>,
    /// Handlers that had to wait, and streams.
    tasks: Mutex<JoinSet<()>>,
    /// Room for [`MAX_WAITING`] handlers that wait.
    waiting: Arc<Semaphore>,
    next_stream: AtomicU64,
    role: Role<Reading, Ctx>,
    /// Input ended (EOF or a read error).
    input_ended: Notify,
}

pub(crate) async fn serve<R, W>(registry: Arc<Registry>, input: R, output: W) -> std::io::Result<()>
where
    R: AsyncRead + Send + 'static,
    W: AsyncWrite + Send + 'static,
{
    let (writer, mut writer_task) = spawn_writer(output);
    writer
        .send(frame_line(&Frame::Handshake(registry.handshake.clone())))
        .await;
    let frames = writer.sender();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let input: Input = Box::pin(input);
    let reading = Reading {
        lines: LineReader::new(
            BufReader::with_capacity(64 * 1024, input),
            registry.max_line,
        ),
        batch: Vec::new(),
    };
    let shared = Arc::new(Loop {
        registry,
        runtime: tokio::runtime::Handle::current(),
        writer,
        frames,
        shutdown: shutdown_rx,
        tasks: Mutex::new(JoinSet::new()),
        waiting: Arc::new(Semaphore::new(MAX_WAITING)),
        next_stream: AtomicU64::new(0),
        role: Role::new(reading),
        input_ended: Notify::new(),
    });
    let watchdog = std::thread::Builder::new()
        .name("devctl-watchdog".into())
        .spawn({
            let shared = shared.clone();
            move || {
                shared.role.watch(|generation, stuck| {
                    start_reader(&shared, generation);
                    if let Some(ctx) = stuck {
                        answer_for_orphan(&shared, ctx);
                    }
                })
            }
        });
    if let Err(err) = watchdog {
        tracing::warn!("no watchdog thread ({err}): a blocking handler will stall reading");
    }
    start_reader(&shared, 0);
    // Input ends, or output does (the host closed our stdout: nobody is
    // left to answer, so stop the same way).
    let mut written = None;
    tokio::select! {
        () = shared.input_ended.notified() => {}
        result = &mut writer_task => {
            tracing::warn!("stdout is closed; stopping");
            written = Some(result);
        }
    }
    shared.role.end();

    // Work already under way gets a moment to finish; then it is cancelled
    // (answered E_CANCELED, streams ended), and whatever still hangs is dropped.
    // (Handlers that lost the reading role while blocking count as work
    // under way too; they cannot be cancelled, only waited for.)
    let mut tasks = std::mem::take(&mut *lock(&shared.tasks));
    let finish = async {
        while tasks.join_next().await.is_some() {}
        shared.role.orphans_finished().await;
    };
    if tokio::time::timeout(FINISH_GRACE, finish).await.is_err() {
        let _ = shutdown_tx.send(true);
        let drain = async {
            while tasks.join_next().await.is_some() {}
            shared.role.orphans_finished().await;
        };
        if tokio::time::timeout(CANCEL_GRACE, drain).await.is_err() {
            tasks.abort_all();
        }
    }
    drop(tasks);
    // What is queued is written; a handler that still blocks its thread
    // holds a sender, and must not keep the plugin alive.
    shared.writer.close();
    let written = match written {
        Some(result) => Some(result),
        None => match tokio::time::timeout(WRITE_GRACE, &mut writer_task).await {
            Ok(result) => Some(result),
            Err(_) => {
                // The host reads too slowly (or not at all): frames not
                // started are dropped, the one under way is finished, so
                // stdout never ends in the middle of a line.
                tracing::warn!("stdout is not read fast enough; answers not yet written are lost");
                shared.writer.cut_to_current_frame();
                tokio::time::timeout(WRITE_GRACE, &mut writer_task)
                    .await
                    .ok()
            }
        },
    };
    drop(shared);
    match written {
        Some(Ok(Err(err))) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err),
        _ => Ok(()),
    }
}

/// Starts a thread for `generation` of the reading role. Without one
/// (the system refuses threads) the plugin stops serving, as at end of input,
/// rather than hang.
fn start_reader(shared: &Arc<Loop>, generation: u64) {
    let runtime = shared.runtime.clone();
    let reader = shared.clone();
    let started = std::thread::Builder::new()
        .name(format!("devctl-reader-{generation}"))
        // Unconstrained: the whole loop is one never-ending poll of
        // `block_on`, so tokio's per-poll budget would run out after a few
        // hundred requests and then refuse every direct write (each would
        // take the detour through the writer task: two thread wake-ups).
        .spawn(move || runtime.block_on(tokio::task::unconstrained(read(reader, generation))));
    if let Err(err) = started {
        tracing::error!("cannot start a reading thread: {err}; stopping");
        shared.input_ended.notify_one();
    }
}

/// One generation of the reading role: reads and dispatches until input
/// ends or the watchdog hands the role on.
async fn read(shared: Arc<Loop>, generation: u64) {
    let Some(mut reading) = shared.role.claim(generation) else {
        return;
    };
    loop {
        // Before waiting for input (and first thing in a new generation,
        // which may inherit answers from the one it took over from).
        if !reading.batch.is_empty()
            && (!reading.lines.has_buffered_line() || reading.batch.len() >= BATCH_LIMIT)
        {
            flush(&shared.writer, &mut reading.batch).await;
        }
        let line = match reading.lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(LineError::TooLarge { limit }) => {
                tracing::warn!("skipped an input line longer than {limit} bytes");
                continue;
            }
            Err(LineError::Io(err)) => {
                tracing::warn!("stopped reading stdin: {err}");
                break;
            }
        };
        if !line.iter().all(u8::is_ascii_whitespace) {
            match parse_request(line) {
                Ok(request) => match dispatch(&shared, generation, reading, request).await {
                    Some(back) => reading = back,
                    None => return,
                },
                Err(BadLine::Answerable { request_id, error }) => {
                    tracing::warn!(request_id = %request_id, "bad request: {}", error.message);
                    Frame::Response(Response::failure(request_id, error))
                        .write_line(&mut reading.batch);
                }
                Err(BadLine::Ignored(reason)) => tracing::warn!("ignored input line: {reason}"),
            }
        }
    }
    flush(&shared.writer, &mut reading.batch).await;
    shared.input_ended.notify_one();
}

/// Runs one request. Gives the reading state back, or `None` when the
/// watchdog handed reading to another task while the handler ran here.
async fn dispatch(
    shared: &Arc<Loop>,
    generation: u64,
    mut reading: Reading,
    request: Request,
) -> Option<Reading> {
    let registry = &shared.registry;
    let (ctx, input) = Ctx::new(request, shared.shutdown.clone());
    let op = ctx.op();
    // At debug only: the fmt subscriber formats a span's fields when it is
    // made, which at `info` cost a fifth of the plugin's time per request.
    let span = tracing::debug_span!("request", id = %ctx.request_id(), op = %op);
    let work: BoxFuture<Result<Value, OpError>> = if let Some(handler) = registry.ops.get(op) {
        handler(ctx.clone(), input)
    } else if let Some(handler) = registry.streams.get(op) {
        start_stream(shared, &mut reading, handler, ctx.clone(), input, span).await;
        return Some(reading);
    } else if op == COMMAND_RUN && !registry.commands.is_empty() {
        Box::pin(run_command(registry.clone(), ctx.clone(), input))
    } else {
        let error = OpError::new(
            ErrorCode::Unsupported,
            format!("op {op:?} is not supported by this plugin"),
        );
        response(&ctx, Err(error)).write_line(&mut reading.batch);
        return Some(reading);
    };

    let mut work = CatchPanic(work);
    shared.role.park(reading, ctx.clone());
    let first = std::future::poll_fn(|cx| {
        let _entered = span.enter();
        Poll::Ready(Pin::new(&mut work).poll(cx))
    })
    .await;
    let reading = shared.role.resume(generation);
    // A host that keeps asking while nothing gets answered could otherwise
    // make the plugin hold any number of waiting handlers (and their
    // answers): past the bound, a request that would wait is refused.
    let mut waiting = None;
    let first = match first {
        Poll::Pending => match shared.waiting.clone().try_acquire_owned() {
            Ok(permit) => {
                waiting = Some(permit);
                Poll::Pending
            }
            Err(_) => Poll::Ready(Err(OpError::runtime(format!(
                "{MAX_WAITING} requests are already waiting in this plugin; \
                 retry once some are answered"
            )))),
        },
        ready => ready,
    };
    match first {
        Poll::Ready(result) => {
            // Unless it was answered for it meanwhile (an orphan past its
            // deadline, or at shutdown).
            let answer = ctx.claim_answer().then(|| response(&ctx, result));
            match reading {
                Some(mut reading) => {
                    if let Some(answer) = answer {
                        answer.write_line(&mut reading.batch);
                    }
                    return Some(reading);
                }
                None => {
                    if let Some(answer) = answer {
                        shared.writer.send(frame_line(&answer)).await;
                    }
                    shared.role.orphan_done();
                }
            }
        }
        Poll::Pending => {
            let frames = shared.frames.clone();
            spawn(
                shared,
                async move {
                    let _waiting = waiting;
                    let result = bounded(&ctx, work).await;
                    if ctx.claim_answer() {
                        let _ = frames.send(frame_line(&response(&ctx, result))).await;
                    }
                }
                .instrument(span),
            );
            if reading.is_none() {
                shared.role.orphan_done();
            }
        }
    }
    reading
}

async fn start_stream(
    shared: &Arc<Loop>,
    reading: &mut Reading,
    handler: &StreamFn,
    ctx: Ctx,
    input: Value,
    span: tracing::Span,
) {
    let stream_id = format!(
        "{}-{}",
        ctx.op(),
        shared.next_stream.fetch_add(1, Ordering::Relaxed) + 1
    );
    // The answer goes out before any event: same writer, same order.
    response(&ctx, Ok(json!({ "stream_id": stream_id }))).write_line(&mut reading.batch);
    flush(&shared.writer, &mut reading.batch).await;
    let sink = EventSink::new(stream_id, shared.frames.clone());
    let work = CatchPanic(handler(ctx.clone(), input, sink.clone()));
    spawn(
        shared,
        async move {
            // Cancellation first, as in `bounded`: a stream that always has
            // another event ready would otherwise never see it.
            tokio::select! {
                biased;
                () = ctx.cancelled() => sink.end(false, Some("plugin is shutting down".into())).await,
                result = work => match result {
                    Ok(()) => sink.end(true, None).await,
                    Err(err) => sink.end(false, Some(err.to_string())).await,
                },
            }
        }
        .instrument(span),
    );
}

fn spawn(shared: &Loop, task: impl Future<Output = ()> + Send + 'static) {
    let mut tasks = lock(&shared.tasks);
    tasks.spawn(task);
    while tasks.try_join_next().is_some() {}
}

async fn flush(writer: &Writer, batch: &mut Vec<u8>) {
    if !batch.is_empty() {
        writer.send(std::mem::take(batch)).await;
    }
}

/// A handler's future whose panic becomes an `E_RUNTIME` answer instead of
/// taking the reading task (or the request's task) down with it.
struct CatchPanic<F>(F);

impl<F, T> Future for CatchPanic<F>
where
    F: Future<Output = Result<T, OpError>> + Unpin,
{
    type Output = Result<T, OpError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                Poll::Ready(Err(OpError::runtime(format!(
                    "the handler panicked: {message}"
                ))))
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A JoinSet stays consistent when a spawn panics midway.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs a handler within its deadline, giving up when the plugin stops.
async fn bounded<F>(ctx: &Ctx, work: F) -> Result<Value, OpError>
where
    F: std::future::Future<Output = Result<Value, OpError>>,
{
    let timed = async {
        match ctx.deadline() {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), work)
                .await
                .unwrap_or_else(|_| Err(past_deadline(ctx))),
            None => work.await,
        }
    };
    // Cancellation is looked at first: a handler that is always ready again
    // (it uses up the task's budget) must not hide it.
    tokio::select! {
        biased;
        () = ctx.cancelled() => Err(shutting_down()),
        result = timed => result,
    }
}

fn past_deadline(ctx: &Ctx) -> OpError {
    OpError::new(
        ErrorCode::Timeout,
        format!("{} did not finish before its deadline", ctx.op()),
    )
}

fn shutting_down() -> OpError {
    OpError::new(
        ErrorCode::Canceled,
        "plugin is shutting down (stdin closed)",
    )
}

/// A handler that lost the reading role blocks a thread and cannot be
/// interrupted; its request is answered for it (`E_TIMEOUT` at its
/// deadline, `E_CANCELED` at shutdown) unless it answers first.
fn answer_for_orphan(shared: &Arc<Loop>, ctx: Ctx) {
    // Called from the watchdog thread: spawning needs the runtime.
    let _runtime = shared.runtime.enter();
    let frames = shared.frames.clone();
    spawn(shared, async move {
        let deadline = async {
            match ctx.deadline() {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        let error = tokio::select! {
            biased;
            () = ctx.answered() => return,
            () = ctx.cancelled() => shutting_down(),
            () = deadline => past_deadline(&ctx),
        };
        if ctx.claim_answer() {
            let _ = frames.send(frame_line(&response(&ctx, Err(error)))).await;
        }
    });
}

async fn run_command(registry: Arc<Registry>, ctx: Ctx, input: Value) -> Result<Value, OpError> {
    let input: CommandRunInput = serde_json::from_value(input)
        .map_err(|err| OpError::runtime(format!("invalid input for command.run: {err}")))?;
    let Some(handler) = registry.commands.get(&input.name) else {
        return Err(OpError::new(
            ErrorCode::Unsupported,
            format!("this plugin has no command {:?}", input.name),
        ));
    };
    let exit_code = handler(ctx, input).await?;
    Ok(json!(CommandRunOutput { exit_code }))
}

/// The answer to `ctx`'s request.
fn response(ctx: &Ctx, result: Result<Value, OpError>) -> Frame {
    let (warnings, notes) = ctx.take_messages();
    let mut response = match result {
        Ok(output) => Response::success(ctx.request_id(), output),
        Err(err) => Response::failure(ctx.request_id(), err.into_body()),
    };
    response.warnings = warnings;
    response.notes = notes;
    Frame::Response(response)
}

enum BadLine {
    /// Names a request id, so the host can be told what was wrong.
    Answerable {
        request_id: String,
        error: ErrorBody,
    },
    Ignored(String),
}

fn parse_request(line: &[u8]) -> Result<Request, BadLine> {
    match serde_json::from_slice::<Frame>(line) {
        Ok(Frame::Request(request)) if !request.request_id.is_empty() => Ok(request),
        Ok(Frame::Request(_)) => Err(BadLine::Ignored("a request without request_id".into())),
        Ok(other) => Err(BadLine::Ignored(format!(
            "a {} frame (only requests are sent to plugins)",
            other.type_name()
        ))),
        Err(err) => {
            let value: Value = serde_json::from_slice(line)
                .map_err(|_| BadLine::Ignored(format!("not JSON: {err}")))?;
            match value.get("request_id").and_then(Value::as_str) {
                Some(id) if !id.is_empty() => Err(BadLine::Answerable {
                    request_id: id.to_owned(),
                    error: ErrorBody::new(
                        ErrorCode::UnexpectedFrame,
                        format!("malformed request: {err}"),
                    ),
                }),
                _ => Err(BadLine::Ignored(format!("not a request: {err}"))),
            }
        }
    }
}
