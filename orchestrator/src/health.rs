//! Readiness probes: `http` (a GET answered 2xx, http or https, through
//! reqwest), `tcp` (a connection is accepted) and `exec` (a command exits 0).
//!
//! Polling starts at about 10 ms and slows down as time passes (an eighth of
//! the time waited so far, at most 250 ms or the spec's `interval_ms`), so a
//! service that is quick to come up is noticed within milliseconds and a slow
//! one is not hammered. `timeout_ms` (default 30 s) is honoured.

use std::path::Path;
use std::time::{Duration, Instant};

use devctl_contract::manifest::{HealthCheckSpec, HealthKind};
use devctl_support::http::Prober;
use tokio::net::TcpStream;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_INTERVAL: Duration = Duration::from_millis(10);
const MAX_INTERVAL: Duration = Duration::from_millis(250);
/// No single probe may take longer than this.
pub const PROBE_LIMIT: Duration = Duration::from_secs(2);
/// `timeout_ms` and `interval_ms` from a plugin are capped here (a day):
/// a plugin may send any number.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// How long `check` may take to pass: its `timeout_ms` (default 30 s), at
/// most a day.
pub fn deadline(check: &HealthCheckSpec) -> Duration {
    check
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_TIMEOUT)
        .min(MAX_TIMEOUT)
}

/// How long a service without a health check must stay up to count as
/// ready, unless its spec says otherwise.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(500);

/// The settle time of a service without a health check: its `settle_ms`
/// (default 500 ms), at most a day.
pub fn settle_time(settle_ms: Option<u64>) -> Duration {
    settle_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_SETTLE)
        .min(MAX_TIMEOUT)
}

/// The longest pause between two probes: its `interval_ms` (default
/// 250 ms), 10 ms to a day.
pub fn interval_cap(check: &HealthCheckSpec) -> Duration {
    check
        .interval_ms
        .map(Duration::from_millis)
        .unwrap_or(MAX_INTERVAL)
        .clamp(FIRST_INTERVAL, MAX_TIMEOUT)
}

/// Waits until the check passes; `Err` says why it never did.
pub async fn wait_ready(check: &HealthCheckSpec, cwd: &Path) -> Result<(), String> {
    let started = Instant::now();
    let timeout = deadline(check);
    let cap = interval_cap(check);
    let prober = Prober::new().map_err(|err| err.to_string())?;
    let mut last = String::from("no probe ran");
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(format!(
                "not ready after {} ms (last probe: {last})",
                timeout.as_millis()
            ));
        }
        let limit = left.min(PROBE_LIMIT);
        match tokio::time::timeout(limit, probe(&prober, check, cwd, limit)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(reason)) => last = reason,
            Err(_) => last = "the probe timed out".into(),
        }
        let pause = (started.elapsed() / 8).clamp(FIRST_INTERVAL, cap);
        tokio::time::sleep(pause.min(timeout.saturating_sub(started.elapsed()))).await;
    }
}

/// One probe.
pub async fn probe(
    prober: &Prober,
    check: &HealthCheckSpec,
    cwd: &Path,
    limit: Duration,
) -> Result<(), String> {
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
            let answer = prober
                .get(url, limit)
                .await
                .map_err(|err| err.to_string())?;
            if answer.is_success() {
                Ok(())
            } else {
                Err(format!("GET {url} answered {}", answer.status))
            }
        }
        HealthKind::Exec => {
            let command = check.command.as_deref().unwrap_or_default();
            let (program, args) = command
                .split_first()
                .ok_or("exec health check needs a command")?;
            // Its own process group, like everything the supervisor starts
            // (the orphan reaper tells our children apart that way).
            let status = tokio::process::Command::new(program)
                .args(args)
                .current_dir(cwd)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        let err = wait_ready(&tcp(1), Path::new(".")).await.unwrap_err();
        assert!(
            err.contains("not ready after 300 ms"),
            "timeout_ms is honoured: {err}"
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
        let prober = Prober::new().unwrap();
        let limit = Duration::from_secs(5);
        assert!(probe(&prober, &check, Path::new("."), limit)
            .await
            .unwrap_err()
            .contains("503"));
        probe(&prober, &check, Path::new("."), limit).await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn exec_passes_on_exit_zero() {
        let mut check = HealthCheckSpec {
            kind: HealthKind::Exec,
            command: Some(vec!["true".into()]),
            ..HealthCheckSpec::default()
        };
        let prober = Prober::new().unwrap();
        let limit = Duration::from_secs(5);
        probe(&prober, &check, Path::new("."), limit).await.unwrap();
        check.command = Some(vec!["false".into()]);
        assert!(probe(&prober, &check, Path::new("."), limit).await.is_err());
    }
}
