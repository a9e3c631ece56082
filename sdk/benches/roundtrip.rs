//! Host ↔ plugin over real child processes and real pipes.
//!
//! Measures, against an SDK plugin (this binary re-executed as a plugin) and
//! the Python stdlib example plugin (`examples/plugins/python-minimal`) in the
//! same run: sequential round-trip latency, pipelined requests per second and
//! stream events per second; and the cost of rejecting an undeclared op.
//!
//! Targets: ≥ 100k pipelined requests/s, ≥ 20× the Python plugin,
//! ≥ 500k stream events/s, unsupported-op rejection < 10 µs.
//! Run: `cargo bench -p devctl-sdk --bench roundtrip`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use devctl_sdk::host::{Client, HostOptions, PluginSpec, RequestMeta, StderrSink};
use devctl_sdk::plugin::{Ctx, OpError, Plugin};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::task::JoinSet;

const AS_PLUGIN: &str = "DEVCTL_BENCH_AS_PLUGIN";
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct Ticks {
    count: u64,
}

/// The SDK plugin under test: the same ops as the Python example.
fn sdk_plugin() -> ExitCode {
    Plugin::new("bench")
        .op("ping", |_: Ctx, input: Value| async move {
            Ok::<_, OpError>(input)
        })
        .stream("ticks", |_: Ctx, input: Ticks, sink| async move {
            for n in 0..input.count {
                let mut fields = serde_json::Map::new();
                fields.insert("n".into(), json!(n));
                sink.emit("tick", Some(fields)).await;
            }
            Ok(())
        })
        .run()
}

struct Figures {
    latency_us: f64,
    pipelined_per_s: f64,
    events_per_s: f64,
}

async fn measure(spec: &PluginSpec, sequential: usize, pipelined: usize, events: u64) -> Figures {
    let options = HostOptions {
        stderr: StderrSink::Discard,
        ..HostOptions::default()
    };
    let client = Arc::new(
        Client::start(spec, RequestMeta::default(), options)
            .await
            .expect("plugin starts"),
    );
    let payload = json!({"hello": "world", "n": 1});

    for _ in 0..200 {
        client
            .call("ping", payload.clone(), TIMEOUT)
            .await
            .expect("warm-up");
    }
    let mut latencies = Vec::with_capacity(sequential);
    for _ in 0..sequential {
        let started = Instant::now();
        client
            .call("ping", payload.clone(), TIMEOUT)
            .await
            .expect("ping");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let latency = latencies[latencies.len() / 2];

    let window = 1024;
    let started = Instant::now();
    let mut in_flight: JoinSet<Result<(), devctl_sdk::host::OpError>> = JoinSet::new();
    for _ in 0..pipelined {
        if in_flight.len() >= window {
            in_flight
                .join_next()
                .await
                .expect("task")
                .expect("joined")
                .expect("ping");
        }
        let client = client.clone();
        let payload = payload.clone();
        in_flight.spawn(async move { client.call("ping", payload, TIMEOUT).await.map(|_| ()) });
    }
    while let Some(done) = in_flight.join_next().await {
        done.expect("joined").expect("ping");
    }
    let pipelined_per_s = pipelined as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut stream = client
        .start_stream("ticks", json!({"count": events}), TIMEOUT)
        .await
        .expect("stream");
    let mut seen = 0u64;
    while let Some(event) = stream.next().await.expect("event") {
        if !event.is_end() {
            seen += 1;
        }
    }
    assert_eq!(seen + stream.dropped(), events);
    assert_eq!(
        stream.dropped(),
        0,
        "bench aborted: the host dropped stream events"
    );
    let events_per_s = seen as f64 / started.elapsed().as_secs_f64();
    drop(stream);

    let client = Arc::into_inner(client).expect("sole owner");
    client.close().await;
    Figures {
        latency_us: latency.as_secs_f64() * 1e6,
        pipelined_per_s,
        events_per_s,
    }
}

async fn unsupported_rejection(spec: &PluginSpec) -> f64 {
    let options = HostOptions {
        stderr: StderrSink::Discard,
        ..HostOptions::default()
    };
    let client = Client::start(spec, RequestMeta::default(), options)
        .await
        .expect("starts");
    let runs = 100_000;
    let started = Instant::now();
    for _ in 0..runs {
        let err = client
            .call("build.run", Value::Null, TIMEOUT)
            .await
            .unwrap_err();
        assert!(err.is_unsupported());
    }
    let per_call = started.elapsed().as_secs_f64() / runs as f64;
    client.close().await;
    per_call * 1e6
}

fn main() -> ExitCode {
    if std::env::var_os(AS_PLUGIN).is_some() {
        return sdk_plugin();
    }
    // `cargo bench` passes `--bench`; nothing else to parse. The host side
    // is I/O-bound, so it runs on one thread, as the orchestrator does.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let own = std::env::current_exe().expect("own path");
        let sdk = PluginSpec {
            id: "sdk".into(),
            program: own,
            env: [(AS_PLUGIN.to_owned(), "1".to_owned())].into(),
            ..PluginSpec::default()
        };
        let python = PluginSpec {
            id: "python".into(),
            program: "python3".into(),
            args: vec![Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/plugins/python-minimal/plugin.py")
                .display()
                .to_string()],
            ..PluginSpec::default()
        };
        let rust = measure(&sdk, 5_000, 300_000, 2_000_000).await;
        let py = measure(&python, 2_000, 30_000, 200_000).await;
        let reject_us = unsupported_rejection(&sdk).await;

        println!("host (current-thread runtime) <-> plugin (SDK default: 2 workers) over real pipes, 2 cores");
        println!("{:<34} {:>14} {:>14} {:>8}", "", "SDK plugin", "Python plugin", "ratio");
        println!(
            "{:<34} {:>11.1} us {:>11.1} us {:>7.1}x",
            "sequential round trip (median)",
            rust.latency_us,
            py.latency_us,
            py.latency_us / rust.latency_us
        );
        println!(
            "{:<34} {:>12.0}/s {:>12.0}/s {:>7.1}x",
            "pipelined requests",
            rust.pipelined_per_s,
            py.pipelined_per_s,
            rust.pipelined_per_s / py.pipelined_per_s
        );
        println!(
            "{:<34} {:>12.0}/s {:>12.0}/s {:>7.1}x",
            "stream events",
            rust.events_per_s,
            py.events_per_s,
            rust.events_per_s / py.events_per_s
        );
        println!("{:<34} {:>11.2} us", "unsupported-op rejection", reject_us);
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        println!("samples: 5000 sequential round trips, 300000 pipelined requests, 2000000 events, 100000 rejections (SDK)");
        println!(
            "targets: >=100k req/s {}; >=20x Python {}; >=500k events/s {}; rejection <10us {}",
            verdict(rust.pipelined_per_s >= 100_000.0),
            verdict(rust.pipelined_per_s / py.pipelined_per_s >= 20.0),
            verdict(rust.events_per_s >= 500_000.0),
            verdict(reject_us < 10.0)
        );
    });
    ExitCode::SUCCESS
}
