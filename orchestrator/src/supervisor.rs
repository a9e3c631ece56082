//! The supervisor: the background process `devctl up` starts.
//!
//! It holds `.devctl/lock` (an `flock`, released by the kernel if the
//! supervisor dies, so a crashed run never leaves a stale lock), runs the
//! plugin pipeline, then starts the services: each in its own process group,
//! stdout and stderr going straight from the child's descriptors into
//! `.devctl/logs/`, dependencies first and everything independent in
//! parallel. It waits for readiness, applies restart policies, keeps
//! `state.json` current, answers `restart`/`stop` on its control socket, and
//! on SIGTERM/SIGINT stops every service (dependents first) before exiting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use devctl_contract::manifest::{RestartPolicy, ServiceSpec};
use devctl_sdk::host::{process_id, StderrSink};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::control::{self, Reply, Request};
use crate::events::{Emitter, UpEvent};
use crate::pipeline::{self, PipelineOptions};
use crate::procs::{describe_stop, stop_group, Stopped};
use crate::repository::{close_all, Repository};
use crate::state::{
    now_ms, tail_lines, Exit, Paths, Phase, ServiceState, ServiceStatus, State, Stream,
    STATE_VERSION,
};

/// A service that stayed ready this long gets its restart backoff reset.
const STABLE_AFTER: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const TAIL: usize = 20;

#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    pub pipeline: PipelineOptions,
    /// Stop services left running by a crashed run instead of refusing.
    pub force: bool,
    /// How long a service gets between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Re-plan when config inputs change (`up --watch`).
    pub watch: bool,
    /// To reopen the repository on each re-plan (.devctl.yaml may change).
    pub settings: crate::repository::Settings,
}

/// Why the run cannot go on; reported as a `failed` event.
struct Failure {
    reason: String,
    service: Option<String>,
    exit: Option<Exit>,
    stderr_tail: Vec<String>,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            service: None,
            exit: None,
            stderr_tail: Vec::new(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Failure {
        Failure::new(format!("{err:#}"))
    }
}

/// Runs the supervisor; returns its exit status.
pub async fn run(mut repo: Repository, options: SupervisorOptions) -> u8 {
    let emitter = Emitter;
    let paths = Paths::new(&repo.root);
    let sink = emitter.clone();
    repo.stderr = StderrSink::Callback(Arc::new(move |plugin: &str, line: &str| {
        sink.emit(&UpEvent::PluginOutput {
            plugin: plugin.to_owned(),
            line: line.to_owned(),
        });
    }));
    match supervise(&repo, &options, &paths, &emitter).await {
        Ok(code) => code,
        Err(failure) => {
            emitter.emit(&UpEvent::Failed {
                reason: failure.reason,
                service: failure.service,
                exit: failure.exit,
                stderr_tail: failure.stderr_tail,
            });
            1
        }
    }
}

async fn supervise(
    repo: &Repository,
    options: &SupervisorOptions,
    paths: &Paths,
    emitter: &Emitter,
) -> Result<u8, Failure> {
    let started = Instant::now();
    std::fs::create_dir_all(paths.logs())
        .map_err(|err| Failure::new(format!("cannot create {}: {err}", paths.logs().display())))?;
    let _lock = take_lock(paths)?;
    if let Some(previous) = State::read(paths)? {
        let live: Vec<String> = previous
            .live_services()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        if !live.is_empty() {
            if !options.force {
                return Err(Failure::new(format!(
                    "services from a previous run are still running ({}); run `devctl down` first, or `devctl up --force`",
                    live.join(", ")
                )));
            }
            crate::lifecycle::stop_recorded(&previous, options.grace).await;
        }
    }
    let me = process_id(std::process::id());
    let mut state = State {
        version: STATE_VERSION,
        repo_root: repo.root.clone(),
        supervisor_pid: std::process::id(),
        supervisor_start_time: me.map(|p| p.start_time),
        socket: paths.socket(),
        phase: Phase::Starting,
        generation: 1,
        services: Vec::new(),
        error: None,
        watching: options.watch,
        last_rebuild: None,
    };
    write_state(&state, paths);

    let mut signals = Signals::new()?;
    let planned = tokio::select! {
        planned = plan_services(repo, options, emitter) => planned,
        // Dropping the pipeline kills the plugins it started.
        () = signals.next() => Err(Failure::new("interrupted before any service was started")),
    };
    let planned = match planned {
        Ok(planned) => planned,
        Err(failure) => {
            state.phase = Phase::Failed;
            state.error = Some(failure.reason.clone());
            write_state(&state, paths);
            return Err(failure);
        }
    };
    emitter.emit(&UpEvent::Phase {
        name: "services".into(),
    });
    let mut world = World::new(repo, paths, planned.services, options)?;
    world.state = state;
    if options.watch {
        let watcher = crate::watch::Watcher::new(&repo.root, &planned.watch)
            .map_err(|err| Failure::new(format!("cannot watch the config files: {err}")))?;
        world.watcher = Some(watcher);
    }
    let result = world.run(started, emitter, signals).await;
    let _ = std::fs::remove_file(paths.socket());
    result
}

/// Holds `.devctl/lock` for the supervisor's lifetime.
fn take_lock(paths: &Paths) -> Result<nix::fcntl::Flock<std::fs::File>, Failure> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(paths.lock())
        .map_err(|err| Failure::new(format!("cannot open {}: {err}", paths.lock().display())))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        Failure::new("another `devctl up` is running for this repo; use `devctl status`, or `devctl down` to stop it")
    })
}

