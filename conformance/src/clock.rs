//! Every wait of the suite, and the budget that bounds a whole run.
//!
//! Two kinds of durations: the protocol's own limits
//! (`contract::limits`: handshake 2 s, unknown op 500 ms), which a
//! `--timeout-scale` above 1 relaxes for slow machines but a scale below 1
//! never tightens; and the suite's own waits (the op timeout, observation
//! windows), which the scale multiplies either way. On top, a run has a
//! budget of patience: time spent waiting for what never came (answers,
//! handshakes, exits) is counted, no wait goes past what is left, and a
//! family that finds it spent is skipped with the reason. So even a plugin
//! that hangs on everything gets its report in about 10 s at scale 1, while
//! a plugin that answers, however slowly it starts, is never cut short.

use std::time::Duration;

use devctl_contract::flags::{DurationRange, ScaleRange};
use devctl_contract::limits;

/// What `--timeout-scale` accepts.
pub const SCALE_RANGE: ScaleRange = ScaleRange {
    min: 0.1,
    max: 100.0,
};

/// What `--op-timeout` accepts: up to a host's default op timeout.
pub const OP_TIMEOUT_RANGE: DurationRange = DurationRange {
    min: Duration::from_millis(100),
    max: limits::DEFAULT_OP_TIMEOUT,
};

/// How long a minimal dry-run request may take by default. Hosts allow
/// 30 s for real work; a minimal dry run is quick, and a suite that waited
/// 30 s per hung op would be no use in CI.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Base durations, before the scale.
pub(crate) mod base {
    use std::time::Duration;

    /// A handshake is read this many times its limit, so that "late" can be
    /// told from "never".
    pub const LATE_HANDSHAKE: f64 = 1.5;
    /// An unknown op is waited for twice its limit, to tell slow from silent.
    pub const UNKNOWN_OP_WAIT_FACTOR: u32 = 2;
    /// After a stream op answers: how long its `end` is awaited before the
    /// stream is treated as a follow stream that ends when stdin closes.
    pub const STREAM_END: Duration = Duration::from_millis(500);
    /// After `end`: how long to watch for events that should not come.
    pub const AFTER_END: Duration = Duration::from_millis(200);
    /// How long a plugin has to exit once its stdin closed.
    pub const EOF_GRACE: Duration = Duration::from_secs(2);
    /// After the plugin exited: how long its children have to follow.
    pub const LEFTOVERS: Duration = Duration::from_secs(1);
    /// The shortest wait for "are you still there?" after a probe.
    pub const LIVENESS: Duration = Duration::from_secs(1);
    /// The run's patience beyond one op timeout.
    pub const BUDGET: Duration = Duration::from_secs(2);
    /// The least patience of a run.
    pub const MIN_BUDGET: Duration = Duration::from_secs(7);
}

#[derive(Debug, Clone)]
pub(crate) struct Clock {
    scale: f64,
    op_timeout: Duration,
    budget: Duration,
    wasted: Duration,
}

impl Clock {
    pub fn new(scale: f64, op_timeout: Duration) -> Clock {
        let relaxed = scale.max(1.0);
        let budget = (op_timeout + base::BUDGET)
            .max(base::MIN_BUDGET)
            .mul_f64(relaxed);
        Clock {
            scale,
            op_timeout,
            budget,
            wasted: Duration::ZERO,
        }
    }

    /// One of the suite's own waits, scaled.
    pub fn wait(&self, base: Duration) -> Duration {
        base.mul_f64(self.scale)
    }

    /// A protocol limit: relaxed by a scale above 1, never tightened.
    pub fn limit(&self, base: Duration) -> Duration {
        base.mul_f64(self.scale.max(1.0))
    }

    pub fn handshake(&self) -> Duration {
        self.limit(limits::HANDSHAKE_TIMEOUT)
    }

    pub fn unknown_op(&self) -> Duration {
        self.limit(limits::UNKNOWN_OP_ANSWER)
    }

    /// The wait for an answer to a declared op (also sent as `deadline_ms`).
    pub fn op(&self) -> Duration {
        self.op_timeout.mul_f64(self.scale)
    }

    /// `wanted`, cut to what is left of the run's budget.
    pub fn capped(&self, wanted: Duration) -> Duration {
        wanted.min(self.left())
    }

    pub fn left(&self) -> Duration {
        self.budget.saturating_sub(self.wasted)
    }

    /// Counts time spent waiting for something that never came.
    pub fn waste(&mut self, wasted: Duration) {
        self.wasted += wasted;
    }

    pub fn spent(&self) -> bool {
        self.left().is_zero()
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_scale_shortens_waits_but_never_the_protocol_limits() {
        let clock = Clock::new(0.3, DEFAULT_OP_TIMEOUT);
        assert_eq!(clock.op(), Duration::from_millis(1500));
        assert_eq!(clock.handshake(), limits::HANDSHAKE_TIMEOUT);
        assert_eq!(clock.unknown_op(), limits::UNKNOWN_OP_ANSWER);
        assert_eq!(clock.budget(), Duration::from_secs(7));
        let slow = Clock::new(3.0, DEFAULT_OP_TIMEOUT);
        assert_eq!(slow.handshake(), Duration::from_secs(6));
        assert_eq!(slow.op(), Duration::from_secs(15));
        assert_eq!(slow.budget(), Duration::from_secs(21));
    }

    #[test]
    fn only_waiting_for_what_never_came_spends_the_budget() {
        let mut clock = Clock::new(1.0, Duration::from_secs(30));
        assert!(clock.budget() > clock.op(), "room for one hung op");
        assert_eq!(clock.capped(Duration::from_secs(3600)), clock.budget());
        clock.waste(clock.op());
        assert_eq!(clock.left(), Duration::from_secs(2));
        assert_eq!(clock.capped(Duration::from_secs(5)), Duration::from_secs(2));
        clock.waste(Duration::from_secs(5));
        assert!(clock.spent());
    }
}
