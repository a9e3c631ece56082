//! The supervisor's control channel: one JSON request per connection, one
//! JSON reply, on `.devctl/control.sock`.
//!
//! Both ends check the peer's uid (`SO_PEERCRED`): another local user can
//! neither stop the environment nor pretend to be its supervisor. Lines are
//! read with a bound, so a peer cannot make either side buffer without end.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::state::State;
use crate::statedir::StateDir;

/// The longest request line the supervisor reads.
pub const REQUEST_LIMIT: u64 = 64 * 1024;
/// The longest reply line a client reads (a reply may carry the state).
pub const REPLY_LIMIT: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// Restart a service and whatever depends on it.
    Restart { service: String },
    /// Stop one service (SIGTERM, SIGKILL after the grace; at once with
    /// `kill`); it stays stopped until restarted.
    StopService { service: String, kill: bool },
    /// Stop every service and exit.
    Stop,
    /// The supervisor's current state (it also rewrites the state file).
    Status,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub lines: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
}

impl Reply {
    pub fn lines(ok: bool, lines: Vec<String>) -> Reply {
        Reply {
            ok,
            lines,
            state: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no supervisor listens on {socket}: {error}")]
    Connect {
        socket: String,
        error: std::io::Error,
    },
    #[error("the process on the control socket belongs to user {uid}, not to you; refusing to talk to it")]
    ForeignPeer { uid: u32 },
    #[error("the supervisor did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the supervisor's answer is unreadable: {0}")]
    Garbled(String),
    #[error("talking to the supervisor failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Sends `request` to the supervisor of `dir` and waits up to `wait`.
pub async fn send(
    dir: &StateDir,
    request: &Request,
    wait: Duration,
) -> Result<Reply, ControlError> {
    let socket = dir.socket_path();
    let exchange = async {
        let stream = UnixStream::connect(&socket)
            .await
            .map_err(|error| ControlError::Connect {
                socket: dir.path().join("control.sock").display().to_string(),
                error,
            })?;
        check_peer(&stream)?;
        let mut stream = BufReader::new(stream);
        let mut line =
            serde_json::to_string(request).map_err(|e| ControlError::Garbled(e.to_string()))?;
        line.push('\n');
        stream.get_mut().write_all(line.as_bytes()).await?;
        let answer = read_line(&mut stream, REPLY_LIMIT)
            .await?
            .ok_or_else(|| ControlError::Garbled("the connection closed without a reply".into()))?;
        serde_json::from_str::<Reply>(&answer).map_err(|e| ControlError::Garbled(e.to_string()))
    };
    tokio::time::timeout(wait, exchange)
        .await
        .map_err(|_| ControlError::Timeout(wait))?
}

/// Refuses a peer that is not the same user.
pub fn check_peer(stream: &UnixStream) -> Result<(), ControlError> {
    let cred = stream.peer_cred()?;
    let me = nix::unistd::Uid::effective().as_raw();
    if cred.uid() != me {
        return Err(ControlError::ForeignPeer { uid: cred.uid() });
    }
    Ok(())
}

/// Reads one request from a connection (bounded).
pub async fn read_request(stream: &mut BufReader<UnixStream>) -> Option<Request> {
    let line = read_line(stream, REQUEST_LIMIT).await.ok()??;
    serde_json::from_str(&line).ok()
}

pub async fn write_reply(stream: &mut BufReader<UnixStream>, reply: &Reply) {
    let mut line = serde_json::to_string(reply).unwrap_or_default();
    line.push('\n');
    let _ = stream.get_mut().write_all(line.as_bytes()).await;
}

/// One line, at most `limit` bytes; `None` at end of stream. A longer line
/// is an error, not a bigger buffer.
async fn read_line(
    stream: &mut BufReader<UnixStream>,
    limit: u64,
) -> Result<Option<String>, ControlError> {
    let mut bytes = Vec::new();
    let read = (&mut *stream)
        .take(limit + 1)
        .read_until(b'\n', &mut bytes)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if bytes.last() != Some(&b'\n') && bytes.len() as u64 > limit {
        return Err(ControlError::Garbled(format!(
            "a line longer than {limit} bytes"
        )));
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| ControlError::Garbled("not UTF-8".into()))
}