/// What a pipeline run gives the supervisor.
struct Planned {
    services: Vec<ServiceSpec>,
    /// The config globs the plugins declared (`declares.watch`).
    watch: Vec<String>,
}

/// Runs the plugin pipeline and returns the services to start.
async fn plan_services(
    repo: &Repository,
    options: &SupervisorOptions,
    emitter: &Emitter,
) -> Result<Planned, Failure> {
    plan_with(repo, &options.pipeline, emitter).await
}

async fn plan_with(
    repo: &Repository,
    options: &PipelineOptions,
    emitter: &Emitter,
) -> Result<Planned, Failure> {
    emitter.emit(&UpEvent::Phase {
        name: "plugins".into(),
    });
    let clients = crate::builtins::start_all(repo, &BTreeSet::new(), false).await?;
    let watch: Vec<String> = clients
        .iter()
        .filter_map(|c| c.handshake().declares.as_ref())
        .flat_map(|d| d.watch.iter().cloned())
        .collect();
    let phase = |name: &str| emitter.emit(&UpEvent::Phase { name: name.into() });
    let outcome = pipeline::run_with(&clients, options, repo.timeout, &phase).await;
    close_all(clients).await;
    let outcome = outcome.map_err(|err| Failure::new(err.to_string()))?;
    for message in &outcome.messages {
        emitter.emit(&UpEvent::PluginMessage {
            plugin: message.plugin.clone(),
            level: message.level.clone(),
            text: message.text.clone(),
        });
    }
    let plan = outcome
        .plan(&BTreeSet::new(), repo.strictness)
        .map_err(|err| Failure::new(err.to_string()))?;
    for collision in &plan.collisions {
        emitter.emit(&UpEvent::PluginMessage {
            plugin: collision.second.clone(),
            level: "warn".into(),
            text: collision.to_string(),
        });
    }
    if let Some((phase, step)) = plan.failed_steps().first() {
        return Err(Failure::new(format!(
            "{phase} step {:?} of plugin {} failed; nothing was started",
            step.step.name, step.plugin
        )));
    }
    if !options.skip_validate && !plan.valid {
        for issue in &plan.errors {
            emitter.emit(&UpEvent::Invalid {
                plugin: issue.plugin.clone(),
                code: issue.issue.code.clone(),
                message: issue.issue.message.clone(),
                fix: issue
                    .issue
                    .details
                    .as_ref()
                    .and_then(|d| d.get("fix"))
                    .and_then(|f| f.as_str())
                    .map(str::to_owned),
            });
        }
        let first = plan
            .errors
            .first()
            .map(|e| format!(" ({}: {})", e.issue.code, e.issue.message))
            .unwrap_or_default();
        return Err(Failure::new(format!("validation failed{first}; nothing was started (fix the errors above, or pass --skip-validate)")));
    }
    Ok(Planned {
        services: plan.services.into_iter().map(|s| s.spec).collect(),
        watch,
    })
}

fn write_state(state: &State, paths: &Paths) {
    if let Err(err) = state.write(paths) {
        eprintln!(
            "supervisor: cannot write {}: {err}",
            paths.state().display()
        );
    }
}

/// Messages to the supervisor's loop.
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
    /// A control request with its connection, answered by the loop itself
    /// (so a reply is written even when the loop then exits).
    Control {
        request: Request,
        connection: Connection,
    },
}

type Connection = tokio::io::BufReader<tokio::net::UnixStream>;

struct Service {
    spec: ServiceSpec,
    cwd: PathBuf,
    instance: u64,
    backoff: Duration,
    health: Option<JoinHandle<()>>,
}

