//! `sdk::host` against real child processes: a well-behaved plugin and each
//! misbehaving fixture of `fixtures/plugin_fixture.py`. Every case must end in
//! its documented error within its bound and leave no process behind.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devctl_sdk::contract::ErrorCode;
use devctl_sdk::host::{
    group_members, liveness, process_id, Client, HostOptions, Liveness, OpError, PluginSpec,
    RequestMeta, StderrSink,
};
use serde_json::{json, Value};

const CALL: Duration = Duration::from_secs(5);

fn fixture(mode: &str) -> PluginSpec {
    PluginSpec {
        id: mode.to_owned(),
        program: "python3".into(),
        args: vec![
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/plugin_fixture.py")
                .display()
                .to_string(),
            mode.to_owned(),
        ],
        ..PluginSpec::default()
    }
}

fn quiet() -> HostOptions {
    HostOptions {
        stderr: StderrSink::Discard,
        ..HostOptions::default()
    }
}

async fn start(mode: &str) -> Client {
    Client::start(&fixture(mode), RequestMeta::default(), quiet())
        .await
        .unwrap_or_else(|err| panic!("{mode} should start: {err}"))
}

/// Closes the client and checks that its whole process group is gone.
async fn close_cleanly(client: Client) -> devctl_sdk::host::CloseReport {
    let pgid = client.pgid().expect("a real process");
    let report = client.close().await;
    assert!(
        report.leftover.is_empty(),
        "left behind: {:?}",
        report.leftover
    );
    assert!(
        group_members(pgid).is_empty(),
        "group {pgid} still has members"
    );
    report
}

fn cause(err: &OpError) -> Option<&str> {
    err.details.as_ref()?.get("cause")?.as_str()
}

#[tokio::test]
async fn a_good_plugin_answers_and_exits_on_stdin_eof() {
    let client = start("good").await;
    assert_eq!(client.handshake().plugin_name, "fixture-good");
    let reply = client.call("ping", json!({"a": 1}), CALL).await.unwrap();
    assert_eq!(reply.output, json!({"a": 1}));
    let report = close_cleanly(client).await;
    assert_eq!(report.how, "exited");
    assert_eq!(report.exit_code, Some(0));
}

#[tokio::test]
async fn request_meta_is_bound_to_the_client_and_the_deadline_comes_from_the_timeout() {
    let meta = RequestMeta {
        repo_root: Some(PathBuf::from("/some/repo")),
        cwd: Some(PathBuf::from("/some/repo/web")),
        dry_run: true,
    };
    let client = Client::start(&fixture("good"), meta, quiet())
        .await
        .unwrap();
    let reply = client
        .call("ctx", Value::Null, Duration::from_millis(1500))
        .await
        .unwrap();
    assert_eq!(
        reply.output,
        json!({"repo_root": "/some/repo", "cwd": "/some/repo/web", "dry_run": true, "deadline_ms": 1500})
    );
    close_cleanly(client).await;
}

#[tokio::test]
async fn an_undeclared_op_fails_locally_at_once() {
    let client = start("ignore-unknown").await;
    // The plugin ignores what it does not know, so an answer other than a
    // timeout can only have come from the host itself.
    let err = client.call("build.run", json!({}), CALL).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unsupported);
    assert_eq!(
        (err.plugin_id.as_str(), err.op.as_str()),
        ("ignore-unknown", "build.run")
    );
    assert!(err.is_unsupported());
    // A declared op the plugin ignores is bounded by the call's timeout.
    let err = client
        .call("ping", json!({}), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Timeout);
    close_cleanly(client).await;
}

