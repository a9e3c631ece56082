//! One plugin process under observation, from spawn to the last process it
//! started.
//!
//! Every stdout line goes through [`Observed`], so mistakes are seen
//! whenever they happen, not only while a check is looking. Calls return
//! as soon as the answer is known: the response with the request's id, an
//! answer carrying another id while nothing else is outstanding (a lying
//! plugin is not waited for), the end of stdout, or the deadline.
//! [`Session::close`] ends the process the way a host does and says how it
//! went; every process the plugin started (its group, its descendants, and
//! those that left both, found by a lineage mark) is stopped, even when
//! the session is dropped half-way (Ctrl-C).

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use devctl_contract::limits::MAX_FRAME_BYTES;
use devctl_contract::protocol::{decode_frame, Frame, Handshake, Request, Response};
use devctl_sdk::host::raw::{RawLine, RawSession};
use devctl_sdk::host::{
    liveness, process_id, reap_adopted, signal_process, Lineage, Liveness, PluginSpec, ProcessId,
    ProcessTable, Signal,
};

use crate::observe::{clip, Line, Observed, Sample};

/// How long a write may wait for the plugin to read its stdin.
const WRITE_LIMIT: Duration = Duration::from_secs(2);

/// How a call ended.
pub(crate) enum Answer {
    Answered {
        response: Response,
        took: Duration,
    },
    /// An answer arrived that hosts could not match to the request: it
    /// carried another id while nothing else was outstanding (`id`), or it
    /// was not a valid response frame (`id` is `None`). `why` says which,
    /// as a phrase ("answered with request_id \"x\" … (see …)").
    Unmatched {
        id: Option<String>,
        why: String,
    },
    Silent {
        waited: Duration,
    },
    /// stdout closed: the plugin exited or closed it. Says how.
    Ended {
        how: String,
    },
}

pub(crate) enum HandshakeOutcome {
    Received {
        handshake: Handshake,
        after: Duration,
        junk_before: Sample,
    },
    Missing {
        reason: String,
        junk_before: Sample,
    },
    /// A line that is meant as the handshake (`"type": "handshake"`) but
    /// does not decode as one.
    Malformed {
        error: String,
        after: Duration,
        junk_before: Sample,
    },
}

/// Whether a line is a JSON object whose `type` is `"handshake"`.
fn meant_as_handshake(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line)
        .is_ok_and(|value| value.get("type").and_then(|t| t.as_str()) == Some("handshake"))
}

/// How the plugin process ended when the session closed.
pub(crate) enum Exit {
    /// It exited by itself after stdin closed.
    OnEof { status: ExitStatus, after: Duration },
    /// Still running after the grace; the suite stopped it.
    IgnoredEof { waited: Duration },
    /// A request was never answered; the suite stopped it without waiting.
    Wedged,
    /// It had already ended before the session closed.
    Gone { how: String },
}

/// What closing a session showed.
pub(crate) struct Ending {
    pub exit: Exit,
    /// After an exit on EOF: the processes it left running (`Err` when
    /// `/proc` could not be read). `None` when not judged.
    pub leftovers: Option<Result<Vec<String>, String>>,
    /// Time the session spent waiting for what never came.
    pub wasted: Duration,
}

/// What the plugin may send that is not an answer to a request with an id:
/// the answers to probes without a (valid) id.
#[derive(Default)]
struct Tolerated {
    anonymous: usize,
    ids: HashSet<String>,
}

pub(crate) struct Session {
    raw: RawSession,
    guard: LineageGuard,
    pub seen: Observed,
    pub misaddressed: Sample,
    pub duplicates: Sample,
    sent: HashSet<String>,
    answered: HashSet<String>,
    /// Sent, unanswered, still awaited.
    waiting: HashSet<String>,
    /// Sent, unanswered, given up on: the plugin is wedged or ignoring them.
    abandoned: HashSet<String>,
    tolerated: Tolerated,
    /// What was sent last, for messages ("after a build.run request").
    last_sent: String,
    closed: bool,
    /// Time spent waiting for what never came (answers, an exit on EOF).
    pub wasted: Duration,
    /// A write did not go through in time: the plugin does not read stdin.
    stuck: bool,
}

