//! The control socket's server side: accepts connections from the same
//! user only (at most [`CONNECTIONS`] at once), reads one bounded request,
//! hands it to the loop as an [`Input::Control`] and writes the loop's
//! reply back. [`Connections::drain`] lets the last replies (to `down`) out
//! before the supervisor exits.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::core::Input;
use crate::control::{check_peer, read_request, write_reply, Reply};
use crate::statedir::StateDir;

/// Binds `.devctl/control.sock` (replacing a stale socket file there),
/// mode 0600 whatever the umask (its directory is 0700 too).
pub fn bind(dir: &StateDir) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    dir.remove_socket();
    let listener = UnixListener::bind(dir.socket_path())?;
    std::fs::set_permissions(dir.socket_path(), std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Connections served at once; more wait to be accepted.
pub const CONNECTIONS: u32 = 32;

/// The connections being served.
#[derive(Clone)]
pub struct Connections(Arc<Semaphore>);

impl Default for Connections {
    fn default() -> Connections {
        Connections(Arc::new(Semaphore::new(CONNECTIONS as usize)))
    }
}

impl Connections {
    /// Waits (at most `limit`) until every connection has been answered.
    pub async fn drain(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.0.acquire_many(CONNECTIONS)).await;
    }
}

/// Serves connections until the listener fails or the loop is gone.
pub async fn serve(
    listener: UnixListener,
    inputs: mpsc::UnboundedSender<Input>,
    connections: Connections,
) {
    loop {
        let Ok(permit) = connections.0.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        if inputs.is_closed() {
            return;
        }
        let inputs = inputs.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if check_peer(&stream).is_err() {
                return; // another user: not a word
            }
            let mut connection = BufReader::new(stream);
            let Some(request) = read_request(&mut connection).await else {
                let reply = Reply::lines(false, vec!["unreadable request".into()]);
                write_reply(&mut connection, &reply).await;
                return;
            };
            let (reply_tx, reply_rx) = oneshot::channel();
            if inputs
                .send(Input::Control {
                    request,
                    reply: reply_tx,
                })
                .is_err()
            {
                return;
            }
            if let Ok(reply) = reply_rx.await {
                write_reply(&mut connection, &reply).await;
            }
        });
    }
}
