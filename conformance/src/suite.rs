//! The suite: start the plugin, run every check family against it, and
//! collect verdicts.
//!
//! Most checks share one observed session (session A), run from a scratch
//! copy of the repo with every request marked `dry_run`, so the scratch copy
//! can be hashed before and after. `repo-root.*` starts a second session from
//! an unrelated directory and compares answers. Every wait has a deadline
//! (multiplied by `--timeout-scale`), so a hanging plugin still yields a full
//! report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use devctl_contract::handshake::{validate_handshake, HandshakeProblem};
use devctl_contract::manifest::ServiceSpec;
use devctl_contract::ops::{
    CommandRunOutput, ConfigMutateOutput, LaunchPlanOutput, StepsOutput, ValidateOutput, BUILD_RUN,
    COMMAND_RUN, CONFIG_MUTATE, LAUNCH_PLAN, PREPARE_RUN, VALIDATE_RUN,
};
use devctl_contract::protocol::{Handshake, Request, RequestContext, Response};
use devctl_contract::ErrorCode;
use devctl_sdk::host::{descendants, group_members, is_alive, PluginSpec};
use serde_json::{json, Value};

use crate::report::{Baseline, CheckResult, Report, Severity, Status};
use crate::scratch::{differences, Scratch};
use crate::session::{kill_all, HandshakeOutcome, Session};

/// Every check family, in report order. Ids are `family.name`.
pub const FAMILIES: &[&str] = &[
    "handshake",
    "stdout",
    "unknown-op",
    "timeout",
    "response",
    "schema",
    "dry-run",
    "determinism",
    "repo-root",
    "robustness",
    "concurrency",
    "streams",
    "shutdown",
    "commands",
];

/// An op no plugin implements.
const UNKNOWN_OP: &str = "devctl.conformance.unknown-op";
const PIPELINED: usize = 32;

/// Base deadlines in milliseconds, before `--timeout-scale`.
mod ms {
    pub const HANDSHAKE: u64 = 2_000;
    pub const HANDSHAKE_WAIT: u64 = 5_000;
    pub const UNKNOWN_OP_FAST: u64 = 500;
    pub const ANSWER: u64 = 2_000;
    pub const OP: u64 = 5_000;
    pub const AFTER_END: u64 = 200;
    pub const SHUTDOWN: u64 = 2_000;
    pub const LEFTOVERS: u64 = 1_000;
}

/// Why the suite could not run at all (exit status 2 in the CLI).
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("no plugin command given; pass it after `--`, e.g. `devctl-conformance -- python3 plugin.py`")]
    EmptyCommand,
    #[error("cannot start the plugin `{program}`: {error}")]
    CannotStart {
        program: String,
        error: std::io::Error,
    },
    #[error("cannot make a scratch copy of the repo {}: {error}", repo.display())]
    Scratch {
        repo: PathBuf,
        error: std::io::Error,
    },
    #[error("unknown check or family `{0}` (families: {families})", families = FAMILIES.join(", "))]
    UnknownSelector(String),
    #[error("the suite could not run: {0}")]
    Internal(String),
}

/// The conformance suite for one plugin command.
///
/// ```no_run
/// devctl_conformance::Suite::command(["python3", "plugin.py"])
///     .run()
///     .expect("the plugin starts")
///     .assert_passed();
/// ```
#[derive(Debug, Clone)]
pub struct Suite {
    argv: Vec<String>,
    repo_root: Option<PathBuf>,
    timeout_scale: f64,
    only: Vec<String>,
    skip: Vec<String>,
    probe_commands: bool,
    baseline: Baseline,
    env: BTreeMap<String, String>,
}