impl Session {
    /// Spawns the plugin in `cwd`, marked with a fresh lineage.
    pub fn start(spec: &PluginSpec, cwd: &Path) -> std::io::Result<Session> {
        let lineage = Lineage::new();
        let mut spec = spec.clone();
        let (var, value) = lineage.env();
        spec.env.insert(var.to_owned(), value.to_owned());
        let raw = RawSession::start(&spec, Some(cwd), MAX_FRAME_BYTES)?;
        register_root(raw.pid(), true);
        // Start time 0 if it is already gone: then every marked process is
        // considered, which only costs time.
        let root = process_id(raw.pid()).unwrap_or(ProcessId {
            pid: raw.pid(),
            start_time: 0,
        });
        Ok(Session {
            raw,
            guard: LineageGuard {
                lineage,
                root,
                armed: true,
            },
            seen: Observed::default(),
            misaddressed: Sample::default(),
            duplicates: Sample::default(),
            sent: HashSet::new(),
            answered: HashSet::new(),
            waiting: HashSet::new(),
            abandoned: HashSet::new(),
            tolerated: Tolerated::default(),
            last_sent: "the start".into(),
            closed: false,
            wasted: Duration::ZERO,
            stuck: false,
        })
    }

    /// Reads until the first handshake frame or `wait` (from `started`).
    pub async fn handshake(&mut self, started: Instant, wait: Duration) -> HandshakeOutcome {
        let deadline = started + wait;
        let mut junk = Sample::default();
        loop {
            // Checked here too: a plugin that writes without pause would
            // otherwise never let the read time out.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.wasted += wait;
                return HandshakeOutcome::Missing {
                    reason: format!("no handshake within {} ms", wait.as_millis()),
                    junk_before: junk,
                };
            }
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
                    Err(error) if meant_as_handshake(&line) => {
                        return HandshakeOutcome::Malformed {
                            error: error.to_string(),
                            after: started.elapsed(),
                            junk_before: junk,
                        }
                    }
                    _ => junk.add(|| line),
                },
                RawLine::TooLarge => junk.add(|| "(a line longer than 64 MiB)".into()),
                RawLine::Closed => {
                    self.closed = true;
                    let how = self.how_it_ended().await;
                    return HandshakeOutcome::Missing {
                        reason: format!("{how} without a handshake"),
                        junk_before: junk,
                    };
                }
                RawLine::TimedOut => {
                    self.wasted += wait;
                    return HandshakeOutcome::Missing {
                        reason: format!("no handshake within {} ms", wait.as_millis()),
                        junk_before: junk,
                    };
                }
            }
        }
    }

    pub async fn send(&mut self, request: &Request) -> bool {
        self.sent.insert(request.request_id.clone());
        self.waiting.insert(request.request_id.clone());
        self.last_sent = format!("a {} request", request.op);
        let frame = Frame::Request(request.clone());
        let outcome = tokio::time::timeout(WRITE_LIMIT, self.raw.send_frame(&frame)).await;
        self.written(outcome)
    }

    /// Sends `requests` in one write (several requests per read on the
    /// plugin's side).
    pub async fn send_burst(&mut self, requests: &[Request]) -> bool {
        let frames: Vec<Frame> = requests
            .iter()
            .map(|request| {
                self.sent.insert(request.request_id.clone());
                self.waiting.insert(request.request_id.clone());
                Frame::Request(request.clone())
            })
            .collect();
        self.last_sent = format!("{} pipelined requests", requests.len());
        let outcome = tokio::time::timeout(WRITE_LIMIT, self.raw.send_frames(&frames)).await;
        self.written(outcome)
    }

    /// Sends a probe line that is not a proper request. `answers` says what
    /// the plugin may answer it with: anonymous responses, and responses
    /// carrying the ids in `ids`; such answers count against nothing.
    pub async fn send_probe(
        &mut self,
        line: &str,
        what: &str,
        anonymous: usize,
        ids: &[&str],
    ) -> bool {
        self.tolerated.anonymous += anonymous;
        self.tolerated
            .ids
            .extend(ids.iter().map(|id| (*id).to_owned()));
        self.last_sent = what.to_owned();
        let outcome = tokio::time::timeout(WRITE_LIMIT, self.raw.send_line(line)).await;
        self.written(outcome)
    }

    /// Whether a write went through. A plugin that does not read its stdin
    /// (the pipe stays full) makes the session stuck, not the suite.
    fn written(
        &mut self,
        outcome: Result<std::io::Result<()>, tokio::time::error::Elapsed>,
    ) -> bool {
        match outcome {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                self.closed = true;
                false
            }
            Err(_) => {
                self.stuck = true;
                self.wasted += WRITE_LIMIT;
                false
            }
        }
    }

    /// Sends `request` and waits at most `wait` for how it ends.
    pub async fn call(&mut self, request: &Request, wait: Duration) -> Answer {
        let started = Instant::now();
        let id = request.request_id.clone();
        if !self.send(request).await {
            if self.stuck {
                self.abandon(&id);
                return Answer::Silent {
                    waited: WRITE_LIMIT,
                };
            }
            return Answer::Ended {
                how: self.how_it_ended().await,
            };
        }
        let deadline = started + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.abandon(&id);
                self.wasted += wait;
                return Answer::Silent { waited: wait };
            }
            match self.raw.next_line(left).await {
                RawLine::Line(line) => match self.take(&line) {
                    Arrival::Answer(response) if response.request_id == id => {
                        return Answer::Answered {
                            response: *response,
                            took: started.elapsed(),
                        }
                    }
                    Arrival::Misaddressed(other) if self.waiting.len() == 1 => {
                        self.abandon(&id);
                        return Answer::Unmatched {
                            why: format!(
                                "answered with request_id {other:?} instead of {id:?}, which hosts cannot match (see response.id-echoed)"
                            ),
                            id: Some(other),
                        };
                    }
                    Arrival::Malformed {
                        id: answered,
                        reason,
                    } if answered == id => {
                        self.abandon(&id);
                        return Answer::Unmatched {
                            id: None,
                            why: format!(
                                "answered with a response frame hosts cannot read ({reason}; see stdout.frames-only)"
                            ),
                        };
                    }
                    _ => {}
                },
                RawLine::TooLarge => self.seen.oversized += 1,
                RawLine::Closed => {
                    self.closed = true;
                    return Answer::Ended {
                        how: self.how_it_ended().await,
                    };
                }
                RawLine::TimedOut => {
                    self.abandon(&id);
                    self.wasted += wait;
                    return Answer::Silent { waited: wait };
                }
            }
        }
    }

    /// Reads until `done` holds, stdout closes, or `deadline` passes.
    /// Returns whether `done` held.
    pub async fn pump_until(&mut self, deadline: Instant, done: impl Fn(&Session) -> bool) -> bool {
        let started = Instant::now();
        let held = self.pump(deadline, done).await;
        if !held {
            self.wasted += started.elapsed();
        }
        held
    }

    async fn pump(&mut self, deadline: Instant, done: impl Fn(&Session) -> bool) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.closed || left.is_zero() {
                return false;
            }
            match self.raw.next_line(left).await {
                RawLine::Line(line) => {
                    self.take(&line);
                }
                RawLine::TooLarge => self.seen.oversized += 1,
                RawLine::Closed => self.closed = true,
                RawLine::TimedOut => return done(self),
            }
        }
    }

    /// Reads whatever arrives within `window` (time well spent: not
    /// counted as waiting for what never came).
    pub async fn observe_for(&mut self, window: Duration) {
        self.pump(Instant::now() + window, |_| false).await;
    }

    pub fn is_answered(&self, id: &str) -> bool {
        self.answered.contains(id)
    }

    /// Gives up on the requests still awaited (after a deadline).
    pub fn abandon_all(&mut self) {
        self.abandoned.extend(self.waiting.drain());
    }

    pub fn last_sent(&self) -> &str {
        &self.last_sent
    }

    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Closes stdin for good (end of input) without waiting.
    pub fn close_stdin(&mut self) {
        self.raw.close_stdin();
    }

    /// Ends the session the way a host does: a wedged plugin is stopped at
    /// once; otherwise stdin closes and the plugin gets `eof_grace` to
    /// exit. After an exit on EOF, whatever it started has `leftover_wait`
    /// to go away before it counts as left behind. Then everything of the
    /// lineage is stopped.
    pub async fn close(mut self, eof_grace: Duration, leftover_wait: Duration) -> Ending {
        let known = self.guard.members().unwrap_or_default();
        let exit = if let Some(status) = self.raw.wait_exit(Duration::ZERO).await {
            Exit::Gone {
                how: describe_status(status),
            }
        } else if self.stuck || !self.abandoned.is_empty() || !self.waiting.is_empty() {
            Exit::Wedged
        } else {
            self.raw.close_stdin();
            let started = Instant::now();
            let seen = &mut self.seen;
            let exited = self
                .raw
                .drain_until_exit(eof_grace, |line| match line {
                    RawLine::Line(line) => {
                        seen.classify(&line);
                    }
                    RawLine::TooLarge => seen.oversized += 1,
                    RawLine::Closed | RawLine::TimedOut => {}
                })
                .await;
            if exited.is_none() {
                self.wasted += eof_grace;
            }
            match exited {
                Some(status) => Exit::OnEof {
                    status,
                    after: started.elapsed(),
                },
                None => Exit::IgnoredEof { waited: eof_grace },
            }
        };
        let leftovers = match exit {
            Exit::OnEof { .. } => {
                let started = Instant::now();
                let survivors = self.guard.survivors(&known, leftover_wait).await;
                if survivors.as_ref().is_ok_and(|left| !left.is_empty()) {
                    self.wasted += started.elapsed();
                }
                Some(survivors)
            }
            _ => None,
        };
        // Outside the group first: they may hold the stderr pipe open.
        self.guard.stop(&known);
        let _ = self.raw.kill(Duration::from_millis(100)).await;
        self.guard.stop(&known);
        self.guard.armed = false;
        Ending {
            exit,
            leftovers,
            wasted: self.wasted,
        }
    }

    /// Stops a session that was never used (a spare), recording nothing.
    pub async fn discard(self) {
        self.close(Duration::ZERO, Duration::ZERO).await;
    }

    fn abandon(&mut self, id: &str) {
        if self.waiting.remove(id) {
            self.abandoned.insert(id.to_owned());
        }
    }

    fn take(&mut self, line: &str) -> Arrival {
        match self.seen.classify(line) {
            Line::Response(response) => {
                let id = response.request_id.clone();
                if self.answered.contains(&id) {
                    self.duplicates.add(|| id);
                    Arrival::Other
                } else if self.sent.contains(&id) {
                    self.answered.insert(id.clone());
                    self.waiting.remove(&id);
                    self.abandoned.remove(&id);
                    Arrival::Answer(response)
                } else if self.tolerated.ids.remove(&id) {
                    Arrival::Other
                } else {
                    self.misaddressed.add(|| id.clone());
                    Arrival::Misaddressed(id)
                }
            }
            Line::Anonymous if self.tolerated.anonymous > 0 => {
                self.tolerated.anonymous -= 1;
                Arrival::Other
            }
            Line::Anonymous => {
                self.misaddressed.add(|| "\"\" (no id)".into());
                Arrival::Misaddressed(String::new())
            }
            Line::MalformedResponse { id, reason } => Arrival::Malformed { id, reason },
            _ => Arrival::Other,
        }
    }

    /// "exited with status 1", "was killed by signal 9", or "closed its
    /// stdout", with the last stderr line when there is one.
    async fn how_it_ended(&mut self) -> String {
        let how = match self.raw.wait_exit(Duration::from_millis(200)).await {
            Some(status) => describe_status(status),
            None => "closed its stdout".to_owned(),
        };
        match self.raw.stderr_lines().last() {
            Some(line) => format!("{how} (its last stderr line: {:?})", clip(line, 120)),
            None => how,
        }
    }

    pub fn stderr_tail(&self) -> Option<String> {
        self.raw.stderr_lines().last().map(|line| clip(line, 120))
    }
}

