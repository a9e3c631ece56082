//! The supervisor's event loop, drivable in memory.
//!
//! [`Core`] owns the running services. It is fed [`Input`]s (control
//! requests, changed config files, shutdown) over a channel and reports
//! [`UpEvent`]s to a sink, so a test drives it like `lsp-server`'s loop:
//! build a `Core` over real child processes in a temp dir, send inputs,
//! read events; no socket, no separate process. [`super::run`] wires it to
//! the control socket, the signals and the plugin pipeline.
//!
//! One rule keeps readers consistent: every change is written to the state
//! file *before* it is announced (events, control replies), so whoever hears
//! "ready" and then reads `state.json` sees ready too.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use devctl_contract::manifest::ServiceSpec;
use devctl_contract::protocol::BuildWatch;
use devctl_contract::secrets::{redact_argv, redact_text};
use devctl_sdk::host::process_id;
use devctl_support::fs::PrivateDir;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::graph::{Backoff, Graph};
use super::spawn::{service_cwd, spawn, Launch};
use crate::control::{Reply, Request};
use crate::events::UpEvent;
use crate::logs::{read::last_lines, Capture, LogLimits, Stream};
use crate::procs::{
    describe_stop, marked_processes, stop, stop_all, stop_note, Marked, Stopped, Targets,
};
use crate::state::{now_ms, Exit, Phase, ServiceState, ServiceStatus, State};
use crate::statedir::StateDir;

mod replan;
use replan::{next_change, watched_globs};

/// How many stderr lines a failure report carries.
const TAIL: usize = 20;
/// How long an exit waits for the process's last output to be logged (a
/// descendant that keeps the pipe open would otherwise hold it forever).
const SETTLE_LOGS: Duration = Duration::from_millis(300);

/// Why the run cannot go on; reported as a `failed` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: String,
    pub service: Option<String>,
    pub exit: Option<Exit>,
    pub stderr_tail: Vec<String>,
}

impl Failure {
    pub fn new(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            service: None,
            exit: None,
            stderr_tail: Vec::new(),
        }
    }
}

impl From<crate::repository::RepoError> for Failure {
    fn from(err: crate::repository::RepoError) -> Failure {
        Failure::new(err.to_string())
    }
}

/// What a pipeline run gives the supervisor.
#[derive(Debug, Clone, Default)]
pub struct Planned {
    pub services: Vec<ServiceSpec>,
    /// The config globs the plugins declared (`declares.watch`).
    pub watch: Vec<String>,
    /// The build steps' sources the plugins declared (`declares.builds`).
    pub builds: Vec<BuildWatch>,
    /// The build steps that ran (a rebuild's), with how long each took (ms).
    pub built: Vec<(String, u64)>,
}

/// Makes a new plan (for `up --watch`): told which services are running and
/// which build steps to run again (their sources changed).
pub trait Planner: Send + Sync {
    fn plan(
        &self,
        running: Vec<String>,
        rebuild: Vec<String>,
    ) -> Pin<Box<dyn Future<Output = Result<Planned, Failure>> + Send + '_>>;
}

/// Where events go (the pipe to `up` in production, a channel in tests).
pub type EventSink = Arc<dyn Fn(UpEvent) + Send + Sync>;

/// What the outside world sends the loop.
pub enum Input {
    /// A control request; the reply goes back on the sender.
    Control {
        request: Request,
        reply: oneshot::Sender<Reply>,
    },
    /// Config inputs changed (`up --watch`): re-plan.
    Changed(Vec<String>),
    /// Stop everything and return.
    Shutdown,
}

/// What a `Core` is built from.
pub struct CoreOptions {
    pub dir: Arc<StateDir>,
    pub logs: Arc<PrivateDir>,
    /// Size and count of each service's log files.
    pub log_limits: LogLimits,
    pub grace: Duration,
    pub events: EventSink,
    /// For `up --watch`; `None` never re-plans.
    pub planner: Option<Box<dyn Planner>>,
    /// The state written so far (phase starting); the loop takes it over.
    pub state: State,
    /// This process is a subreaper that runs nothing but this loop (the
    /// real supervisor): at shutdown, whatever still descends from it
    /// escaped a service and is stopped too. Off when driven in a test.
    pub owns_descendants: bool,
}