impl Suite {
    pub fn command<I, S>(argv: I) -> Suite
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Suite {
            argv: argv.into_iter().map(Into::into).collect(),
            repo_root: None,
            timeout_scale: 1.0,
            only: Vec::new(),
            skip: Vec::new(),
            probe_commands: false,
            baseline: Baseline::default(),
            env: BTreeMap::new(),
        }
    }

    /// An environment variable for the plugin process (repeatable).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Suite {
        self.env.insert(key.into(), value.into());
        self
    }

    /// The repo the plugin works on; the suite uses a scratch copy of it.
    pub fn repo_root(mut self, dir: impl Into<PathBuf>) -> Suite {
        self.repo_root = Some(dir.into());
        self
    }

    /// Multiplies every deadline (for slow CI machines, or fast tests).
    pub fn timeout_scale(mut self, scale: f64) -> Suite {
        self.timeout_scale = scale;
        self
    }

    /// Report only this check id or family (repeatable).
    pub fn only(mut self, selector: impl Into<String>) -> Suite {
        self.only.push(selector.into());
        self
    }

    /// Leave out this check id or family (repeatable).
    pub fn skip(mut self, selector: impl Into<String>) -> Suite {
        self.skip.push(selector.into());
        self
    }

    /// Also run each plugin command (with `dry_run`).
    pub fn probe_commands(mut self, probe: bool) -> Suite {
        self.probe_commands = probe;
        self
    }

    /// Known failures that do not fail the run.
    pub fn baseline(mut self, baseline: Baseline) -> Suite {
        self.baseline = baseline;
        self
    }

    /// Runs the suite on its own thread and runtime (callable from sync
    /// code and from inside another runtime alike).
    pub fn run(&self) -> Result<Report, SuiteError> {
        let suite = self.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| SuiteError::Internal(err.to_string()))?;
            runtime.block_on(suite.run_async())
        })
        .join()
        .map_err(|_| SuiteError::Internal("the suite thread panicked".into()))?
    }

    pub async fn run_async(&self) -> Result<Report, SuiteError> {
        for selector in self.only.iter().chain(&self.skip) {
            let family = selector.split('.').next().unwrap_or_default();
            if !FAMILIES.contains(&family) {
                return Err(SuiteError::UnknownSelector(selector.clone()));
            }
        }
        let (program, args) = self.argv.split_first().ok_or(SuiteError::EmptyCommand)?;
        // The plugin runs inside the scratch repo (and, for repo-root.*, in a
        // temp dir), so paths in its command line that are relative to where
        // the suite was started are made absolute first.
        let cwd = std::env::current_dir().map_err(|error| SuiteError::CannotStart {
            program: program.clone(),
            error,
        })?;
        let program = absolutise(&cwd, program, true);
        let args: Vec<String> = args
            .iter()
            .map(|arg| absolutise(&cwd, arg, false).display().to_string())
            .collect();
        let spec = PluginSpec {
            id: "plugin".into(),
            program,
            args,
            env: self.env.clone(),
            ..PluginSpec::default()
        };
        let scratch =
            Scratch::new(self.repo_root.as_deref()).map_err(|error| SuiteError::Scratch {
                repo: self.repo_root.clone().unwrap_or_default(),
                error,
            })?;
        let started = Instant::now();
        let mut run = Run {
            spec,
            scale: self.timeout_scale,
            probe_commands: self.probe_commands,
            scratch,
            checks: Vec::new(),
        };
        let plugin_name = run.all().await?;
        let mut checks: Vec<CheckResult> = run
            .checks
            .into_iter()
            .filter(|check| self.selected(check))
            .collect();
        // Report order: by family as listed in FAMILIES, then as they ran.
        checks.sort_by_key(|check| FAMILIES.iter().position(|f| *f == check.family));
        Ok(Report::new(
            self.argv.clone(),
            plugin_name,
            millis(started.elapsed()),
            checks,
            &self.baseline,
        ))
    }

    fn selected(&self, check: &CheckResult) -> bool {
        let matches = |selector: &String| {
            selector == &check.id
                || selector == &check.family
                || selector.strip_suffix(".*") == Some(check.family.as_str())
        };
        (self.only.is_empty() || self.only.iter().any(matches)) && !self.skip.iter().any(matches)
    }
}

/// One run's state: the plugin, the scratch repo and the verdicts so far.
struct Run {
    spec: PluginSpec,
    scale: f64,
    probe_commands: bool,
    scratch: Scratch,
    checks: Vec<CheckResult>,
}

/// What session A learned that later checks need.
#[derive(Default)]
struct Learned {
    /// First successful output per op, normalised.
    outputs: BTreeMap<String, Value>,
    /// Answer time per op that answered.
    answered_in: BTreeMap<String, Duration>,
    /// Ops whose answers were the same three times.
    deterministic: Vec<String>,
}

impl Run {
    /// How long to wait for something (scaled either way).
    fn t(&self, base_ms: u64) -> Duration {
        Duration::from_secs_f64(base_ms as f64 / 1000.0 * self.scale)
    }

    /// A limit the protocol itself sets: a scale above 1 relaxes it for slow
    /// machines, a scale below 1 (shorter waits, for tests) never tightens it.
    fn limit(&self, base_ms: u64) -> Duration {
        Duration::from_secs_f64(base_ms as f64 / 1000.0 * self.scale.max(1.0))
    }

    fn record(
        &mut self,
        id: &str,
        severity: Severity,
        status: Status,
        took: Duration,
        message: impl Into<String>,
    ) {
        self.checks.push(CheckResult {
            id: id.to_owned(),
            family: id.split('.').next().unwrap_or(id).to_owned(),
            severity,
            status,
            duration_ms: millis(took),
            message: message.into(),
        });
    }

    fn verdict(
        &mut self,
        id: &str,
        severity: Severity,
        took: Duration,
        outcome: Result<String, String>,
    ) {
        match outcome {
            Ok(message) => self.record(id, severity, Status::Pass, took, message),
            Err(message) => self.record(id, severity, Status::Fail, took, message),
        }
    }

    fn request(&self, id: &str, op: &str, input: Value) -> Request {
        Request {
            request_id: id.to_owned(),
            op: op.to_owned(),
            ctx: RequestContext {
                repo_root: Some(self.scratch.root.display().to_string()),
                cwd: None,
                deadline_ms: Some(millis(self.t(ms::OP))),
                dry_run: true,
            },
            input,
        }
    }