/// Everything the supervisor runs.
struct World {
    paths: Paths,
    grace: Duration,
    order: Vec<String>,
    services: BTreeMap<String, Service>,
    state: State,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    /// A restart request waiting for its services to be ready again.
    pending_restart: Option<(BTreeSet<String>, Connection)>,
    /// `up --watch`: the config inputs being watched.
    watcher: Option<crate::watch::Watcher>,
    settings: crate::repository::Settings,
    stderr: StderrSink,
}

impl World {
    fn new(
        repo: &Repository,
        paths: &Paths,
        specs: Vec<ServiceSpec>,
        options: &SupervisorOptions,
    ) -> Result<World, Failure> {
        let (order, services) = check_services(&repo.root, specs)?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(World {
            paths: paths.clone(),
            grace: options.grace,
            order,
            services,
            state: State {
                version: STATE_VERSION,
                repo_root: repo.root.clone(),
                supervisor_pid: std::process::id(),
                supervisor_start_time: None,
                socket: paths.socket(),
                phase: Phase::Starting,
                generation: 1,
                services: Vec::new(),
                error: None,
                watching: options.watch,
                last_rebuild: None,
            },
            tx,
            rx,
            pending_restart: None,
            watcher: None,
            settings: options.settings.clone(),
            stderr: repo.stderr.clone(),
        })
    }

    fn service_state(&mut self, name: &str) -> &mut ServiceState {
        let position = self.state.services.iter().position(|s| s.name == name);
        match position {
            Some(at) => &mut self.state.services[at],
            None => {
                self.state.services.push(ServiceState {
                    name: name.to_owned(),
                    status: ServiceStatus::Waiting,
                    pid: None,
                    pgid: None,
                    start_time: None,
                    started_at_ms: None,
                    ready_at_ms: None,
                    restarts: 0,
                    exit: None,
                    stderr_tail: Vec::new(),
                    stdout_log: self.paths.log(name, Stream::Stdout),
                    stderr_log: self.paths.log(name, Stream::Stderr),
                });
                let last = self.state.services.len() - 1;
                &mut self.state.services[last]
            }
        }
    }

