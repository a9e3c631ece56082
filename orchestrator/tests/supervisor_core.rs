//! The supervisor's loop driven in memory: real child processes in a temp
//! dir, inputs sent over a channel, events read from a channel; no socket,
//! no background process.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devctl::control::{Reply, Request};
use devctl::events::UpEvent;
use devctl::state::{Phase, ServiceStatus, State};
use devctl::statedir::StateDir;
use devctl::supervisor::core::{Core, CoreOptions, Failure, Input, Planned, Planner};
use devctl_contract::manifest::{HealthCheckSpec, HealthKind, RestartPolicy, ServiceSpec};
use devctl_contract::protocol::BuildWatch;
use tokio::sync::{mpsc, oneshot};

/// A running loop and its ends.
struct Driven {
    _dir: tempfile::TempDir,
    state_dir: Arc<StateDir>,
    inputs: mpsc::UnboundedSender<Input>,
    events: mpsc::UnboundedReceiver<UpEvent>,
    /// What the state file said at the moment each event was emitted.
    seen: mpsc::UnboundedReceiver<(String, Option<State>)>,
    done: tokio::task::JoinHandle<Result<u8, Failure>>,
}

fn service(name: &str, script: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        ..ServiceSpec::default()
    }
}

/// A service that is ready once it has written its pid to `ready.<name>`.
fn ready_when_written(name: &str, extra: &str) -> ServiceSpec {
    let mut spec = service(
        name,
        &format!("{extra}echo $$ > ready.{name}; exec sleep 600"),
    );
    spec.health = Some(HealthCheckSpec {
        kind: HealthKind::Exec,
        command: Some(vec!["test".into(), "-s".into(), format!("ready.{name}")]),
        timeout_ms: Some(10_000),
        ..HealthCheckSpec::default()
    });
    spec
}

fn drive(services: Vec<ServiceSpec>, planner: Option<Box<dyn Planner>>) -> Driven {
    drive_with_builds(services, planner, Vec::new())
}

fn drive_with_builds(
    services: Vec<ServiceSpec>,
    planner: Option<Box<dyn Planner>>,
    builds: Vec<BuildWatch>,
) -> Driven {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let state_dir = Arc::new(StateDir::create(&root).unwrap());
    let (event_tx, events) = mpsc::unbounded_channel();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let reader = state_dir.clone();
    let core = Core::new(
        CoreOptions {
            dir: state_dir.clone(),
            logs: Arc::new(state_dir.logs().unwrap()),
            log_limits: devctl::logs::LogLimits::default(),
            grace: Duration::from_millis(500),
            events: Arc::new(move |event| {
                let kind = serde_json::to_value(&event).unwrap()["event"].to_string();
                let _ = seen_tx.send((kind, reader.read_state().found()));
                let _ = event_tx.send(event);
            }),
            planner,
            state: State::new(&root, false),
            owns_descendants: false,
        },
        services,
    )
    .unwrap();
    let mut core = core;
    core.set_builds(builds);
    let (inputs, input_rx) = mpsc::unbounded_channel();
    let done = tokio::spawn(core.run(input_rx));
    Driven {
        _dir: dir,
        state_dir,
        inputs,
        events,
        seen,
        done,
    }
}

impl Driven {
    /// Events until `pick` finds one (with a deadline).
    async fn until<T>(&mut self, mut pick: impl FnMut(&UpEvent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("the awaited event within 20 s")
                .expect("the loop is running");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    }

    fn state(&self) -> State {
        self.state_dir.read_state().found().expect("a state file")
    }

    /// Reports `path` changed and returns the applied re-plan's line.
    async fn replan_after_change(&mut self, path: &str) -> String {
        self.inputs.send(Input::Changed(vec![path.into()])).unwrap();
        self.until(|event| match event {
            UpEvent::Replanned {
                applied: true,
                line,
            } => Some(line.clone()),
            _ => None,
        })
        .await
    }

    async fn request(&self, request: Request) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.inputs.send(Input::Control { request, reply }).unwrap();
        tokio::time::timeout(Duration::from_secs(20), answer)
            .await
            .expect("a reply within 20 s")
            .expect("a reply")
    }

    fn pid(&self, name: &str) -> u32 {
        self.state().service(name).and_then(|s| s.pid).unwrap()
    }

    async fn shutdown(self) -> Result<u8, Failure> {
        self.inputs.send(Input::Shutdown).unwrap();
        tokio::time::timeout(Duration::from_secs(20), self.done)
            .await
            .expect("stops within 20 s")
            .unwrap()
    }
}

