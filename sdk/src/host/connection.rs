//! The host's view of one plugin's stdout after the handshake: route each
//! response to its pending call by request id, each event to its stream, and
//! apply the fatal-frame rules (DESIGN §2.5). The connection issues the
//! request ids (`<plugin-id>-<n>`), so it can tell a late answer (an id it
//! sent and gave up on: dropped) from an answer to an id it never sent (a
//! protocol violation: fatal, so no call waits out its timeout for an answer
//! that went astray). The reader never waits for a consumer, so it cannot
//! deadlock. Each call's deadline is kept with it, and one task per
//! connection ([`expire_calls`]) answers the calls whose deadline passed:
//! one timer for the connection rather than one per call.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use devctl_contract::protocol::{decode_frame, Event, Frame, FrameError, Response};
use devctl_contract::ErrorCode;
use rustc_hash::FxHashMap;
use tokio::io::AsyncBufRead;
use tokio::sync::{oneshot, Notify};

use super::error::Fatal;
use crate::frame_io::{LineError, LineReader};

/// At most this many distinct streams are buffered at once.
const MAX_STREAMS: usize = 1024;

pub(crate) type Reply = Result<Response, Unanswered>;

/// Why a call ends without a response.
#[derive(Debug)]
pub(crate) enum Unanswered {
    /// The connection died.
    Fatal(Fatal),
    /// Its deadline passed (a late answer is dropped).
    DeadlinePassed,
}

/// A call registered with [`Connection::register`].
pub(crate) struct PendingCall {
    number: u64,
}

/// State shared by the reader task and the client.
pub(crate) struct Connection {
    routes: Mutex<Routes>,
    stream_capacity: usize,
    /// `<plugin-id>-`: every request id starts with it.
    id_prefix: String,
    /// Request ids issued so far (ids are numbered from 1).
    issued: AtomicU64,
    /// Tells [`expire_calls`] that a call with an earlier deadline came.
    sooner_deadline: Notify,
}

#[derive(Default)]
struct Routes {
    /// Calls waiting for an answer, by the number in their request id
    /// (numbers the connection issued: no need for a keyed hash).
    pending: FxHashMap<u64, Waiter>,
    /// No pending call's deadline is earlier (it may be a call answered
    /// since: [`expire_calls`] then only looks again).
    next_deadline: Option<Instant>,
    streams: HashMap<String, Arc<StreamState>>,
    fatal: Option<Fatal>,
}

struct Waiter {
    reply: oneshot::Sender<Reply>,
    deadline: Option<Instant>,
}

impl Connection {
    pub fn new(plugin_id: &str, stream_capacity: usize) -> Connection {
        Connection {
            routes: Mutex::new(Routes::default()),
            stream_capacity,
            id_prefix: format!("{plugin_id}-"),
            issued: AtomicU64::new(0),
            sooner_deadline: Notify::new(),
        }
    }

    /// Issues the next request id and registers a pending call for it,
    /// answered with [`Unanswered::DeadlinePassed`] at `deadline` (never
    /// when `None`); fails with the cause once the connection died.
    pub fn register(
        &self,
        deadline: Option<Instant>,
    ) -> Result<(PendingCall, oneshot::Receiver<Reply>), Fatal> {
        let (reply, rx) = oneshot::channel();
        let mut routes = lock(&self.routes);
        if let Some(fatal) = &routes.fatal {
            return Err(fatal.clone());
        }
        let number = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        routes.pending.insert(number, Waiter { reply, deadline });
        if let Some(deadline) = deadline {
            if routes.next_deadline.is_none_or(|next| deadline < next) {
                routes.next_deadline = Some(deadline);
                self.sooner_deadline.notify_one();
            }
        }
        Ok((PendingCall { number }, rx))
    }

    /// Answers every call whose deadline is `now` or earlier; returns the
    /// next deadline.
    fn expire_due(&self, now: Instant) -> Option<Instant> {
        let mut routes = lock(&self.routes);
        let due: Vec<u64> = routes
            .pending
            .iter()
            .filter(|(_, waiter)| waiter.deadline.is_some_and(|deadline| deadline <= now))
            .map(|(number, _)| *number)
            .collect();
        for number in due {
            if let Some(waiter) = routes.pending.remove(&number) {
                let _ = waiter.reply.send(Err(Unanswered::DeadlinePassed));
            }
        }
        routes.next_deadline = routes
            .pending
            .values()
            .filter_map(|waiter| waiter.deadline)
            .min();
        routes.next_deadline
    }

