//! Service logs with time: captured by the supervisor through pipes
//! ([`capture`]), one record per line ([`record`]), bounded on disk
//! ([`rotation`]), read back merged and followed ([`read`]).
//!
//! `.devctl/logs/<svc>.log` holds both streams of a service and devctl's
//! lifecycle lines about it; `.devctl/logs/@devctl.log` holds the
//! supervisor's own (re-plans, failures).

pub mod capture;
pub mod read;
pub mod record;
pub mod rotation;

pub use capture::Capture;
pub use read::{
    history, sources, tail_where, Follower, Mark, Source, Window, DEVCTL_LABEL, DEVCTL_LOG,
};
pub use record::{Record, Stream};
pub use rotation::LogLimits;

/// The file of a service's log in `.devctl/logs/`.
pub fn log_file(service: &str) -> String {
    format!("{service}.log")
}