    fn status(&self, name: &str) -> ServiceStatus {
        self.state
            .services
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.status)
            .unwrap_or(ServiceStatus::Waiting)
    }

    async fn run(
        mut self,
        started: Instant,
        emitter: &Emitter,
        mut signals: Signals,
    ) -> Result<u8, Failure> {
        for name in self.order.clone() {
            self.service_state(&name);
        }
        self.state.supervisor_start_time = process_id(std::process::id()).map(|p| p.start_time);
        let _ = std::fs::remove_file(self.paths.socket());
        let listener = tokio::net::UnixListener::bind(self.paths.socket()).map_err(|err| {
            Failure::new(format!(
                "cannot listen on {}: {err}",
                self.paths.socket().display()
            ))
        })?;
        self.schedule(emitter);
        write_state(&self.state, &self.paths);

        loop {
            let replan = self.state.phase == Phase::Running && self.pending_restart.is_none();
            let msg = tokio::select! {
                msg = self.rx.recv() => match msg { Some(msg) => msg, None => continue },
                changed = next_change(&mut self.watcher), if replan => {
                    self.replan(changed, emitter).await;
                    write_state(&self.state, &self.paths);
                    continue;
                }
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        let tx = self.tx.clone();
                        tokio::spawn(serve_connection(stream, tx));
                    }
                    continue;
                }
                () = signals.next() => break,
            };
            match msg {
                Msg::Ready { name, instance } if self.current(&name, instance) => {
                    let now = now_ms();
                    let svc = self.service_state(&name);
                    svc.status = ServiceStatus::Ready;
                    svc.ready_at_ms = Some(now);
                    let after_ms = now.saturating_sub(svc.started_at_ms.unwrap_or(now));
                    emitter.emit(&UpEvent::ServiceReady {
                        name: name.clone(),
                        after_ms,
                    });
                    self.schedule(emitter);
                    if self.state.phase == Phase::Starting
                        && self
                            .state
                            .services
                            .iter()
                            .all(|s| s.status == ServiceStatus::Ready)
                    {
                        self.state.phase = Phase::Running;
                        emitter.emit(&UpEvent::Ready {
                            services: self.services.len(),
                            elapsed_ms: u64::try_from(started.elapsed().as_millis())
                                .unwrap_or(u64::MAX),
                        });
                    }
                    self.finish_restart_if_done().await;
                }
                Msg::Exited {
                    name,
                    instance,
                    exit,
                } if self.current(&name, instance) => {
                    if let Some(failure) = self.on_exit(&name, exit, emitter).await {
                        self.stop_all().await;
                        self.state.phase = Phase::Failed;
                        self.state.error = Some(failure.reason.clone());
                        write_state(&self.state, &self.paths);
                        return Err(failure);
                    }
                }
                Msg::Unhealthy {
                    name,
                    instance,
                    reason,
                } if self.current(&name, instance) => {
                    let tail = tail_lines(&self.paths.log(&name, Stream::Stderr), TAIL);
                    let failure = Failure {
                        reason: format!("service {name} did not become ready: {reason}"),
                        service: Some(name.clone()),
                        exit: None,
                        stderr_tail: tail,
                    };
                    if self.state.phase == Phase::Starting || self.pending_restart.is_some() {
                        self.fail_restart(&failure.reason).await;
                        if self.state.phase == Phase::Starting {
                            self.stop_all().await;
                            self.state.phase = Phase::Failed;
                            self.state.error = Some(failure.reason.clone());
                            write_state(&self.state, &self.paths);
                            return Err(failure);
                        }
                    }
                    // After start-up: stop it and let its restart policy decide.
                    self.stop_one(&name).await;
                    self.service_state(&name).status = ServiceStatus::Failed;
                }
                Msg::RestartDue { name, instance }
                    if self.current(&name, instance)
                        && self.status(&name) == ServiceStatus::Restarting =>
                {
                    self.service_state(&name).restarts += 1;
                    self.start(&name, emitter);
                }
                Msg::Control {
                    request,
                    mut connection,
                } => match request {
                    Request::Stop => {
                        let lines = self.stop_all().await;
                        let result = self.finish(lines.clone(), emitter);
                        control::write_reply(&mut connection, &Reply { ok: true, lines }).await;
                        return result;
                    }
                    Request::Restart { service } => {
                        self.restart(&service, connection, emitter).await
                    }
                },
                _ => {} // a message about an earlier instance
            }
            write_state(&self.state, &self.paths);
        }
        let lines = self.stop_all().await;
        self.finish(lines, emitter)
    }

    fn finish(&mut self, lines: Vec<String>, emitter: &Emitter) -> Result<u8, Failure> {
        self.state.phase = Phase::Stopped;
        write_state(&self.state, &self.paths);
        emitter.emit(&UpEvent::Stopped { lines });
        Ok(0)
    }

    fn current(&self, name: &str, instance: u64) -> bool {
        self.services
            .get(name)
            .is_some_and(|s| s.instance == instance)
    }

    /// Starts every waiting service whose dependencies are all ready.
    fn schedule(&mut self, emitter: &Emitter) {
        for name in self.order.clone() {
            if self.status(&name) != ServiceStatus::Waiting {
                continue;
            }
            let deps_ready = self.services[&name]
                .spec
                .depends_on
                .iter()
                .all(|dep| self.status(dep) == ServiceStatus::Ready);
            if deps_ready {
                self.start(&name, emitter);
            }
        }
    }

    fn start(&mut self, name: &str, emitter: &Emitter) {
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        service.instance += 1;
        let instance = service.instance;
        let spec = service.spec.clone();
        let cwd = service.cwd.clone();
        let spawned = spawn_service(&spec, &cwd, &self.paths);
        let tx = self.tx.clone();
        let now = now_ms();
        match spawned {
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                let start_time = process_id(pid).map(|p| p.start_time);
                let svc = self.service_state(name);
                svc.status = ServiceStatus::Starting;
                svc.pid = Some(pid);
                svc.pgid = i32::try_from(pid).ok();
                svc.start_time = start_time;
                svc.started_at_ms = Some(now);
                svc.ready_at_ms = None;
                svc.exit = None;
                emitter.emit(&UpEvent::ServiceStarting {
                    name: name.to_owned(),
                    pid,
                });
                let exit_name = name.to_owned();
                let exit_tx = tx.clone();
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
                    let _ = exit_tx.send(Msg::Exited {
                        name: exit_name,
                        instance,
                        exit,
                    });
                });
                let health_name = name.to_owned();
                let health = spec.health.clone();
                let handle = tokio::spawn(async move {
                    let outcome = match &health {
                        Some(check) => crate::health::wait_ready(check, &cwd).await,
                        None => Ok(()),
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
                if let Some(service) = self.services.get_mut(name) {
                    if let Some(previous) = service.health.replace(handle) {
                        previous.abort();
                    }
                }
            }
            Err(err) => {
                let _ = tx.send(Msg::Unhealthy {
                    name: name.to_owned(),
                    instance,
                    reason: format!("cannot start `{}`: {err}", spec.command.join(" ")),
                });
            }
        }
    }

    /// Records an exit; returns a failure when it ends the run.
    async fn on_exit(&mut self, name: &str, exit: Exit, emitter: &Emitter) -> Option<Failure> {
        if let Some(handle) = self.services.get_mut(name).and_then(|s| s.health.take()) {
            handle.abort();
        }
        let tail = tail_lines(&self.paths.log(name, Stream::Stderr), TAIL);
        let was_ready_since = {
            let svc = self.service_state(name);
            svc.exit = Some(exit);
            svc.stderr_tail = tail.clone();
            svc.ready_at_ms
        };
        let starting = self.state.phase == Phase::Starting;
        if starting
            || self
                .pending_restart
                .as_ref()
                .is_some_and(|(set, _)| set.contains(name))
        {
            self.service_state(name).status = ServiceStatus::Failed;
            let reason = format!("service {name} exited during start-up with {exit}");
            self.fail_restart(&reason).await;
            emitter.emit(&UpEvent::ServiceExited {
                name: name.to_owned(),
                exit,
                restarting: false,
            });
            return starting.then(|| Failure {
                reason,
                service: Some(name.to_owned()),
                exit: Some(exit),
                stderr_tail: tail,
            });
        }
        let policy = self.services[name].spec.restart.unwrap_or_default();
        let failed = exit.code != Some(0);
        let restart = match policy {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Always => true,
        };
        emitter.emit(&UpEvent::ServiceExited {
            name: name.to_owned(),
            exit,
            restarting: restart,
        });
        if !restart {
            self.service_state(name).status = if failed {
                ServiceStatus::Failed
            } else {
                ServiceStatus::Exited
            };
            return None;
        }
        let service = self.services.get_mut(name)?;
        let stable = was_ready_since
            .is_some_and(|at| now_ms().saturating_sub(at) >= STABLE_AFTER.as_millis() as u64);
        let delay = if stable {
            FIRST_BACKOFF
        } else {
            service.backoff
        };
        service.backoff = if stable {
            FIRST_BACKOFF * 2
        } else {
            (service.backoff * 2).min(MAX_BACKOFF)
        };
        let instance = service.instance;
        self.service_state(name).status = ServiceStatus::Restarting;
        let tx = self.tx.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Msg::RestartDue { name, instance });
        });
        None
    }

    /// `up --watch`: replays the pipeline (config.mutate → validate.run →
    /// launch.plan) and applies the difference. Anything wrong with the new
    /// plan leaves the running services exactly as they are.
    async fn replan(&mut self, changed: Vec<String>, emitter: &Emitter) {
        let generation = self.state.generation + 1;
        let what = changed.join(", ");
        let outcome = match self.plan_again(emitter).await {
            Err(failure) => Err(failure.reason),
            Ok(planned) => {
                if let Some(watcher) = self.watcher.as_mut() {
                    watcher.set_globs(&planned.watch);
                }
                self.apply(planned.services, emitter).await
            }
        };
        let (applied, line) = match outcome {
            Ok(summary) => {
                self.state.generation = generation;
                (
                    true,
                    format!("plan {generation} ({what} changed): {summary}"),
                )
            }
            Err(reason) => (
                false,
                format!("new plan rejected ({what} changed): {reason}; nothing was changed"),
            ),
        };
        emitter.emit(&UpEvent::Replanned {
            applied,
            line: line.clone(),
        });
        self.state.last_rebuild = Some(line);
    }

    async fn plan_again(&self, emitter: &Emitter) -> Result<Planned, Failure> {
        let mut repo = Repository::open(&self.settings)?;
        repo.stderr = self.stderr.clone();
        let running: Vec<String> = self
            .state
            .services
            .iter()
            .filter(|s| s.status == ServiceStatus::Ready)
            .map(|s| s.name.clone())
            .collect();
        let options = PipelineOptions {
            skip_build: true,
            skip_prepare: true,
            skip_validate: false,
            build_steps: None,
            prepare_steps: None,
            running,
        };
        plan_with(&repo, &options, emitter).await
    }

    /// Moves the running services to `specs`: stops the removed, restarts
    /// the changed (and what depends on them, after them), starts the added;
    /// the rest keep running untouched. Returns a one-line summary.
    async fn apply(
        &mut self,
        specs: Vec<ServiceSpec>,
        emitter: &Emitter,
    ) -> Result<String, String> {
        let root = self.state.repo_root.clone();
        let (order, mut fresh) = check_services(&root, specs).map_err(|f| f.reason)?;
        let mut changed: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        let mut added = Vec::new();
        for (name, service) in &fresh {
            match self.services.get(name) {
                None => added.push(name.clone()),
                Some(old) => {
                    let reasons = differences(&old.spec, &service.spec);
                    if !reasons.is_empty() {
                        changed.insert(name.clone(), reasons);
                    }
                }
            }
        }
        let removed: Vec<String> = self
            .services
            .keys()
            .filter(|n| !fresh.contains_key(*n))
            .cloned()
            .collect();
        // What depends on a changed service restarts after it.
        let mut restart: BTreeSet<String> = changed.keys().cloned().collect();
        loop {
            let more: Vec<String> = fresh
                .values()
                .filter(|s| {
                    !restart.contains(&s.spec.name)
                        && !added.contains(&s.spec.name)
                        && s.spec.depends_on.iter().any(|d| restart.contains(d))
                })
                .map(|s| s.spec.name.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            restart.extend(more);
        }
        let stop: Vec<String> = self
            .order
            .iter()
            .rev()
            .filter(|n| removed.contains(n) || restart.contains(*n))
            .cloned()
            .collect();
        for name in &stop {
            self.stop_one(name).await;
        }
        for name in &removed {
            self.services.remove(name);
            self.state.services.retain(|s| &s.name != name);
        }
        for name in restart.iter().chain(&added) {
            if let Some(mut service) = fresh.remove(name) {
                // Keep counting instances, so late messages stay stale.
                service.instance = self.services.get(name).map_or(0, |old| old.instance);
                self.services.insert(name.clone(), service);
            }
            self.service_state(name).status = ServiceStatus::Waiting;
        }
        self.order = order;
        let positions: BTreeMap<&String, usize> =
            self.order.iter().enumerate().map(|(i, n)| (n, i)).collect();
        self.state
            .services
            .sort_by_key(|s| positions.get(&s.name).copied().unwrap_or(usize::MAX));
        self.schedule(emitter);

        let mut parts = Vec::new();
        if !added.is_empty() {
            parts.push(format!("started {}", added.join(", ")));
        }
        for (name, reasons) in &changed {
            parts.push(format!("restarted {name} ({} changed)", reasons.join(", ")));
        }
        let dependents: Vec<&str> = restart
            .iter()
            .filter(|n| !changed.contains_key(*n))
            .map(String::as_str)
            .collect();
        if !dependents.is_empty() {
            parts.push(format!(
                "restarted {} (depends on a changed service)",
                dependents.join(", ")
            ));
        }
        if !removed.is_empty() {
            parts.push(format!("stopped {}", removed.join(", ")));
        }
        let untouched: Vec<&str> = self
            .order
            .iter()
            .filter(|n| !restart.contains(*n) && !added.contains(n))
            .map(String::as_str)
            .collect();
        if !untouched.is_empty() {
            parts.push(format!("unchanged: {}", untouched.join(", ")));
        }
        if parts.is_empty() {
            parts.push("no services".into());
        }
        Ok(parts.join("; "))
    }

    /// `restart SVC`: stops it and everything that depends on it (dependents
    /// first), then starts them again in dependency order; replies once they
    /// are all ready again.
    async fn restart(&mut self, service: &str, mut connection: Connection, emitter: &Emitter) {
        if !self.services.contains_key(service) {
            let known: Vec<&str> = self.order.iter().map(String::as_str).collect();
            let reply = Reply {
                ok: false,
                lines: vec![format!(
                    "no service {service:?} (services: {})",
                    known.join(", ")
                )],
            };
            control::write_reply(&mut connection, &reply).await;
            return;
        }
        if self.pending_restart.is_some() {
            control::write_reply(
                &mut connection,
                &Reply {
                    ok: false,
                    lines: vec!["another restart is in progress".into()],
                },
            )
            .await;
            return;
        }
        let set = self.with_dependents(service);
        let stop_order: Vec<String> = self
            .order
            .iter()
            .rev()
            .filter(|n| set.contains(*n))
            .cloned()
            .collect();
        for name in &stop_order {
            self.stop_one(name).await;
        }
        for name in &set {
            self.service_state(name).status = ServiceStatus::Waiting;
            self.service_state(name).restarts += 1;
        }
        self.state.generation += 1;
        self.pending_restart = Some((set, connection));
        self.schedule(emitter);
    }

    async fn finish_restart_if_done(&mut self) {
        let done = self.pending_restart.as_ref().is_some_and(|(set, _)| {
            set.iter()
                .all(|name| self.status(name) == ServiceStatus::Ready)
        });
        if done {
            if let Some((set, mut connection)) = self.pending_restart.take() {
                let names: Vec<String> = self
                    .order
                    .iter()
                    .filter(|n| set.contains(*n))
                    .cloned()
                    .collect();
                let reply = Reply {
                    ok: true,
                    lines: vec![format!("restarted {}", names.join(", "))],
                };
                control::write_reply(&mut connection, &reply).await;
            }
        }
    }

    async fn fail_restart(&mut self, reason: &str) {
        if let Some((_, mut connection)) = self.pending_restart.take() {
            control::write_reply(
                &mut connection,
                &Reply {
                    ok: false,
                    lines: vec![reason.to_owned()],
                },
            )
            .await;
        }
    }

    fn with_dependents(&self, service: &str) -> BTreeSet<String> {
        let mut set = BTreeSet::from([service.to_owned()]);
        loop {
            let more: Vec<String> = self
                .services
                .values()
                .filter(|s| {
                    !set.contains(&s.spec.name) && s.spec.depends_on.iter().any(|d| set.contains(d))
                })
                .map(|s| s.spec.name.clone())
                .collect();
            if more.is_empty() {
                return set;
            }
            set.extend(more);
        }
    }

    /// Makes messages about the service's current process stale (it is being
    /// stopped on purpose) and stops its health probe.
    fn retire(&mut self, name: &str) {
        if let Some(service) = self.services.get_mut(name) {
            service.instance += 1;
            if let Some(handle) = service.health.take() {
                handle.abort();
            }
        }
    }

    /// Stops one service's process group; returns a line for the report.
    async fn stop_one(&mut self, name: &str) -> Option<String> {
        self.retire(name);
        let (pgid, pid) = {
            let svc = self.service_state(name);
            (svc.pgid, svc.pid)
        };
        let outcome = match pgid {
            Some(pgid) => stop_group(pgid, self.grace).await,
            None => Stopped::AlreadyGone,
        };
        let svc = self.service_state(name);
        if svc.status != ServiceStatus::Exited && svc.status != ServiceStatus::Failed {
            svc.status = ServiceStatus::Stopped;
        }
        describe_stop(name, pid.unwrap_or(0), outcome, self.grace)
    }

    /// Stops everything: services nothing running depends on first, each
    /// wave in parallel.
    async fn stop_all(&mut self) -> Vec<String> {
        self.state.phase = Phase::Stopping;
        write_state(&self.state, &self.paths);
        let mut lines = Vec::new();
        let mut left: BTreeSet<String> = self.services.keys().cloned().collect();
        while !left.is_empty() {
            let wave: Vec<String> = left
                .iter()
                .filter(|name| {
                    !left
                        .iter()
                        .any(|other| self.services[other].spec.depends_on.contains(name))
                })
                .cloned()
                .collect();
            let wave = if wave.is_empty() {
                left.iter().cloned().collect()
            } else {
                wave
            };
            let mut stops = tokio::task::JoinSet::new();
            for name in &wave {
                self.retire(name);
                if let Some(pgid) = self.service_state(name).pgid {
                    let grace = self.grace;
                    let name = name.clone();
                    stops.spawn(async move { (name, stop_group(pgid, grace).await) });
                }
            }
            while let Some(Ok((name, outcome))) = stops.join_next().await {
                let pid = self.service_state(&name).pid.unwrap_or(0);
                lines.extend(describe_stop(&name, pid, outcome, self.grace));
                let svc = self.service_state(&name);
                if svc.status != ServiceStatus::Failed && svc.status != ServiceStatus::Exited {
                    svc.status = ServiceStatus::Stopped;
                }
            }
            for name in wave {
                left.remove(&name);
            }
        }
        lines
    }
}

