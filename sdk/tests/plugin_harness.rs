//! `sdk::plugin` driven in memory through `testing::Harness`: the generated
//! handshake, unknown ops, bad input, concurrency, deadlines, cancellation
//! at stdin EOF, streams, commands, warnings and notes.

use std::time::Duration;

use devctl_sdk::contract::protocol::{CommandSpec, Frame, Request, RequestContext};
use devctl_sdk::contract::ErrorCode;
use devctl_sdk::plugin::testing::Harness;
use devctl_sdk::plugin::{Ctx, OpError, Plugin};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Sleep {
    ms: u64,
}

#[derive(Deserialize)]
struct Count {
    count: u64,
}

fn plugin() -> Plugin {
    Plugin::new("test")
        .op("echo", |_: Ctx, input: Value| async move {
            Ok::<_, OpError>(input)
        })
        .op("sleep", |_: Ctx, input: Sleep| async move {
            tokio::time::sleep(Duration::from_millis(input.ms)).await;
            Ok::<_, OpError>(json!({"slept": input.ms}))
        })
        .op("ctx", |ctx: Ctx, _: Value| async move {
            ctx.warn("careful");
            ctx.note("fyi");
            Ok::<_, OpError>(json!({
                "repo_root": ctx.repo_root(),
                "dry_run": ctx.dry_run(),
                "has_deadline": ctx.deadline().is_some(),
            }))
        })
        .op("fail", |_: Ctx, _: Value| async move {
            Err::<Value, _>(OpError::runtime("it broke").with_details(json!({"why": "test"})))
        })
        .stream("count", |_: Ctx, input: Count, sink| async move {
            for n in 0..input.count {
                let mut fields = serde_json::Map::new();
                fields.insert("n".into(), json!(n));
                sink.emit("tick", Some(fields)).await;
            }
            Ok(())
        })
        .stream("forever", |ctx: Ctx, _: Value, sink| async move {
            sink.log("info", "started").await;
            ctx.cancelled().await;
            Ok(())
        })
        .command(
            CommandSpec {
                name: "greet".into(),
                help: Some("say hi".into()),
                args_spec: Vec::new(),
            },
            |_: Ctx, input| async move { Ok(input.argv.len() as i32) },
        )
        .watch(&["config/app/*.yaml"])
}

#[tokio::test]
async fn the_handshake_lists_exactly_what_is_registered() {
    let harness = Harness::start(plugin()).await;
    let caps = &harness.handshake.capabilities;
    assert_eq!(harness.handshake.protocol_version, "v2");
    assert_eq!(harness.handshake.plugin_name, "test");
    assert_eq!(
        caps.ops,
        [
            "command.run",
            "count",
            "ctx",
            "echo",
            "fail",
            "forever",
            "sleep"
        ]
    );
    assert_eq!(caps.streams, ["count", "forever"]);
    assert_eq!(caps.commands[0].name, "greet");
    assert_eq!(
        harness.handshake.declares.as_ref().unwrap().watch,
        ["config/app/*.yaml"]
    );
    devctl_sdk::contract::handshake::validate_handshake(&harness.handshake).unwrap();
    harness.finish().await;
}

#[tokio::test]
async fn an_unknown_op_is_answered_unsupported_with_its_id() {
    let mut harness = Harness::start(plugin()).await;
    let response = harness.request("build.run", json!({})).await;
    assert!(!response.ok);
    assert_eq!(response.request_id, "t-1");
    assert_eq!(response.error.unwrap().code, ErrorCode::Unsupported);
    harness.finish().await;
}

