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