    /// Runs every family; returns the plugin's name.
    async fn all(&mut self) -> Result<Option<String>, SuiteError> {
        let before = self.scratch.fingerprint();
        let started = Instant::now();
        let mut a = Session::start(&self.spec, &self.scratch.root).map_err(|error| {
            SuiteError::CannotStart {
                program: self.spec.program.display().to_string(),
                error,
            }
        })?;
        let Some(handshake) = self.handshake_checks(&mut a, started).await else {
            let reason = "no handshake, so nothing else could be checked";
            for family in FAMILIES.iter().filter(|f| **f != "handshake") {
                self.record(
                    &format!("{family}.all"),
                    Severity::Required,
                    Status::Skip,
                    Duration::ZERO,
                    reason,
                );
            }
            a.finish(Duration::ZERO).await;
            return Ok(None);
        };

        let mut learned = Learned::default();
        self.unknown_op_checks(&mut a).await;
        self.op_checks(&mut a, &handshake, &mut learned).await;
        self.determinism_checks(&mut a, &handshake, &mut learned)
            .await;
        self.stream_checks(&mut a, &handshake).await;
        self.command_checks(&mut a, &handshake).await;
        self.concurrency_check(&mut a, &learned).await;
        self.robustness_checks(&mut a, &learned).await;
        self.session_wide_checks(&a);
        self.shutdown_checks(a).await;
        self.repo_root_check(&learned).await;

        let changed = differences(&before, &self.scratch.fingerprint());
        let outcome = if changed.is_empty() {
            Ok("every request had dry_run: true and the scratch repo is byte-identical".to_owned())
        } else {
            Err(format!(
                "requests with dry_run: true changed the repo ({}); with dry_run, only report what would be done",
                changed.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ))
        };
        self.verdict(
            "dry-run.repo-unchanged",
            Severity::Required,
            Duration::ZERO,
            outcome,
        );
        Ok(Some(handshake.plugin_name))
    }

    async fn handshake_checks(&mut self, a: &mut Session, started: Instant) -> Option<Handshake> {
        let limit = self.limit(ms::HANDSHAKE);
        let outcome = a
            .handshake(started, self.t(ms::HANDSHAKE_WAIT).max(limit))
            .await;
        let (handshake, after, junk) = match outcome {
            HandshakeOutcome::Received {
                handshake,
                after,
                junk_before,
            } => (Some(handshake), after, junk_before),
            HandshakeOutcome::Missing {
                reason,
                junk_before,
            } => {
                let stderr = a.raw.stderr_lines();
                let hint = stderr
                    .last()
                    .map(|l| format!("; last stderr line: {l:?}"))
                    .unwrap_or_default();
                self.record(
                    "handshake.in-time",
                    Severity::Required,
                    Status::Fail,
                    started.elapsed(),
                    format!(
                        "{reason}{hint}; print the handshake first, within {} ms",
                        limit.as_millis()
                    ),
                );
                (None, started.elapsed(), junk_before)
            }
        };
        let first = if junk.is_empty() && handshake.is_some() {
            Ok("the first stdout line is the handshake".to_owned())
        } else if junk.is_empty() {
            Err("no handshake frame was written".to_owned())
        } else {
            Err(format!(
                "{} line(s) on stdout before the handshake, first {:?}; stdout is for frames only, write logs to stderr",
                junk.len(),
                junk[0].chars().take(80).collect::<String>()
            ))
        };
        self.verdict("handshake.first-frame", Severity::Required, after, first);
        let handshake = handshake?;
        let in_time = if after <= limit {
            Ok(format!("handshake after {} ms", after.as_millis()))
        } else {
            Err(format!("handshake after {} ms; it must come within {} ms (do slow set-up after the handshake)", after.as_millis(), limit.as_millis()))
        };
        self.verdict("handshake.in-time", Severity::Required, after, in_time);

        let problems = validate_handshake(&handshake).err().unwrap_or_default();
        let (version, rest): (Vec<_>, Vec<_>) = problems
            .iter()
            .partition(|p| matches!(p, HandshakeProblem::WrongVersion(_)));
        let (duplicates, rest): (Vec<_>, Vec<_>) = rest
            .into_iter()
            .partition(|p| matches!(p, HandshakeProblem::DuplicateCommand(_)));
        let describe = |list: &[&HandshakeProblem]| {
            list.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        };
        self.verdict(
            "handshake.version",
            Severity::Required,
            Duration::ZERO,
            if version.is_empty() {
                Ok("protocol_version is \"v2\"".into())
            } else {
                Err(format!(
                    "{}; send \"protocol_version\":\"v2\"",
                    describe(&version)
                ))
            },
        );
        self.verdict(
            "handshake.commands-unique",
            Severity::Required,
            Duration::ZERO,
            if duplicates.is_empty() {
                Ok(format!(
                    "{} command(s), names unique",
                    handshake.capabilities.commands.len()
                ))
            } else {
                Err(format!(
                    "{}; give each command one entry",
                    describe(&duplicates)
                ))
            },
        );
        self.verdict(
            "handshake.valid",
            Severity::Required,
            Duration::ZERO,
            if rest.is_empty() {
                Ok(format!(
                    "plugin {:?} declares {} op(s)",
                    handshake.plugin_name,
                    handshake.capabilities.ops.len()
                ))
            } else {
                Err(describe(&rest))
            },
        );
        Some(handshake)
    }