/// Messages from the loop's own tasks.
enum Msg {
    Exited {
        name: String,
        instance: u64,
        exit: Exit,
    },
    Ready {
        name: String,
        instance: u64,
    },
    Unhealthy {
        name: String,
        instance: u64,
        reason: String,
    },
    RestartDue {
        name: String,
        instance: u64,
    },
}

/// A service's runtime bookkeeping.
struct Runtime {
    cwd: PathBuf,
    /// The service's log, for the whole run (restarts included).
    log: Arc<Capture>,
    /// Bumped for every process started or retired, so messages about an
    /// earlier process are recognised and ignored.
    instance: u64,
    backoff: Backoff,
    health: Option<JoinHandle<()>>,
}

/// Everything announced after the next state write.
#[derive(Default)]
struct Outbox {
    events: Vec<UpEvent>,
    replies: Vec<(oneshot::Sender<Reply>, Reply)>,
}

pub struct Core {
    dir: Arc<StateDir>,
    logs: Arc<PrivateDir>,
    log_limits: LogLimits,
    /// devctl's own log (`@devctl.log`): re-plans and failures.
    devctl_log: Capture,
    run: String,
    grace: Duration,
    graph: Graph,
    runtimes: BTreeMap<String, Runtime>,
    state: State,
    events: EventSink,
    planner: Option<Box<dyn Planner>>,
    watcher: Option<crate::watch::Watcher>,
    started: Instant,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    outbox: Outbox,
    /// A restart request waiting for its services to be ready again.
    pending_restart: Option<(BTreeSet<String>, oneshot::Sender<Reply>)>,
    /// Changes that arrived while a re-plan could not run.
    pending_changes: Vec<String>,
    /// Set when the loop must end, with its result.
    finished: Option<Result<u8, Failure>>,
    owns_descendants: bool,
    /// The build steps' sources (`declares.builds`), for `up --watch`.
    builds: Vec<BuildWatch>,
}

impl Core {
    /// Checks the services and prepares to run them (nothing starts yet).
    pub fn new(options: CoreOptions, services: Vec<ServiceSpec>) -> Result<Core, Failure> {
        let root = options.dir.root().to_path_buf();
        let graph = Graph::new(services).map_err(|err| Failure::new(err.to_string()))?;
        let names: Vec<String> = graph.order().to_vec();
        let runtimes = runtimes_for(
            &root,
            &graph,
            &names,
            &options.logs,
            options.log_limits,
            &mut BTreeMap::new(),
        )?;
        let devctl_log = Capture::open(options.logs.clone(), "@devctl", options.log_limits)
            .map_err(|err| Failure::new(format!("cannot open devctl's log: {err}")))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut core = Core {
            dir: options.dir,
            logs: options.logs,
            log_limits: options.log_limits,
            devctl_log,
            run: crate::procs::run_id(),
            grace: options.grace,
            graph,
            runtimes,
            state: options.state,
            events: options.events,
            planner: options.planner,
            watcher: None,
            started: Instant::now(),
            tx,
            rx,
            outbox: Outbox::default(),
            pending_restart: None,
            pending_changes: Vec::new(),
            finished: None,
            owns_descendants: options.owns_descendants,
            builds: Vec::new(),
        };
        core.state.services = core
            .graph
            .order()
            .iter()
            .map(|name| fresh_state(name, core.graph.spec(name)))
            .collect();
        Ok(core)
    }

    /// Watches config globs and build steps' sources (`up --watch`).
    pub fn watch(&mut self, mut watcher: crate::watch::Watcher, planned: &Planned) {
        watcher.set_globs(&watched_globs(planned));
        self.builds = planned.builds.clone();
        self.watcher = Some(watcher);
    }

    /// Declares the build steps' sources without a watcher (tests drive
    /// changes in with [`Input::Changed`]).
    pub fn set_builds(&mut self, builds: Vec<BuildWatch>) {
        self.builds = builds;
    }