fn alive(pid: u32) -> bool {
    devctl_sdk::host::process_id(pid).is_some()
}

#[tokio::test]
async fn ready_is_announced_only_after_the_state_file_says_so() {
    let mut driven = drive(
        vec![
            ready_when_written("api", ""),
            ServiceSpec {
                depends_on: vec!["api".into()],
                ..ready_when_written("web", "")
            },
        ],
        None,
    );
    let mut order = Vec::new();
    driven
        .until(|event| match event {
            UpEvent::ServiceStarting { name, .. } => {
                order.push(name.clone());
                None
            }
            UpEvent::Ready { services, .. } => Some(*services),
            _ => None,
        })
        .await;
    assert_eq!(order, ["api", "web"], "dependencies first");
    // When each event went out, the file already said what it says.
    while let Ok((kind, state)) = driven.seen.try_recv() {
        let state = state.expect("a state file before any event");
        match kind.as_str() {
            "\"ready\"" => {
                assert_eq!(state.phase, Phase::Running);
                assert!(state
                    .services
                    .iter()
                    .all(|s| s.status == ServiceStatus::Ready));
            }
            "\"service-ready\"" => assert!(state
                .services
                .iter()
                .any(|s| s.status == ServiceStatus::Ready && s.ready_at_ms.is_some())),
            _ => {}
        }
    }
    let state = driven.state();
    assert_eq!(state.phase, Phase::Running);
    assert!(state
        .services
        .iter()
        .all(|s| s.status == ServiceStatus::Ready && s.ready_at_ms.is_some()));
    let pids = [driven.pid("api"), driven.pid("web")];
    assert_eq!(driven.shutdown().await, Ok(0));
    assert!(pids.iter().all(|pid| !alive(*pid)), "stopped");
}

#[tokio::test]
async fn an_empty_plan_is_running_at_once() {
    let mut driven = drive(Vec::new(), None);
    let services = driven
        .until(|event| match event {
            UpEvent::Ready { services, .. } => Some(*services),
            _ => None,
        })
        .await;
    assert_eq!(services, 0);
    assert_eq!(driven.state().phase, Phase::Running);
    assert_eq!(driven.shutdown().await, Ok(0));
}

#[tokio::test]
async fn a_restart_takes_the_dependents_and_replies_once_they_are_ready() {
    let mut driven = drive(
        vec![
            ready_when_written("db", ""),
            ServiceSpec {
                depends_on: vec!["db".into()],
                ..ready_when_written("api", "")
            },
            ready_when_written("other", ""),
        ],
        None,
    );
    driven
        .until(|e| matches!(e, UpEvent::Ready { .. }).then_some(()))
        .await;
    let before = [driven.pid("db"), driven.pid("api"), driven.pid("other")];
    let plan = driven.state().generation;
    // The health check reads the file: make the new processes write anew.
    for name in ["db", "api"] {
        std::fs::remove_file(driven.state_dir.root().join(format!("ready.{name}"))).unwrap();
    }
    let reply = driven
        .request(Request::Restart {
            service: "db".into(),
        })
        .await;
    assert!(reply.ok, "{reply:?}");
    assert_eq!(reply.lines, ["restarted db, api"]);
    let state = driven.state();
    assert!(state
        .services
        .iter()
        .all(|s| s.status == ServiceStatus::Ready));
    let after = [driven.pid("db"), driven.pid("api"), driven.pid("other")];
    assert_ne!(before[0], after[0]);
    assert_ne!(before[1], after[1]);
    assert_eq!(before[2], after[2], "an unrelated service keeps running");
    assert!(!alive(before[0]) && !alive(before[1]));
    assert_eq!(state.generation, plan, "a restart is not a new plan");

    let unknown = driven
        .request(Request::Restart {
            service: "nope".into(),
        })
        .await;
    assert!(!unknown.ok);
    assert_eq!(
        unknown.lines,
        ["no service \"nope\" (services: db, other, api)"]
    );
    assert_eq!(driven.shutdown().await, Ok(0));
}

