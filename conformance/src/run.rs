//! One run of the suite: the plugin command, the scratch repo, the clock,
//! what earlier families learned about the plugin, the verdicts so far, and
//! a record of every session (what it saw on stdout, how it ended, what it
//! changed in the repo) for the verdicts that cover the whole run.
//!
//! Families open sessions through [`Run::open`] and end them through
//! [`Run::close`], which is where those records are taken.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

use devctl_contract::protocol::{Handshake, Request, RequestContext};
use devctl_sdk::host::PluginSpec;
use serde_json::Value;

use crate::catalogue::{self, family_of};
use crate::clock::{base, Clock};
use crate::observe::Sample;
use crate::report::{CheckResult, Severity, Status};
use crate::scratch::{Scratch, Snapshot};
use crate::session::{Ending, Exit, HandshakeOutcome, Session};

/// Which checks the user asked for (`--only`, `--skip`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Selection {
    pub only: Vec<String>,
    pub skip: Vec<String>,
}

impl Selection {
    fn matches(selector: &str, id: &str) -> bool {
        let family = family_of(id);
        selector == id || selector == family || selector.strip_suffix(".*") == Some(family)
    }

    /// Whether the check `id` is reported.
    pub fn reports(&self, id: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|s| Selection::matches(s, id)))
            && !self.skip.iter().any(|s| Selection::matches(s, id))
    }

    /// Whether any check of `family` can be reported, so its work is done.
    pub fn wants(&self, family: &str) -> bool {
        let whole = |s: &String| s == family || s.strip_suffix(".*") == Some(family);
        (self.only.is_empty() || self.only.iter().any(|s| family_of(s) == family))
            && !self.skip.iter().any(whole)
    }

    pub fn wants_any(&self, families: &[&str]) -> bool {
        families.iter().any(|f| self.wants(f))
    }
}

/// A declared op's answer to a minimal request, from the `timeout` family.
#[derive(Debug, Clone)]
pub(crate) struct OpAnswer {
    pub ok: bool,
    /// Digest of the normalised output (or of the error code).
    pub digest: u64,
    /// A short rendering, for messages.
    pub preview: String,
    /// `ok:true`, or `ok:false with E_CODE`.
    pub summary: String,
    pub took: Duration,
    pub stream_id: Option<String>,
}

/// What earlier families learned that later ones need.
#[derive(Default)]
pub(crate) struct Learned {
    pub handshake: Option<Handshake>,
    /// How fast the unknown op was refused (with the right id).
    pub unknown_op: Option<Duration>,
    /// The id the unknown op was answered with instead of its own.
    pub unknown_op_misaddressed: Option<String>,
    /// Ops that answered (with the right id), by op.
    pub answers: BTreeMap<String, OpAnswer>,
    /// Ops without a usable answer, and why ("see timeout.x").
    pub unusable: BTreeMap<String, String>,
    /// Ops whose second answer equalled the first.
    pub stable: BTreeSet<String>,
    /// Some answer carried its request's id.
    pub matched_any: bool,
    /// The plugin stayed up after stdin closed.
    pub ignores_eof: bool,
    /// Some session's plugin exited and left processes running.
    pub leaves_processes: bool,
}

impl Learned {
    pub fn capabilities_ops(&self) -> Vec<String> {
        let mut ops = Vec::new();
        for op in self.handshake.iter().flat_map(|h| &h.capabilities.ops) {
            if !ops.contains(op) {
                ops.push(op.clone());
            }
        }
        ops
    }

    pub fn stream_ops(&self) -> Vec<String> {
        self.answers
            .iter()
            .filter(|(_, answer)| answer.stream_id.is_some())
            .map(|(op, _)| op.clone())
            .collect()
    }
}

/// What one session showed, kept for the run-wide verdicts.
pub(crate) struct SessionRecord {
    pub family: &'static str,
    pub non_frames: Sample,
    pub oversized: u64,
    pub misaddressed: Sample,
    pub duplicates: Sample,
    pub unexpected: Sample,
    pub stray_events: Sample,
    pub leftovers: Option<Result<Vec<String>, String>>,
    pub repo_changes: Vec<String>,
}

pub(crate) struct Run {
    pub spec: PluginSpec,
    pub clock: Clock,
    pub scratch: Scratch,
    pub has_repo: bool,
    pub probe_commands: bool,
    pub selection: Selection,
    pub checks: Vec<CheckResult>,
    pub learned: Learned,
    pub sessions: Vec<SessionRecord>,
    snapshot: Snapshot,
    /// Plugin processes started ahead for the next families.
    spares: VecDeque<Session>,
    /// A spare failed to start beside a running instance: no more spares.
    sequential: bool,
}

