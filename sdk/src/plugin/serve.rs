//! The plugin's protocol loop: handshake, then read requests, run each in
//! its own task, and write every answer through the single frame writer.
//! Bad input is answered where it names a request id and logged otherwise;
//! it never stops the loop. At end of input, work in flight is cancelled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use devctl_contract::ops::{CommandRunInput, CommandRunOutput, COMMAND_RUN};
use devctl_contract::protocol::{ErrorBody, Frame, Handshake, Request, Response};
use devctl_contract::ErrorCode;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::{CommandFn, Ctx, EventSink, OpError, OpFn, StreamFn};
use crate::frame_io::{frame_line, spawn_writer, FrameSender, LineError, LineReader};

/// After stdin closes: how long work in flight may still finish normally…
const FINISH_GRACE: Duration = Duration::from_millis(200);
/// …and then how long cancelled handlers get to answer `E_CANCELED`.
const CANCEL_GRACE: Duration = Duration::from_millis(200);

pub(crate) struct Registry {
    pub handshake: Handshake,
    pub ops: BTreeMap<String, OpFn>,
    pub streams: BTreeMap<String, StreamFn>,
    pub commands: BTreeMap<String, CommandFn>,
    pub max_line: usize,
}

pub(crate) async fn serve<R, W>(registry: Arc<Registry>, input: R, output: W) -> std::io::Result<()>
where
    R: AsyncRead + Send + 'static,
    W: AsyncWrite + Send + 'static,
{
    let (frames, writer) = spawn_writer(Box::pin(output));
    let _ = frames
        .send(frame_line(&Frame::Handshake(registry.handshake.clone())))
        .await;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut reader = LineReader::new(
        BufReader::with_capacity(64 * 1024, Box::pin(input)),
        registry.max_line,
    );
    let mut tasks = JoinSet::new();
    let mut next_stream = 0u64;

    loop {
        let line = match reader.next_line().await {
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
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let request = match parse_request(line) {
            Ok(request) => request,
            Err(BadLine::Answerable { request_id, error }) => {
                tracing::warn!(request_id = %request_id, "bad request: {}", error.message);
                send(&frames, Response::failure(request_id, error)).await;
                continue;
            }
            Err(BadLine::Ignored(reason)) => {
                tracing::warn!("ignored input line: {reason}");
                continue;
            }
        };
        let ctx = Ctx::new(&request, shutdown_rx.clone());
        let span = tracing::info_span!("request", id = %request.request_id, op = %request.op);
        if let Some(handler) = registry.ops.get(&request.op) {
            let work = handler(ctx.clone(), request.input);
            let frames = frames.clone();
            tasks.spawn(
                async move {
                    let result = bounded(&ctx, work).await;
                    send(&frames, response(&ctx, result)).await;
                }
                .instrument(span),
            );
        } else if let Some(handler) = registry.streams.get(&request.op) {
            next_stream += 1;
            let stream_id = format!("{}-{next_stream}", request.op);
            // The answer goes out before any event: same writer, same order.
            send(
                &frames,
                response(&ctx, Ok(json!({ "stream_id": stream_id }))),
            )
            .await;
            let sink = EventSink::new(stream_id, frames.clone());
            let work = handler(ctx.clone(), request.input, sink.clone());
            tasks.spawn(
                async move {
                    tokio::select! {
                        biased;
                        result = work => match result {
                            Ok(()) => sink.end(true, None).await,
                            Err(err) => sink.end(false, Some(err.to_string())).await,
                        },
                        () = ctx.cancelled() => sink.end(false, Some("plugin is shutting down".into())).await,
                    }
                }
                .instrument(span),
            );
        } else if request.op == COMMAND_RUN && !registry.commands.is_empty() {
            let registry = registry.clone();
            let frames = frames.clone();
            let input = request.input;
            tasks.spawn(
                async move {
                    let work = run_command(registry, ctx.clone(), input);
                    let result = bounded(&ctx, work).await;
                    send(&frames, response(&ctx, result)).await;
                }
                .instrument(span),
            );
        } else {
            let error = OpError::new(
                ErrorCode::Unsupported,
                format!("op {:?} is not supported by this plugin", request.op),
            );
            send(&frames, response(&ctx, Err(error))).await;
        }
        while tasks.try_join_next().is_some() {}
    }

    // Work already under way gets a moment to finish; then it is cancelled
    // (answered E_CANCELED, streams ended), and whatever still hangs is dropped.
    let finish = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(FINISH_GRACE, finish).await.is_err() {
        let _ = shutdown_tx.send(true);
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(CANCEL_GRACE, drain).await.is_err() {
            tasks.abort_all();
        }
    }
    drop(frames);
    match writer.await {
        Ok(Err(err)) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err),
        _ => Ok(()),
    }
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
                .unwrap_or_else(|_| {
                    Err(OpError::new(
                        ErrorCode::Timeout,
                        format!("{} did not finish before its deadline", ctx.op()),
                    ))
                }),
            None => work.await,
        }
    };
    tokio::select! {
        biased;
        result = timed => result,
        () = ctx.cancelled() => Err(OpError::new(ErrorCode::Canceled, "plugin is shutting down (stdin closed)")),
    }
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

fn response(ctx: &Ctx, result: Result<Value, OpError>) -> Response {
    let (warnings, notes) = ctx.take_messages();
    let mut response = match result {
        Ok(output) => Response::success(ctx.request_id(), output),
        Err(err) => Response::failure(ctx.request_id(), err.into_body()),
    };
    response.warnings = warnings;
    response.notes = notes;
    response
}

async fn send(frames: &FrameSender, response: Response) {
    // A closed writer means the host is gone; there is no one to tell.
    let _ = frames.send(frame_line(&Frame::Response(response))).await;
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