#[tokio::test]
async fn a_short_timeout_fires_on_time_while_a_longer_call_waits() {
    let client = start("ignore-unknown").await;
    let started = Instant::now();
    let raced = {
        let long = client.call("ping", json!({}), Duration::from_secs(60));
        let short = client.call("ping", json!({}), Duration::from_millis(200));
        tokio::pin!(long);
        // `biased`: the long call is sent first, so the short one's
        // deadline is the sooner one to come.
        tokio::time::timeout(Duration::from_secs(10), async {
            tokio::select! {
                biased;
                answer = &mut long => panic!("the 60 s call ended first: {answer:?}"),
                answer = short => answer,
            }
        })
        .await
        .expect("the 200 ms call ended within 10 s")
    };
    let err = raced.unwrap_err();
    assert_eq!(err.code, ErrorCode::Timeout, "{err:?}");
    assert!(err.message.contains("200 ms"), "{}", err.message);
    assert!(started.elapsed() >= Duration::from_millis(200));
    close_cleanly(client).await;
}

#[tokio::test]
async fn nothing_is_written_for_an_undeclared_op() {
    // In memory, so we can read exactly what the host writes.
    let (host_out, mut plugin_in) = tokio::io::duplex(4096);
    let (mut plugin_out, host_in) = tokio::io::duplex(4096);
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    plugin_out
        .write_all(b"{\"type\":\"handshake\",\"protocol_version\":\"v2\",\"plugin_name\":\"p\",\"capabilities\":{\"ops\":[\"ping\"]}}\n")
        .await
        .unwrap();
    let client = Client::connect("p", host_in, host_out, RequestMeta::default(), quiet())
        .await
        .unwrap();
    assert!(client
        .call("launch.plan", json!({}), CALL)
        .await
        .unwrap_err()
        .is_unsupported());
    let ping = client.call("ping", json!({}), Duration::from_millis(100));
    let mut first = String::new();
    let (_, read) = tokio::join!(ping, async {
        let mut reader = tokio::io::BufReader::new(&mut plugin_in);
        reader.read_line(&mut first).await
    });
    read.unwrap();
    let request: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        request["op"], "ping",
        "the first line written is the declared call"
    );
    assert_eq!(request["request_id"], "p-1");
}

#[tokio::test]
async fn a_plugin_that_never_handshakes_fails_within_two_seconds() {
    let started = Instant::now();
    let err = Client::start(&fixture("never-handshake"), RequestMeta::default(), quiet())
        .await
        .err()
        .expect("no handshake, no client");
    let elapsed = started.elapsed();
    assert_eq!(err.code, ErrorCode::InvalidHandshake);
    assert!(
        err.message.contains("no handshake within 2000 ms"),
        "{}",
        err.message
    );
    assert!(
        elapsed >= Duration::from_secs(2),
        "gave up early: {elapsed:?}"
    );
}

