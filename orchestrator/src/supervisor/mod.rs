//! The supervisor: the background process `devctl up` starts.
//!
//! [`run`] is the glue; each job has its own module:
//!
//! - [`graph`]: the service graph and restart/backoff decisions (pure);
//! - [`spawn`]: starting one service process;
//! - [`core`]: the event loop over the services, drivable in memory;
//! - [`server`]: the control socket, feeding the loop;
//! - [`reaper`]: subreaper and orphan reaping, so nothing escapes `down`;
//! - [`planning`]: from plugins to the services to run.
//!
//! The supervisor holds `.devctl/lock` (an `flock`: the kernel drops it if
//! the supervisor dies, so there is no stale lock, and `down` finds the
//! supervisor as its holder), answers on `.devctl/control.sock` from the
//! start (so `status` and `down` work while plugins are still planning),
//! and on SIGTERM/SIGINT stops every service, dependents first. SIGHUP is
//! ignored: it runs in its own session, and a closed terminal must not stop
//! a detached environment.

pub mod core;
pub mod graph;
pub mod planning;
pub mod reaper;
pub mod server;
pub mod spawn;

use std::sync::Arc;
use std::time::Duration;

use devctl_sdk::host::StderrSink;
use tokio::sync::mpsc;

use self::core::{Core, CoreOptions, EventSink, Failure, Input, Planned};
use crate::control::{Reply, Request};
use crate::environment::{Environment, StopReport};
use crate::events::{Emitter, UpEvent};
use crate::pipeline::PipelineOptions;
use crate::procs::marked_processes;
use crate::repository::{Repository, Settings};
use crate::state::{Phase, State};
use crate::statedir::StateDir;

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
    pub settings: Settings,
}

