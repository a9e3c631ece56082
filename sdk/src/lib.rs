//! Protocol v2 SDK, both sides.
//!
//! - [`plugin`]: write a plugin. Typed handlers, a generated handshake,
//!   protected stdout, deadlines, cancellation at stdin EOF, streams, and an
//!   in-memory harness for tests.
//! - [`host`]: drive a plugin. Spawn it in its own process group, validate
//!   its handshake in time, capability-enforced calls with typed errors,
//!   streams, bounded frames, and a close that leaves no process behind.
//!
//! Frames are read and written only here ([`frame_io`]); their types come
//! from `devctl-contract`.

pub mod frame_io;
pub mod host;
pub mod plugin;

pub use devctl_contract as contract;
