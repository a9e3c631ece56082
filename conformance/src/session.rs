//! One plugin process under observation: every stdout line is read through
//! here and classified, so `stdout.*` and `response.*` verdicts cover the
//! whole run, not just the moments a check was looking.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use devctl_contract::protocol::{decode_frame, Event, Frame, Handshake, Request, Response};
use devctl_sdk::host::raw::{RawLine, RawSession};
use devctl_sdk::host::{descendants, is_alive, PluginSpec, ProcessId};

/// Longest stdout line the suite accepts (the host default).
const MAX_LINE: usize = 64 * 1024 * 1024;

/// What a plugin wrote to stdout, sorted.
#[derive(Default)]
pub(crate) struct Observed {
    /// Non-frame lines after the handshake (the first few, for messages).
    pub non_frames: Vec<String>,
    pub non_frame_count: usize,
    pub oversized: usize,
    /// Responses by request id, in arrival order.
    pub responses: HashMap<String, Vec<Response>>,
    /// Responses whose id was never sent.
    pub unsolicited: Vec<String>,
    /// Events by stream id, with arrival time.
    pub events: HashMap<String, Vec<(Event, Instant)>>,
    /// Handshake or request frames after the first handshake.
    pub unexpected: Vec<String>,
    pub closed: bool,
}

pub(crate) enum HandshakeOutcome {
    /// The handshake, the time it took, and the lines that came before it.
    Received {
        handshake: Handshake,
        after: Duration,
        junk_before: Vec<String>,
    },
    /// Nothing usable within the wait.
    Missing {
        reason: String,
        junk_before: Vec<String>,
    },
}

pub(crate) struct Session {
    pub raw: RawSession,
    pub observed: Observed,
    sent: HashSet<String>,
}

impl Session {
    pub fn start(spec: &PluginSpec, cwd: &Path) -> std::io::Result<Session> {
        Ok(Session {
            raw: RawSession::start(spec, Some(cwd), MAX_LINE)?,
            observed: Observed::default(),
            sent: HashSet::new(),
        })
    }

    /// Reads until the first handshake frame or `wait` passes.
    pub async fn handshake(&mut self, started: Instant, wait: Duration) -> HandshakeOutcome {
        let deadline = started + wait;
        let mut junk = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.raw.next_line(left).await {
                RawLine::Line(line) if line.trim().is_empty() => continue,
                RawLine::Line(line) => match decode_frame(&line) {
                    Ok(Frame::Handshake(handshake)) => {
                        return HandshakeOutcome::Received {
                            handshake,
                            after: started.elapsed(),
                            junk_before: junk,
                        }
                    }
                    _ => junk.push(line),
                },
                RawLine::TooLarge => junk.push("(a line longer than 64 MiB)".into()),
                RawLine::Closed => {
                    self.observed.closed = true;
                    return HandshakeOutcome::Missing {
                        reason: "the plugin closed stdout without a handshake".into(),
                        junk_before: junk,
                    };
                }
                RawLine::TimedOut => {
                    return HandshakeOutcome::Missing {
                        reason: format!("no handshake within {} ms", wait.as_millis()),
                        junk_before: junk,
                    }
                }
            }
        }
    }

    pub async fn send(&mut self, request: &Request) -> bool {
        self.sent.insert(request.request_id.clone());
        self.raw
            .send_frame(&Frame::Request(request.clone()))
            .await
            .is_ok()
    }

    /// Sends `requests` in one write (see `RawSession::send_frames`).
    pub async fn send_burst(&mut self, requests: &[Request]) -> bool {
        let frames: Vec<Frame> = requests
            .iter()
            .map(|request| {
                self.sent.insert(request.request_id.clone());
                Frame::Request(request.clone())
            })
            .collect();
        self.raw.send_frames(&frames).await.is_ok()
    }

    pub async fn send_raw(&mut self, line: &str) -> bool {
        self.raw.send_line(line).await.is_ok()
    }

    /// Reads frames until `done` holds, stdout closes, or `deadline` passes.
    /// Returns whether `done` held.
    pub async fn pump_until(
        &mut self,
        deadline: Instant,
        done: impl Fn(&Observed) -> bool,
    ) -> bool {
        loop {
            if done(&self.observed) {
                return true;
            }
            if self.observed.closed {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.raw.next_line(left).await {
                RawLine::Line(line) => self.record(line),
                RawLine::TooLarge => self.observed.oversized += 1,
                RawLine::Closed => self.observed.closed = true,
                RawLine::TimedOut => return done(&self.observed),
            }
        }
    }

    /// Reads whatever arrives within `window` (an observation window, e.g.
    /// to see whether anything follows a stream's end).
    pub async fn observe_for(&mut self, window: Duration) {
        self.pump_until(Instant::now() + window, |_| false).await;
    }

    /// Sends a request and waits for its first response.
    pub async fn call(
        &mut self,
        request: &Request,
        wait: Duration,
    ) -> Option<(Response, Duration)> {
        let started = Instant::now();
        if !self.send(request).await {
            self.observed.closed = true;
        }
        let id = request.request_id.clone();
        self.pump_until(started + wait, |seen| seen.responses.contains_key(&id))
            .await;
        self.first_response(&id)
            .map(|response| (response, started.elapsed()))
    }

    /// Ends the session for good: closes stdin, gives the plugin `grace` to
    /// exit, then kills its group and every descendant seen before, even
    /// those that left the group. Nothing the suite started survives it.
    pub async fn finish(mut self, grace: Duration) {
        let tracked = descendants(self.raw.pid());
        self.raw.close_stdin();
        self.raw.wait_exit(grace).await;
        self.raw.kill(grace).await;
        kill_all(&tracked);
    }

    pub fn first_response(&self, id: &str) -> Option<Response> {
        self.observed
            .responses
            .get(id)
            .and_then(|list| list.first())
            .cloned()
    }

    fn record(&mut self, line: String) {
        if line.trim().is_empty() {
            return;
        }
        match decode_frame(&line) {
            Ok(Frame::Response(response)) => {
                if !self.sent.contains(&response.request_id) {
                    self.observed.unsolicited.push(response.request_id.clone());
                }
                self.observed
                    .responses
                    .entry(response.request_id.clone())
                    .or_default()
                    .push(response);
            }
            Ok(Frame::Event(event)) => {
                self.observed
                    .events
                    .entry(event.stream_id.clone())
                    .or_default()
                    .push((event, Instant::now()));
            }
            Ok(other) => self.observed.unexpected.push(other.type_name().to_owned()),
            Err(_) => {
                self.observed.non_frame_count += 1;
                if self.observed.non_frames.len() < 3 {
                    self.observed
                        .non_frames
                        .push(line.chars().take(100).collect());
                }
            }
        }
    }
}

/// SIGKILLs each of `processes` that is still that same process.
pub(crate) fn kill_all(processes: &[ProcessId]) {
    for process in processes.iter().filter(|p| is_alive(**p)) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(process.pid).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
}
