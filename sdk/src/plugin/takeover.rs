//! Who reads requests, and handing that job on when a handler blocks.
//!
//! One thread at a time holds the reading role. It runs each handler right
//! where the request was read, so a quick request is answered without
//! waking anything else. Before it does, it parks its reading state here;
//! the watchdog ([`Role::watch`], a thread of its own, so it does not depend
//! on an async runtime whose workers a handler may be blocking) looks every
//! [`TAKEOVER`] and, when the same handler is still running a tick later (it
//! blocks its thread, or is just slow), gives the role to a new generation:
//! a fresh thread claims the parked state and reads on, while the old one
//! finishes its handler and stops. So a blocking handler delays other
//! requests by a few milliseconds, never until it returns.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// How often the watchdog looks; a handler still running one look later
/// loses the reading role (so after 1–2 ticks).
pub(crate) const TAKEOVER: Duration = Duration::from_millis(5);
/// Ticks without any handler running before the watchdog sleeps until the
/// next one starts (so an idle plugin does not wake every few ms).
const IDLE_TICKS: u32 = 200;

enum Look<W> {
    Ended,
    Fine,
    Idle,
    TookOver(u64, Option<W>),
}

/// The reading role, the state (`S`) of whoever holds it, and what (`W`)
/// the holder is running inline.
pub(crate) struct Role<S, W> {
    state: Mutex<RoleState<S, W>>,
    /// Wakes the watchdog from its idle sleep (or at the end).
    wake: Condvar,
    /// The last orphan finished.
    orphans_gone: Notify,
}

struct RoleState<S, W> {
    /// The reading state while nobody reads with it (a handler runs, or a
    /// new generation has yet to claim it).
    parked: Option<S>,
    /// What the holder runs inline right now (handed to the watchdog's
    /// caller when the holder loses the role).
    running: Option<W>,
    /// The generation that holds the role.
    generation: u64,
    /// Handlers started inline so far: the watchdog's way to tell "still the
    /// same handler" from "another one".
    started: u64,
    /// A handler runs inline right now.
    busy: bool,
    /// The watchdog waits for `wake` instead of ticking.
    asleep: bool,
    /// Former holders still running the handler they lost the role in.
    orphans: usize,
    ended: bool,
}

impl<S, W> Role<S, W> {
    /// A role held by generation 0, which claims `state` first.
    pub fn new(state: S) -> Role<S, W> {
        Role {
            state: Mutex::new(RoleState {
                parked: Some(state),
                running: None,
                generation: 0,
                started: 0,
                busy: false,
                asleep: false,
                orphans: 0,
                ended: false,
            }),
            wake: Condvar::new(),
            orphans_gone: Notify::new(),
        }
    }

    /// The reading state, for the generation that holds the role.
    pub fn claim(&self, generation: u64) -> Option<S> {
        let mut state = self.lock();
        if state.generation != generation {
            return None;
        }
        state.parked.take()
    }

    /// Parks `reading` while its holder runs `work` inline.
    pub fn park(&self, reading: S, work: W) {
        let mut state = self.lock();
        state.parked = Some(reading);
        state.running = Some(work);
        state.busy = true;
        state.started = state.started.wrapping_add(1);
        if state.asleep {
            state.asleep = false;
            self.wake.notify_one();
        }
    }

    /// After the inline handler: the reading state back, or `None` when the
    /// watchdog gave the role to a newer generation meanwhile.
    pub fn resume(&self, generation: u64) -> Option<S> {
        let mut state = self.lock();
        if state.generation != generation {
            return None;
        }
        state.busy = false;
        state.running = None;
        state.parked.take()
    }

    /// A former holder (one [`Role::resume`] turned away) has answered.
    pub fn orphan_done(&self) {
        let mut state = self.lock();
        state.orphans = state.orphans.saturating_sub(1);
        if state.orphans == 0 {
            self.orphans_gone.notify_waiters();
        }
    }

    /// Resolves once no former holder is still running its handler, so the
    /// end of input can wait for their answers as for any other work.
    pub async fn orphans_finished(&self) {
        loop {
            let gone = self.orphans_gone.notified();
            tokio::pin!(gone);
            // Registered before the check, so a notice in between is kept.
            gone.as_mut().enable();
            if self.lock().orphans == 0 {
                return;
            }
            gone.await;
        }
    }

    /// Input ended: the watchdog stops.
    pub fn end(&self) {
        self.lock().ended = true;
        self.wake.notify_all();
    }

    /// The watchdog (run it on a thread of its own): runs until
    /// [`Role::end`]; calls `start_reader` with the new generation and the
    /// work the stuck holder is running whenever it takes the role over.
    pub fn watch(&self, start_reader: impl Fn(u64, Option<W>)) {
        let mut last_seen: Option<u64> = None;
        let mut idle_ticks = 0u32;
        loop {
            std::thread::sleep(TAKEOVER);
            match self.look(&mut last_seen, &mut idle_ticks) {
                Look::Ended => return,
                Look::Fine => {}
                Look::Idle => {
                    let state = self.lock();
                    // `park` clears `asleep` under the same lock: no wake
                    // is lost between the look and this wait.
                    let _state = self
                        .wake
                        .wait_while(state, |state| state.asleep && !state.ended)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                Look::TookOver(generation, work) => start_reader(generation, work),
            }
        }
    }

    /// One tick of the watchdog.
    fn look(&self, last_seen: &mut Option<u64>, idle_ticks: &mut u32) -> Look<W> {
        let mut state = self.lock();
        if state.ended {
            return Look::Ended;
        }
        if !state.busy {
            *last_seen = None;
            *idle_ticks += 1;
            if *idle_ticks < IDLE_TICKS {
                return Look::Fine;
            }
            *idle_ticks = 0;
            state.asleep = true;
            return Look::Idle;
        }
        *idle_ticks = 0;
        if *last_seen != Some(state.started) {
            *last_seen = Some(state.started);
            return Look::Fine;
        }
        *last_seen = None;
        state.generation += 1;
        state.busy = false;
        state.orphans += 1;
        Look::TookOver(state.generation, state.running.take())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RoleState<S, W>> {
        // The state is a few plain fields, consistent after any panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_holder_stuck_in_a_handler_loses_the_role_to_a_new_generation() {
        let role = Arc::new(Role::new("reader"));
        let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
        let watchdog = std::thread::spawn({
            let role = role.clone();
            move || {
                role.watch(|generation, work| {
                    let _ = started_tx.send((generation, work));
                })
            }
        });
        let reading = role.claim(0).expect("generation 0 holds the role");
        role.park(reading, "handler a");
        // The holder "blocks" (it does not come back) for longer than two ticks.
        let (generation, work) = tokio::time::timeout(Duration::from_secs(5), started_rx.recv())
            .await
            .expect("the watchdog took over")
            .expect("a generation");
        assert_eq!(generation, 1);
        assert_eq!(work, Some("handler a"), "the stuck work is handed on");
        assert_eq!(role.resume(0), None, "the old holder lost the role");
        assert_eq!(role.claim(1), Some("reader"), "the new one reads on");
        role.end();
        watchdog
            .join()
            .expect("the watchdog stops at end, without a panic");
    }

    #[tokio::test]
    async fn a_quick_handler_keeps_the_role() {
        let role: Role<i32, ()> = Role::new(7);
        let reading = role.claim(0).expect("claimed");
        role.park(reading, ());
        assert_eq!(role.resume(0), Some(7));
        assert_eq!(role.claim(1), None, "generation 1 never got the role");
    }
}