    /// Runs until shut down (or start-up fails); returns the exit status.
    pub async fn run(mut self, mut inputs: mpsc::UnboundedReceiver<Input>) -> Result<u8, Failure> {
        self.started = Instant::now();
        self.schedule();
        self.check_all_ready();
        self.flush();
        loop {
            let replan = self.state.phase == Phase::Running && self.pending_restart.is_none();
            if replan && !self.pending_changes.is_empty() {
                let changed = std::mem::take(&mut self.pending_changes);
                // A stop or a shutdown cuts a re-plan short (its plugins are
                // stopped with it); it is then handled like any other input.
                if let Some(input) = self.replan(changed, &mut inputs).await {
                    self.on_input(Some(input)).await;
                }
                self.flush();
                if let Some(result) = self.finished.take() {
                    return result;
                }
                continue;
            }
            tokio::select! {
                msg = self.rx.recv() => {
                    if let Some(msg) = msg {
                        self.on_msg(msg).await;
                    }
                }
                input = inputs.recv() => self.on_input(input).await,
                changed = next_change(&mut self.watcher) => self.pending_changes.extend(changed),
            }
            self.flush();
            if let Some(result) = self.finished.take() {
                return result;
            }
        }
    }

    /// Writes the state, then announces what happened since the last write.
    fn flush(&mut self) {
        if let Err(err) = self.dir.write_state(&self.state) {
            eprintln!("supervisor: {err}");
        }
        let outbox = std::mem::take(&mut self.outbox);
        for event in outbox.events {
            (self.events)(event);
        }
        for (sender, reply) in outbox.replies {
            let _ = sender.send(reply);
        }
    }

    fn announce(&mut self, event: UpEvent) {
        self.outbox.events.push(event);
    }

    fn service_state(&mut self, name: &str) -> &mut ServiceState {
        if let Some(at) = self.state.services.iter().position(|s| s.name == name) {
            return &mut self.state.services[at];
        }
        self.state
            .services
            .push(fresh_state(name, self.graph.spec(name)));
        let last = self.state.services.len() - 1;
        &mut self.state.services[last]
    }

    fn status(&self, name: &str) -> ServiceStatus {
        self.state
            .service(name)
            .map(|s| s.status)
            .unwrap_or(ServiceStatus::Waiting)
    }

    fn current(&self, name: &str, instance: u64) -> bool {
        self.runtimes
            .get(name)
            .is_some_and(|r| r.instance == instance)
    }

