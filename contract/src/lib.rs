//! The dev contract, as data.
//!
//! Every type that crosses a process boundary is declared here once:
//! protocol v2 frames ([`protocol`]), their error codes ([`error_code`]), the
//! payloads of the pipeline ops ([`ops`]), the dev manifest v1 ([`manifest`])
//! and the validation report of `moments-dev dev validate` ([`report`]).
//!
//! The crate does no I/O. It only describes shapes and checks them
//! ([`handshake::validate_handshake`], [`protocol::decode_frame`]); reading and
//! writing frames is the SDK's job. All input types ignore unknown fields so
//! that newer peers can talk to older ones. [`schema::all`] lists the JSON
//! Schemas committed under `contract/schema/`; [`secrets`] says how every
//! tool recognises and hides secrets; [`names`] what a service or step may
//! be called. The protocol's time and size limits live in [`limits`];
//! [`flags`] parses bounded numeric flag values for every binary of the
//! workspace.

pub mod error_code;
pub mod flags;
pub mod handshake;
pub mod limits;
pub mod manifest;
pub mod names;
pub mod ops;
pub mod protocol;
pub mod report;
pub mod schema;
pub mod secrets;

pub use error_code::ErrorCode;
