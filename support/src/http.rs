//! `GET` for local readiness and health checks, through reqwest.
//!
//! A probe reads the whole (bounded) answer and then drops the connection
//! (nothing is pooled), so the server sees a normal close instead of a reset
//! on a socket that still had data in it. Proxies are never used: `HTTP_PROXY`
//! would otherwise apply even to 127.0.0.1. `http` and `https` both work
//! (rustls; a dev server's self-signed certificate is accepted, since the
//! question is "is it up", not "is it who it says").

use std::time::Duration;

/// The most of a body a probe keeps.
pub const BODY_LIMIT: usize = 1 << 20;

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The body as text (lossy UTF-8), cut at [`BODY_LIMIT`].
    pub body: String,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("{url} is not an http(s) URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("GET {url}: no answer within {} ms", .after.as_millis())]
    Timeout { url: String, after: Duration },
    #[error("GET {url}: {reason}")]
    Failed { url: String, reason: String },
}

/// A reusable prober (one per supervisor or command; cheap to clone).
#[derive(Clone, Debug)]
pub struct Prober {
    client: reqwest::Client,
}

impl Prober {
    pub fn new() -> Result<Prober, HttpError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .danger_accept_invalid_certs(true)
            .build()
            .map_err(|err| HttpError::Failed {
                url: String::new(),
                reason: format!("cannot set up an HTTP client: {}", describe(&err)),
            })?;
        Ok(Prober { client })
    }

    /// `GET url`, with `timeout` for the whole exchange.
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<Answer, HttpError> {
        let parsed = check_url(url)?;
        let exchange = async {
            let mut response = self
                .client
                .get(parsed)
                .send()
                .await
                .map_err(|err| failed(url, &err))?;
            let status = response.status().as_u16();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|err| failed(url, &err))? {
                let room = BODY_LIMIT.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if room < chunk.len() {
                    break;
                }
            }
            Ok(Answer {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout {
                url: url.to_owned(),
                after: timeout,
            })?
    }
}

/// `GET url` from synchronous code, on its own small runtime. Called from
/// inside an async runtime (where starting another would panic), the probe
/// runs on a short-lived thread instead; the caller's thread still blocks, so
/// async code should prefer [`Prober::get`] or `spawn_blocking`.
pub fn get_blocking(url: &str, timeout: Duration) -> Result<Answer, HttpError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return std::thread::scope(|scope| {
            scope
                .spawn(|| get_on_own_runtime(url, timeout))
                .join()
                .unwrap_or_else(|_| {
                    Err(HttpError::Failed {
                        url: url.to_owned(),
                        reason: "the probe thread failed".into(),
                    })
                })
        });
    }
    get_on_own_runtime(url, timeout)
}

fn get_on_own_runtime(url: &str, timeout: Duration) -> Result<Answer, HttpError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| HttpError::Failed {
            url: url.to_owned(),
            reason: format!("cannot start an async runtime: {err}"),
        })?;
    runtime.block_on(async { Prober::new()?.get(url, timeout).await })
}

fn check_url(url: &str) -> Result<reqwest::Url, HttpError> {
    let bad = |reason: String| HttpError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    let parsed = reqwest::Url::parse(url).map_err(|err| bad(err.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(bad(format!("the scheme is {other:?}; use http or https"))),
    }
}

fn failed(url: &str, err: &reqwest::Error) -> HttpError {
    HttpError::Failed {
        url: url.to_owned(),
        reason: describe(err),
    }
}

/// The innermost cause is what a user can act on ("Connection refused").
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        innermost = cause.to_string();
        source = cause.source();
    }
    innermost
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A one-shot server that answers `status` and reports what it saw.
    fn serve_once(status: &'static str) -> (u16, std::thread::JoinHandle<std::io::Result<usize>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept()?;
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = socket.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let body = "x".repeat(100_000);
            socket.write_all(
                format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )?;
            // The client must read the answer and close: a reset here would
            // be the ConnectionResetError the example backend used to log.
            socket.read(&mut buf)
        });
        (port, handle)
    }

    #[test]
    fn the_answer_is_read_whole_and_the_connection_closed_cleanly() {
        let (port, server) = serve_once("200 OK");
        let answer = get_blocking(
            &format!("http://127.0.0.1:{port}/h"),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body.len(), 100_000);
        assert!(answer.is_success());
        assert_eq!(server.join().unwrap().unwrap(), 0, "clean EOF, no reset");
    }

    #[test]
    fn errors_say_what_happened() {
        let (port, server) = serve_once("503 Service Unavailable");
        let answer =
            get_blocking(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(5)).unwrap();
        assert_eq!(answer.status, 503);
        assert!(!answer.is_success());
        server.join().unwrap().unwrap();

        let refused = get_blocking("http://127.0.0.1:1/", Duration::from_secs(5)).unwrap_err();
        assert!(
            refused.to_string().to_lowercase().contains("refused"),
            "{refused}"
        );
        let bad = get_blocking("ftp://x/", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(bad, HttpError::BadUrl { .. }), "{bad}");
    }

    #[tokio::test]
    async fn the_blocking_get_works_even_when_called_inside_a_runtime() {
        // A caller inside an async task must not panic ("cannot start a
        // runtime from within a runtime"); it gets its answer.
        let (port, server) = serve_once("200 OK");
        let answer =
            get_blocking(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(5)).unwrap();
        assert_eq!(answer.status, 200);
        server.join().unwrap().unwrap();
    }

    /// A self-signed https server (python3 + openssl), answering 200 once.
    fn serve_https_once(dir: &std::path::Path) -> Option<(u16, std::process::Child)> {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let made = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        if !made.success() {
            return None;
        }
        let script = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), H)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.handle_request()
"#;
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&cert)
            .arg(&key)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let mut line = String::new();
        let stdout = child.stdout.take()?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).ok()?;
        match line.trim().parse() {
            Ok(port) => Some((port, child)),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }

    #[test]
    fn https_is_probed_too_even_with_a_self_signed_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let Some((port, mut server)) = serve_https_once(dir.path()) else {
            crate::testing::skip("python3 or openssl cannot serve https here");
            return;
        };
        let answer = get_blocking(
            &format!("https://127.0.0.1:{port}/rpc/v1/health"),
            Duration::from_secs(10),
        );
        let _ = server.kill();
        let _ = server.wait();
        let answer = answer.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, r#"{"ok":true}"#);
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = get_blocking(
            &format!("http://127.0.0.1:{port}/"),
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
        drop(listener);
    }
}
