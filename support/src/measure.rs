//! Bench arithmetic that refuses what it could not measure.
//!
//! A sample that is missing, negative or not a number aborts the bench with
//! the reason, instead of becoming a 0 that makes a target look met; every
//! verdict says how many samples it rests on.

use std::time::Duration;

/// Why a bench could not measure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unmeasured(pub String);

impl Unmeasured {
    pub fn new(reason: impl Into<String>) -> Unmeasured {
        Unmeasured(reason.into())
    }
}

/// Samples of one quantity, in one unit.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    name: String,
    values: Vec<f64>,
}

impl Samples {
    pub fn new(name: impl Into<String>) -> Samples {
        Samples {
            name: name.into(),
            values: Vec::new(),
        }
    }

    /// Adds a sample; refuses NaN, infinities and negatives.
    pub fn push(&mut self, value: f64) -> Result<(), Unmeasured> {
        if !value.is_finite() || value < 0.0 {
            return Err(Unmeasured(format!(
                "{}: sample {} is {value}, which is not a measurement",
                self.name,
                self.values.len() + 1
            )));
        }
        self.values.push(value);
        Ok(())
    }

    /// Adds a duration, in milliseconds.
    pub fn push_ms(&mut self, duration: Duration) -> Result<(), Unmeasured> {
        self.push(duration.as_secs_f64() * 1000.0)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The `p` quantile (0.5 for the median), nearest rank.
    pub fn percentile(&self, p: f64) -> Result<f64, Unmeasured> {
        if self.values.is_empty() {
            return Err(Unmeasured(format!("{}: no samples", self.name)));
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize;
        Ok(sorted[rank])
    }

    pub fn median(&self) -> Result<f64, Unmeasured> {
        self.percentile(0.5)
    }
}

/// `met (30 samples)` or `MISSED (30 samples)`.
pub fn verdict(met: bool, samples: usize) -> String {
    format!(
        "{} ({samples} sample{})",
        if met { "met" } else { "MISSED" },
        if samples == 1 { "" } else { "s" }
    )
}

/// A value that must be there: `what` names it in the error.
pub fn present<T>(value: Option<T>, what: &str) -> Result<T, Unmeasured> {
    value.ok_or_else(|| Unmeasured(format!("{what} is missing")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_not_measured_is_refused() {
        let mut samples = Samples::new("readiness");
        assert!(samples.median().is_err(), "no samples, no median");
        samples.push(3.0).unwrap();
        samples.push(1.0).unwrap();
        samples.push(2.0).unwrap();
        assert_eq!(samples.median().unwrap(), 2.0);
        assert_eq!(samples.percentile(1.0).unwrap(), 3.0);
        for bad in [-0.5, f64::NAN, f64::INFINITY] {
            let err = samples.push(bad).unwrap_err();
            assert!(err.0.contains("readiness: sample 4"), "{err}");
        }
        assert_eq!(samples.len(), 3);
        assert_eq!(verdict(true, 3), "met (3 samples)");
        assert_eq!(
            present(None::<f64>, "ready_at_ms").unwrap_err().0,
            "ready_at_ms is missing"
        );
    }
}
