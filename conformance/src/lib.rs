//! The protocol-v2 conformance suite.
//!
//! Plugin repos run it in CI (`devctl-conformance -- <plugin argv…>`), from a
//! Rust test (`Suite::command([...]).run()?.assert_passed()`), and
//! `devctl plugins check` runs it too.
//!
//! - [`Suite`] (`suite`): what to run and how; the run itself (`run`)
//!   starts a fresh plugin process per family (`session`, `families/`) in a
//!   scratch copy of the repo (`scratch`), within the protocol's limits and
//!   a time budget (`clock`), and reads stdout in bounded memory
//!   (`observe`).
//! - [`Report`] (`report`, `junit`): the verdicts, as a table, JSON or
//!   JUnit XML, and the baseline of known failures.
//! - [`CATALOGUE`] (`catalogue`): every check id (stable API, `family.name`),
//!   its severity and why it has it.

mod catalogue;
mod clock;
mod families;
mod junit;
mod observe;
mod report;
mod run;
mod scratch;
mod session;
mod suite;

pub use catalogue::{listing, CheckInfo, CATALOGUE, FAMILIES};
pub use clock::{DEFAULT_OP_TIMEOUT, OP_TIMEOUT_RANGE, SCALE_RANGE};
pub use report::{suite_version, Baseline, CheckResult, Report, Severity, Status, Summary};
pub use session::claim_adopted_children;
pub use suite::{Suite, SuiteError};