/// How many plugin processes are started ahead.
const SPARES: usize = 2;

impl Run {
    pub fn new(
        spec: PluginSpec,
        clock: Clock,
        scratch: Scratch,
        has_repo: bool,
        probe_commands: bool,
        selection: Selection,
    ) -> Run {
        let snapshot = scratch.snapshot();
        Run {
            spec,
            clock,
            scratch,
            has_repo,
            probe_commands,
            selection,
            checks: Vec::new(),
            learned: Learned::default(),
            sessions: Vec::new(),
            snapshot,
            spares: VecDeque::new(),
            sequential: false,
        }
    }

    fn record(
        &mut self,
        id: &str,
        status: Status,
        took: Duration,
        message: String,
        fix: Option<String>,
    ) {
        let severity = catalogue::info(id).map_or(Severity::Required, |info| info.severity);
        self.checks.push(CheckResult {
            id: id.to_owned(),
            family: family_of(id).to_owned(),
            severity,
            status,
            duration_ms: millis(took),
            message,
            fix,
        });
    }

    pub fn pass(&mut self, id: &str, took: Duration, message: impl Into<String>) {
        self.record(id, Status::Pass, took, message.into(), None);
    }

    /// A failure: what happened, and what to change (a sentence).
    pub fn fail(
        &mut self,
        id: &str,
        took: Duration,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.record(id, Status::Fail, took, message.into(), Some(fix.into()));
    }

    /// Could not be judged, and why.
    pub fn skip(&mut self, id: &str, reason: impl Into<String>) {
        self.record(id, Status::Skip, Duration::ZERO, reason.into(), None);
    }

    /// A request as every probe sends it: dry run, the scratch repo, the
    /// op timeout as its deadline.
    pub fn request(&self, id: &str, op: &str, input: Value) -> Request {
        Request {
            request_id: id.to_owned(),
            op: op.to_owned(),
            ctx: self.context(),
            input,
        }
    }

    pub fn context(&self) -> RequestContext {
        RequestContext {
            repo_root: Some(self.scratch.root.display().to_string()),
            cwd: None,
            deadline_ms: Some(millis(self.clock.op())),
            dry_run: true,
        }
    }

    /// Starts a session for `family` (in the scratch repo, or in `cwd`)
    /// and waits for its handshake. `Err` says, as a sentence fragment, why
    /// the family cannot run.
    ///
    /// The next processes are started ahead, while this family runs (a
    /// Python plugin can take a fifth of a second to start): at most
    /// [`SPARES`] of them, in the scratch repo, idle until taken. A spare
    /// that gives no handshake (say, a port the running one holds) is
    /// replaced by a fresh start (and no spare is started again), so a
    /// plugin that cannot run twice at once is judged the same.
    pub async fn open(
        &mut self,
        family: &'static str,
        cwd: Option<&Path>,
    ) -> Result<Session, String> {
        let dir = cwd.unwrap_or(&self.scratch.root).to_path_buf();
        // Spares run in the scratch repo: elsewhere needs a fresh start.
        let mut spare = match cwd {
            None => self.spares.pop_front(),
            Some(_) => None,
        };
        loop {
            if self.clock.spent() {
                return Err(self.budget_spent());
            }
            let was_spare = spare.is_some();
            let mut session = match spare.take() {
                Some(session) => session,
                None => Session::start(&self.spec, &dir).map_err(|err| {
                    format!("the plugin could not be started again for the {family} checks: {err}")
                })?,
            };
            // As patient as the first session: a late handshake is judged there.
            let wait = self
                .clock
                .capped(self.clock.handshake().mul_f64(base::LATE_HANDSHAKE));
            let asked = Instant::now();
            match session.handshake(asked, wait).await {
                HandshakeOutcome::Received { .. } => {
                    self.start_spare();
                    return Ok(session);
                }
                HandshakeOutcome::Missing { .. } if was_spare => {
                    // It may not run beside another instance of itself (a
                    // port, a lock): no more spares, and none left running.
                    self.clock.waste(asked.elapsed());
                    session.discard().await;
                    self.discard_spare().await;
                    self.sequential = true;
                }
                HandshakeOutcome::Missing { reason, .. } => {
                    self.close_with_grace(family, session, Duration::ZERO).await;
                    return Err(format!(
                        "started again for the {family} checks, the plugin gave no handshake: {reason}"
                    ));
                }
                HandshakeOutcome::Malformed { error, .. } => {
                    self.close_with_grace(family, session, Duration::ZERO).await;
                    return Err(format!(
                        "started again for the {family} checks, the plugin's handshake did not parse: {error}"
                    ));
                }
            }
        }
    }

