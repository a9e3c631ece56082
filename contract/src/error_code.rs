//! Error codes carried in `response.error.code`.
//!
//! Callers match on [`ErrorCode`], never on message text. Codes this version
//! does not know survive a round trip as [`ErrorCode::Other`].

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A protocol error code such as `E_UNSUPPORTED`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// stdout carried something that is not a frame.
    StdoutContamination,
    /// A line was not valid JSON.
    InvalidJson,
    /// A well-formed frame arrived where it is not allowed.
    UnexpectedFrame,
    /// The handshake was missing, late or invalid.
    InvalidHandshake,
    /// One line exceeded the host's size bound.
    FrameTooLarge,
    /// The op is not supported by this plugin.
    Unsupported,
    /// The deadline passed before an answer.
    Timeout,
    /// The request was cancelled (for example because stdin closed).
    Canceled,
    /// Anything that went wrong while doing the work.
    Runtime,
    /// A code this version does not know; kept verbatim.
    Other(String),
}

const KNOWN: [(ErrorCode, &str); 9] = [
    (
        ErrorCode::StdoutContamination,
        "E_PROTOCOL_STDOUT_CONTAMINATION",
    ),
    (ErrorCode::InvalidJson, "E_PROTOCOL_INVALID_JSON"),
    (ErrorCode::UnexpectedFrame, "E_PROTOCOL_UNEXPECTED_FRAME"),
    (ErrorCode::InvalidHandshake, "E_PROTOCOL_INVALID_HANDSHAKE"),
    (ErrorCode::FrameTooLarge, "E_PROTOCOL_FRAME_TOO_LARGE"),
    (ErrorCode::Unsupported, "E_UNSUPPORTED"),
    (ErrorCode::Timeout, "E_TIMEOUT"),
    (ErrorCode::Canceled, "E_CANCELED"),
    (ErrorCode::Runtime, "E_RUNTIME"),
];

impl ErrorCode {
    /// The wire spelling, e.g. `"E_UNSUPPORTED"`.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Other(code) => code,
            known => KNOWN
                .iter()
                .find(|(code, _)| code == known)
                .map(|(_, text)| *text)
                .unwrap_or("E_RUNTIME"),
        }
    }

    /// Every code protocol v2 defines, in wire spelling.
    pub fn known() -> impl Iterator<Item = &'static str> {
        KNOWN.iter().map(|(_, text)| *text)
    }

    /// Parses a wire code; unknown codes become [`ErrorCode::Other`].
    pub fn parse(text: &str) -> ErrorCode {
        KNOWN
            .iter()
            .find(|(_, known)| *known == text)
            .map(|(code, _)| code.clone())
            .unwrap_or_else(|| ErrorCode::Other(text.to_owned()))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(ErrorCode::parse(&text))
    }
}

impl JsonSchema for ErrorCode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ErrorCode".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let known: Vec<&str> = ErrorCode::known().collect();
        schemars::json_schema!({
            "description": "A protocol error code. The listed codes are defined by protocol v2; peers may send others, which must be treated like E_RUNTIME.",
            "type": "string",
            "examples": known,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_round_trips_through_its_wire_spelling() {
        for (code, text) in KNOWN.iter() {
            assert_eq!(code.as_str(), *text);
            assert_eq!(&ErrorCode::parse(text), code);
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{text}\""));
        }
    }

    #[test]
    fn unknown_codes_are_kept_verbatim() {
        let code: ErrorCode = serde_json::from_str("\"E_QUOTA\"").unwrap();
        assert_eq!(code, ErrorCode::Other("E_QUOTA".into()));
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"E_QUOTA\"");
    }
}
