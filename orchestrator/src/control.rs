//! The supervisor's control socket: one JSON request per connection, one
//! JSON reply. `restart` and `stop` go through here; `down` falls back to
//! signals when the supervisor does not answer.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    /// Restart a service and whatever depends on it.
    Restart { service: String },
    /// Stop every service and exit.
    Stop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    pub lines: Vec<String>,
}

/// Sends `request` and waits up to `wait` for the reply.
pub async fn send(socket: &Path, request: &Request, wait: Duration) -> anyhow::Result<Reply> {
    let exchange = async {
        let mut stream = UnixStream::connect(socket).await?;
        let mut line = serde_json::to_string(request)?;
        line.push('\n');
        stream.write_all(line.as_bytes()).await?;
        let mut reader = BufReader::new(stream);
        let mut answer = String::new();
        reader.read_line(&mut answer).await?;
        anyhow::Ok(serde_json::from_str::<Reply>(&answer)?)
    };
    tokio::time::timeout(wait, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("the supervisor did not answer within {} s", wait.as_secs()))?
}

/// Reads one request from a connection.
pub async fn read_request(stream: &mut BufReader<UnixStream>) -> Option<Request> {
    let mut line = String::new();
    stream.read_line(&mut line).await.ok()?;
    serde_json::from_str(&line).ok()
}

pub async fn write_reply(stream: &mut BufReader<UnixStream>, reply: &Reply) {
    let mut line = serde_json::to_string(reply).unwrap_or_default();
    line.push('\n');
    let _ = stream.get_mut().write_all(line.as_bytes()).await;
}
