//! Protocol v2 SDK (both sides).
//!
//! Not built yet: `sdk::plugin` and `sdk::host` arrive with the SDK issue.
//! Until then this crate only re-exports the contract so dependants compile
//! against the one place wire types live.

pub use devctl_contract as contract;
