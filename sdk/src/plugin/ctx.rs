//! What a handler gets ([`Ctx`], [`EventSink`]) and what it returns on
//! failure ([`OpError`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use devctl_contract::protocol::{ErrorBody, Event, Frame, Note, Request};
use devctl_contract::ErrorCode;
use serde_json::Value;
use tokio::sync::{watch, Notify};

use crate::frame_io::{frame_line, FrameSender};

/// A handler's failure, sent to the host as `response.error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct OpError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
}

impl OpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> OpError {
        OpError {
            code,
            message: message.into(),
            details: None,
        }
    }

    /// The usual failure: `E_RUNTIME`.
    pub fn runtime(message: impl Into<String>) -> OpError {
        OpError::new(ErrorCode::Runtime, message)
    }

    pub fn with_details(mut self, details: Value) -> OpError {
        self.details = Some(details);
        self
    }

    pub(crate) fn into_body(self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message,
            details: self.details,
        }
    }
}

impl From<std::io::Error> for OpError {
    fn from(err: std::io::Error) -> Self {
        OpError::runtime(err.to_string())
    }
}

/// The request a handler serves: its metadata, deadline, cancellation, and a
/// place to attach warnings and notes to the response.
#[derive(Clone)]
pub struct Ctx {
    inner: Arc<CtxInner>,
}

struct CtxInner {
    request_id: String,
    op: String,
    repo_root: Option<PathBuf>,
    cwd: Option<PathBuf>,
    dry_run: bool,
    deadline: Option<Instant>,
    shutdown: watch::Receiver<bool>,
    warnings: Mutex<Vec<Note>>,
    notes: Mutex<Vec<Note>>,
    /// The request has its answer (each gets exactly one).
    answered: AtomicBool,
    /// Someone waits in [`Ctx::answered`]…
    watched: AtomicBool,
    /// …to be told here.
    answer_sent: Notify,
}

impl Ctx {
    /// The context of `request`, whose input goes to the handler apart.
    pub(crate) fn new(request: Request, shutdown: watch::Receiver<bool>) -> (Ctx, Value) {
        let Request {
            request_id,
            op,
            ctx,
            input,
        } = request;
        // A deadline past the clock's range is no deadline (not a panic).
        let deadline = ctx
            .deadline_ms
            .and_then(|ms| Instant::now().checked_add(std::time::Duration::from_millis(ms)));
        let ctx = Ctx {
            inner: Arc::new(CtxInner {
                request_id,
                op,
                repo_root: ctx.repo_root.map(PathBuf::from),
                cwd: ctx.cwd.map(PathBuf::from),
                dry_run: ctx.dry_run,
                deadline,
                shutdown,
                warnings: Mutex::new(Vec::new()),
                notes: Mutex::new(Vec::new()),
                answered: AtomicBool::new(false),
                watched: AtomicBool::new(false),
                answer_sent: Notify::new(),
            }),
        };
        (ctx, input)
    }

    pub fn request_id(&self) -> &str {
        &self.inner.request_id
    }

    pub fn op(&self) -> &str {
        &self.inner.op
    }

    /// `ctx.repo_root` of the request, if the host sent one.
    pub fn repo_root(&self) -> Option<&Path> {
        self.inner.repo_root.as_deref()
    }

    pub fn cwd(&self) -> Option<&Path> {
        self.inner.cwd.as_deref()
    }

    /// When true the handler must not change anything.
    pub fn dry_run(&self) -> bool {
        self.inner.dry_run
    }

    /// When the host stops waiting (from `ctx.deadline_ms`).
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }

    /// Resolves when the plugin is shutting down (stdin closed).
    pub async fn cancelled(&self) {
        let mut shutdown = self.inner.shutdown.clone();
        // An error means the sender is gone, which is also shutdown.
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    }

    /// Adds a warning to the response (shown to the user by the host).
    pub fn warn(&self, message: impl Into<String>) {
        push(&self.inner.warnings, "warn", message.into());
    }

    /// Adds an informational note to the response.
    pub fn note(&self, message: impl Into<String>) {
        push(&self.inner.notes, "info", message.into());
    }

    /// Takes the right to answer: true for the first caller only.
    pub(crate) fn claim_answer(&self) -> bool {
        let first = !self.inner.answered.swap(true, Ordering::AcqRel);
        if first && self.inner.watched.load(Ordering::Acquire) {
            self.inner.answer_sent.notify_waiters();
        }
        first
    }

    /// Resolves once the request has its answer.
    pub(crate) async fn answered(&self) {
        self.inner.watched.store(true, Ordering::Release);
        loop {
            let sent = self.inner.answer_sent.notified();
            tokio::pin!(sent);
            // Registered before the check, so an answer in between is seen.
            sent.as_mut().enable();
            if self.inner.answered.load(Ordering::Acquire) {
                return;
            }
            sent.await;
        }
    }

    pub(crate) fn take_messages(&self) -> (Vec<Note>, Vec<Note>) {
        let take = |list: &Mutex<Vec<Note>>| {
            list.lock()
                .map(|mut list| std::mem::take(&mut *list))
                .unwrap_or_default()
        };
        (take(&self.inner.warnings), take(&self.inner.notes))
    }
}

fn push(list: &Mutex<Vec<Note>>, level: &str, message: String) {
    if let Ok(mut list) = list.lock() {
        list.push(Note {
            level: level.into(),
            message,
        });
    }
}

/// Where a stream handler sends its events. The SDK sends `end` itself when
/// the handler returns (or the plugin shuts down).
#[derive(Clone)]
pub struct EventSink {
    stream_id: String,
    frames: FrameSender,
}

impl EventSink {
    pub(crate) fn new(stream_id: String, frames: FrameSender) -> EventSink {
        EventSink { stream_id, frames }
    }

    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// Sends an event named `event` with optional fields. Waits while the
    /// output queue is full, so a fast producer cannot exhaust memory; once
    /// the host has gone (stdout closed) it waits for good, until the plugin
    /// stops and ends the stream.
    pub async fn emit(&self, event: &str, fields: Option<serde_json::Map<String, Value>>) {
        self.send(Event {
            stream_id: self.stream_id.clone(),
            event: event.into(),
            fields: fields.map(|f| f.into_iter().collect()),
            ..Event::default()
        })
        .await;
    }

    /// Sends a `log` event with a level and a message.
    pub async fn log(&self, level: &str, message: impl Into<String>) {
        self.send(Event {
            stream_id: self.stream_id.clone(),
            event: "log".into(),
            level: Some(level.into()),
            message: Some(message.into()),
            ..Event::default()
        })
        .await;
    }

    pub(crate) async fn end(&self, ok: bool, message: Option<String>) {
        self.send(Event {
            stream_id: self.stream_id.clone(),
            event: Event::END.into(),
            ok: Some(ok),
            message,
            ..Event::default()
        })
        .await;
    }

    async fn send(&self, event: Event) {
        // The writer is gone only when the host has gone. Returning at once
        // would let an emitting loop spin; the plugin stops (and cancels
        // this stream) instead.
        if self
            .frames
            .send(frame_line(&Frame::Event(event)))
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }
}