/// SIGTERM and SIGINT (stop everything), listened for from the start; SIGHUP
/// is ignored (a closed terminal must not stop a detached environment).
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, Failure> {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind| {
            signal(kind).map_err(|err| Failure::new(format!("cannot listen for signals: {err}")))
        };
        Ok(Signals {
            terminate: listen(SignalKind::terminate())?,
            interrupt: listen(SignalKind::interrupt())?,
            hangup: listen(SignalKind::hangup())?,
        })
    }

    /// Resolves at the next SIGTERM or SIGINT.
    async fn next(&mut self) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => return,
                _ = self.interrupt.recv() => return,
                _ = self.hangup.recv() => continue,
            }
        }
    }
}

async fn serve_connection(stream: tokio::net::UnixStream, tx: mpsc::UnboundedSender<Msg>) {
    let mut connection = tokio::io::BufReader::new(stream);
    if let Some(request) = control::read_request(&mut connection).await {
        let _ = tx.send(Msg::Control {
            request,
            connection,
        });
    }
}

/// Checks a set of services (commands, dependencies, working directories)
/// and returns their start order and runtime records.
fn check_services(
    root: &std::path::Path,
    specs: Vec<ServiceSpec>,
) -> Result<(Vec<String>, BTreeMap<String, Service>), Failure> {
    let names: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    for spec in &specs {
        if spec.command.is_empty() {
            return Err(Failure::new(format!(
                "service {:?} has an empty command",
                spec.name
            )));
        }
        for dep in &spec.depends_on {
            if !names.contains(dep.as_str()) {
                return Err(Failure::new(format!(
                    "service {:?} depends on {dep:?}, which no plugin provides",
                    spec.name
                )));
            }
        }
    }
    let order = start_order(&specs)?;
    let mut services = BTreeMap::new();
    for spec in specs {
        let cwd = service_cwd(root, &spec)?;
        services.insert(
            spec.name.clone(),
            Service {
                spec,
                cwd,
                instance: 0,
                backoff: FIRST_BACKOFF,
                health: None,
            },
        );
    }
    Ok((order, services))
}