    /// The request id of `call` (`<plugin-id>-<n>`).
    pub fn request_id(&self, call: &PendingCall) -> String {
        format!("{}{}", self.id_prefix, call.number)
    }

    /// The number in `request_id`, when it has this connection's form.
    fn number(&self, request_id: &str) -> Option<u64> {
        request_id
            .strip_prefix(&self.id_prefix)
            .filter(|digits| !digits.starts_with(['+', '0']))
            .and_then(|digits| digits.parse::<u64>().ok())
    }

    /// Whether `number` is one this connection issued.
    fn issued(&self, number: u64) -> bool {
        number >= 1 && number <= self.issued.load(Ordering::Relaxed)
    }

    /// Forgets a pending call (after its timeout): a late answer is dropped.
    pub fn forget(&self, call: &PendingCall) {
        lock(&self.routes).pending.remove(&call.number);
    }

    pub fn fatal(&self) -> Option<Fatal> {
        lock(&self.routes).fatal.clone()
    }

    /// The buffer of `stream_id`, created if events have not arrived yet.
    pub fn stream(&self, stream_id: &str) -> Arc<StreamState> {
        let mut routes = lock(&self.routes);
        let failed = routes.fatal.clone();
        routes
            .streams
            .entry(stream_id.to_owned())
            .or_insert_with(|| Arc::new(StreamState::new(self.stream_capacity, failed)))
            .clone()
    }

    pub fn release_stream(&self, stream_id: &str) {
        lock(&self.routes).streams.remove(stream_id);
    }

    /// Marks the connection dead and fails everything waiting on it.
    pub fn fail(&self, fatal: Fatal) {
        let (pending, streams) = {
            let mut routes = lock(&self.routes);
            if routes.fatal.is_some() {
                return;
            }
            routes.fatal = Some(fatal.clone());
            (
                std::mem::take(&mut routes.pending),
                routes.streams.values().cloned().collect::<Vec<_>>(),
            )
        };
        for (_, waiter) in pending {
            let _ = waiter.reply.send(Err(Unanswered::Fatal(fatal.clone())));
        }
        // So `expire_calls` sees it and ends.
        self.sooner_deadline.notify_one();
        for stream in streams {
            stream.fail(&fatal);
        }
    }

    /// Hands a response to its call. A late answer is dropped; an answer to
    /// an id never sent is fatal.
    fn route_response(&self, response: Response) -> Result<(), Fatal> {
        let number = self.number(&response.request_id);
        let waiter = number.and_then(|number| lock(&self.routes).pending.remove(&number));
        match waiter {
            Some(waiter) => {
                let _ = waiter.reply.send(Ok(response));
            }
            None if number.is_some_and(|number| self.issued(number)) => tracing::debug!(
                request_id = %response.request_id,
                "dropped a late response (its call already gave up)"
            ),
            None => {
                let shown: String = response.request_id.chars().take(120).collect();
                return Err(Fatal {
                    code: ErrorCode::UnexpectedFrame,
                    message: format!(
                        "the plugin answered request id {shown:?}, which this host never sent \
                         (ids are {}<n>)",
                        self.id_prefix
                    ),
                    request_id: Some(shown),
                });
            }
        }
        Ok(())
    }

    fn route_event(&self, event: Event) {
        let stream = {
            let mut routes = lock(&self.routes);
            match routes.streams.get(&event.stream_id) {
                Some(stream) => stream.clone(),
                None if routes.streams.len() < MAX_STREAMS => {
                    let stream = Arc::new(StreamState::new(self.stream_capacity, None));
                    routes
                        .streams
                        .insert(event.stream_id.clone(), stream.clone());
                    stream
                }
                None => return,
            }
        };
        stream.push(event);
    }
}

/// Answers calls whose deadline passed, until the connection dies. One
/// timer at a time: until the earliest deadline, or a sooner one.
pub(crate) async fn expire_calls(connection: Arc<Connection>) {
    let mut next = None;
    loop {
        if connection.fatal().is_some() {
            return;
        }
        match next {
            None => connection.sooner_deadline.notified().await,
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {}
                    () = connection.sooner_deadline.notified() => {}
                }
            }
        }
        next = connection.expire_due(Instant::now());
    }
}