    async fn unknown_op_checks(&mut self, a: &mut Session) {
        let request = self.request("cf-unknown-1", UNKNOWN_OP, json!({}));
        let strays_before = a.observed.unsolicited.len();
        let fast_limit = self.limit(ms::UNKNOWN_OP_FAST);
        let answer = a.call(&request, self.t(ms::ANSWER).max(fast_limit)).await;
        let stray = a.observed.unsolicited.get(strays_before).cloned();
        match answer {
            None => {
                let message = match &stray {
                    Some(id) => format!("the answer carried request_id {id:?} instead of \"cf-unknown-1\"; echo the request's id"),
                    None => format!("no answer within {} ms to op {UNKNOWN_OP:?}; answer unknown ops with ok:false and E_UNSUPPORTED", self.t(ms::ANSWER).as_millis()),
                };
                let took = self.t(ms::ANSWER);
                self.record(
                    "unknown-op.id-echoed",
                    Severity::Required,
                    if stray.is_some() {
                        Status::Fail
                    } else {
                        Status::Skip
                    },
                    took,
                    message.clone(),
                );
                self.record(
                    "unknown-op.unsupported",
                    Severity::Required,
                    Status::Fail,
                    took,
                    message.clone(),
                );
                self.record(
                    "unknown-op.fast",
                    Severity::Required,
                    Status::Fail,
                    took,
                    message,
                );
            }
            Some((response, took)) => {
                self.verdict(
                    "unknown-op.id-echoed",
                    Severity::Required,
                    took,
                    Ok("request_id echoed".into()),
                );
                let code = response.error.as_ref().map(|e| e.code.clone());
                self.verdict("unknown-op.unsupported", Severity::Required, took, if !response.ok && code == Some(ErrorCode::Unsupported) {
                    Ok("answered E_UNSUPPORTED".into())
                } else {
                    Err(format!("answered {}; answer unknown ops with ok:false and error.code E_UNSUPPORTED", describe_response(&response)))
                });
                self.verdict(
                    "unknown-op.fast",
                    Severity::Required,
                    took,
                    if took <= fast_limit {
                        Ok(format!("answered in {} ms", took.as_millis()))
                    } else {
                        Err(format!(
                            "answered in {} ms; unknown ops must be refused within {} ms",
                            took.as_millis(),
                            fast_limit.as_millis()
                        ))
                    },
                );
            }
        }
    }

    /// The request/response ops this run calls (streams and commands have
    /// their own families).
    fn plain_ops(handshake: &Handshake) -> Vec<String> {
        let caps = &handshake.capabilities;
        caps.ops
            .iter()
            .filter(|op| !caps.streams.contains(op) && op.as_str() != COMMAND_RUN)
            .cloned()
            .collect()
    }

    async fn op_checks(&mut self, a: &mut Session, handshake: &Handshake, learned: &mut Learned) {
        for op in Self::plain_ops(handshake) {
            let request = self.request(&format!("cf-{op}-1"), &op, minimal_input(&op));
            let answer = a.call(&request, self.t(ms::OP)).await;
            let timeout_id = format!("timeout.{op}");
            let schema_id = format!("schema.{op}");
            let Some((response, took)) = answer else {
                let message = format!(
                    "no answer within {} ms to a minimal {op} request (input {}); answer every declared op, with an error if need be",
                    self.t(ms::OP).as_millis(),
                    request.input
                );
                self.record(
                    &timeout_id,
                    Severity::Required,
                    Status::Fail,
                    self.t(ms::OP),
                    message,
                );
                if output_shape(&op, &Value::Null).is_some() {
                    self.record(
                        &schema_id,
                        Severity::Required,
                        Status::Skip,
                        Duration::ZERO,
                        "no answer (see the timeout check)",
                    );
                }
                continue;
            };
            self.verdict(
                &timeout_id,
                Severity::Required,
                took,
                Ok(format!("answered in {} ms", took.as_millis())),
            );
            learned.answered_in.insert(op.clone(), took);
            if response.ok {
                learned.outputs.insert(
                    op.clone(),
                    normalised(response.output.clone().unwrap_or(Value::Null)),
                );
            }
            let output = response.output.clone().unwrap_or(Value::Null);
            if let Some(shape) = output_shape(&op, &output) {
                let outcome = if !response.ok {
                    Err(format!(
                        "answered {} to a minimal valid request; if the plugin needs a repo, pass --repo-root",
                        describe_response(&response)
                    ))
                } else {
                    shape.map(|()| "output matches the contract".to_owned())
                };
                self.verdict(&schema_id, Severity::Required, took, outcome);
            }
        }
    }