/// Runs the supervisor; returns its exit status.
pub async fn run(mut repo: Repository, options: SupervisorOptions) -> u8 {
    let emitter = Emitter;
    let events: EventSink = Arc::new(move |event| emitter.emit(&event));
    let sink = events.clone();
    repo.stderr = StderrSink::Callback(Arc::new(move |plugin: &str, line: &str| {
        sink(UpEvent::PluginOutput {
            plugin: plugin.to_owned(),
            line: line.to_owned(),
        });
    }));
    match supervise(&repo, &options, &events).await {
        Ok(code) => code,
        Err(failure) => {
            events(UpEvent::Failed {
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
    events: &EventSink,
) -> Result<u8, Failure> {
    let dir = Arc::new(StateDir::create(&repo.root).map_err(|err| Failure::new(err.to_string()))?);
    let logs = dir.logs().map_err(|err| Failure::new(err.to_string()))?;
    let _lock = take_lock(&dir)?;
    if let Err(err) = devctl_sdk::host::become_child_subreaper() {
        eprintln!("supervisor: cannot become a subreaper ({err}); descendants that leave their service's group may outlive `down`");
    }
    let _reaper = AbortOnDrop(tokio::spawn(reaper::reap_orphans()));
    clear_previous_run(repo, options).await?;

    let mut state = State::new(&repo.root, options.watch);
    save(&dir, &state);
    let (inputs_tx, mut inputs) = mpsc::unbounded_channel();
    let listener = server::bind(&dir).map_err(|err| {
        Failure::new(format!(
            "cannot listen on {}/control.sock: {err}",
            dir.path().display()
        ))
    })?;
    let connections = server::Connections::default();
    let server = AbortOnDrop(tokio::spawn(server::serve(
        listener,
        inputs_tx.clone(),
        connections.clone(),
    )));
    let signals = Signals::listen()?;
    let _signals = AbortOnDrop(tokio::spawn(signals.forward(inputs_tx)));

    let planned = plan_while_serving(repo, options, events, &mut inputs, &state).await;
    let result = match planned
        .and_then(|planned| start_core(repo, options, events, &dir, logs, &state, planned))
    {
        Ok(core) => {
            events(UpEvent::Phase {
                name: "services".into(),
            });
            core.run(inputs).await
        }
        Err(failure) => {
            state.phase = Phase::Failed;
            state.error = Some(failure.reason.clone());
            save(&dir, &state);
            Err(failure)
        }
    };
    // No new requests; the last replies (to `down`) still go out.
    drop(server);
    connections.drain(Duration::from_secs(2)).await;
    dir.remove_socket();
    result
}

fn start_core(
    repo: &Repository,
    options: &SupervisorOptions,
    events: &EventSink,
    dir: &Arc<StateDir>,
    logs: devctl_support::fs::PrivateDir,
    state: &State,
    planned: Planned,
) -> Result<Core, Failure> {
    let planner: Option<Box<dyn self::core::Planner>> = options.watch.then(|| {
        Box::new(planning::PipelinePlanner {
            settings: options.settings.clone(),
            stderr: repo.stderr.clone(),
            events: events.clone(),
        }) as Box<dyn self::core::Planner>
    });
    let mut core = Core::new(
        CoreOptions {
            dir: dir.clone(),
            logs: Arc::new(logs),
            log_limits: repo.config.log_limits,
            grace: options.grace,
            events: events.clone(),
            planner,
            state: state.clone(),
            owns_descendants: true,
        },
        planned.services.clone(),
    )?;
    if options.watch {
        let watcher = crate::watch::Watcher::new(&repo.root, &[])
            .map_err(|err| Failure::new(format!("cannot watch the config files: {err}")))?;
        core.watch(watcher, &planned);
    }
    Ok(core)
}

/// Runs the pipeline while answering the control socket: `status` gets the
/// state, `down` (or a signal) cancels the pipeline, which stops its plugins.
async fn plan_while_serving(
    repo: &Repository,
    options: &SupervisorOptions,
    events: &EventSink,
    inputs: &mut mpsc::UnboundedReceiver<Input>,
    state: &State,
) -> Result<Planned, Failure> {
    let planning = planning::plan(repo, &options.pipeline, events, planning::PlanFor::StartUp);
    tokio::pin!(planning);
    loop {
        tokio::select! {
            planned = &mut planning => return planned,
            input = inputs.recv() => match input {
                None | Some(Input::Shutdown) => {
                    return Err(Failure::new("interrupted before any service was started"));
                }
                Some(Input::Changed(_)) => {}
                Some(Input::Control { request, reply }) => match request {
                    Request::Stop => {
                        let _ = reply.send(Reply::lines(true, vec!["stopped while planning; nothing had started".into()]));
                        return Err(Failure::new("stopped (`devctl down`) before any service was started"));
                    }
                    Request::Status => {
                        let _ = reply.send(Reply { ok: true, lines: Vec::new(), state: Some(state.clone()) });
                    }
                    Request::Restart { .. } | Request::StopService { .. } => {
                        let _ = reply.send(Reply::lines(false, vec!["the environment is still starting; nothing to restart or stop yet".into()]));
                    }
                },
            },
        }
    }
}

/// A previous run whose supervisor died may have left services running:
/// refuse, or with `--force` stop them (found by their marks).
async fn clear_previous_run(repo: &Repository, options: &SupervisorOptions) -> Result<(), Failure> {
    let left = marked_processes(&repo.root);
    if left.is_empty() {
        return Ok(());
    }
    if !options.force {
        let mut names: Vec<String> = left
            .iter()
            .map(|m| format!("{} (pid {})", m.service, m.process.pid))
            .collect();
        names.dedup();
        return Err(Failure::new(format!(
            "services from a previous run are still running ({}); run `devctl down` first, or `devctl up --force`",
            names.join(", ")
        )));
    }
    let environment = Environment::open(&repo.root).map_err(|err| Failure::new(err.to_string()))?;
    let recorded = environment.dir().and_then(|d| d.read_state().found());
    let mut report = StopReport::default();
    environment
        .stop_leftovers(recorded.as_ref(), options.grace, &mut report)
        .await;
    for line in report.lines {
        eprintln!("supervisor: {line}");
    }
    Ok(())
}

/// Holds `.devctl/lock` for the supervisor's lifetime.
fn take_lock(dir: &StateDir) -> Result<nix::fcntl::Flock<std::fs::File>, Failure> {
    let file = dir
        .lock_file()
        .map_err(|err| Failure::new(err.to_string()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        Failure::new("another `devctl up` is running for this repo; use `devctl status`, or `devctl down` to stop it")
    })
}

fn save(dir: &StateDir, state: &State) {
    if let Err(err) = dir.write_state(state) {
        eprintln!("supervisor: {err}");
    }
}

/// SIGTERM and SIGINT stop everything; SIGHUP is ignored. Listened for
/// from the start, before anything can be left half done.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> Result<Signals, Failure> {
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

    async fn forward(mut self, inputs: mpsc::UnboundedSender<Input>) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => {}
                _ = self.interrupt.recv() => {}
                _ = self.hangup.recv() => continue,
            }
            let _ = inputs.send(Input::Shutdown);
        }
    }
}

/// Aborts a background task when the supervisor is done with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