/// What differs between two versions of a service, as field names.
fn differences(old: &ServiceSpec, new: &ServiceSpec) -> Vec<&'static str> {
    let mut reasons = Vec::new();
    if old.command != new.command {
        reasons.push("command");
    }
    if old.env != new.env {
        reasons.push("env");
    }
    if old.cwd != new.cwd {
        reasons.push("cwd");
    }
    if old.health != new.health {
        reasons.push("health");
    }
    if old.depends_on != new.depends_on {
        reasons.push("depends_on");
    }
    if old.restart != new.restart {
        reasons.push("restart");
    }
    reasons
}

/// The next batch of changed config files, or never without a watcher.
async fn next_change(watcher: &mut Option<crate::watch::Watcher>) -> Vec<String> {
    match watcher {
        Some(watcher) => watcher.next_batch(crate::watch::DEBOUNCE).await,
        None => std::future::pending().await,
    }
}

/// Dependencies before dependents; a cycle is an error.
fn start_order(specs: &[ServiceSpec]) -> Result<Vec<String>, Failure> {
    let mut order = Vec::new();
    let mut placed = BTreeSet::new();
    while order.len() < specs.len() {
        let ready: Vec<&ServiceSpec> = specs
            .iter()
            .filter(|s| {
                !placed.contains(&s.name) && s.depends_on.iter().all(|d| placed.contains(d))
            })
            .collect();
        if ready.is_empty() {
            let stuck: Vec<&str> = specs
                .iter()
                .filter(|s| !placed.contains(&s.name))
                .map(|s| s.name.as_str())
                .collect();
            return Err(Failure::new(format!(
                "services depend on each other in a cycle: {}",
                stuck.join(", ")
            )));
        }
        for spec in ready {
            placed.insert(spec.name.clone());
            order.push(spec.name.clone());
        }
    }
    Ok(order)
}

