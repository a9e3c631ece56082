//! An in-memory harness: drive a [`Plugin`] over duplex pipes, exactly as a
//! host would over stdio, without a process.
//!
//! ```
//! # use devctl_sdk::plugin::{Ctx, OpError, Plugin, testing::Harness};
//! # use serde_json::{json, Value};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let plugin = Plugin::new("echo").op("echo", |_: Ctx, input: Value| async move {
//!     Ok::<_, OpError>(input)
//! });
//! let mut harness = Harness::start(plugin).await;
//! let response = harness.request("echo", json!({"x": 1})).await;
//! assert_eq!(response.output, Some(json!({"x": 1})));
//! harness.finish().await;
//! # }
//! ```

use std::time::Duration;

use devctl_contract::protocol::{Frame, Handshake, Request, RequestContext, Response};
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;

use super::Plugin;
use crate::frame_io::LineReader;

/// How long the harness waits for any one frame before failing the test.
const FRAME_DEADLINE: Duration = Duration::from_secs(10);

pub struct Harness {
    to_plugin: Option<WriteHalf<DuplexStream>>,
    from_plugin: LineReader<BufReader<ReadHalf<DuplexStream>>>,
    task: JoinHandle<std::io::Result<()>>,
    /// The handshake the plugin sent first.
    pub handshake: Handshake,
    /// Frames read while waiting for something else (events, other responses).
    pub backlog: Vec<Frame>,
    next_id: u64,
}

impl Harness {
    /// Starts `plugin` and reads its handshake.
    pub async fn start(plugin: Plugin) -> Harness {
        let (host_side, plugin_side) = tokio::io::duplex(256 * 1024);
        let (plugin_in, plugin_out) = tokio::io::split(plugin_side);
        let (host_in, host_out) = tokio::io::split(host_side);
        let task = tokio::spawn(plugin.serve(plugin_in, plugin_out));
        let mut harness = Harness {
            to_plugin: Some(host_out),
            from_plugin: LineReader::new(BufReader::new(host_in), usize::MAX),
            task,
            handshake: Handshake::default(),
            backlog: Vec::new(),
            next_id: 0,
        };
        match harness.next_frame().await {
            Some(Frame::Handshake(handshake)) => harness.handshake = handshake,
            other => panic!("expected a handshake first, got {other:?}"),
        }
        harness
    }

    /// Writes one raw line (a newline is added).
    pub async fn send_line(&mut self, line: &str) {
        let pipe = self.to_plugin.as_mut().expect("stdin is still open");
        pipe.write_all(format!("{line}\n").as_bytes())
            .await
            .expect("plugin reads its input");
    }

    /// Sends a request with a fresh id and default context; returns the id.
    pub async fn send(&mut self, op: &str, input: Value) -> String {
        self.next_id += 1;
        let request = Request {
            request_id: format!("t-{}", self.next_id),
            op: op.into(),
            ctx: RequestContext::default(),
            input,
        };
        self.send_request(&request).await
    }

    pub async fn send_request(&mut self, request: &Request) -> String {
        let line = Frame::Request(request.clone()).to_line();
        self.send_line(&line).await;
        request.request_id.clone()
    }

    /// Sends a request and waits for its response.
    pub async fn request(&mut self, op: &str, input: Value) -> Response {
        let id = self.send(op, input).await;
        self.response_to(&id).await
    }

    /// Waits for the response to `id`, keeping other frames in `backlog`.
    pub async fn response_to(&mut self, id: &str) -> Response {
        if let Some(at) = self.backlog.iter().position(|f| is_response_to(f, id)) {
            if let Frame::Response(response) = self.backlog.remove(at) {
                return response;
            }
        }
        loop {
            match self.next_frame().await {
                Some(Frame::Response(response)) if response.request_id == id => return response,
                Some(frame) => self.backlog.push(frame),
                None => panic!("plugin stopped before answering {id}"),
            }
        }
    }

    /// The next frame from the plugin, or `None` when its stdout closed.
    /// Panics when nothing arrives within 10 s, or on a non-frame line.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        let read = tokio::time::timeout(FRAME_DEADLINE, self.from_plugin.next_line())
            .await
            .expect("plugin wrote a frame in time");
        let line = read.expect("readable")?;
        let text = std::str::from_utf8(line).expect("frames are UTF-8");
        Some(devctl_contract::protocol::decode_frame(text).expect("every stdout line is a frame"))
    }

    /// Closes the plugin's stdin (like a host closing the pipe).
    pub async fn close_stdin(&mut self) {
        if let Some(mut pipe) = self.to_plugin.take() {
            let _ = pipe.shutdown().await;
        }
    }

    /// Closes stdin, collects every remaining frame, and waits for the plugin
    /// to return (it must, promptly).
    pub async fn finish(mut self) -> Vec<Frame> {
        self.close_stdin().await;
        let mut rest = std::mem::take(&mut self.backlog);
        while let Some(frame) = self.next_frame().await {
            rest.push(frame);
        }
        tokio::time::timeout(FRAME_DEADLINE, self.task)
            .await
            .expect("plugin returned after stdin closed")
            .expect("plugin task did not panic")
            .expect("plugin served without I/O errors");
        rest
    }
}

fn is_response_to(frame: &Frame, id: &str) -> bool {
    matches!(frame, Frame::Response(response) if response.request_id == id)
}
