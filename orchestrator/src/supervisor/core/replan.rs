//! `up --watch` inside the loop: a change to the config or to a build
//! step's sources makes a new plan, and only the difference is applied
//! (removed services stop, changed ones restart with their dependents, new
//! ones start); a plan that cannot be made changes nothing.

use super::*;

impl Core {
    /// `up --watch`: makes a new plan and applies the difference. Anything
    /// wrong with the new plan leaves the running services as they are.
    /// Returns the input that cut the re-plan short (a stop or shutdown),
    /// for the loop to handle; status requests are answered meanwhile.
    pub(super) async fn replan(
        &mut self,
        changed: Vec<String>,
        inputs: &mut mpsc::UnboundedReceiver<Input>,
    ) -> Option<Input> {
        let planner = self.planner.take()?;
        let mut changed = changed;
        changed.sort();
        changed.dedup();
        let what = changed.join(", ");
        let running: Vec<String> = self
            .state
            .services
            .iter()
            .filter(|s| s.status == ServiceStatus::Ready)
            .map(|s| s.name.clone())
            .collect();
        // Sources of a build step changed: run it again, then restart what
        // runs its output.
        let rebuild: Vec<&BuildWatch> = self
            .builds
            .iter()
            .filter(|b| {
                changed.iter().any(|path| {
                    b.watch
                        .iter()
                        .any(|glob| crate::watch::glob_matches(glob, path))
                })
            })
            .collect();
        let steps: Vec<String> = rebuild.iter().map(|b| b.step.clone()).collect();
        let restarts: BTreeSet<String> = rebuild
            .iter()
            .flat_map(|b| b.restarts.iter().cloned())
            .collect();
        let planned: Result<Result<Planned, Failure>, Input> = {
            let planning = planner.plan(running, steps);
            tokio::pin!(planning);
            loop {
                tokio::select! {
                    planned = &mut planning => break Ok(planned),
                    input = inputs.recv() => match input {
                        Some(Input::Changed(files)) => self.pending_changes.extend(files),
                        Some(Input::Control { request: Request::Status, reply }) => {
                            let _ = reply.send(Reply {
                                ok: true,
                                lines: Vec::new(),
                                state: Some(self.state.clone()),
                            });
                        }
                        Some(Input::Control { request: Request::Restart { .. } | Request::StopService { .. }, reply }) => {
                            let _ = reply.send(Reply::lines(
                                false,
                                vec!["a re-plan is in progress; try again in a moment".into()],
                            ));
                        }
                        // Dropping the plan stops the plugins it started.
                        interrupt => break Err(interrupt.unwrap_or(Input::Shutdown)),
                    },
                }
            }
        };
        self.planner = Some(planner);
        let planned = match planned {
            Ok(planned) => planned,
            Err(interrupt) => {
                self.devctl_log
                    .note(&format!("re-plan ({what} changed) cancelled"));
                return Some(interrupt);
            }
        };
        let outcome = match planned {
            Err(failure) => Err(failure.reason),
            Ok(planned) => {
                if let Some(watcher) = self.watcher.as_mut() {
                    watcher.set_globs(&watched_globs(&planned));
                }
                self.builds = planned.builds.clone();
                let built: Vec<String> = planned
                    .built
                    .iter()
                    .map(|(step, ms)| format!("built {step} in {ms} ms"))
                    .collect();
                self.apply(planned.services, &restarts)
                    .await
                    .map(|summary| {
                        if built.is_empty() {
                            summary
                        } else {
                            format!("{}; {summary}", built.join(", "))
                        }
                    })
            }
        };
        let (applied, line) = match outcome {
            Ok(summary) => {
                self.state.generation += 1;
                let generation = self.state.generation;
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
        self.state.last_rebuild = Some(line.clone());
        self.devctl_log.note(&line);
        self.announce(UpEvent::Replanned { applied, line });
        None
    }

    /// Moves the running services to `specs`: stops the removed, restarts
    /// the changed (and what depends on them, after them), starts the added;
    /// the rest keep running untouched. Returns a one-line summary.
    async fn apply(
        &mut self,
        specs: Vec<ServiceSpec>,
        rebuilt: &BTreeSet<String>,
    ) -> Result<String, String> {
        let root = self.dir.root().to_path_buf();
        let next = Graph::new(specs).map_err(|err| err.to_string())?;
        let diff = self.graph.diff_rebuilt(&next, rebuilt);
        let restart = diff.restart();
        let renewed: Vec<String> = restart.iter().chain(&diff.added).cloned().collect();
        let mut kept_logs: BTreeMap<String, Arc<Capture>> = renewed
            .iter()
            .filter_map(|n| Some((n.clone(), self.runtimes.get(n)?.log.clone())))
            .collect();
        let mut fresh = runtimes_for(
            &root,
            &next,
            &renewed,
            &self.logs,
            self.log_limits,
            &mut kept_logs,
        )
        .map_err(|f| f.reason)?;
        let stopping: BTreeSet<String> = diff.removed.iter().chain(&restart).cloned().collect();
        for wave in self.graph.stop_waves(&stopping) {
            for name in wave {
                self.stop_service(&name, self.grace).await;
            }
        }
        for name in &diff.removed {
            self.runtimes.remove(name);
            self.state.services.retain(|s| &s.name != name);
        }
        for name in restart.iter().chain(&diff.added) {
            if let Some(mut runtime) = fresh.remove(name) {
                // Keep counting instances, so late messages stay stale.
                runtime.instance = self.runtimes.get(name).map_or(0, |old| old.instance);
                self.runtimes.insert(name.clone(), runtime);
            }
        }
        let summary = diff.summary(&next);
        self.graph = next;
        for name in restart.iter().chain(&diff.added) {
            let spec = self.graph.spec(name).cloned();
            let svc = self.service_state(name);
            svc.status = ServiceStatus::Waiting;
            svc.endpoint = spec.as_ref().and_then(endpoint_of);
        }
        let positions: BTreeMap<&String, usize> = self
            .graph
            .order()
            .iter()
            .enumerate()
            .map(|(i, n)| (n, i))
            .collect();
        self.state
            .services
            .sort_by_key(|s| positions.get(&s.name).copied().unwrap_or(usize::MAX));
        self.schedule();
        Ok(summary)
    }
}

/// Everything `up --watch` watches: config globs and build steps' sources.
pub(super) fn watched_globs(planned: &Planned) -> Vec<String> {
    let mut globs = planned.watch.clone();
    globs.extend(planned.builds.iter().flat_map(|b| b.watch.iter().cloned()));
    globs
}

/// The next batch of changed config files, or never without a watcher.
pub(super) async fn next_change(watcher: &mut Option<crate::watch::Watcher>) -> Vec<String> {
    crate::watch::next_batch(watcher, crate::watch::DEBOUNCE).await
}