#[tokio::test]
async fn a_banner_before_the_handshake_is_an_invalid_handshake() {
    let err = Client::start(&fixture("banner"), RequestMeta::default(), quiet())
        .await
        .err()
        .expect("banner");
    assert_eq!(err.code, ErrorCode::InvalidHandshake);
    assert!(
        err.message.contains("first stdout line is not a frame"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("Starting fixture plugin"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn text_after_the_handshake_is_fatal_for_pending_and_later_calls() {
    let client = start("text-after").await;
    let err = client.call("ping", json!({}), CALL).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Runtime);
    assert_eq!(cause(&err), Some("E_PROTOCOL_STDOUT_CONTAMINATION"));
    assert!(
        err.message.contains("debug: got a request"),
        "{}",
        err.message
    );
    let again = client.call("ping", json!({}), CALL).await.unwrap_err();
    assert_eq!(cause(&again), Some("E_PROTOCOL_STDOUT_CONTAMINATION"));
    assert!(client.failure().is_some());
    close_cleanly(client).await;
}

#[tokio::test]
async fn a_hung_plugin_is_bounded_and_its_whole_group_is_killed() {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let options = HostOptions {
        stderr: StderrSink::Callback(Arc::new(move |id: &str, line: &str| {
            sink.lock().unwrap().push(format!("[{id}] {line}"));
        })),
        eof_grace: Duration::from_millis(100),
        term_grace: Duration::from_millis(300),
        ..HostOptions::default()
    };
    let client = Client::start(&fixture("hang"), RequestMeta::default(), options)
        .await
        .unwrap();
    let err = client
        .call("ping", json!({}), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Timeout);
    // stderr is forwarded with the plugin id; it names the child process.
    let deadline = Instant::now() + Duration::from_secs(5);
    let child_pid = loop {
        let found = lines.lock().unwrap().iter().find_map(|l| {
            l.strip_prefix("[hang] child pid ")
                .and_then(|p| p.parse::<u32>().ok())
        });
        if let Some(pid) = found {
            break pid;
        }
        assert!(Instant::now() < deadline, "stderr never arrived");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let child = process_id(child_pid).expect("the child runs while the plugin hangs");
    let report = close_cleanly(client).await;
    assert_eq!(report.how, "killed", "SIGTERM is ignored, so SIGKILL it is");
    // `Unknown` (no readable /proc) must fail here, not pass as "gone".
    assert_eq!(liveness(child), Liveness::Gone);
}

#[tokio::test]
async fn calls_to_a_plugin_that_never_reads_end_at_their_deadline() {
    let options = HostOptions {
        stderr: StderrSink::Discard,
        term_grace: Duration::from_millis(100),
        ..HostOptions::default()
    };
    let client = Client::start(&fixture("hang"), RequestMeta::default(), options)
        .await
        .unwrap();
    let client = Arc::new(client);
    // 24 MiB of requests: more than the pipe, the writer's buffer and its
    // queue hold, so the last calls wait for room that never comes.
    let big = json!({ "blob": "x".repeat(1024 * 1024) });
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let (client, big) = (client.clone(), big.clone());
        calls.spawn(async move {
            client
                .call("ping", big, Duration::from_millis(500))
                .await
                .unwrap_err()
        });
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), calls.join_all())
        .await
        .expect("every call ended within 10 s");
    for err in &ended {
        assert_eq!(err.code, ErrorCode::Timeout, "{err:?}");
    }
    assert!(started.elapsed() >= Duration::from_millis(500));
    let client = Arc::into_inner(client).expect("the calls are over");
    close_cleanly(client).await;
}

#[tokio::test]
async fn a_crash_mid_request_fails_the_call_at_once() {
    let client = start("crash").await;
    // Not E_TIMEOUT: the call failed when stdout closed, not at its deadline.
    let err = client
        .call("ping", json!({}), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Runtime);
    assert!(err.message.contains("closed its stdout"), "{}", err.message);
    // Its last words reach the host (stderr is read on its own: wait for
    // them, with a deadline).
    let said = tokio::time::timeout(Duration::from_secs(5), async {
        while !client
            .stderr_lines()
            .iter()
            .any(|l| l.contains("crashing on purpose"))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(said.is_ok(), "stderr: {:?}", client.stderr_lines());
    let report = close_cleanly(client).await;
    assert_eq!(report.exit_code, Some(3));
}

#[tokio::test]
async fn a_100_mb_line_is_cut_off_at_the_frame_bound() {
    let options = HostOptions {
        max_frame_bytes: 1024 * 1024,
        ..quiet()
    };
    let client = Client::start(&fixture("huge-line"), RequestMeta::default(), options)
        .await
        .unwrap();
    let err = client
        .call("ping", json!({}), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(cause(&err), Some("E_PROTOCOL_FRAME_TOO_LARGE"));
    close_cleanly(client).await;
}

#[tokio::test]
async fn a_stderr_flood_before_the_handshake_does_not_block_the_plugin() {
    let client = start("stderr-flood").await;
    let reply = client
        .call("ping", json!("after the flood"), CALL)
        .await
        .unwrap();
    assert_eq!(reply.output, json!("after the flood"));
    close_cleanly(client).await;
}

#[tokio::test]
async fn an_answer_with_an_id_never_sent_fails_the_call_at_once_and_names_the_id() {
    let client = start("wrong-id").await;
    let started = Instant::now();
    // A generous timeout: the call must not wait for it.
    let err = client
        .call("ping", json!({}), Duration::from_secs(30))
        .await
        .unwrap_err();
    println!(
        "answer with a bogus id: call failed after {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(err.code, ErrorCode::Runtime, "{err}");
    assert!(err.message.contains("\"not-yours\""), "{}", err.message);
    assert!(err.message.contains("never sent"), "{}", err.message);
    let details = err.details.as_ref().expect("details");
    assert_eq!(details["request_id"], "not-yours");
    assert_eq!(cause(&err), Some("E_PROTOCOL_UNEXPECTED_FRAME"));
    // The connection is done for: later calls fail with the same cause.
    assert!(client.failure().is_some());
    let again = client.call("ping", json!({}), CALL).await.unwrap_err();
    assert!(again.message.contains("not-yours"), "{}", again.message);
    close_cleanly(client).await;
}

#[tokio::test]
async fn a_late_response_is_dropped_and_does_not_confuse_the_next_call() {
    let client = start("good").await;
    let err = client
        .call("slow", json!({"ms": 300}), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Timeout);
    let reply = client.call("slow", json!({"ms": 400}), CALL).await.unwrap();
    assert_eq!(
        reply.output,
        json!({"slept": 400}),
        "not the late answer to the first call"
    );
    close_cleanly(client).await;
}

#[tokio::test]
async fn pipelined_calls_are_matched_by_id() {
    let client = Arc::new(start("good").await);
    let calls = (0..500).map(|n| {
        let client = client.clone();
        tokio::spawn(async move { (n, client.call("ping", json!({"n": n}), CALL).await) })
    });
    for call in calls {
        let (n, reply) = call.await.unwrap();
        assert_eq!(reply.unwrap().output, json!({"n": n}));
    }
    let client = Arc::into_inner(client).expect("sole owner");
    close_cleanly(client).await;
}

#[tokio::test]
async fn stream_events_arrive_in_order_and_nothing_after_end() {
    let client = start("good").await;
    let mut stream = client
        .start_stream("ticks", json!({"count": 2000}), CALL)
        .await
        .unwrap();
    let mut seen = 0;
    while let Some(event) = stream.next().await.unwrap() {
        assert_eq!(event.stream_id, stream.id());
        if event.is_end() {
            continue;
        }
        assert_eq!(event.fields.unwrap()["n"], json!(seen));
        seen += 1;
    }
    assert_eq!(seen, 2000, "the tick sent after end was dropped");
    drop(stream);
    close_cleanly(client).await;
}

#[tokio::test]
async fn a_consumer_that_does_not_read_never_blocks_calls() {
    let options = HostOptions {
        stream_buffer: 16,
        ..quiet()
    };
    let client = Client::start(&fixture("good"), RequestMeta::default(), options)
        .await
        .unwrap();
    let mut stream = client
        .start_stream("ticks", json!({"count": 100_000}), CALL)
        .await
        .unwrap();
    for n in 0..10 {
        let reply = client.call("ping", json!(n), CALL).await.unwrap();
        assert_eq!(reply.output, json!(n));
    }
    let mut received = 0u64;
    let mut ended = false;
    while let Some(event) = stream.next().await.unwrap() {
        if event.is_end() {
            ended = true;
        } else {
            received += 1;
        }
    }
    assert!(ended);
    assert_eq!(
        received + stream.dropped(),
        100_000,
        "every event is either delivered or counted"
    );
    assert!(received <= 16 + 1);
    drop(stream);
    close_cleanly(client).await;
}

#[tokio::test]
async fn close_within_a_budget_kills_a_plugin_that_ignores_sigterm() {
    // `hang` ignores SIGTERM and stdin EOF; the default graces would cost
    // 500 ms + 2 s. With a budget, SIGKILL comes once it is spent.
    let client = Client::start(&fixture("hang"), RequestMeta::default(), quiet())
        .await
        .unwrap();
    let pgid = client.pgid().expect("a real process");
    let before = group_members(pgid);
    assert!(before.len() >= 2, "the plugin and its child: {before:?}");
    let started = Instant::now();
    let report = client.close_within(Duration::from_millis(300)).await;
    println!(
        "close_within(300 ms) of a SIGTERM-ignoring plugin took {} ms",
        started.elapsed().as_millis()
    );
    assert_eq!(report.how, "killed");
    assert!(report.leftover.is_empty(), "{:?}", report.leftover);
    assert!(
        group_members(pgid).is_empty(),
        "group {pgid} still has members"
    );
    for pid in before {
        assert_eq!(process_id(pid), None, "pid {pid} still runs");
    }
}

#[tokio::test]
async fn close_within_a_budget_lets_a_good_plugin_exit_by_itself() {
    let client = start("good").await;
    let pgid = client.pgid().expect("a real process");
    let report = client.close_within(Duration::from_millis(600)).await;
    assert_eq!((report.how, report.exit_code), ("exited", Some(0)));
    assert!(group_members(pgid).is_empty());
}

#[tokio::test]
async fn dropping_a_client_kills_its_group() {
    let client = start("hang").await;
    let pgid = client.pgid().unwrap();
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !group_members(pgid).is_empty() {
        assert!(Instant::now() < deadline, "group {pgid} survived the drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_sdk_example_plugin_keeps_stdout_clean_despite_println() {
    let client = Client::start(&example("minimal-plugin"), RequestMeta::default(), quiet())
        .await
        .unwrap();
    let reply = client
        .call(
            "command.run",
            json!({"name": "hello", "argv": ["world"]}),
            CALL,
        )
        .await
        .unwrap();
    assert_eq!(reply.output, json!({"exit_code": 0}));
    // The println! went to stderr, not into the protocol.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !client.stderr_lines().iter().any(|l| l == "hello world") {
        assert!(
            Instant::now() < deadline,
            "stderr: {:?}",
            client.stderr_lines()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(client.failure().is_none());
    let report = close_cleanly(client).await;
    assert_eq!(report.how, "exited");
}

/// An SDK example binary, built by `cargo test` next to the test binaries.
fn example(name: &str) -> PluginSpec {
    let exe = std::env::current_exe().expect("test path");
    let debug_dir = exe.parent().and_then(Path::parent).expect("target dir");
    PluginSpec {
        id: name.to_owned(),
        program: debug_dir.join("examples").join(name),
        ..PluginSpec::default()
    }
}

#[tokio::test]
async fn a_plugin_child_that_left_the_group_goes_with_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("daemon.pid");
    for close in [true, false] {
        let mut spec = fixture("daemon");
        spec.env
            .insert("DAEMON_PIDFILE".into(), pidfile.display().to_string());
        let client = Client::start(&spec, RequestMeta::default(), quiet())
            .await
            .unwrap();
        let daemon: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(process_id(daemon).is_some(), "the daemon runs");
        if close {
            client.close().await;
        } else {
            drop(client);
        }
        assert_eq!(
            process_id(daemon),
            None,
            "the daemon outlived its plugin (close: {close})"
        );
    }
}

#[tokio::test]
async fn a_plugin_that_closed_its_stdin_fails_later_calls_at_once() {
    let client = Client::start(&fixture("closes-stdin"), RequestMeta::default(), quiet())
        .await
        .unwrap();
    // The first request finds the pipe closed only when it is written: it
    // waits for its (short) timeout, as no answer can come.
    let first = client
        .call("ping", json!({}), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(first.code, ErrorCode::Timeout, "{first:?}");
    // From then on the host knows: a call fails without waiting out its
    // timeout (a minute here), saying why.
    let later = tokio::time::timeout(
        Duration::from_secs(30),
        client.call("ping", json!({}), Duration::from_secs(60)),
    )
    .await
    .expect("the call fails instead of waiting for its timeout")
    .unwrap_err();
    assert!(later.message.contains("stdin is closed"), "{later:?}");
    client.close().await;
}