    async fn determinism_checks(
        &mut self,
        a: &mut Session,
        handshake: &Handshake,
        learned: &mut Learned,
    ) {
        for op in Self::plain_ops(handshake)
            .iter()
            .filter(|op| !learned.outputs.contains_key(*op))
        {
            self.record(
                &format!("determinism.{op}"),
                Severity::Recommended,
                Status::Skip,
                Duration::ZERO,
                "no successful answer to repeat",
            );
        }
        let ops: Vec<(String, Value)> = learned.outputs.clone().into_iter().collect();
        for (op, first) in ops {
            let started = Instant::now();
            let mut differing = None;
            for n in 2..=3 {
                let request = self.request(&format!("cf-{op}-{n}"), &op, minimal_input(&op));
                let answer = a.call(&request, self.t(ms::OP)).await;
                let again = answer
                    .and_then(|(r, _)| r.ok.then(|| normalised(r.output.unwrap_or(Value::Null))));
                if again.as_ref() != Some(&first) {
                    differing = Some(again);
                    break;
                }
            }
            let id = format!("determinism.{op}");
            match differing {
                None => {
                    learned.deterministic.push(op.clone());
                    self.verdict(&id, Severity::Recommended, started.elapsed(), Ok("the same request gave the same answer three times".into()));
                }
                Some(other) => self.verdict(&id, Severity::Recommended, started.elapsed(), Err(format!(
                    "the same request gave a different answer: first {}, later {}; derive answers from the request and the repo only",
                    clip(&first.to_string()),
                    other.map(|v| clip(&v.to_string())).unwrap_or_else(|| "no successful answer".into())
                ))),
            }
        }
    }