    async fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Ready { name, instance } if self.current(&name, instance) => {
                let now = now_ms();
                let svc = self.service_state(&name);
                svc.status = ServiceStatus::Ready;
                svc.ready_at_ms = Some(now);
                let after_ms = now.saturating_sub(svc.started_at_ms.unwrap_or(now));
                let endpoint = svc.endpoint.clone();
                self.note(
                    &name,
                    &format!(
                        "ready after {after_ms} ms{}",
                        endpoint
                            .as_deref()
                            .map(|e| format!(" at {e}"))
                            .unwrap_or_default()
                    ),
                );
                self.announce(UpEvent::ServiceReady {
                    name,
                    after_ms,
                    endpoint,
                });
                self.schedule();
                self.check_all_ready();
                self.finish_restart_if_done();
            }
            Msg::Exited {
                name,
                instance,
                exit,
            } if self.current(&name, instance) => {
                self.on_exit(&name, exit).await;
            }
            Msg::Unhealthy {
                name,
                instance,
                reason,
            } if self.current(&name, instance) => {
                // Probe errors name the URL, which may hold a password.
                let reason = redact_text(&reason);
                let failure = Failure {
                    reason: format!("service {name} did not become ready: {reason}"),
                    service: Some(name.clone()),
                    exit: None,
                    stderr_tail: self.stderr_tail(&name).await,
                };
                self.fail_restart(&failure.reason);
                if self.state.phase == Phase::Starting {
                    self.fail_run(failure).await;
                    return;
                }
                // After start-up: stop it; it stays failed.
                self.stop_service(&name, self.grace).await;
                self.service_state(&name).status = ServiceStatus::Failed;
            }
            Msg::RestartDue { name, instance }
                if self.current(&name, instance)
                    && self.status(&name) == ServiceStatus::Restarting =>
            {
                self.service_state(&name).restarts += 1;
                self.start(&name);
            }
            _ => {} // about an earlier process of the service
        }
    }

    async fn on_input(&mut self, input: Option<Input>) {
        match input {
            None | Some(Input::Shutdown) => {
                let lines = self.stop_all().await;
                self.finish(lines);
            }
            Some(Input::Changed(files)) => self.pending_changes.extend(files),
            Some(Input::Control { request, reply }) => self.on_control(request, reply).await,
        }
    }

    async fn on_control(&mut self, request: Request, reply: oneshot::Sender<Reply>) {
        match request {
            Request::Stop => {
                let mut lines = self.stop_all().await;
                if lines.is_empty() {
                    lines.push(format!(
                        "stopped the supervisor (pid {}); no service was running",
                        std::process::id()
                    ));
                }
                self.outbox
                    .replies
                    .push((reply, Reply::lines(true, lines.clone())));
                self.finish(lines);
            }
            Request::Status => {
                let state = self.state.clone();
                self.outbox.replies.push((
                    reply,
                    Reply {
                        ok: true,
                        lines: Vec::new(),
                        state: Some(state),
                    },
                ));
            }
            Request::Restart { service } => self.restart(&service, reply).await,
            Request::StopService { service, kill } => {
                let grace = if kill { Duration::ZERO } else { self.grace };
                self.stop_one(&service, grace, reply).await;
            }
        }
    }

    /// Starts every waiting service whose dependencies are all ready.
    fn schedule(&mut self) {
        let statuses: BTreeMap<String, ServiceStatus> = self
            .state
            .services
            .iter()
            .map(|s| (s.name.clone(), s.status))
            .collect();
        let status = |name: &str| {
            statuses
                .get(name)
                .copied()
                .unwrap_or(ServiceStatus::Waiting)
        };
        for name in self.graph.startable(status) {
            self.start(&name);
        }
    }

    /// Start-up is over once every service is ready (at once with none).
    fn check_all_ready(&mut self) {
        if self.state.phase == Phase::Starting
            && self
                .state
                .services
                .iter()
                .all(|s| s.status == ServiceStatus::Ready)
        {
            self.state.phase = Phase::Running;
            self.announce(UpEvent::Ready {
                services: self.graph.len(),
                elapsed_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
        }
    }

    fn start(&mut self, name: &str) {
        let Some(spec) = self.graph.spec(name).cloned() else {
            return;
        };
        let Some(runtime) = self.runtimes.get_mut(name) else {
            return;
        };
        runtime.instance += 1;
        let instance = runtime.instance;
        let cwd = runtime.cwd.clone();
        let log = runtime.log.clone();
        let launch = Launch {
            root: self.dir.root(),
            log: &log,
            run: &self.run,
        };
        let mut child = match spawn(&spec, &cwd, &launch) {
            Ok(child) => child,
            Err(err) => {
                let _ = self.tx.send(Msg::Unhealthy {
                    name: name.to_owned(),
                    instance,
                    reason: format!("cannot start `{}`: {err}", shown_command(&spec.command)),
                });
                return;
            }
        };
        let pid = child.id().unwrap_or(0);
        let svc = self.service_state(name);
        svc.status = ServiceStatus::Starting;
        svc.pid = Some(pid);
        svc.pgid = i32::try_from(pid).ok();
        svc.start_time = process_id(pid).map(|p| p.start_time);
        svc.started_at_ms = Some(now_ms());
        svc.ready_at_ms = None;
        svc.exit = None;
        svc.next_restart_at_ms = None;
        log.note(&format!(
            "started (pid {pid}): {}",
            shown_command(&spec.command)
        ));
        self.announce(UpEvent::ServiceStarting {
            name: name.to_owned(),
            pid,
        });
        let tx = self.tx.clone();
        let exit_name = name.to_owned();
        tokio::spawn(async move {
            use std::os::unix::process::ExitStatusExt;
            let exit = match child.wait().await {
                Ok(status) => Exit {
                    code: status.code(),
                    signal: status.signal(),
                },
                Err(_) => Exit {
                    code: None,
                    signal: None,
                },
            };
            let _ = tx.send(Msg::Exited {
                name: exit_name,
                instance,
                exit,
            });
        });
        let tx = self.tx.clone();
        let health_name = name.to_owned();
        let health = spec.health.clone();
        let settle = crate::health::settle_time(spec.settle_ms);
        let handle = tokio::spawn(async move {
            let outcome = match &health {
                Some(check) => crate::health::wait_ready(check, &cwd).await,
                // Ready once it has stayed up: an exit before then aborts
                // this task and fails the start (see `on_exit`).
                None => {
                    tokio::time::sleep(settle).await;
                    Ok(())
                }
            };
            let _ = tx.send(match outcome {
                Ok(()) => Msg::Ready {
                    name: health_name,
                    instance,
                },
                Err(reason) => Msg::Unhealthy {
                    name: health_name,
                    instance,
                    reason,
                },
            });
        });
        if let Some(previous) = self
            .runtimes
            .get_mut(name)
            .and_then(|r| r.health.replace(handle))
        {
            previous.abort();
        }
    }

    async fn on_exit(&mut self, name: &str, exit: Exit) {
        if let Some(handle) = self.runtimes.get_mut(name).and_then(|r| r.health.take()) {
            handle.abort();
        }
        let tail = self.stderr_tail(name).await;
        let ready_since = {
            let svc = self.service_state(name);
            svc.exit = Some(exit);
            svc.stderr_tail = tail.clone();
            svc.ready_at_ms
        };
        let starting = self.state.phase == Phase::Starting;
        let restarting_it = self
            .pending_restart
            .as_ref()
            .is_some_and(|(set, _)| set.contains(name));
        if starting || restarting_it {
            self.service_state(name).status = ServiceStatus::Failed;
            self.note(name, &format!("exited with {exit} while starting"));
            let reason = format!("service {name} exited during start-up with {exit}");
            self.fail_restart(&reason);
            self.announce(UpEvent::ServiceExited {
                name: name.to_owned(),
                exit,
                restarting: false,
            });
            if starting {
                self.fail_run(Failure {
                    reason,
                    service: Some(name.to_owned()),
                    exit: Some(exit),
                    stderr_tail: tail,
                })
                .await;
            }
            return;
        }
        let policy = self
            .graph
            .spec(name)
            .and_then(|s| s.restart)
            .unwrap_or_default();
        let ready_for = ready_since.map(|at| Duration::from_millis(now_ms().saturating_sub(at)));
        let delay = self
            .runtimes
            .get_mut(name)
            .and_then(|r| r.backoff.after_exit(policy, exit, ready_for));
        self.announce(UpEvent::ServiceExited {
            name: name.to_owned(),
            exit,
            restarting: delay.is_some(),
        });
        self.note(
            name,
            &match delay {
                Some(delay) => {
                    format!("exited with {exit}; restarting in {} ms", delay.as_millis())
                }
                None => format!("exited with {exit}"),
            },
        );
        let Some(delay) = delay else {
            self.service_state(name).status = if exit.code == Some(0) {
                ServiceStatus::Exited
            } else {
                ServiceStatus::Failed
            };
            return;
        };
        let instance = self.runtimes.get(name).map_or(0, |r| r.instance);
        let svc = self.service_state(name);
        svc.status = ServiceStatus::Restarting;
        svc.next_restart_at_ms =
            Some(now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)));
        let tx = self.tx.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Msg::RestartDue { name, instance });
        });
    }

    /// Start-up failed: stop everything and end with `failure`.
    async fn fail_run(&mut self, failure: Failure) {
        self.devctl_log.note(&failure.reason);
        self.stop_all().await;
        self.state.phase = Phase::Failed;
        self.state.error = Some(failure.reason.clone());
        self.finished = Some(Err(failure));
    }

    fn finish(&mut self, lines: Vec<String>) {
        self.state.phase = Phase::Stopped;
        self.announce(UpEvent::Stopped { lines });
        self.finished = Some(Ok(0));
    }

    /// The last lines the service wrote to stderr, once what its exited
    /// process wrote is all in the log.
    async fn stderr_tail(&self, name: &str) -> Vec<String> {
        if let Some(runtime) = self.runtimes.get(name) {
            runtime.log.settled(SETTLE_LOGS).await;
        }
        last_lines(self.logs.path(), name, Stream::Stderr, TAIL)
    }

    /// A lifecycle line in the service's log.
    fn note(&self, name: &str, text: &str) {
        if let Some(runtime) = self.runtimes.get(name) {
            runtime.log.note(text);
        }
    }

    /// `restart SVC`: stops it and everything that depends on it (dependents
    /// first), then starts them again in dependency order; replies once they
    /// are all ready again.
    async fn restart(&mut self, service: &str, reply: oneshot::Sender<Reply>) {
        if let Err(text) = self.can_change(service) {
            self.outbox
                .replies
                .push((reply, Reply::lines(false, vec![text])));
            return;
        }
        let set = self.graph.with_dependents(service);
        for wave in self.graph.stop_waves(&set) {
            for name in wave {
                self.stop_service(&name, self.grace).await;
            }
        }
        for name in &set {
            let svc = self.service_state(name);
            svc.status = ServiceStatus::Waiting;
            svc.restarts += 1;
        }
        // The plan is the same: `generation` counts plans, not restarts.
        self.pending_restart = Some((set, reply));
        self.schedule();
    }

    /// `s`/`x` in the TUI: stops one service and leaves it stopped (its
    /// dependents keep running); `restart` brings it back.
    async fn stop_one(&mut self, service: &str, grace: Duration, reply: oneshot::Sender<Reply>) {
        if let Err(text) = self.can_change(service) {
            self.outbox
                .replies
                .push((reply, Reply::lines(false, vec![text])));
            return;
        }
        let line = self
            .stop_service(service, grace)
            .await
            .unwrap_or_else(|| format!("{service} was not running"));
        self.state.generation += 1;
        self.outbox
            .replies
            .push((reply, Reply::lines(true, vec![line])));
    }

    /// Whether `service` may be restarted or stopped now; why not if not.
    fn can_change(&self, service: &str) -> Result<(), String> {
        if !self.graph.contains(service) {
            let known = self.graph.order().join(", ");
            return Err(format!("no service {service:?} (services: {known})"));
        }
        if self.pending_restart.is_some() {
            return Err("another restart is in progress".into());
        }
        if self.state.phase != Phase::Running {
            return Err(
                "the environment is still starting; try again once `devctl status` says running"
                    .into(),
            );
        }
        Ok(())
    }

    fn finish_restart_if_done(&mut self) {
        let done = self.pending_restart.as_ref().is_some_and(|(set, _)| {
            set.iter()
                .all(|name| self.status(name) == ServiceStatus::Ready)
        });
        if !done {
            return;
        }
        if let Some((set, reply)) = self.pending_restart.take() {
            let names: Vec<&str> = self
                .graph
                .order()
                .iter()
                .filter(|n| set.contains(*n))
                .map(String::as_str)
                .collect();
            let text = format!("restarted {}", names.join(", "));
            self.outbox
                .replies
                .push((reply, Reply::lines(true, vec![text])));
        }
    }

    fn fail_restart(&mut self, reason: &str) {
        if let Some((_, reply)) = self.pending_restart.take() {
            self.outbox
                .replies
                .push((reply, Reply::lines(false, vec![reason.to_owned()])));
        }
    }

    /// Makes messages about the service's current process stale (it is being
    /// stopped on purpose) and stops its health probe.
    fn retire(&mut self, name: &str) {
        if let Some(runtime) = self.runtimes.get_mut(name) {
            runtime.instance += 1;
            if let Some(handle) = runtime.health.take() {
                handle.abort();
            }
        }
    }

    /// What stopping `name` must reach: its process group, and whatever of
    /// this run carries its mark elsewhere (descendants that left the group).
    fn targets(&self, name: &str, marked: &[Marked]) -> Targets {
        let mut targets = Targets::default();
        if let Some(pgid) = self.state.service(name).and_then(|s| s.pgid) {
            targets.groups.push(pgid);
        }
        targets.processes = marked
            .iter()
            .filter(|m| m.service == name && m.run == self.run)
            .map(|m| m.process)
            .collect();
        targets
    }

    /// Stops one service; returns a line for a report.
    async fn stop_service(&mut self, name: &str, grace: Duration) -> Option<String> {
        self.retire(name);
        let marked = marked_processes(self.dir.root());
        let targets = self.targets(name, &marked);
        let outcome = stop(&targets, grace).await;
        let svc = self.service_state(name);
        if !matches!(svc.status, ServiceStatus::Exited | ServiceStatus::Failed) {
            svc.status = ServiceStatus::Stopped;
        }
        let pid = svc.pid.unwrap_or(0);
        if let Some(note) = stop_note(pid, outcome, grace) {
            self.note(name, &note);
        }
        describe_stop(name, pid, outcome, grace)
    }

    /// Stops everything: dependents first, each wave in parallel; then any
    /// descendant that escaped its service (found because the supervisor
    /// is their subreaper), named in the report.
    async fn stop_all(&mut self) -> Vec<String> {
        self.state.phase = Phase::Stopping;
        self.flush();
        let mut lines = Vec::new();
        let marked = marked_processes(self.dir.root());
        let all: BTreeSet<String> = self.graph.order().iter().cloned().collect();
        for wave in self.graph.stop_waves(&all) {
            for name in &wave {
                self.retire(name);
            }
            let sets: Vec<Targets> = wave.iter().map(|n| self.targets(n, &marked)).collect();
            let outcomes = stop_all(&sets, self.grace).await;
            for (name, outcome) in wave.iter().zip(outcomes) {
                let grace = self.grace;
                let group = self.state.service(name).and_then(|s| s.pgid);
                for escaped in marked
                    .iter()
                    .filter(|m| &m.service == name && m.run == self.run && Some(m.group) != group)
                {
                    lines.push(format!(
                        "stopped {name}'s escaped process {} ({})",
                        escaped.process.pid, escaped.command
                    ));
                }
                let svc = self.service_state(name);
                if !matches!(svc.status, ServiceStatus::Failed | ServiceStatus::Exited) {
                    svc.status = ServiceStatus::Stopped;
                }
                let pid = svc.pid.unwrap_or(0);
                lines.extend(describe_stop(name, pid, outcome, grace));
                if let Some(note) = stop_note(pid, outcome, grace) {
                    self.note(name, &note);
                }
            }
        }
        if self.owns_descendants {
            lines.extend(self.stop_escaped().await);
        }
        lines
    }

    /// Whatever still descends from the supervisor once every service group
    /// is gone left its group on purpose (`setsid`, double fork): stop it too.
    async fn stop_escaped(&mut self) -> Vec<String> {
        let escaped = super::reaper::all_descendants();
        if escaped.is_empty() {
            return Vec::new();
        }
        let root = self.dir.root().to_path_buf();
        let names: Vec<String> = escaped
            .iter()
            .map(|p| {
                let owner = crate::procs::marked(p.pid, &root)
                    .map(|m| format!("{}'s", m.service))
                    .unwrap_or_else(|| "a service's".into());
                format!(
                    "{owner} escaped process {} ({})",
                    p.pid,
                    crate::procs::command_of(p.pid)
                )
            })
            .collect();
        let targets = Targets {
            groups: Vec::new(),
            processes: escaped,
        };
        let outcome = stop(&targets, self.grace).await;
        let verb = match outcome {
            Stopped::AlreadyGone => return Vec::new(),
            Stopped::Terminated => "stopped",
            Stopped::Killed => "killed (it ignored SIGTERM)",
            Stopped::Resisted => "could NOT stop",
        };
        names.into_iter().map(|n| format!("{verb} {n}")).collect()
    }
}

