//! An SDK plugin as a real process (`examples/misbehaving_plugin.rs`) driven
//! by the SDK host over real pipes: what the SDK promises about handlers
//! that block their thread, and about stdin EOF, holds outside the
//! in-memory harness too.

use std::path::Path;
use std::time::Duration;

use devctl_sdk::host::{Client, HostOptions, PluginSpec, RequestMeta, StderrSink};
use serde_json::json;

const CALL: Duration = Duration::from_secs(20);

fn misbehaving() -> PluginSpec {
    let exe = std::env::current_exe().expect("test path");
    let debug_dir = exe.parent().and_then(Path::parent).expect("target dir");
    PluginSpec {
        id: "misbehaving".into(),
        program: debug_dir.join("examples").join("misbehaving-plugin"),
        ..PluginSpec::default()
    }
}

fn options() -> HostOptions {
    HostOptions {
        stderr: StderrSink::Discard,
        // What the conformance suite allows a plugin after stdin closes.
        eof_grace: Duration::from_secs(2),
        ..HostOptions::default()
    }
}

#[tokio::test]
async fn handlers_blocking_their_threads_do_not_stall_other_requests() {
    let client = std::sync::Arc::new(
        Client::start(&misbehaving(), RequestMeta::default(), options())
            .await
            .expect("the plugin starts"),
    );
    // More blockers than the runtime has workers, of every kind.
    let mut blockers = Vec::new();
    for op in [
        "block",
        "block-after-await",
        "spin",
        "block",
        "block-after-await",
    ] {
        let caller = client.clone();
        blockers.push(tokio::spawn(async move {
            caller.call(op, json!({"ms": 4000}), CALL).await
        }));
        // Each is read (and starts blocking) before the next is sent.
        client
            .call("ping", json!({"after": op}), CALL)
            .await
            .unwrap_or_else(|err| panic!("ping after {op}: {err:?}"));
    }
    for n in 0..20 {
        let reply = client.call("ping", json!(n), CALL).await.expect("ping");
        assert_eq!(reply.output, json!(n));
    }
    assert!(
        blockers.iter().all(|blocker| !blocker.is_finished()),
        "the pings were answered while every blocker still ran"
    );
    for blocker in blockers {
        blocker
            .await
            .expect("joined")
            .expect("the blocker's own answer");
    }
    let client = std::sync::Arc::into_inner(client).expect("sole owner");
    let report = client.close().await;
    assert_eq!(report.how, "exited", "{report:?}");
}

#[tokio::test]
async fn stdin_eof_ends_the_plugin_while_a_handler_blocks_and_a_stream_floods() {
    for op in ["block", "block-after-await"] {
        let client = Client::start(&misbehaving(), RequestMeta::default(), options())
            .await
            .expect("the plugin starts");
        let _stream = client
            .start_stream("firehose", json!({}), CALL)
            .await
            .expect("the stream starts");
        // The host stops waiting; the plugin's handler blocks on for a minute.
        let gave_up = client
            .call(op, json!({"ms": 60_000}), Duration::from_millis(300))
            .await
            .expect_err("no answer within 300 ms");
        assert_eq!(gave_up.code, devctl_sdk::contract::ErrorCode::Timeout);
        client.call("ping", json!(1), CALL).await.expect("ping");
        let report = client.close().await;
        assert_eq!(report.how, "exited", "{op}: {report:?}");
        assert!(report.leftover.is_empty(), "{op}: {report:?}");
    }
}

/// The plugin started by hand, for what the SDK host would not do (stop
/// reading, close its end of stdout).
struct Raw {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: Option<std::io::BufReader<std::process::ChildStdout>>,
}