#[tokio::test]
async fn a_crash_after_start_up_follows_the_restart_policy() {
    let mut spec = ready_when_written("flaky", "");
    // Ready, then dies once: the second process finds the marker and stays.
    spec.command = vec![
        "sh".into(),
        "-c".into(),
        "echo $$ > ready.flaky; if [ -e crashed ]; then exec sleep 600; fi; touch crashed; sleep 0.3; exit 3".into(),
    ];
    spec.restart = Some(RestartPolicy::OnFailure);
    let mut driven = drive(vec![spec], None);
    driven
        .until(|e| matches!(e, UpEvent::Ready { .. }).then_some(()))
        .await;
    let restarting = driven
        .until(|event| match event {
            UpEvent::ServiceExited {
                restarting, exit, ..
            } => Some((*restarting, exit.code)),
            _ => None,
        })
        .await;
    assert_eq!(restarting, (true, Some(3)));
    let state = driven.state();
    let flaky = state.service("flaky").unwrap();
    assert_eq!(flaky.status, ServiceStatus::Restarting);
    assert!(flaky.next_restart_at_ms.is_some(), "when it comes back");
    driven
        .until(|e| matches!(e, UpEvent::ServiceReady { .. }).then_some(()))
        .await;
    assert_eq!(driven.state().service("flaky").unwrap().restarts, 1);
    assert_eq!(driven.shutdown().await, Ok(0));
}

#[tokio::test]
async fn a_service_that_dies_during_start_up_fails_the_run_with_its_stderr() {
    let mut driven = drive(
        vec![
            ready_when_written("fine", ""),
            service("broken", "echo 'cannot bind port' >&2; exit 7"),
        ],
        None,
    );
    let fine = driven
        .until(|event| match event {
            UpEvent::ServiceStarting { name, pid } if name == "fine" => Some(*pid),
            _ => None,
        })
        .await;
    let result = tokio::time::timeout(Duration::from_secs(20), driven.done)
        .await
        .unwrap()
        .unwrap();
    let failure = result.unwrap_err();
    assert_eq!(failure.service.as_deref(), Some("broken"));
    assert_eq!(failure.exit.and_then(|e| e.code), Some(7));
    assert_eq!(failure.stderr_tail, ["cannot bind port"]);
    assert_eq!(
        driven.state_dir.read_state().found().unwrap().phase,
        Phase::Failed
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(fine) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(fine), "the healthy service was stopped too");
}

/// Plans handed out one after the other, as edits would produce them; the
/// build steps each re-plan was asked to run again are recorded.
struct Scripted {
    plans: Mutex<Vec<Result<Planned, Failure>>>,
    rebuilds: Arc<Mutex<Vec<Vec<String>>>>,
}

impl Scripted {
    fn new(plans: Vec<Result<Planned, Failure>>) -> Scripted {
        Scripted {
            plans: Mutex::new(plans),
            rebuilds: Arc::default(),
        }
    }
}

impl Planner for Scripted {
    fn plan(
        &self,
        _running: Vec<String>,
        rebuild: Vec<String>,
    ) -> Pin<Box<dyn Future<Output = Result<Planned, Failure>> + Send + '_>> {
        self.rebuilds.lock().unwrap().push(rebuild);
        let next = self.plans.lock().unwrap().remove(0);
        Box::pin(async move { next })
    }
}

#[tokio::test]
async fn a_new_plan_restarts_only_what_changed_and_a_bad_one_changes_nothing() {
    let api = ready_when_written("api", "");
    let web = ServiceSpec {
        depends_on: vec!["api".into()],
        ..ready_when_written("web", "")
    };
    let cache = ready_when_written("cache", "");
    let mut changed_api = api.clone();
    changed_api.env.insert("PORT".into(), "2".into());
    let plans = vec![
        Err(Failure::new("validation failed (E_PORT: port in use)")),
        Ok(Planned {
            services: vec![changed_api, web.clone(), cache.clone()],
            ..Planned::default()
        }),
    ];
    let mut driven = drive(vec![api, web, cache], Some(Box::new(Scripted::new(plans))));
    driven
        .until(|e| matches!(e, UpEvent::Ready { .. }).then_some(()))
        .await;
    let before = [driven.pid("api"), driven.pid("web"), driven.pid("cache")];

    driven
        .inputs
        .send(Input::Changed(vec!["config/app/local.yaml".into()]))
        .unwrap();
    let (applied, line) = driven
        .until(|event| match event {
            UpEvent::Replanned { applied, line } => Some((*applied, line.clone())),
            _ => None,
        })
        .await;
    assert!(!applied);
    assert!(
        line.contains("port in use") && line.contains("nothing was changed"),
        "{line}"
    );
    assert_eq!(
        before,
        [driven.pid("api"), driven.pid("web"), driven.pid("cache")]
    );

    for name in ["api", "web"] {
        std::fs::remove_file(driven.state_dir.root().join(format!("ready.{name}"))).unwrap();
    }
    let line = driven.replan_after_change("config/app/local.yaml").await;
    assert_eq!(
        line,
        "plan 2 (config/app/local.yaml changed): restarted api (env changed); restarted web (depends on a changed service); unchanged: cache"
    );
    driven
        .until(|event| match event {
            UpEvent::ServiceReady { name, .. } if name == "web" => Some(()),
            _ => None,
        })
        .await;
    let after = [driven.pid("api"), driven.pid("web"), driven.pid("cache")];
    assert_ne!(before[0], after[0]);
    assert_ne!(before[1], after[1]);
    assert_eq!(before[2], after[2]);
    assert_eq!(driven.state().last_rebuild.as_deref(), Some(line.as_str()));
    assert_eq!(driven.shutdown().await, Ok(0));
}

