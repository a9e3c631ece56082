//! The suite's public face: [`Suite`] says which plugin, which repo, which
//! checks and how patient to be; [`Suite::run_async`] starts the plugin as
//! often as the families need (a fresh process each), in a scratch copy of
//! the repo, and returns the [`Report`].
//!
//! Order of the run: the handshake session (with `unknown-op.*`), then
//! `shutdown`, `timeout`/`schema` (which learns every op's answer and which
//! ops stream), `determinism`, `repo-root`, `streams`, `concurrency`,
//! `robustness`, `commands`, and last the verdicts that cover every
//! session. `--only`/`--skip` decide which families run (a family also
//! runs when a selected one needs what it learns), and which checks are
//! reported.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use devctl_contract::flags::format_duration;
use devctl_sdk::host::{become_child_subreaper, PluginSpec};

use crate::catalogue::{family_of, FAMILIES};
use crate::clock::{Clock, DEFAULT_OP_TIMEOUT, OP_TIMEOUT_RANGE, SCALE_RANGE};
use crate::families;
use crate::report::{Baseline, Report, RunFacts, Status};
use crate::run::{millis, Run, Selection};
use crate::scratch::Scratch;

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
    #[error("the timeout scale must be a number from {min} to {max}, got {0}", min = SCALE_RANGE.min, max = SCALE_RANGE.max)]
    BadTimeoutScale(f64),
    #[error("the op timeout must be from {min} to {max}, got {got} ms", min = format_duration(OP_TIMEOUT_RANGE.min), max = format_duration(OP_TIMEOUT_RANGE.max), got = .0.as_millis())]
    BadOpTimeout(Duration),
    #[error("the suite could not run: {0}")]
    Internal(String),
    /// `--only`/`--skip` left nothing to judge: a CI gate must not pass
    /// on a typo.
    #[error("--only/--skip selected no check of this plugin; its checks: {}", .0.join(", "))]
    NothingSelected(Vec<String>),
}

/// The conformance suite for one plugin command.
///
/// ```no_run
/// devctl_conformance::Suite::command(["python3", "plugin.py"])
///     .run()
///     .expect("the plugin starts")
///     .assert_passed();
/// ```
///
/// On Linux the calling process becomes a child subreaper while (and after)
/// the suite runs, so that processes a plugin double-forks away are
/// re-parented to it and can be found and stopped.
#[derive(Debug, Clone)]
pub struct Suite {
    argv: Vec<String>,
    repo_root: Option<PathBuf>,
    timeout_scale: f64,
    op_timeout: Duration,
    selection: Selection,
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
            op_timeout: DEFAULT_OP_TIMEOUT,
            selection: Selection::default(),
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
    /// Without one the plugin gets an empty scratch directory, and checks
    /// that need a real repo are skipped where the plugin fails without it.
    pub fn repo_root(mut self, dir: impl Into<PathBuf>) -> Suite {
        self.repo_root = Some(dir.into());
        self
    }

    /// Multiplies every wait (0.1 to 100): above 1 for slow machines; below
    /// 1 it shortens the suite's own waits but never the protocol's limits.
    pub fn timeout_scale(mut self, scale: f64) -> Suite {
        self.timeout_scale = scale;
        self
    }

    /// How long a declared op may take to answer a minimal dry-run request
    /// (default 5 s, at most a host's 30 s).
    pub fn op_timeout(mut self, timeout: Duration) -> Suite {
        self.op_timeout = timeout;
        self
    }

    /// Run and report only this check id or family (repeatable).
    pub fn only(mut self, selector: impl Into<String>) -> Suite {
        self.selection.only.push(selector.into());
        self
    }

