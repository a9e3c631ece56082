//! Handshake validation (protocol v2).
//!
//! A handshake is valid iff its type is `handshake`, its version is exactly
//! `v2`, its plugin name is not empty, its command names are non-empty and
//! unique, and every `args_spec` entry has a name and a type. Hosts and the
//! conformance suite share this one definition.

use std::collections::BTreeSet;
use std::fmt;

use crate::protocol::{decode_frame, Frame, Handshake, PROTOCOL_VERSION};

/// One reason a handshake is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeProblem {
    /// The first line was not a frame at all.
    NotAFrame(String),
    /// The first line was a frame of another type.
    NotAHandshake(&'static str),
    WrongVersion(String),
    EmptyPluginName,
    EmptyCommandName {
        index: usize,
    },
    DuplicateCommand(String),
    IncompleteArg {
        command: String,
        index: usize,
    },
}

impl fmt::Display for HandshakeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeProblem::NotAFrame(reason) => {
                write!(f, "first stdout line is not a frame: {reason}")
            }
            HandshakeProblem::NotAHandshake(kind) => write!(
                f,
                "first frame is a {kind}, but a plugin must start with a handshake"
            ),
            HandshakeProblem::WrongVersion(version) => write!(
                f,
                "protocol_version is {version:?}, expected {PROTOCOL_VERSION:?}"
            ),
            HandshakeProblem::EmptyPluginName => write!(f, "plugin_name is empty"),
            HandshakeProblem::EmptyCommandName { index } => {
                write!(f, "capabilities.commands[{index}] has an empty name")
            }
            HandshakeProblem::DuplicateCommand(name) => {
                write!(f, "command {name:?} is declared more than once")
            }
            HandshakeProblem::IncompleteArg { command, index } => write!(
                f,
                "command {command:?}: args_spec[{index}] needs both a name and a type"
            ),
        }
    }
}

/// Checks a decoded handshake; returns every problem, not just the first.
pub fn validate_handshake(handshake: &Handshake) -> Result<(), Vec<HandshakeProblem>> {
    let mut problems = Vec::new();
    if handshake.protocol_version != PROTOCOL_VERSION {
        problems.push(HandshakeProblem::WrongVersion(
            handshake.protocol_version.clone(),
        ));
    }
    if handshake.plugin_name.trim().is_empty() {
        problems.push(HandshakeProblem::EmptyPluginName);
    }
    let mut seen = BTreeSet::new();
    for (index, command) in handshake.capabilities.commands.iter().enumerate() {
        if command.name.trim().is_empty() {
            problems.push(HandshakeProblem::EmptyCommandName { index });
            continue;
        }
        if !seen.insert(command.name.as_str()) {
            problems.push(HandshakeProblem::DuplicateCommand(command.name.clone()));
        }
        for (arg_index, arg) in command.args_spec.iter().enumerate() {
            if arg.name.trim().is_empty() || arg.kind.trim().is_empty() {
                problems.push(HandshakeProblem::IncompleteArg {
                    command: command.name.clone(),
                    index: arg_index,
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Decodes a plugin's first stdout line and validates it as a handshake.
pub fn parse_handshake_line(line: &str) -> Result<Handshake, Vec<HandshakeProblem>> {
    match decode_frame(line) {
        Ok(Frame::Handshake(handshake)) => validate_handshake(&handshake).map(|()| handshake),
        Ok(other) => Err(vec![HandshakeProblem::NotAHandshake(other.type_name())]),
        Err(err) => Err(vec![HandshakeProblem::NotAFrame(err.to_string())]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_v2_handshake_is_valid() {
        let handshake = parse_handshake_line(
            r#"{"type":"handshake","protocol_version":"v2","plugin_name":"p","capabilities":{"ops":["launch.plan"]}}"#,
        )
        .unwrap();
        assert!(handshake.capabilities.supports_op("launch.plan"));
        assert!(!handshake.capabilities.supports_op("build.run"));
    }

    #[test]
    fn every_problem_is_reported() {
        let problems = parse_handshake_line(
            r#"{"type":"handshake","protocol_version":"v1","plugin_name":" ","capabilities":{"commands":[
                {"name":"db"},{"name":"db"},{"name":""},{"name":"x","args_spec":[{"name":"a","type":""}]}]}}"#,
        )
        .unwrap_err();
        assert_eq!(
            problems,
            vec![
                HandshakeProblem::WrongVersion("v1".into()),
                HandshakeProblem::EmptyPluginName,
                HandshakeProblem::DuplicateCommand("db".into()),
                HandshakeProblem::EmptyCommandName { index: 2 },
                HandshakeProblem::IncompleteArg {
                    command: "x".into(),
                    index: 0
                },
            ]
        );
    }

    #[test]
    fn another_frame_first_is_not_a_handshake() {
        let problems =
            parse_handshake_line(r#"{"type":"response","request_id":"1","ok":true}"#).unwrap_err();
        assert_eq!(problems, vec![HandshakeProblem::NotAHandshake("response")]);
        let problems = parse_handshake_line("starting plugin...").unwrap_err();
        assert!(matches!(problems[0], HandshakeProblem::NotAFrame(_)));
    }
}
