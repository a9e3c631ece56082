//! Readiness probes: `http` (a GET answered 2xx), `tcp` (a connection is
//! accepted) and `exec` (a command exits 0).
//!
//! Polling starts at about 10 ms and slows down as time passes (an eighth of
//! the time waited so far, at most 250 ms or the spec's `interval_ms`), so a
//! service that is quick to come up is noticed within milliseconds and a slow
//! one is not hammered. `timeout_ms` (default 30 s) is honoured.

use std::path::Path;
use std::time::{Duration, Instant};

use devctl_contract::manifest::{HealthCheckSpec, HealthKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_INTERVAL: Duration = Duration::from_millis(10);
const MAX_INTERVAL: Duration = Duration::from_millis(250);
/// No single probe may take longer than this.
const PROBE_LIMIT: Duration = Duration::from_secs(2);

/// Waits until the check passes; `Err` says why it never did.
pub async fn wait_ready(check: &HealthCheckSpec, cwd: &Path) -> Result<(), String> {
    let started = Instant::now();
    let timeout = check
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_TIMEOUT);
    let cap = check
        .interval_ms
        .map(Duration::from_millis)
        .unwrap_or(MAX_INTERVAL)
        .max(FIRST_INTERVAL);
    let mut last = String::from("no probe ran");
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(format!(
                "not ready after {} ms (last probe: {last})",
                timeout.as_millis()
            ));
        }
        match tokio::time::timeout(left.min(PROBE_LIMIT), probe(check, cwd)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(reason)) => last = reason,
            Err(_) => last = "the probe timed out".into(),
        }
        let pause = (started.elapsed() / 8).clamp(FIRST_INTERVAL, cap);
        tokio::time::sleep(pause.min(timeout.saturating_sub(started.elapsed()))).await;
    }
}

/// One probe.
pub async fn probe(check: &HealthCheckSpec, cwd: &Path) -> Result<(), String> {
    match check.kind {
        HealthKind::Tcp => {
            let address = match (&check.address, check.port) {
                (Some(address), _) => address.clone(),
                (None, Some(port)) => format!("127.0.0.1:{port}"),
                (None, None) => return Err("tcp health check needs an address or a port".into()),
            };
            connect(&address).await.map(drop)
        }
        HealthKind::Http => {
            let url = check
                .url
                .as_deref()
                .ok_or("http health check needs a url")?;
            let status = http_get(url).await?;
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(format!("GET {url} answered {status}"))
            }
        }
        HealthKind::Exec => {
            let command = check.command.as_deref().unwrap_or_default();
            let (program, args) = command
                .split_first()
                .ok_or("exec health check needs a command")?;
            let status = tokio::process::Command::new(program)
                .args(args)
                .current_dir(cwd)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|err| format!("cannot run `{program}`: {err}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("`{}` exited with {status}", command.join(" ")))
            }
        }
    }
}

/// Connects to `host:port`, trying every address the name resolves to
/// (`localhost` may be ::1 or 127.0.0.1 depending on the server).
async fn connect(address: &str) -> Result<TcpStream, String> {
    let addresses = tokio::net::lookup_host(address)
        .await
        .map_err(|err| format!("cannot resolve {address}: {err}"))?;
    let mut last = format!("{address} resolves to nothing");
    for addr in addresses {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(err) => last = format!("connect {addr}: {err}"),
        }
    }
    Err(last)
}

/// The status code of `GET url` (plain http only; enough for local probes).
async fn http_get(url: &str) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// health URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut stream = connect(&address).await?;
    // One write: a server may answer and close as soon as it has the line.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| format!("GET {url}: {err}"))?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let read = stream
            .read(&mut buf)
            .await
            .map_err(|err| format!("GET {url}: {err}"))?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buf[..read]);
    }
    let line = String::from_utf8_lossy(&head);
    line.strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            format!(
                "GET {url}: not an HTTP answer ({:?})",
                line.lines().next().unwrap_or("")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(port: u16) -> HealthCheckSpec {
        HealthCheckSpec {
            kind: HealthKind::Tcp,
            port: Some(port),
            timeout_ms: Some(300),
            ..HealthCheckSpec::default()
        }
    }

    #[tokio::test]
    async fn tcp_passes_once_a_port_listens_and_times_out_otherwise() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        wait_ready(&tcp(port), Path::new(".")).await.unwrap();
        drop(listener);
        // Not the port just freed (a parallel test may take it): port 1 is
        // privileged and never bound here.
        let started = Instant::now();
        let err = wait_ready(&tcp(1), Path::new(".")).await.unwrap_err();
        assert!(err.contains("not ready after 300 ms"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "timeout_ms is honoured"
        );
    }

    #[tokio::test]
    async fn http_needs_a_2xx_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for status in ["503 Service Unavailable", "200 OK"] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let check = HealthCheckSpec {
            kind: HealthKind::Http,
            url: Some(format!("http://127.0.0.1:{port}/rpc/v1/health")),
            timeout_ms: Some(5000),
            ..HealthCheckSpec::default()
        };
        assert!(probe(&check, Path::new("."))
            .await
            .unwrap_err()
            .contains("503"));
        probe(&check, Path::new(".")).await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn exec_passes_on_exit_zero() {
        let mut check = HealthCheckSpec {
            kind: HealthKind::Exec,
            command: Some(vec!["true".into()]),
            ..HealthCheckSpec::default()
        };
        probe(&check, Path::new(".")).await.unwrap();
        check.command = Some(vec!["false".into()]);
        assert!(probe(&check, Path::new(".")).await.is_err());
    }
}