    /// Leave out this check id or family (repeatable).
    pub fn skip(mut self, selector: impl Into<String>) -> Suite {
        self.selection.skip.push(selector.into());
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

    /// Runs the suite. Dropping the future half-way (Ctrl-C) stops every
    /// process the plugin started and removes the scratch copy.
    pub async fn run_async(&self) -> Result<Report, SuiteError> {
        self.validate()?;
        let started = Instant::now();
        let (program, args) = self.argv.split_first().ok_or(SuiteError::EmptyCommand)?;
        // The plugin runs inside the scratch repo (or elsewhere, for
        // repo-root.*), so paths in its command line that are relative to
        // where the suite was started are made absolute first.
        let cwd = std::env::current_dir().map_err(|error| SuiteError::CannotStart {
            program: program.clone(),
            error,
        })?;
        let spec = PluginSpec {
            id: "plugin".into(),
            program: absolutise(&cwd, program, true),
            args: args
                .iter()
                .map(|arg| absolutise(&cwd, arg, false).display().to_string())
                .collect(),
            env: self.env.clone(),
            ..PluginSpec::default()
        };
        let mut notes = Vec::new();
        if let Err(err) = become_child_subreaper() {
            notes.push(format!(
                "processes that double-fork away from the plugin are found only by their environment: this process cannot be a child subreaper ({err})"
            ));
        }
        let scratch =
            Scratch::new(self.repo_root.as_deref()).map_err(|error| SuiteError::Scratch {
                repo: self.repo_root.clone().unwrap_or_default(),
                error,
            })?;
        let mut run = Run::new(
            spec,
            Clock::new(self.timeout_scale, self.op_timeout),
            scratch,
            self.repo_root.is_some(),
            self.probe_commands,
            self.selection.clone(),
        );
        let first =
            families::handshake::run(&mut run)
                .await
                .map_err(|error| SuiteError::CannotStart {
                    program: program.clone(),
                    error,
                })?;
        let handshake = first.handshake;
        if handshake.is_some() {
            run_families(&mut run, first.judged_eof).await;
        } else {
            skip_after_no_handshake(&mut run);
        }
        notes.extend(self.notes(&run));
        let plugin_name = handshake.map(|h| h.plugin_name);
        let all = std::mem::take(&mut run.checks);
        let every_id: Vec<String> = all.iter().map(|check| check.id.clone()).collect();
        let mut checks: Vec<_> = all
            .into_iter()
            .filter(|check| self.selection.reports(&check.id))
            .collect();
        if checks.is_empty() && !every_id.is_empty() {
            return Err(SuiteError::NothingSelected(every_id));
        }
        // Report order: by family as listed in FAMILIES, then as they ran.
        checks.sort_by_key(|check| FAMILIES.iter().position(|f| *f == check.family));
        let facts = RunFacts {
            plugin: self.argv.clone(),
            plugin_name,
            repo_root: self.repo_root.as_ref().map(|p| p.display().to_string()),
            notes,
            duration_ms: millis(started.elapsed()),
        };
        Ok(Report::new(facts, checks, &self.baseline))
    }

    fn validate(&self) -> Result<(), SuiteError> {
        for selector in self.selection.only.iter().chain(&self.selection.skip) {
            if !FAMILIES.contains(&family_of(selector)) {
                return Err(SuiteError::UnknownSelector(selector.clone()));
            }
        }
        let scale = self.timeout_scale;
        if !(scale.is_finite() && (SCALE_RANGE.min..=SCALE_RANGE.max).contains(&scale)) {
            return Err(SuiteError::BadTimeoutScale(scale));
        }
        if !(OP_TIMEOUT_RANGE.min..=OP_TIMEOUT_RANGE.max).contains(&self.op_timeout) {
            return Err(SuiteError::BadOpTimeout(self.op_timeout));
        }
        Ok(())
    }

    fn notes(&self, run: &Run) -> Vec<String> {
        let mut notes = Vec::new();
        if self.repo_root.is_none() {
            let needing = run
                .checks
                .iter()
                .filter(|c| c.status == Status::Skip && c.message.starts_with("needs --repo-root"))
                .filter(|c| self.selection.reports(&c.id))
                .count();
            notes.push(match needing {
                0 => "no --repo-root: the plugin ran against an empty scratch directory".to_owned(),
                n => format!(
                    "no --repo-root: the plugin ran against an empty scratch directory, so {n} check(s) that need its repo were skipped (needs --repo-root)"
                ),
            });
        }
        if run.clock.spent() {
            notes.push(format!(
                "the run's patience ({} s of waiting for answers that never came) ran out, so later checks were not run; see the failures that waited",
                run.clock.budget().as_secs()
            ));
        }
        notes
    }
}

async fn run_families(run: &mut Run, judged_eof: bool) {
    let wants = |run: &Run, families: &[&str]| run.selection.wants_any(families);
    if wants(run, &["shutdown"]) && !judged_eof {
        families::shutdown::run(run).await;
    }
    let ops_feed = [
        "timeout",
        "schema",
        "determinism",
        "repo-root",
        "streams",
        "concurrency",
        "robustness",
        "stdout",
        "response",
        "dry-run",
    ];
    if wants(run, &ops_feed) {
        families::ops::run(run).await;
    }
    if wants(run, &["determinism", "repo-root"]) {
        families::determinism::run(run).await;
    }
    if wants(run, &["repo-root"]) {
        families::repo_root::run(run).await;
    }
    if wants(run, &["streams"]) {
        families::streams::run(run).await;
    }
    if wants(run, &["concurrency"]) {
        families::concurrency::run(run).await;
    }
    if wants(run, &["robustness"]) {
        families::robustness::run(run).await;
    }
    if wants(run, &["commands"]) {
        families::commands::run(run).await;
    }
    run.discard_spare().await;
    families::run_wide::judge(run);
}

fn skip_after_no_handshake(run: &mut Run) {
    let reason = "not judged: there was no handshake, so nothing else could be checked";
    let fixed: &[&str] = &[
        "stdout.frames-only",
        "unknown-op.unsupported",
        "unknown-op.id-echoed",
        "unknown-op.fast",
        "response.id-echoed",
        "response.exactly-one",
        "response.no-unsolicited",
        "dry-run.repo-unchanged",
        "repo-root.follows-ctx",
        "robustness.invalid-json",
        "robustness.missing-request-id",
        "robustness.wrong-input-types",
        "robustness.blank-lines",
        "concurrency.pipelined",
        "streams.stream-id",
        "streams.events-carry-id",
        "streams.end-arrives",
        "streams.nothing-after-end",
        "shutdown.exits-on-eof",
        "shutdown.no-leftovers",
    ];
    for id in fixed {
        run.skip(id, reason);
    }
    // Families whose checks are named after ops or commands nobody declared.
    for family in ["timeout", "schema", "determinism", "commands"] {
        run.skip_family(family, &[], reason);
    }
}

/// `arg` made absolute against `cwd` when it is a relative path: always for
/// a program given with a `/`, and for an argument only when that file
/// exists (so flags and plain words are left alone).
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