impl Raw {
    fn start() -> Raw {
        use std::io::BufRead;
        let mut child = std::process::Command::new(misbehaving().program)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the plugin starts");
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().map(std::io::BufReader::new);
        let mut handshake = String::new();
        stdout
            .as_mut()
            .expect("stdout")
            .read_line(&mut handshake)
            .expect("a handshake");
        assert!(handshake.contains("handshake"), "{handshake}");
        Raw {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, lines: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(lines.as_bytes()).expect("writes");
        stdin.flush().expect("flushes");
    }

    /// Waits up to `within` for the plugin to exit by itself.
    fn exits_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// User + system CPU time so far, in clock ticks. A sample that cannot
    /// be read fails the test (a made-up 0 would let it pass).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("the plugin's /proc stat");
        // Fields after the command name (which ends with ')'): utime is the
        // 12th, stime the 13th.
        let (_, rest) = stat.rsplit_once(')').expect("a stat line");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |at: usize| -> u64 { fields[at].parse().expect("a tick count") };
        field(11) + field(12)
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the plugin's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line")
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request(id: &str, op: &str, input: serde_json::Value) -> String {
    format!(
        "{}\n",
        json!({"type": "request", "request_id": id, "op": op, "input": input})
    )
}

#[test]
fn a_flooding_stream_is_ended_at_stdin_eof_and_stdout_ends_with_whole_frames() {
    use std::io::BufRead;
    let mut raw = Raw::start();
    raw.send(&request("s1", "firehose", json!({})));
    raw.send(&request("w1", "block-after-await", json!({"ms": 100})));
    let stdout = raw.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        stdout
            .lines()
            .map(|line| line.expect("utf-8"))
            .collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_millis(50));
    raw.stdin = None;
    let status = raw
        .exits_within(Duration::from_secs(5))
        .expect("the plugin exits");
    assert!(status.success(), "{status:?}");
    let lines = reader.join().expect("reader");
    for line in &lines {
        let frame: serde_json::Value =
            serde_json::from_str(line).expect("every line is whole JSON");
        assert!(frame.get("type").is_some(), "{line}");
    }
    let last_of_stream = lines
        .iter()
        .rev()
        .find(|line| line.contains("\"stream_id\":\"firehose-1\""))
        .expect("events");
    assert!(
        last_of_stream.contains("\"event\":\"end\""),
        "{last_of_stream}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains("\"request_id\":\"w1\"")),
        "w1 answered"
    );
}

#[test]
fn a_host_that_closes_the_plugins_stdout_makes_it_exit() {
    let mut raw = Raw::start();
    raw.send(&request("s1", "firehose", json!({})));
    drop(raw.stdout.take());
    // stdin stays open: only the closed stdout tells the plugin to stop.
    let status = raw.exits_within(Duration::from_secs(5));
    assert!(
        status.is_some(),
        "the plugin kept running with nobody to answer"
    );
}

#[test]
fn answers_the_host_does_not_read_yet_take_bounded_memory() {
    use std::io::BufRead;
    let mut raw = Raw::start();
    let burst: String = (0..300)
        .map(|n| request(&format!("b{n}"), "big", json!({"n": 1_000_000})))
        .collect();
    raw.send(&burst);
    // 300 MB of answers are due and the host reads none: the plugin must
    // stop (its CPU time stops moving) long before it holds them all.
    let mut peak = 0;
    let mut still = 0;
    let mut last_cpu = raw.cpu_ticks();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while still < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(raw.rss_kib());
        let cpu = raw.cpu_ticks();
        still = if cpu == last_cpu { still + 1 } else { 0 };
        last_cpu = cpu;
    }
    assert!(peak < 64 * 1024, "the plugin grew to {peak} KiB");
    let mut stdout = raw.stdout.take().expect("stdout");
    let mut line = String::new();
    for _ in 0..300 {
        line.clear();
        stdout.read_line(&mut line).expect("reads");
        let answer: serde_json::Value = serde_json::from_str(&line).expect("a whole frame");
        assert_eq!(answer["output"].as_str().map(str::len), Some(1_000_000));
    }
    raw.stdin = None;
    assert!(raw.exits_within(Duration::from_secs(5)).is_some());
}

#[test]
fn a_blocking_handler_is_answered_e_timeout_at_its_deadline_and_e_canceled_at_eof_once_each() {
    use std::io::BufRead;
    let mut raw = Raw::start();
    raw.send(&format!(
        "{}\n",
        json!({"type": "request", "request_id": "late", "op": "block",
               "ctx": {"deadline_ms": 300}, "input": {"ms": 3000}})
    ));
    raw.send(&request("stuck", "block", json!({"ms": 60_000})));
    let stdout = raw.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = lines_rx
        .recv_timeout(Duration::from_secs(2))
        .expect("an answer well before the handler returns (3 s)");
    let first: serde_json::Value = serde_json::from_str(&first).expect("a frame");
    assert_eq!(first["request_id"], "late", "{first}");
    assert_eq!(first["error"]["code"], "E_TIMEOUT", "{first}");
    // stdin closes while `stuck` blocks for a minute and `late` still runs.
    raw.stdin = None;
    let status = raw.exits_within(Duration::from_secs(5));
    assert!(status.is_some(), "the plugin exits at EOF");
    reader.join().expect("reader");
    let rest: Vec<serde_json::Value> = lines_rx
        .try_iter()
        .map(|line| serde_json::from_str(&line).expect("whole frames"))
        .collect();
    assert_eq!(
        rest.len(),
        1,
        "one answer more, for `stuck` alone: {rest:?}"
    );
    assert_eq!(rest[0]["request_id"], "stuck");
    assert_eq!(rest[0]["error"]["code"], "E_CANCELED");
}