#[tokio::test]
async fn an_edited_source_rebuilds_its_step_and_restarts_what_runs_it() {
    let api = ready_when_written("api", "");
    let web = ServiceSpec {
        depends_on: vec!["api".into()],
        ..ready_when_written("web", "")
    };
    let cache = ready_when_written("cache", "");
    let builds = vec![BuildWatch {
        step: "api".into(),
        watch: vec!["api/src/*.rs".into()],
        restarts: vec!["api".into()],
    }];
    let rebuilt = Planned {
        services: vec![api.clone(), web.clone(), cache.clone()],
        builds: builds.clone(),
        built: vec![("api".into(), 7)],
        ..Planned::default()
    };
    let scripted = Scripted::new(vec![Ok(rebuilt)]);
    let rebuilds = scripted.rebuilds.clone();
    let mut driven = drive_with_builds(vec![api, web, cache], Some(Box::new(scripted)), builds);
    driven
        .until(|e| matches!(e, UpEvent::Ready { .. }).then_some(()))
        .await;
    let before = [driven.pid("api"), driven.pid("web"), driven.pid("cache")];
    for name in ["api", "web"] {
        std::fs::remove_file(driven.state_dir.root().join(format!("ready.{name}"))).unwrap();
    }
    let line = driven.replan_after_change("api/src/main.rs").await;
    assert_eq!(
        rebuilds.lock().unwrap().as_slice(),
        [vec!["api".to_owned()]]
    );
    assert_eq!(
        line,
        "plan 2 (api/src/main.rs changed): built api in 7 ms; restarted api (build changed); restarted web (depends on a changed service); unchanged: cache"
    );
    driven
        .until(|event| match event {
            UpEvent::ServiceReady { name, .. } if name == "web" => Some(()),
            _ => None,
        })
        .await;
    let after = [driven.pid("api"), driven.pid("web"), driven.pid("cache")];
    assert_ne!(before[0], after[0]);
    assert_eq!(before[2], after[2]);
    assert_eq!(driven.shutdown().await, Ok(0));
}

/// A re-plan that never ends (a plugin hung in `launch.plan`); says when
/// it was dropped (which is what stops a real plan's plugins).
struct Hanging(Arc<std::sync::atomic::AtomicBool>);

struct DropFlag(Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Planner for Hanging {
    fn plan(
        &self,
        _running: Vec<String>,
        _rebuild: Vec<String>,
    ) -> Pin<Box<dyn Future<Output = Result<Planned, Failure>> + Send + '_>> {
        let flag = DropFlag(self.0.clone());
        Box::pin(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
            Err(Failure::new("unreachable"))
        })
    }
}

#[tokio::test]
async fn a_hung_re_plan_still_answers_status_and_a_stop_cuts_it_short() {
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut driven = drive(
        vec![ready_when_written("api", "")],
        Some(Box::new(Hanging(dropped.clone()))),
    );
    driven
        .until(|e| matches!(e, UpEvent::Ready { .. }).then_some(()))
        .await;
    driven
        .inputs
        .send(Input::Changed(vec![".devctl.yaml".into()]))
        .unwrap();
    let status = driven.request(Request::Status).await;
    assert!(status.ok && status.state.is_some(), "{status:?}");
    let restart = driven
        .request(Request::Restart {
            service: "api".into(),
        })
        .await;
    assert!(
        !restart.ok && restart.lines[0].contains("re-plan is in progress"),
        "{restart:?}"
    );
    let stop = driven.request(Request::Stop).await;
    assert!(stop.ok, "{stop:?}");
    assert!(
        dropped.load(std::sync::atomic::Ordering::SeqCst),
        "the hung plan was dropped"
    );
    let result = tokio::time::timeout(Duration::from_secs(20), driven.done)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result, Ok(0));
}