enum Arrival {
    Answer(Box<Response>),
    Misaddressed(String),
    Malformed { id: String, reason: String },
    Other,
}

pub(crate) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended".to_owned(),
    }
}

/// The plugin processes this suite started and still runs (spares too). Any
/// other child of the suite is a plugin's descendant that left its tree
/// and was adopted (the suite is a child subreaper): it is ours even when
/// it cleared its environment and with it the lineage mark.
static ROOTS: std::sync::Mutex<std::collections::BTreeSet<u32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn register_root(pid: u32, running: bool) {
    if let Ok(mut roots) = ROOTS.lock() {
        if running {
            roots.insert(pid);
        } else {
            roots.remove(&pid);
        }
    }
}

/// Set by a process that exists only to run suites (the command line):
/// then every child it did not start as a plugin is a plugin's escaped
/// descendant. A library user's process may have children of its own, so
/// it is off by default.
static CLAIM_ADOPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Treats every child of this process that is not a plugin the suite
/// started as a plugin's escaped descendant (found and stopped even when
/// it cleared its environment). Call it only in a process that starts no
/// other children, as `devctl-conformance` does.
pub fn claim_adopted_children() {
    CLAIM_ADOPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Processes adopted by the suite that started since `since` (and their
/// descendants): escaped from a plugin, whichever. Those that carry a
/// lineage mark belong to that lineage and are left to it.
fn adopted_strays(since: u64) -> Vec<ProcessId> {
    if !CLAIM_ADOPTED.load(std::sync::atomic::Ordering::SeqCst) {
        return Vec::new();
    }
    let Ok(table) = ProcessTable::read() else {
        return Vec::new();
    };
    let roots = ROOTS.lock().map(|r| r.clone()).unwrap_or_default();
    let mut found = Vec::new();
    for child in table.children(std::process::id()) {
        if roots.contains(&child.pid) || child.start_time < since || has_lineage(child.pid) {
            continue;
        }
        found.push(child);
        found.extend(table.descendants(child.pid));
    }
    found
}

/// Whether a process carries any lineage mark in its environment.
fn has_lineage(pid: u32) -> bool {
    let needle = format!("{}=", Lineage::VAR);
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
        environ
            .split(|b| *b == 0)
            .any(|entry| entry.starts_with(needle.as_bytes()))
    })
}