#[tokio::test]
async fn bad_input_never_kills_the_plugin() {
    let mut harness = Harness::start(plugin()).await;
    harness.send_line("this is not json").await;
    harness.send_line("").await;
    harness.send_line("   ").await;
    harness.send_line(r#"{"type":"request","op":"echo"}"#).await;
    harness.send_line(r#"[1,2,3]"#).await;
    harness
        .send_line(r#"{"type":"response","request_id":"x","ok":true}"#)
        .await;
    // A malformed request that names its id is answered.
    harness
        .send_line(r#"{"type":"request","request_id":"m1","op":7}"#)
        .await;
    let malformed = harness.response_to("m1").await;
    assert_eq!(malformed.error.unwrap().code, ErrorCode::UnexpectedFrame);
    // Wrong input types reach the typed handler's parser: E_RUNTIME, named.
    let wrong = harness.request("sleep", json!({"ms": "soon"})).await;
    let error = wrong.error.unwrap();
    assert_eq!(error.code, ErrorCode::Runtime);
    assert!(
        error.message.contains("invalid input for sleep"),
        "{}",
        error.message
    );
    // Still alive and answering.
    let echo = harness.request("echo", json!([1])).await;
    assert_eq!(echo.output, Some(json!([1])));
    let rest = harness.finish().await;
    assert!(
        rest.is_empty(),
        "nothing answered the unanswerable lines: {rest:?}"
    );
}

#[tokio::test]
async fn requests_run_concurrently() {
    let mut harness = Harness::start(plugin()).await;
    let slow = harness.send("sleep", json!({"ms": 2000})).await;
    let fast = harness.send("echo", json!("fast")).await;
    match harness.next_frame().await {
        Some(Frame::Response(response)) => assert_eq!(response.request_id, fast),
        other => panic!("the fast request should be answered first, got {other:?}"),
    }
    let _ = slow;
    harness.finish().await;
}

#[tokio::test]
async fn the_deadline_becomes_e_timeout() {
    let mut harness = Harness::start(plugin()).await;
    let request = Request {
        request_id: "d1".into(),
        op: "sleep".into(),
        ctx: RequestContext {
            deadline_ms: Some(50),
            ..RequestContext::default()
        },
        input: json!({"ms": 5000}),
    };
    harness.send_request(&request).await;
    let response = harness.response_to("d1").await;
    assert_eq!(response.error.unwrap().code, ErrorCode::Timeout);
    harness.finish().await;
}

#[tokio::test]
async fn a_deadline_of_u64_max_ms_is_served_like_any_other() {
    let mut harness = Harness::start(plugin()).await;
    let request = Request {
        request_id: "far".into(),
        op: "ctx".into(),
        ctx: RequestContext {
            deadline_ms: Some(u64::MAX),
            ..RequestContext::default()
        },
        input: json!({}),
    };
    harness.send_request(&request).await;
    let response = harness.response_to("far").await;
    assert!(response.ok, "{response:?}");
    // The plugin is still serving.
    assert!(harness.request("echo", json!(1)).await.ok);
    harness.finish().await;
}

#[tokio::test]
async fn stdin_eof_cancels_work_in_flight_and_ends_streams() {
    let mut harness = Harness::start(plugin()).await;
    let slow = harness.send("sleep", json!({"ms": 60_000})).await;
    let stream = harness.request("forever", json!({})).await;
    let stream_id = stream.output.unwrap()["stream_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The handler sleeps for a minute: a `canceled` answer (not its own
    // completion) shows EOF cut it short.
    let rest = harness.finish().await;
    let cancelled = rest.iter().any(|frame| {
        matches!(frame,
        Frame::Response(r) if r.request_id == slow
            && r.error.as_ref().map(|e| &e.code) == Some(&ErrorCode::Canceled))
    });
    assert!(cancelled, "{rest:?}");
    let ended = rest.iter().any(|frame| {
        matches!(frame,
        Frame::Event(e) if e.stream_id == stream_id && e.is_end())
    });
    assert!(ended, "{rest:?}");
}

#[tokio::test]
async fn a_stream_answers_with_its_id_then_events_then_end() {
    let mut harness = Harness::start(plugin()).await;
    let response = harness.request("count", json!({"count": 3})).await;
    let stream_id = response.output.unwrap()["stream_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ticks = Vec::new();
    loop {
        let frame = match harness.backlog.is_empty() {
            true => harness.next_frame().await.expect("stream continues"),
            false => harness.backlog.remove(0),
        };
        let Frame::Event(event) = frame else { continue };
        assert_eq!(event.stream_id, stream_id);
        if event.is_end() {
            assert_eq!(event.ok, Some(true));
            break;
        }
        ticks.push(event.fields.unwrap()["n"].clone());
    }
    assert_eq!(ticks, [json!(0), json!(1), json!(2)]);
    let rest = harness.finish().await;
    assert!(rest.is_empty(), "nothing after end: {rest:?}");
}

#[tokio::test]
async fn errors_warnings_notes_and_commands_reach_the_host() {
    let mut harness = Harness::start(plugin()).await;
    let failed = harness.request("fail", json!({})).await;
    let error = failed.error.unwrap();
    assert_eq!(
        (error.code, error.message.as_str()),
        (ErrorCode::Runtime, "it broke")
    );
    assert_eq!(error.details, Some(json!({"why": "test"})));

    let request = Request {
        request_id: "c1".into(),
        op: "ctx".into(),
        ctx: RequestContext {
            repo_root: Some("/repo".into()),
            dry_run: true,
            deadline_ms: Some(1000),
            ..RequestContext::default()
        },
        input: Value::Null,
    };
    harness.send_request(&request).await;
    let response = harness.response_to("c1").await;
    assert_eq!(
        response.output,
        Some(json!({"repo_root": "/repo", "dry_run": true, "has_deadline": true}))
    );
    assert_eq!(response.warnings[0].message, "careful");
    assert_eq!(response.notes[0].message, "fyi");

    let ran = harness
        .request("command.run", json!({"name": "greet", "argv": ["a", "b"]}))
        .await;
    assert_eq!(ran.output, Some(json!({"exit_code": 2})));
    let unknown = harness
        .request("command.run", json!({"name": "nope"}))
        .await;
    assert_eq!(unknown.error.unwrap().code, ErrorCode::Unsupported);
    harness.finish().await;
}

#[tokio::test]
async fn work_that_finishes_quickly_is_answered_even_when_stdin_closes_right_after() {
    let mut harness = Harness::start(plugin()).await;
    let quick = harness.send("sleep", json!({"ms": 20})).await;
    let echo = harness.send("echo", json!("x")).await;
    let rest = harness.finish().await;
    for id in [quick, echo] {
        let answered_ok = rest
            .iter()
            .any(|frame| matches!(frame, Frame::Response(r) if r.request_id == id && r.ok));
        assert!(answered_ok, "{id} should succeed, got {rest:?}");
    }
}

/// A plugin whose `block` handler blocks its thread (no `.await`), as a
/// handler calling a synchronous API would.
fn blocking_plugin() -> Plugin {
    Plugin::new("blocking")
        .op("block", |_: Ctx, input: Sleep| async move {
            std::thread::sleep(Duration::from_millis(input.ms));
            Ok::<_, OpError>(json!({"blocked": input.ms}))
        })
        .op("echo", |_: Ctx, input: Value| async move {
            Ok::<_, OpError>(input)
        })
        .op("panic", |_: Ctx, _: Value| async move {
            if true {
                panic!("the handler gave up");
            }
            Ok::<_, OpError>(Value::Null)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_blocks_its_thread_does_not_stall_other_requests() {
    let mut harness = Harness::start(blocking_plugin()).await;
    let blocked = harness.send("block", json!({"ms": 3000})).await;
    let mut echoes = Vec::new();
    for n in 0..20 {
        echoes.push(harness.send("echo", json!(n)).await);
    }
    for id in &echoes {
        let response = harness.response_to(id).await;
        assert!(response.ok, "{response:?}");
    }
    assert!(
        harness.backlog.is_empty(),
        "every echo was answered while the handler still blocked: {:?}",
        harness.backlog
    );
    let response = harness.response_to(&blocked).await;
    assert_eq!(response.output, Some(json!({"blocked": 3000})));
    harness.finish().await;
}

#[tokio::test]
async fn a_panicking_handler_is_answered_e_runtime_and_the_plugin_goes_on() {
    let mut harness = Harness::start(blocking_plugin()).await;
    let response = harness.request("panic", json!({})).await;
    let error = response.error.expect("an error");
    assert_eq!(error.code, ErrorCode::Runtime);
    assert!(error.message.contains("the handler gave up"), "{error:?}");
    let echo = harness.request("echo", json!("still here")).await;
    assert_eq!(echo.output, Some(json!("still here")));
    harness.finish().await;
}

#[tokio::test]
async fn a_burst_of_requests_written_at_once_is_answered_whole() {
    let mut harness = Harness::start(plugin()).await;
    let mut burst = String::new();
    for n in 0..5_000 {
        burst.push_str(&format!(
            r#"{{"type":"request","request_id":"b-{n}","op":"echo","input":{{"n":{n}}}}}"#
        ));
        burst.push('\n');
    }
    // And one the plugin does not know, answered in the same batch.
    burst.push_str(r#"{"type":"request","request_id":"u-1","op":"nope"}"#);
    burst.push('\n');
    harness.send_line(burst.trim_end()).await;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 5_001 {
        match harness.next_frame().await {
            Some(Frame::Response(response)) => {
                if let Some(n) = response.request_id.strip_prefix("b-") {
                    let n: u64 = n.parse().unwrap();
                    assert_eq!(response.output, Some(json!({"n": n})));
                } else {
                    assert_eq!(response.error.unwrap().code, ErrorCode::Unsupported);
                }
                assert!(seen.insert(response.request_id), "answered twice");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_handler_that_finishes_soon_after_stdin_closes_is_answered() {
    let mut harness = Harness::start(blocking_plugin()).await;
    let blocked = harness.send("block", json!({"ms": 100})).await;
    harness.close_stdin().await;
    let rest = harness.finish().await;
    let answered = rest.iter().any(|frame| {
        matches!(frame, Frame::Response(r) if r.request_id == blocked
            && r.output == Some(json!({"blocked": 100})))
    });
    assert!(answered, "{rest:?}");
}

#[tokio::test]
async fn past_max_waiting_handlers_a_request_that_would_wait_is_refused_and_none_is_lost() {
    use devctl_sdk::plugin::MAX_WAITING;
    let mut harness = Harness::start(plugin()).await;
    // No deadline: each waits until it is cancelled at stdin EOF.
    let mut waiting = Vec::new();
    for _ in 0..MAX_WAITING {
        waiting.push(harness.send("sleep", json!({"ms": 3_600_000})).await);
    }
    let refused = harness.request("sleep", json!({"ms": 1})).await;
    let error = refused.error.expect("refused with an error");
    assert_eq!(error.code, ErrorCode::Runtime);
    assert!(
        error
            .message
            .contains(&format!("{MAX_WAITING} requests are already waiting")),
        "{}",
        error.message
    );
    // What finishes at once is still answered.
    assert!(harness.request("echo", json!({"x": 1})).await.ok);
    let rest = harness.finish().await;
    let canceled = rest
        .iter()
        .filter_map(|frame| match frame {
            Frame::Response(response) if waiting.contains(&response.request_id) => {
                response.error.as_ref().map(|error| error.code.clone())
            }
            _ => None,
        })
        .filter(|code| *code == ErrorCode::Canceled)
        .count();
    assert_eq!(
        canceled, MAX_WAITING,
        "every waiting request got E_CANCELED"
    );
}