    async fn stream_checks(&mut self, a: &mut Session, handshake: &Handshake) {
        let caps = &handshake.capabilities;
        let names = [
            "streams.stream-id",
            "streams.events-carry-id",
            "streams.end-arrives",
            "streams.nothing-after-end",
        ];
        if caps.streams.is_empty() {
            for id in names {
                self.record(
                    id,
                    Severity::Required,
                    Status::Skip,
                    Duration::ZERO,
                    "the plugin declares no streams",
                );
            }
            // Events nobody asked for are still wrong.
            let strays: Vec<String> = a.observed.events.keys().cloned().collect();
            if !strays.is_empty() {
                self.checks.retain(|c| c.id != "streams.events-carry-id");
                self.record(
                    "streams.events-carry-id",
                    Severity::Required,
                    Status::Fail,
                    Duration::ZERO,
                    format!("events for streams nobody started: {strays:?}"),
                );
            }
            return;
        }
        let started = Instant::now();
        let mut problems: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut started_ids = Vec::new();
        for op in caps.streams.clone() {
            if !caps.supports_op(&op) {
                problems.entry(names[0]).or_default().push(format!("{op} is in capabilities.streams but not in ops, so hosts never call it; list it in ops too"));
                continue;
            }
            let request = self.request(&format!("cf-stream-{op}"), &op, json!({}));
            let Some((response, _)) = a.call(&request, self.t(ms::OP)).await else {
                problems.entry(names[0]).or_default().push(format!(
                    "{op}: no answer within {} ms",
                    self.t(ms::OP).as_millis()
                ));
                continue;
            };
            let Some(stream_id) = response
                .output
                .as_ref()
                .and_then(|o| o.get("stream_id"))
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                problems.entry(names[0]).or_default().push(format!(
                    "{op}: answered {} without output.stream_id",
                    describe_response(&response)
                ));
                continue;
            };
            started_ids.push(stream_id.clone());
            let deadline = Instant::now() + self.t(ms::OP);
            let sid = stream_id.clone();
            let ended = a
                .pump_until(deadline, |seen| {
                    seen.events
                        .get(&sid)
                        .is_some_and(|list| list.iter().any(|(e, _)| e.is_end()))
                })
                .await;
            if !ended {
                problems.entry(names[2]).or_default().push(format!(
                    "{op}: no \"end\" event within {} ms; end every stream",
                    self.t(ms::OP).as_millis()
                ));
                continue;
            }
            a.observe_for(self.t(ms::AFTER_END)).await;
            let events = &a.observed.events[&stream_id];
            let end_at = events.iter().position(|(e, _)| e.is_end()).unwrap_or(0);
            let after = events.len() - end_at - 1;
            if after > 0 {
                problems.entry(names[3]).or_default().push(format!(
                    "{op}: {after} event(s) after \"end\"; send nothing on a stream after its end"
                ));
            }
        }
        let strays: Vec<&String> = a
            .observed
            .events
            .keys()
            .filter(|id| !started_ids.contains(id))
            .collect();
        if !strays.is_empty() {
            problems.entry(names[1]).or_default().push(format!(
                "events for unknown stream ids {strays:?}; use the stream_id you returned"
            ));
        }
        for id in names {
            let outcome = match problems.get(id) {
                None => Ok(format!("{} stream op(s) behaved", caps.streams.len())),
                Some(list) => Err(list.join("; ")),
            };
            self.verdict(id, Severity::Required, started.elapsed(), outcome);
        }
    }

    async fn command_checks(&mut self, a: &mut Session, handshake: &Handshake) {
        for command in &handshake.capabilities.commands {
            let id = format!("commands.{}", command.name);
            if !self.probe_commands {
                self.record(
                    &id,
                    Severity::Recommended,
                    Status::Skip,
                    Duration::ZERO,
                    "not probed; pass --probe-commands to run it with dry_run",
                );
                continue;
            }
            if !handshake.capabilities.supports_op(COMMAND_RUN) {
                self.record(
                    &id,
                    Severity::Required,
                    Status::Fail,
                    Duration::ZERO,
                    "commands are declared but command.run is not in ops; hosts cannot run them",
                );
                continue;
            }
            let input = json!({"name": command.name, "argv": [], "config": {}});
            let request = self.request(&format!("cf-command-{}", command.name), COMMAND_RUN, input);
            let outcome = match a.call(&request, self.t(ms::OP)).await {
                None => Err(format!(
                    "no answer within {} ms",
                    self.t(ms::OP).as_millis()
                )),
                Some((response, took)) => match response
                    .output
                    .clone()
                    .map(serde_json::from_value::<CommandRunOutput>)
                {
                    Some(Ok(output)) if response.ok => Ok(format!(
                        "dry run exited {} in {} ms",
                        output.exit_code,
                        took.as_millis()
                    )),
                    _ => Err(format!(
                        "answered {}; answer command.run with {{\"exit_code\": N}}",
                        describe_response(&response)
                    )),
                },
            };
            self.verdict(&id, Severity::Recommended, Duration::ZERO, outcome);
        }
    }

    async fn concurrency_check(&mut self, a: &mut Session, learned: &Learned) {
        let op = learned
            .answered_in
            .iter()
            .filter(|(op, _)| learned.outputs.contains_key(*op))
            .min_by_key(|(_, took)| **took)
            .map(|(op, _)| op.clone())
            .unwrap_or_else(|| UNKNOWN_OP.to_owned());
        let started = Instant::now();
        let ids: Vec<String> = (0..PIPELINED)
            .map(|n| format!("cf-pipelined-{n}"))
            .collect();
        let burst: Vec<Request> = ids
            .iter()
            .map(|id| self.request(id, &op, minimal_input(&op)))
            .collect();
        a.send_burst(&burst).await;
        let wanted = ids.clone();
        a.pump_until(started + self.t(ms::OP), |seen| {
            wanted.iter().all(|id| seen.responses.contains_key(id))
        })
        .await;
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| !a.observed.responses.contains_key(*id))
            .collect();
        let outcome = if missing.is_empty() {
            Ok(format!(
                "{PIPELINED} pipelined {op} requests answered in {} ms",
                started.elapsed().as_millis()
            ))
        } else {
            Err(format!(
                "{} of {PIPELINED} pipelined {op} requests unanswered after {} ms (e.g. {}); read every request as it comes and answer each by its request_id",
                missing.len(),
                self.t(ms::OP).as_millis(),
                missing[0]
            ))
        };
        self.verdict(
            "concurrency.pipelined",
            Severity::Required,
            started.elapsed(),
            outcome,
        );
    }

    /// Is the plugin still answering? (An unknown op: any answer will do.)
    async fn alive(&mut self, a: &mut Session, id: &str) -> bool {
        let probe = self.request(id, UNKNOWN_OP, json!({}));
        a.call(&probe, self.t(ms::ANSWER)).await.is_some()
    }

    async fn robustness_checks(&mut self, a: &mut Session, learned: &Learned) {
        let dead = |what: &str| {
            format!("after {what} the plugin stopped answering; ignore (or answer) bad input and carry on")
        };
        let started = Instant::now();
        a.send_raw("{\"type\":\"request\",\"request_id\":\"cf-bad\", this is not json")
            .await;
        let ok = self.alive(a, "cf-probe-json").await;
        self.verdict(
            "robustness.invalid-json",
            Severity::Required,
            started.elapsed(),
            if ok {
                Ok("still answering after a line of invalid JSON".into())
            } else {
                Err(dead("a line of invalid JSON"))
            },
        );

        let started = Instant::now();
        let op = learned
            .outputs
            .keys()
            .next()
            .cloned()
            .unwrap_or_else(|| UNKNOWN_OP.to_owned());
        a.send_raw(&json!({"type": "request", "op": op, "input": minimal_input(&op)}).to_string())
            .await;
        let ok = self.alive(a, "cf-probe-noid").await;
        self.verdict(
            "robustness.missing-request-id",
            Severity::Required,
            started.elapsed(),
            if ok {
                Ok("still answering after a request without request_id".into())
            } else {
                Err(dead("a request without request_id"))
            },
        );

        let started = Instant::now();
        let wrong = self.request(
            "cf-wrong-types",
            &op,
            json!("this should have been an object"),
        );
        let answered = a.call(&wrong, self.t(ms::OP)).await.is_some();
        let ok = answered && self.alive(a, "cf-probe-types").await;
        self.verdict("robustness.wrong-input-types", Severity::Required, started.elapsed(), if ok {
            Ok(format!("answered {op} with a string input and kept going"))
        } else if answered {
            Err(dead("an input of the wrong type"))
        } else {
            Err(format!("no answer to {op} with a string as input; answer it with an error (e.g. E_RUNTIME) naming the problem"))
        });

        let started = Instant::now();
        a.send_raw("").await;
        a.send_raw("   ").await;
        let ok = self.alive(a, "cf-probe-blank").await;
        self.verdict(
            "robustness.blank-lines",
            Severity::Required,
            started.elapsed(),
            if ok {
                Ok("blank lines were skipped".into())
            } else {
                Err(dead("blank lines"))
            },
        );
    }

    fn session_wide_checks(&mut self, a: &Session) {
        let seen = &a.observed;
        self.verdict("stdout.frames-only", Severity::Required, Duration::ZERO, if seen.non_frame_count == 0 && seen.oversized == 0 {
            Ok("every stdout line after the handshake was a frame".into())
        } else {
            Err(format!(
                "{} non-frame line(s) on stdout after the handshake, e.g. {:?}{}; write logs to stderr",
                seen.non_frame_count,
                seen.non_frames.first().cloned().unwrap_or_default(),
                if seen.oversized > 0 { format!(", and {} line(s) over 64 MiB", seen.oversized) } else { String::new() }
            ))
        });
        self.verdict("response.id-echoed", Severity::Required, Duration::ZERO, if seen.unsolicited.is_empty() {
            Ok("every response carried the id of a request".into())
        } else {
            Err(format!("responses with ids that were never sent: {:?}; copy request_id from the request", first_few(&seen.unsolicited)))
        });
        let repeated: Vec<String> = seen
            .responses
            .iter()
            .filter(|(_, list)| list.len() > 1)
            .map(|(id, list)| format!("{id} ×{}", list.len()))
            .collect();
        self.verdict(
            "response.exactly-one",
            Severity::Required,
            Duration::ZERO,
            if repeated.is_empty() {
                Ok(format!(
                    "{} requests, one response each",
                    seen.responses.len()
                ))
            } else {
                Err(format!(
                    "requests answered more than once: {:?}; send exactly one response per request",
                    first_few(&repeated)
                ))
            },
        );
        self.verdict("response.no-unsolicited", Severity::Required, Duration::ZERO, if seen.unexpected.is_empty() {
            Ok("no handshake or request frames after the handshake".into())
        } else {
            Err(format!("the plugin sent {:?} frame(s) after its handshake; a plugin sends only responses and events", first_few(&seen.unexpected)))
        });
    }

    async fn shutdown_checks(&mut self, mut a: Session) {
        let pid = a.raw.pid();
        let pgid = a.raw.pgid();
        let already = a.raw.wait_exit(Duration::ZERO).await;
        let tracked = descendants(pid);
        a.raw.close_stdin();
        let started = Instant::now();
        let status = match already {
            Some(status) => {
                self.record("shutdown.exits-on-eof", Severity::Required, Status::Skip, Duration::ZERO, format!("the plugin had already exited ({status}) before stdin closed; see the failures above"));
                Some(status)
            }
            None => {
                let status = a.raw.wait_exit(self.t(ms::SHUTDOWN)).await;
                let took = started.elapsed();
                let outcome = match status {
                    Some(s) if s.success() => Ok(format!(
                        "exited 0 {} ms after stdin closed",
                        took.as_millis()
                    )),
                    Some(s) => Err(format!("exited with {s} on stdin EOF; exit 0")),
                    None => Err(format!(
                        "still running {} ms after stdin closed; exit when stdin reaches EOF",
                        self.t(ms::SHUTDOWN).as_millis()
                    )),
                };
                self.verdict("shutdown.exits-on-eof", Severity::Required, took, outcome);
                status
            }
        };
        // Killing a plugin that ignored EOF is the suite's clean-up, not a pass.
        let report = a.raw.kill(self.t(ms::SHUTDOWN)).await;
        let deadline = Instant::now() + self.t(ms::LEFTOVERS);
        let survivors = loop {
            let mut left: Vec<u32> = tracked
                .iter()
                .filter(|p| is_alive(**p))
                .map(|p| p.pid)
                .collect();
            left.extend(group_members(pgid));
            left.sort_unstable();
            left.dedup();
            if left.is_empty() || Instant::now() >= deadline {
                break left;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let outcome = if survivors.is_empty() {
            Ok(match status {
                Some(_) => "no process of the plugin was left behind".to_owned(),
                None => format!("nothing left after the suite stopped it ({})", report.how),
            })
        } else {
            let described: Vec<String> =
                survivors.iter().map(|pid| describe_process(*pid)).collect();
            kill_all(&tracked);
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
            Err(format!("left {} process(es) running after it exited: {}; stop your children before exiting", survivors.len(), described.join(", ")))
        };
        self.verdict(
            "shutdown.no-leftovers",
            Severity::Required,
            started.elapsed(),
            outcome,
        );
    }

    async fn repo_root_check(&mut self, learned: &Learned) {
        let preferred = [LAUNCH_PLAN, CONFIG_MUTATE, VALIDATE_RUN];
        let op = preferred
            .iter()
            .map(|op| op.to_string())
            .chain(learned.deterministic.iter().cloned())
            .find(|op| learned.deterministic.contains(op));
        let Some(op) = op else {
            self.record(
                "repo-root.follows-ctx",
                Severity::Required,
                Status::Skip,
                Duration::ZERO,
                "no op gave a stable successful answer to compare",
            );
            return;
        };
        let started = Instant::now();
        let Ok(elsewhere) = tempfile::Builder::new()
            .prefix("devctl-conformance-cwd-")
            .tempdir()
        else {
            self.record(
                "repo-root.follows-ctx",
                Severity::Required,
                Status::Skip,
                Duration::ZERO,
                "cannot make a temp dir",
            );
            return;
        };
        let Ok(mut b) = Session::start(&self.spec, elsewhere.path()) else {
            self.record(
                "repo-root.follows-ctx",
                Severity::Required,
                Status::Fail,
                started.elapsed(),
                "the plugin could not be started a second time",
            );
            return;
        };
        let outcome = match b
            .handshake(Instant::now(), self.t(ms::HANDSHAKE_WAIT))
            .await
        {
            HandshakeOutcome::Missing { reason, .. } => Err(format!(
                "started from {}, the plugin gave no handshake: {reason}",
                elsewhere.path().display()
            )),
            HandshakeOutcome::Received { .. } => {
                let request = self.request("cf-repo-root", &op, minimal_input(&op));
                let answer = b.call(&request, self.t(ms::OP)).await;
                let output = answer
                    .and_then(|(r, _)| r.ok.then(|| normalised(r.output.unwrap_or(Value::Null))));
                match output {
                    Some(output) if Some(&output) == learned.outputs.get(&op) => Ok(format!("{op} answered the same from another cwd")),
                    Some(output) => Err(format!(
                        "{op} answered differently when the plugin's cwd was {} (got {}); resolve paths from ctx.repo_root, not the process cwd",
                        elsewhere.path().display(),
                        clip(&output.to_string())
                    )),
                    None => Err(format!("{op} failed when the plugin's cwd was not the repo; resolve paths from ctx.repo_root")),
                }
            }
        };
        self.verdict(
            "repo-root.follows-ctx",
            Severity::Required,
            started.elapsed(),
            outcome,
        );
        b.finish(self.t(ms::SHUTDOWN)).await;
    }
}

/// `arg` made absolute against `cwd` when it is a relative path: always for a
/// program given with a `/`, and for an argument only when that file exists
/// (so flags and plain words are left alone).
fn absolutise(cwd: &std::path::Path, arg: &str, is_program: bool) -> PathBuf {
    let path = PathBuf::from(arg);
    let relative_path = path.is_relative() && !arg.starts_with('-');
    let wanted = if is_program {
        relative_path && arg.contains('/')
    } else {
        relative_path && cwd.join(&path).exists()
    };
    if wanted {
        cwd.join(path)
    } else {
        path
    }
}

/// The smallest valid input of each pipeline op; `{}` for others.
fn minimal_input(op: &str) -> Value {
    match op {
        BUILD_RUN | PREPARE_RUN => json!({"config": {}, "steps": null}),
        CONFIG_MUTATE | VALIDATE_RUN | LAUNCH_PLAN => json!({"config": {}}),
        _ => json!({}),
    }
}

/// Checks `output` against the contract of `op`; `None` for ops without one.
fn output_shape(op: &str, output: &Value) -> Option<Result<(), String>> {
    fn parse<T: serde::de::DeserializeOwned>(output: &Value, key: &str) -> Result<T, String> {
        if output.get(key).is_none() {
            return Err(format!(
                "output has no \"{key}\" field: {}",
                clip(&output.to_string())
            ));
        }
        serde_json::from_value(output.clone())
            .map_err(|err| format!("output does not match the contract: {err}"))
    }
    Some(match op {
        CONFIG_MUTATE => parse::<ConfigMutateOutput>(output, "config_patch").map(drop),
        BUILD_RUN | PREPARE_RUN => parse::<StepsOutput>(output, "steps").map(drop),
        VALIDATE_RUN => parse::<ValidateOutput>(output, "valid").map(drop),
        COMMAND_RUN => parse::<CommandRunOutput>(output, "exit_code").map(drop),
        LAUNCH_PLAN => parse::<LaunchPlanOutput>(output, "services")
            .and_then(|plan| services_problem(&plan.services)),
        _ => return None,
    })
}

fn services_problem(services: &[ServiceSpec]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for service in services {
        if service.name.is_empty() {
            return Err("a service has an empty name".into());
        }
        if !names.insert(&service.name) {
            return Err(format!("service {:?} appears twice", service.name));
        }
        if service.command.is_empty() {
            return Err(format!("service {:?} has an empty command", service.name));
        }
        if let Some(problem) = service.health.as_ref().and_then(|h| h.problem()) {
            return Err(format!("service {:?}: {problem}", service.name));
        }
    }
    Ok(())
}

/// Drops timing fields, which legitimately differ between identical runs.
fn normalised(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(key, _)| key != "duration_ms")
                .map(|(key, value)| (key, normalised(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalised).collect()),
        other => other,
    }
}

fn describe_response(response: &Response) -> String {
    match (&response.error, response.ok) {
        (Some(error), _) => format!("ok:false with {}: {}", error.code, clip(&error.message)),
        (None, true) => format!(
            "ok:true with {}",
            clip(&response.output.clone().unwrap_or(Value::Null).to_string())
        ),
        (None, false) => "ok:false without an error".into(),
    }
}

fn describe_process(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .replace('\0', " ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default();
    format!("pid {pid} ({cmdline})")
}

fn clip(text: &str) -> String {
    if text.chars().count() <= 120 {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(120).collect::<String>())
    }
}

fn first_few(list: &[String]) -> Vec<&String> {
    list.iter().take(3).collect()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