/// Stops every process of a lineage: on close, and on drop (an interrupted
/// run) if close never happened.
struct LineageGuard {
    lineage: Lineage,
    root: ProcessId,
    armed: bool,
}

impl LineageGuard {
    fn members(&self) -> std::io::Result<Vec<ProcessId>> {
        let mut found = self.lineage.members(self.root)?;
        for stray in adopted_strays(self.root.start_time) {
            if !found.contains(&stray) {
                found.push(stray);
            }
        }
        Ok(found)
    }

    /// Processes of the lineage (or of `known`) still alive after `wait`.
    async fn survivors(&self, known: &[ProcessId], wait: Duration) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(2);
        loop {
            let mut alive = self.members().map_err(|err| err.to_string())?;
            for process in known {
                match liveness(*process) {
                    Liveness::Alive if !alive.contains(process) => alive.push(*process),
                    Liveness::Unknown => {
                        return Err(format!(
                            "cannot tell whether pid {} still runs",
                            process.pid
                        ))
                    }
                    _ => {}
                }
            }
            if alive.is_empty() {
                return Ok(Vec::new());
            }
            if Instant::now() >= deadline {
                return Ok(alive.iter().map(|p| describe_process(p.pid)).collect());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// SIGKILLs every member (and `known`), then reaps the ones this
    /// process adopted, waiting at most a moment.
    fn stop(&self, known: &[ProcessId]) {
        let mut targets = self.members().unwrap_or_default();
        targets.extend(
            known
                .iter()
                .filter(|p| !targets.contains(p))
                .copied()
                .collect::<Vec<_>>(),
        );
        for process in &targets {
            signal_process(*process, Signal::SIGKILL);
        }
        register_root(self.root.pid, false);
        let deadline = Instant::now() + Duration::from_millis(300);
        loop {
            for process in &targets {
                reap_adopted(*process);
            }
            let lingering = targets.iter().any(|p| {
                std::path::Path::new(&format!("/proc/{}", p.pid)).exists()
                    && liveness(*p) != Liveness::Gone
            });
            if !lingering || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for LineageGuard {
    fn drop(&mut self) {
        if self.armed {
            self.stop(&[]);
        }
    }
}

/// `pid 123 (sleep 300)`.
pub(crate) fn describe_process(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .replace('\0', " ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default();
    format!("pid {pid} ({})", clip(&cmdline, 80))
}
