//! devctl's engine: everything the `devctl` commands (and tests, and a
//! TUI) build on, with no command-line parsing and no printing.
//!
//! - [`config`]: `.devctl.yaml` and the local overlay;
//! - [`repository`]: the repo root, its config and starting its plugins;
//! - [`pipeline`] and [`transform`]: the plugin pipeline, recorded as
//!   replayable transforms and materialized into a plan; [`render`] shows one;
//! - [`supervisor`]: the background process that runs the services;
//! - [`environment`]: a running environment seen from outside (status,
//!   stop, restart), over [`statedir`], [`state`] and [`control`];
//! - [`procs`]: which processes are provably ours, and stopping them;
//! - [`logs`]: service output captured with time, rotated, read back merged;
//! - [`health`], [`watch`], [`events`]: readiness probes, config watching
//!   and what the supervisor tells `up`;
//! - [`export`]: the plan as files for other engines (Compose, Kubernetes,
//!   a Procfile);
//! - [`tui`]: `devctl tui`, the live dashboard over all of the above.

pub mod config;
pub mod control;
pub mod environment;
pub mod events;
pub mod export;
pub mod health;
pub mod logs;
pub mod pipeline;
pub mod procs;
pub mod render;
pub mod repository;
pub mod state;
pub mod statedir;
pub mod supervisor;
pub mod transform;
pub mod tui;
pub mod watch;