/// A service's working directory: under the repo root, never outside it.
fn service_cwd(root: &std::path::Path, spec: &ServiceSpec) -> Result<PathBuf, Failure> {
    let dir = root.join(if spec.cwd.is_empty() {
        "."
    } else {
        spec.cwd.as_str()
    });
    let resolved = dir.canonicalize().map_err(|err| {
        Failure::new(format!(
            "service {}: cwd {} does not exist: {err}",
            spec.name,
            dir.display()
        ))
    })?;
    if !resolved.starts_with(root) {
        return Err(Failure::new(format!(
            "service {}: cwd {:?} leaves the repo root ({}); use a directory inside the repo",
            spec.name,
            spec.cwd,
            resolved.display()
        )));
    }
    Ok(resolved)
}

/// Starts a service: its own process group, the parent's environment plus
/// its own, stdout/stderr straight into its log files (last run's kept as .1).
fn spawn_service(
    spec: &ServiceSpec,
    cwd: &std::path::Path,
    paths: &Paths,
) -> std::io::Result<tokio::process::Child> {
    let open_log = |stream: Stream| -> std::io::Result<std::fs::File> {
        let log = paths.log(&spec.name, stream);
        if log.exists() {
            let _ = std::fs::rename(&log, log.with_extension("log.1"));
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
    };
    let stdout = open_log(Stream::Stdout)?;
    let stderr = open_log(Stream::Stderr)?;
    let (program, args) = spec
        .command
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    tokio::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .envs(&spec.env)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
}
