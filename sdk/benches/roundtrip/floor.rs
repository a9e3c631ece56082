//! The floor the SDK is measured against: a plugin and a host written with
//! std and serde_json only (the contract's serde types, no runtime),
//! synchronous, over the same pipes: BufReader in, BufWriter out, a flush
//! only when no more input is buffered. It does nothing the SDK guarantees
//! (a blocking handler would stall it; stdout is not protected; no
//! deadlines), so it is what the work itself costs.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use devctl_contract::protocol::{Capabilities, Frame, Handshake, Request, Response};
use serde_json::Value;

/// The floor plugin: answers `ping` with its input, anything else with
/// `E_UNSUPPORTED`; exits at stdin EOF.
pub fn plugin() -> ExitCode {
    let stdin = std::io::stdin();
    let mut input = BufReader::with_capacity(64 * 1024, stdin.lock());
    let mut output = BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let handshake = Frame::Handshake(Handshake {
        protocol_version: "v2".into(),
        plugin_name: "floor".into(),
        capabilities: Capabilities {
            ops: vec!["ping".into()],
            ..Capabilities::default()
        },
        declares: None,
    });
    let mut line = Vec::with_capacity(4096);
    let written = serde_json::to_writer(&mut output, &handshake)
        .map_err(std::io::Error::from)
        .and_then(|()| output.write_all(b"\n"))
        .and_then(|()| output.flush());
    if written.is_err() {
        return ExitCode::FAILURE;
    }
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return ExitCode::SUCCESS,
            Ok(_) => {}
        }
        let Ok(Frame::Request(request)) = serde_json::from_slice::<Frame>(&line) else {
            continue;
        };
        let response = if request.op == "ping" {
            Response::success(request.request_id, request.input)
        } else {
            Response::failure(
                request.request_id,
                devctl_contract::protocol::ErrorBody::new(
                    devctl_contract::ErrorCode::Unsupported,
                    "unsupported",
                ),
            )
        };
        let sent = serde_json::to_writer(&mut output, &Frame::Response(response))
            .map_err(std::io::Error::from)
            .and_then(|()| output.write_all(b"\n"));
        if sent.is_err() {
            return ExitCode::FAILURE;
        }
        if input.buffer().is_empty() && output.flush().is_err() {
            return ExitCode::FAILURE;
        }
    }
}

/// One `ping` request as a line.
fn request_line(number: u64, input: &Value) -> Vec<u8> {
    let frame = Frame::Request(Request {
        request_id: format!("floor-{number}"),
        op: "ping".into(),
        input: input.clone(),
        ..Request::default()
    });
    let mut line = serde_json::to_vec(&frame).expect("encodes");
    line.push(b'\n');
    line
}

/// The floor host: a started plugin, its pipes, and the next request id.
pub struct Host {
    child: Child,
    stdin: Option<BufWriter<ChildStdin>>,
    stdout: BufReader<ChildStdout>,
    next: u64,
}

impl Host {
    pub fn start(mut command: Command) -> Host {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the floor plugin starts");
        let stdin = BufWriter::with_capacity(64 * 1024, child.stdin.take().expect("stdin"));
        let mut stdout = BufReader::with_capacity(64 * 1024, child.stdout.take().expect("stdout"));
        let mut handshake = String::new();
        stdout.read_line(&mut handshake).expect("handshake");
        assert!(handshake.contains("\"handshake\""), "{handshake}");
        Host {
            child,
            stdin: Some(stdin),
            stdout,
            next: 0,
        }
    }

    fn request_line(&mut self, input: &Value) -> Vec<u8> {
        self.next += 1;
        request_line(self.next, input)
    }

    fn read_response(stdout: &mut BufReader<ChildStdout>, line: &mut Vec<u8>) -> Response {
        line.clear();
        stdout.read_until(b'\n', line).expect("reads");
        match serde_json::from_slice::<Frame>(line) {
            Ok(Frame::Response(response)) if response.ok => response,
            other => panic!("floor plugin answered {other:?}"),
        }
    }

    /// One request at a time: the latency of each round trip.
    pub fn sequential(&mut self, input: &Value, count: usize) -> Vec<Duration> {
        let mut line = Vec::new();
        (0..count)
            .map(|_| {
                let request = self.request_line(input);
                let started = Instant::now();
                let stdin = self.stdin.as_mut().expect("open");
                stdin.write_all(&request).expect("writes");
                stdin.flush().expect("flushes");
                Self::read_response(&mut self.stdout, &mut line);
                started.elapsed()
            })
            .collect()
    }

    /// `count` requests with at most `window` unanswered: requests per second.
    pub fn pipelined(&mut self, input: &Value, count: usize, window: usize) -> f64 {
        let answered = Arc::new(AtomicUsize::new(0));
        let mut stdin = self.stdin.take().expect("open");
        let started = Instant::now();
        let writer = {
            let answered = answered.clone();
            let input = input.clone();
            let first = self.next;
            self.next += count as u64;
            std::thread::spawn(move || {
                // Encoding a request is part of what a host does for each.
                for sent in 0..count {
                    let request = request_line(first + 1 + sent as u64, &input);
                    if sent - answered.load(Ordering::Acquire) >= window {
                        stdin.flush().expect("flushes");
                        while sent - answered.load(Ordering::Acquire) >= window {
                            std::thread::park();
                        }
                    }
                    stdin.write_all(&request).expect("writes");
                }
                stdin.flush().expect("flushes");
                stdin
            })
        };
        let mut line = Vec::new();
        for _ in 0..count {
            Self::read_response(&mut self.stdout, &mut line);
            answered.fetch_add(1, Ordering::Release);
            // Cheap unless the writer is parked (then one futex wake).
            writer.thread().unpark();
        }
        let per_s = count as f64 / started.elapsed().as_secs_f64();
        self.stdin = Some(writer.join().expect("writer"));
        per_s
    }

    /// Closes stdin and waits for the plugin to exit.
    pub fn close(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