/// Reads frames until the plugin's stdout ends or breaks a rule.
pub(crate) async fn read_frames<R: AsyncBufRead + Unpin>(
    connection: Arc<Connection>,
    mut reader: LineReader<R>,
) {
    let fatal = loop {
        let line = match reader.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => {
                break Fatal {
                    code: ErrorCode::Runtime,
                    message: "the plugin closed its stdout (it exited or crashed)".into(),
                    request_id: None,
                }
            }
            Err(LineError::TooLarge { limit }) => {
                break Fatal {
                    code: ErrorCode::FrameTooLarge,
                    message: format!("the plugin sent a line longer than {limit} bytes"),
                    request_id: None,
                }
            }
            Err(LineError::Io(err)) => {
                break Fatal {
                    code: ErrorCode::Runtime,
                    message: format!("cannot read the plugin's stdout: {err}"),
                    request_id: None,
                }
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Frame>(line) {
            Ok(Frame::Response(response)) => {
                if let Err(fatal) = connection.route_response(response) {
                    break fatal;
                }
            }
            Ok(Frame::Event(event)) => connection.route_event(event),
            Ok(other) => {
                break Fatal {
                    code: ErrorCode::UnexpectedFrame,
                    message: format!(
                        "the plugin sent a {} frame after its handshake",
                        other.type_name()
                    ),
                    request_id: None,
                }
            }
            Err(_) => break classify_bad_line(line),
        }
    };
    connection.fail(fatal);
}

fn classify_bad_line(line: &[u8]) -> Fatal {
    let text = String::from_utf8_lossy(line);
    let shown: String = text.chars().take(120).collect();
    match decode_frame(&text) {
        Err(FrameError::InvalidJson(_)) => Fatal {
            code: ErrorCode::StdoutContamination,
            message: format!("the plugin wrote a non-frame line to stdout: {shown:?}"),
            request_id: None,
        },
        Err(err) => Fatal {
            code: ErrorCode::UnexpectedFrame,
            message: format!("{err}: {shown:?}"),
            request_id: None,
        },
        Ok(_) => Fatal {
            code: ErrorCode::UnexpectedFrame,
            message: format!("unreadable frame: {shown:?}"),
            request_id: None,
        },
    }
}

/// The buffered events of one stream.
pub(crate) struct StreamState {
    queue: Mutex<StreamQueue>,
    ready: Notify,
    capacity: usize,
}

struct StreamQueue {
    events: VecDeque<Event>,
    dropped: u64,
    ended: bool,
    failed: Option<Fatal>,
}

impl StreamState {
    fn new(capacity: usize, failed: Option<Fatal>) -> StreamState {
        StreamState {
            queue: Mutex::new(StreamQueue {
                events: VecDeque::new(),
                dropped: 0,
                ended: false,
                failed,
            }),
            ready: Notify::new(),
            capacity,
        }
    }

    fn push(&self, event: Event) {
        {
            let mut queue = lock(&self.queue);
            if queue.ended {
                tracing::debug!(stream_id = %event.stream_id, "dropped an event after end");
                return;
            }
            if event.is_end() {
                queue.ended = true;
            }
            // `end` is always kept so the consumer learns the stream is over.
            if queue.events.len() < self.capacity || event.is_end() {
                queue.events.push_back(event);
            } else {
                queue.dropped += 1;
            }
        }
        self.ready.notify_one();
    }

    fn fail(&self, fatal: &Fatal) {
        lock(&self.queue).failed = Some(fatal.clone());
        self.ready.notify_one();
    }

    /// The next event; `Err` when the connection died first; `Ok(None)`
    /// after `end` was delivered.
    pub async fn next(&self) -> Result<Option<Event>, Fatal> {
        loop {
            {
                let mut queue = lock(&self.queue);
                if let Some(event) = queue.events.pop_front() {
                    return Ok(Some(event));
                }
                if queue.ended {
                    return Ok(None);
                }
                if let Some(fatal) = &queue.failed {
                    return Err(fatal.clone());
                }
            }
            self.ready.notified().await;
        }
    }

    pub fn dropped(&self) -> u64 {
        lock(&self.queue).dropped
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of plain
    // maps; the data is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
