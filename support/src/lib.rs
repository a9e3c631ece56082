//! Small pieces that `devctl`, `moments-dev` and the end-to-end tests share,
//! each written once:
//!
//! - [`fs`]: a private directory whose files are never reached through a
//!   symlink and are created 0600 whatever the umask; atomic file writes.
//! - [`http`]: `GET` for readiness and health checks (reqwest, http and
//!   https, the answer read whole, no proxy).
//! - [`yaml`]: a YAML error's `file:line:column: message`;
//! - [`measure`]: bench statistics that refuse a sample not measured;
//! - [`testing`]: how a test that cannot run says so.

pub mod fs;
pub mod http;
pub mod measure;
pub mod testing;
pub mod yaml;
