//! The protocol-v2 conformance suite.
//!
//! Plugin repos run it in CI (`devctl-conformance -- <plugin argv…>`), from a
//! Rust test (`Suite::command([...]).run()?.assert_passed()`), and
//! `devctl plugins check` runs it too. [`Suite`] runs the checks ([`suite`]),
//! [`report`] holds the verdicts and renders them as a table, JSON or JUnit.
//! Check ids are stable API: `family.name`, families listed in [`FAMILIES`].

mod report;
mod scratch;
mod session;
mod suite;

pub use report::{Baseline, CheckResult, Report, Severity, Status, Summary};
pub use suite::{Suite, SuiteError, FAMILIES};
