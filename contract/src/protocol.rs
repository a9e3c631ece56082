//! Protocol v2 frames: one JSON object per line on a plugin's stdin/stdout.
//!
//! A plugin's first stdout line is a [`Handshake`]; afterwards the host sends
//! [`Request`]s and the plugin answers each with exactly one [`Response`],
//! plus [`Event`]s for the streams it started. [`decode_frame`] turns one line
//! into a [`Frame`] and says precisely why a line is not one.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ErrorCode;

/// The only protocol version this crate speaks.
pub const PROTOCOL_VERSION: &str = "v2";

/// Any frame, tagged by its `type` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Frame {
    Handshake(Handshake),
    Request(Request),
    Response(Response),
    Event(Event),
}

impl Frame {
    /// The wire name of this frame's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Frame::Handshake(_) => "handshake",
            Frame::Request(_) => "request",
            Frame::Response(_) => "response",
            Frame::Event(_) => "event",
        }
    }

    /// One NDJSON line (without the trailing newline).
    pub fn to_line(&self) -> String {
        // Serializing these types cannot fail: every map key is a string and
        // every value is plain data.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Appends the frame to `out` as one NDJSON line, newline included.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        let start = out.len();
        // As in `to_line`, this cannot fail; if it ever did, nothing half
        // written stays behind.
        if serde_json::to_writer(&mut *out, self).is_err() {
            out.truncate(start);
            return;
        }
        out.push(b'\n');
    }
}

/// The plugin's first stdout line: who it is and what it can do.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Handshake {
    /// Must be exactly `"v2"`; kept as text so a wrong version can be reported.
    pub protocol_version: String,
    pub plugin_name: String,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declares: Option<Declares>,
}

/// What a plugin declares it can do. Only `ops` authorizes a request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Capabilities {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandSpec>,
}

impl Capabilities {
    pub fn supports_op(&self, op: &str) -> bool {
        self.ops.iter().any(|declared| declared == op)
    }
}

/// A plugin-defined CLI command, run through `command.run`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct CommandSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args_spec: Vec<CommandArg>,
}

/// One declared argument of a plugin command.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct CommandArg {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Extra facts a plugin declares about itself.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Declares {
    /// Globs, relative to the repo root, whose changes should re-run the
    /// pipeline in watch mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<String>,
    /// Build steps and the sources they build: in watch mode, a change to
    /// a step's sources re-runs that step (`build.run` with only it) and
    /// restarts the services that run what it builds. Hosts that do not know
    /// this field ignore it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builds: Vec<BuildWatch>,
    /// Declarations this version does not interpret, kept verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// One build step's sources (`declares.builds`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct BuildWatch {
    /// The step's name, as `build.run` reports it.
    pub step: String,
    /// Globs relative to the repo root (`backend/**/*.go`).
    pub watch: Vec<String>,
    /// Services to restart once the step has run again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarts: Vec<String>,
}

/// Host → plugin: run `op` with `input`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Request {
    pub request_id: String,
    pub op: String,
    #[serde(default)]
    pub ctx: RequestContext,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub input: Value,
}

/// Request metadata. Every field is explicit; nothing is ambient.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct RequestContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Milliseconds the plugin has to answer, counted from receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// When true the plugin must not change anything on disk.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// Plugin → host: the one answer to a request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Response {
    pub request_id: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Note>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    pub fn success(request_id: impl Into<String>, output: Value) -> Response {
        Response {
            request_id: request_id.into(),
            ok: true,
            output: Some(output),
            ..Response::default()
        }
    }

    pub fn failure(request_id: impl Into<String>, error: ErrorBody) -> Response {
        Response {
            request_id: request_id.into(),
            ok: false,
            error: Some(error),
            ..Response::default()
        }
    }
}

/// A human-readable message attached to a response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Note {
    #[serde(default)]
    pub level: String,
    pub message: String,
}

/// The error of a failed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code,
            message: message.into(),
            details: None,
        }
    }
}

/// Plugin → host: one event of a stream. `event: "end"` closes the stream.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    pub stream_id: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
}

impl Event {
    /// The event name that closes a stream.
    pub const END: &'static str = "end";

