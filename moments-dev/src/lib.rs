//! The Moments dev contract.
//!
//! `moments-dev` loads the Moments config the way the Go backend does
//! ([`config`]: YAML files read into compact [`layers`] by [`yaml`], typed
//! settings read out of them by [`extract`]), from typed settings ([`settings`]) whose schema defines the
//! known keys ([`keys`]); from that it derives the Vite env ([`vite_env`]),
//! the dev manifest ([`manifest`]) and the validation report ([`validate`]).
//! [`secrets`] decides what is redacted. [`dev_plugin`] serves all of it as
//! a protocol-v2 plugin. The binary (`main.rs`, [`cli`]) only
//! parses flags and prints.

pub mod cli;
pub mod config;
pub mod dev_plugin;
pub mod extract;
pub mod keys;
pub mod layers;
pub mod manifest;
pub mod report;
pub mod secrets;
pub mod settings;
pub mod validate;
pub mod vite_env;
pub mod yaml;
