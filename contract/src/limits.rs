//! The time and size limits of protocol v2, defined once.
//!
//! Hosts (`sdk::host`, `devctl`) enforce them and the conformance suite
//! judges plugins against them, so a plugin that passes the suite is never
//! surprised by a host. They are part of the protocol: changing one changes
//! what every plugin may rely on.

use std::time::Duration;

/// The handshake must be the plugin's first stdout line, within this long
/// of the process starting. Do slow set-up after the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// An op the plugin does not implement must be refused (`E_UNSUPPORTED`)
/// within this long: hosts probe optional ops inside start-up budgets.
pub const UNKNOWN_OP_ANSWER: Duration = Duration::from_millis(500);

/// The longest stdout line a host accepts (`E_PROTOCOL_FRAME_TOO_LARGE`
/// beyond it). A host never buffers more than this for one frame.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Start-up UX budget per plugin when a host only needs the handshake to
/// learn the plugin's commands (all plugins in parallel; a plugin that
/// misses it is skipped with a warning, not waited for).
pub const COMMAND_DISCOVERY_BUDGET: Duration = Duration::from_millis(500);

/// How long a host waits for the answer to a pipeline op by default
/// (`devctl --timeout` changes it). `ctx.deadline_ms` tells the plugin the
/// budget of each request.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(30);