    pub fn is_end(&self) -> bool {
        self.event == Event::END
    }
}

/// Why a line is not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not JSON at all (or not a JSON object).
    InvalidJson(String),
    /// A JSON object whose `type` is missing or unknown.
    UnknownType(Option<String>),
    /// A known `type` whose fields do not fit it.
    Malformed { frame_type: String, reason: String },
}

impl FrameError {
    /// The protocol code a host reports for this problem.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::InvalidJson(_) => ErrorCode::InvalidJson,
            FrameError::UnknownType(_) | FrameError::Malformed { .. } => ErrorCode::UnexpectedFrame,
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::InvalidJson(reason) => write!(f, "line is not a JSON object: {reason}"),
            FrameError::UnknownType(None) => write!(f, "JSON object has no \"type\" field"),
            FrameError::UnknownType(Some(kind)) => write!(
                f,
                "unknown frame type {kind:?} (expected handshake, request, response or event)"
            ),
            FrameError::Malformed { frame_type, reason } => {
                write!(f, "malformed {frame_type} frame: {reason}")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Decodes one NDJSON line into a frame.
pub fn decode_frame(line: &str) -> Result<Frame, FrameError> {
    let value: Value =
        serde_json::from_str(line).map_err(|err| FrameError::InvalidJson(err.to_string()))?;
    let Value::Object(object) = &value else {
        return Err(FrameError::InvalidJson(format!(
            "expected an object, found {}",
            json_kind(&value)
        )));
    };
    let frame_type = match object.get("type") {
        Some(Value::String(kind)) => kind.clone(),
        Some(other) => return Err(FrameError::UnknownType(Some(other.to_string()))),
        None => return Err(FrameError::UnknownType(None)),
    };
    if !matches!(
        frame_type.as_str(),
        "handshake" | "request" | "response" | "event"
    ) {
        return Err(FrameError::UnknownType(Some(frame_type)));
    }
    serde_json::from_value(value).map_err(|err| FrameError::Malformed {
        frame_type,
        reason: err.to_string(),
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_round_trips_and_omits_empty_fields() {
        let frame = Frame::Request(Request {
            request_id: "p-1".into(),
            op: "launch.plan".into(),
            ctx: RequestContext {
                repo_root: Some("/repo".into()),
                ..RequestContext::default()
            },
            input: json!({"config": {}}),
        });
        let line = frame.to_line();
        assert_eq!(
            line,
            r#"{"type":"request","request_id":"p-1","op":"launch.plan","ctx":{"repo_root":"/repo"},"input":{"config":{}}}"#
        );
        assert_eq!(decode_frame(&line), Ok(frame));
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let frame = decode_frame(
            r#"{"type":"response","request_id":"a","ok":false,"error":{"code":"E_UNSUPPORTED","message":"no","extra":1},"future":true}"#,
        )
        .unwrap();
        let Frame::Response(response) = frame else {
            panic!("expected a response");
        };
        assert_eq!(response.error.unwrap().code, ErrorCode::Unsupported);
    }

    #[test]
    fn decode_says_why_a_line_is_not_a_frame() {
        assert!(matches!(
            decode_frame("hello"),
            Err(FrameError::InvalidJson(_))
        ));
        assert!(matches!(
            decode_frame("[1]"),
            Err(FrameError::InvalidJson(_))
        ));
        assert_eq!(
            decode_frame(r#"{"type":"log"}"#),
            Err(FrameError::UnknownType(Some("log".into())))
        );
        assert_eq!(
            decode_frame(r#"{"ok":true}"#),
            Err(FrameError::UnknownType(None))
        );
        let malformed = decode_frame(r#"{"type":"response","ok":"yes"}"#).unwrap_err();
        assert_eq!(malformed.code(), ErrorCode::UnexpectedFrame);
        assert!(malformed.to_string().contains("malformed response frame"));
    }

    #[test]
    fn end_event_is_recognised() {
        let Frame::Event(event) =
            decode_frame(r#"{"type":"event","stream_id":"s1","event":"end","ok":true}"#).unwrap()
        else {
            panic!("expected an event");
        };
        assert!(event.is_end());
    }
}