/// Runtimes for `names` of `graph`; a service's log is taken from `logs_of`
/// when it is there (a restart keeps writing the run's log), else opened
/// (which rotates the previous run's log away).
fn runtimes_for(
    root: &std::path::Path,
    graph: &Graph,
    names: &[String],
    logs: &Arc<PrivateDir>,
    limits: LogLimits,
    logs_of: &mut BTreeMap<String, Arc<Capture>>,
) -> Result<BTreeMap<String, Runtime>, Failure> {
    let mut runtimes = BTreeMap::new();
    for name in names {
        let Some(spec) = graph.spec(name) else {
            continue;
        };
        let cwd = service_cwd(root, spec).map_err(Failure::new)?;
        let log = match logs_of.remove(name) {
            Some(log) => log,
            None => Arc::new(Capture::open(logs.clone(), name, limits).map_err(|err| {
                Failure::new(format!("service {name}: cannot open its log: {err}"))
            })?),
        };
        runtimes.insert(
            name.clone(),
            Runtime {
                cwd,
                log,
                instance: 0,
                backoff: Backoff::default(),
                health: None,
            },
        );
    }
    Ok(runtimes)
}

fn fresh_state(name: &str, spec: Option<&ServiceSpec>) -> ServiceState {
    let mut state = ServiceState::new(name);
    state.endpoint = spec.and_then(endpoint_of);
    state
}

/// Where a service answers, from its health check (secrets hidden: it is
/// shown and written to the state file).
pub fn endpoint_of(spec: &ServiceSpec) -> Option<String> {
    let health = spec.health.as_ref()?;
    health
        .url
        .clone()
        .or_else(|| health.address.clone())
        .or_else(|| health.port.map(|port| format!("127.0.0.1:{port}")))
        .map(|endpoint| redact_text(&endpoint))
}

/// A command as logs and messages show it: secrets hidden, shell-quoted.
fn shown_command(argv: &[String]) -> String {
    crate::render::shell_line(&redact_argv(argv))
}