    /// Starts the next families' processes ahead (see [`Run::open`]).
    pub fn start_spare(&mut self) {
        while !self.sequential && self.spares.len() < SPARES && !self.clock.spent() {
            match Session::start(&self.spec, &self.scratch.root) {
                Ok(spare) => self.spares.push_back(spare),
                Err(_) => return,
            }
        }
    }

    /// Stops the spare processes that were started and never used.
    pub async fn discard_spare(&mut self) {
        while let Some(spare) = self.spares.pop_front() {
            spare.discard().await;
        }
    }

    /// The session kept in `kept` (families go on in one session while the
    /// plugin behaves), or a fresh one for `family`.
    pub async fn reuse_or_open(
        &mut self,
        kept: &mut Option<Session>,
        family: &'static str,
    ) -> Result<Session, String> {
        match kept.take() {
            Some(session) => Ok(session),
            None => self.open(family, None).await,
        }
    }

    /// Closes the session kept in `kept`, if any.
    pub async fn close_kept(&mut self, kept: Option<Session>, family: &'static str) {
        if let Some(session) = kept {
            self.close(family, session).await;
        }
    }

    /// Ends a session and records what it showed. A plugin known to
    /// ignore stdin EOF is not given the grace again.
    pub async fn close(&mut self, family: &'static str, session: Session) -> Ending {
        let eof_grace = if self.learned.ignores_eof {
            Duration::ZERO
        } else {
            self.clock.wait(base::EOF_GRACE)
        };
        self.close_with_grace(family, session, eof_grace).await
    }

    /// Ends a session giving the plugin `eof_grace` to exit on stdin EOF.
    pub async fn close_with_grace(
        &mut self,
        family: &'static str,
        session: Session,
        eof_grace: Duration,
    ) -> Ending {
        let non_frames = session.seen.non_frames.clone();
        let oversized = session.seen.oversized;
        let unexpected = session.seen.unexpected.clone();
        let stray_events = session.seen.stray_events();
        let misaddressed = session.misaddressed.clone();
        let duplicates = session.duplicates.clone();
        // Once a session left processes behind, the verdict is known: later
        // sessions look for leftovers (and stop them) without waiting.
        let leftover_wait = if self.learned.leaves_processes {
            Duration::ZERO
        } else {
            self.clock.wait(base::LEFTOVERS)
        };
        let ending = session.close(eof_grace, leftover_wait).await;
        self.clock.waste(ending.wasted);
        if let Exit::IgnoredEof { .. } = ending.exit {
            self.learned.ignores_eof = true;
        }
        if let Some(Ok(left)) = &ending.leftovers {
            self.learned.leaves_processes |= !left.is_empty();
        }
        let (repo_changes, now) = self.scratch.changes(&self.snapshot);
        self.snapshot = now;
        self.sessions.push(SessionRecord {
            family,
            non_frames,
            oversized,
            misaddressed,
            duplicates,
            unexpected,
            stray_events,
            leftovers: ending.leftovers.clone(),
            repo_changes,
        });
        ending
    }

    /// Why a family that needs matched answers cannot run, if it cannot.
    pub fn blocked(&self) -> Option<String> {
        if self.liar() {
            return Some(
                "not judged: the plugin answers with request ids it was never sent, so no answer can be matched (see response.id-echoed)"
                    .into(),
            );
        }
        self.clock.spent().then(|| self.budget_spent())
    }

    pub fn budget_spent(&self) -> String {
        format!(
            "not run: the suite's patience ({} s of waiting for answers that never came) was used up; see the failures above",
            self.clock.budget().as_secs()
        )
    }

    /// Every answer so far carried an id that was never sent.
    pub fn liar(&self) -> bool {
        !self.learned.matched_any && self.sessions.iter().any(|s| s.misaddressed.count > 0)
    }

    /// Skips every check of `family` that would otherwise be reported.
    pub fn skip_family(&mut self, family: &str, ids: &[&str], reason: &str) {
        if ids.is_empty() {
            self.skip(&format!("{family}.*"), reason);
        }
        for id in ids {
            self.skip(id, reason);
        }
    }
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
