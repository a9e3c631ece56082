//! The host's one error type: which plugin, which op, which code.

use devctl_contract::protocol::ErrorBody;
use devctl_contract::ErrorCode;
use serde_json::Value;

/// A failed call (or start). Callers match on [`OpError::code`], never on
/// the message. Start-up failures use the op name `handshake`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("plugin {plugin_id}: {op}: {code}: {message}")]
pub struct OpError {
    pub plugin_id: String,
    pub op: String,
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
}

impl OpError {
    pub(crate) fn new(
        plugin_id: &str,
        op: &str,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> OpError {
        OpError {
            plugin_id: plugin_id.to_owned(),
            op: op.to_owned(),
            code,
            message: message.into(),
            details: None,
        }
    }

    pub(crate) fn from_body(plugin_id: &str, op: &str, body: ErrorBody) -> OpError {
        OpError {
            plugin_id: plugin_id.to_owned(),
            op: op.to_owned(),
            code: body.code,
            message: body.message,
            details: body.details,
        }
    }

    pub(crate) fn with_details(mut self, details: Value) -> OpError {
        self.details = Some(details);
        self
    }

    /// True for `E_UNSUPPORTED`: optional callers skip, required ones report.
    pub fn is_unsupported(&self) -> bool {
        self.code == ErrorCode::Unsupported
    }
}

/// Why a plugin connection died: the protocol code and a description.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fatal {
    pub code: ErrorCode,
    pub message: String,
    /// The offending request id, when a response named one we never sent.
    pub request_id: Option<String>,
}

impl Fatal {
    /// What a pending or later call sees: `E_RUNTIME` carrying the cause.
    pub fn to_error(&self, plugin_id: &str, op: &str) -> OpError {
        OpError::new(
            plugin_id,
            op,
            ErrorCode::Runtime,
            format!("plugin connection failed: {}: {}", self.code, self.message),
        )
        .with_details(match &self.request_id {
            Some(id) => serde_json::json!({ "cause": self.code.as_str(), "request_id": id }),
            None => serde_json::json!({ "cause": self.code.as_str() }),
        })
    }
}
