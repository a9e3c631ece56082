//! Host ↔ plugin over real child processes and real pipes.
//!
//! Measures in one run, with the same requests: the SDK host driving an SDK
//! plugin (this binary re-executed as a plugin), the SDK host driving the
//! Python stdlib example plugin (`examples/plugins/python-minimal`), and the
//! floor: a host and a plugin written with std + serde_json only
//! ([`floor`]). Also each SDK half against the floor's other half (where the
//! time goes), stream events per second, and the cost of rejecting an
//! undeclared op. Writes the figures to `target/bench/roundtrip.json`.
//!
//! Targets: SDK pipelined ≥ 60% of the floor; SDK sequential p50 ≤ the
//! Python plugin's; ≥ 500k stream events/s; unsupported-op rejection < 10 µs.
//! Run: `cargo bench -p devctl-sdk --bench roundtrip`.

mod floor;

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
const AS_FLOOR: &str = "DEVCTL_BENCH_AS_FLOOR";
/// Set to a pair's name to measure only it (for a profiler)…
const ONLY_PAIR: &str = "DEVCTL_BENCH_ONLY";
/// …with this many requests.
const REQUESTS: &str = "DEVCTL_BENCH_REQUESTS";
/// Requests in flight at most, for every host.
const WINDOW: usize = 1024;
const TIMEOUT: Duration = Duration::from_secs(60);
/// Rounds the pipelined figures of the Rust pairs are split into.
const ROUNDS: usize = 10;

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
}

fn median_us(mut latencies: Vec<Duration>) -> f64 {
    latencies.sort();
    latencies[latencies.len() / 2].as_secs_f64() * 1e6
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn payload() -> Value {
    json!({"hello": "world", "n": 1})
}

async fn start(spec: &PluginSpec) -> Arc<Client> {
    let options = HostOptions {
        stderr: StderrSink::Discard,
        ..HostOptions::default()
    };
    Arc::new(
        Client::start(spec, RequestMeta::default(), options)
            .await
            .expect("plugin starts"),
    )
}

/// `count` round trips one at a time: how long each took.
async fn sequential(client: &Client, count: usize) -> Vec<Duration> {
    let payload = payload();
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        client
            .call("ping", payload.clone(), TIMEOUT)
            .await
            .expect("ping");
        latencies.push(started.elapsed());
    }
    latencies
}

/// `count` calls with [`WINDOW`] in flight: calls per second. Each of
/// `WINDOW` tasks makes its share of calls one after another (as the floor
/// host spawns nothing per request, neither does this).
async fn pipelined(client: &Arc<Client>, count: usize) -> f64 {
    let started = Instant::now();
    let mut callers: JoinSet<Result<(), devctl_sdk::host::OpError>> = JoinSet::new();
    for caller in 0..WINDOW {
        let share = count / WINDOW + usize::from(caller < count % WINDOW);
        let client = client.clone();
        callers.spawn(async move {
            let payload = payload();
            for _ in 0..share {
                client.call("ping", payload.clone(), TIMEOUT).await?;
            }
            Ok(())
        });
    }
    while let Some(done) = callers.join_next().await {
        done.expect("joined").expect("ping");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

async fn close(client: Arc<Client>) {
    Arc::into_inner(client).expect("sole owner").close().await;
}

/// The SDK host driving `spec` on its own (the Python package plugin):
/// sequential latency and pipelined throughput.
async fn measure(spec: &PluginSpec, sequential_count: usize, pipelined_count: usize) -> Figures {
    let client = start(spec).await;
    sequential(&client, 200).await;
    let latency_us = median_us(sequential(&client, sequential_count).await);
    let pipelined_per_s = pipelined(&client, pipelined_count).await;
    close(client).await;
    Figures {
        latency_us,
        pipelined_per_s,
    }
}

async fn stream_events(client: &Client, events: u64) -> f64 {
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
    seen as f64 / started.elapsed().as_secs_f64()
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
    if std::env::var_os(AS_FLOOR).is_some() {
        return floor::plugin();
    }
    // `cargo bench` passes `--bench`; nothing else to parse. The host side
    // is I/O-bound, so it runs on one thread, as the orchestrator does.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let own = std::env::current_exe().expect("own path");
    let as_plugin = |id: &str, variable: &str| PluginSpec {
        id: id.into(),
        program: own.clone(),
        env: [(variable.to_owned(), "1".to_owned())].into(),
        ..PluginSpec::default()
    };
    let own_command = |variable: &str| {
        let mut command = std::process::Command::new(&own);
        command.env(variable, "1");
        command
    };
    let sdk = as_plugin("sdk", AS_PLUGIN);
    let floor_plugin = as_plugin("floor", AS_FLOOR);
    let in_repo = |path: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path)
            .display()
            .to_string()
    };
    let python_plugin = |id: &str, script: &str| PluginSpec {
        id: id.into(),
        program: "python3".into(),
        args: vec![in_repo(script)],
        // For the devctl_plugin package; the stdlib example ignores it.
        env: [("PYTHONPATH".to_owned(), in_repo("python"))].into(),
        ..PluginSpec::default()
    };
    let python = python_plugin("python", "examples/plugins/python-minimal/plugin.py");
    let python_package = python_plugin("python-package", "python/tests/plugins/ping.py");
    let (seq, piped, python_seq) = (5_000, 600_000, 2_000);
    // The pairs are measured in alternating rounds (median of each), so a
    // neighbour's burst on a shared machine hits all of them alike.
    let per_round = piped / ROUNDS;
    let input = payload();
    let mut floor_host = floor::Host::start(own_command(AS_FLOOR));
    let mut floor_host_sdk = floor::Host::start(own_command(AS_PLUGIN));
    let (sdk_client, sdk_floor_client) =
        runtime.block_on(async { (start(&sdk).await, start(&floor_plugin).await) });
    // One pair only, pipelined, for a profiler (see the README: counting
    // instructions with callgrind is steady where timings are not).
    if let Some(pair) = std::env::var_os(ONLY_PAIR) {
        let requests: usize = std::env::var(REQUESTS)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(per_round);
        let per_s = match pair.to_str() {
            Some("floor") => floor_host.pipelined(&input, requests, WINDOW),
            Some("sdk") => runtime.block_on(pipelined(&sdk_client, requests)),
            Some("sdk-host") => runtime.block_on(pipelined(&sdk_floor_client, requests)),
            Some("sdk-plugin") => floor_host_sdk.pipelined(&input, requests, WINDOW),
            _ => panic!("{ONLY_PAIR} is one of floor, sdk, sdk-host, sdk-plugin"),
        };
        println!("{pair:?}: {requests} requests, {per_s:.0}/s");
        floor_host.close();
        floor_host_sdk.close();
        runtime.block_on(async {
            close(sdk_floor_client).await;
            close(sdk_client).await;
        });
        return ExitCode::SUCCESS;
    }
    // Warm-up, then every pair in turn, round after round.
    let python_client = runtime.block_on(start(&python));
    floor_host.sequential(&input, 200);
    floor_host_sdk.sequential(&input, 200);
    for client in [&sdk_client, &sdk_floor_client, &python_client] {
        runtime.block_on(sequential(client, 200));
    }
    let mut latencies: [Vec<Duration>; 5] = Default::default();
    let mut rates: [Vec<f64>; 4] = Default::default();
    for _ in 0..ROUNDS {
        latencies[0].extend(floor_host.sequential(&input, seq / ROUNDS));
        latencies[1].extend(runtime.block_on(sequential(&sdk_client, seq / ROUNDS)));
        latencies[2].extend(runtime.block_on(sequential(&sdk_floor_client, seq / ROUNDS)));
        latencies[3].extend(floor_host_sdk.sequential(&input, seq / ROUNDS));
        latencies[4].extend(runtime.block_on(sequential(&python_client, python_seq / ROUNDS)));
        rates[0].push(floor_host.pipelined(&input, per_round, WINDOW));
        rates[1].push(runtime.block_on(pipelined(&sdk_client, per_round)));
        rates[2].push(runtime.block_on(pipelined(&sdk_floor_client, per_round)));
        rates[3].push(floor_host_sdk.pipelined(&input, per_round, WINDOW));
    }
    // Each round's SDK rate against the floor's of the same round.
    let share = median(
        rates[1]
            .iter()
            .zip(&rates[0])
            .map(|(sdk, floor)| sdk / floor)
            .collect(),
    );
    let [floor, rust, sdk_host_floor_plugin, floor_host_sdk_plugin] =
        [0, 1, 2, 3].map(|pair| Figures {
            latency_us: median_us(latencies[pair].clone()),
            pipelined_per_s: median(rates[pair].clone()),
        });
    floor_host.close();
    floor_host_sdk.close();
    let (events_sdk, py, events_py, py_package, reject_us) = runtime.block_on(async {
        let events_sdk = stream_events(&sdk_client, 2_000_000).await;
        close(sdk_floor_client).await;
        close(sdk_client).await;
        let py = Figures {
            latency_us: median_us(std::mem::take(&mut latencies[4])),
            pipelined_per_s: pipelined(&python_client, 30_000).await,
        };
        let events_py = stream_events(&python_client, 200_000).await;
        close(python_client).await;
        let py_package = measure(&python_package, 2_000, 30_000).await;
        let reject_us = unsupported_rejection(&sdk).await;
        (events_sdk, py, events_py, py_package, reject_us)
    });

    println!("over real pipes, one run; SDK host: current-thread runtime; SDK plugin: SDK default (2 workers)");
    println!(
        "{:<44} {:>14} {:>16}",
        "host <-> plugin", "pipelined", "sequential p50"
    );
    let row = |name: &str, f: &Figures| {
        println!(
            "{name:<44} {:>12.0}/s {:>13.1} us",
            f.pipelined_per_s, f.latency_us
        )
    };
    row("floor <-> floor (std + serde_json)", &floor);
    row("SDK <-> SDK", &rust);
    row("SDK <-> Python stdlib example", &py);
    row("SDK <-> Python devctl_plugin (python/)", &py_package);
    row("SDK host <-> floor plugin", &sdk_host_floor_plugin);
    row("floor host <-> SDK plugin", &floor_host_sdk_plugin);
    println!(
        "stream events: SDK {events_sdk:.0}/s, Python {events_py:.0}/s; unsupported-op rejection {reject_us:.2} us"
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT MET" };
    println!(
        "samples: {seq} sequential round trips and {piped} pipelined requests (window {WINDOW}) per Rust pair, \
         {python_seq} round trips with the Python example, all in {ROUNDS} alternating rounds; \
         the SDK's share of the floor is the median of its {ROUNDS} per-round shares"
    );
    println!(
        "targets: SDK pipelined >= 60% of the floor: {:.0}% {}; SDK p50 <= Python's: {:.1} vs {:.1} us {}; events >= 500k/s {}; rejection < 10 us {}",
        share * 100.0,
        verdict(share >= 0.6),
        rust.latency_us,
        py.latency_us,
        verdict(rust.latency_us <= py.latency_us),
        verdict(events_sdk >= 500_000.0),
        verdict(reject_us < 10.0)
    );

    let figures = json!({
        "sdk_pipelined_per_s": rust.pipelined_per_s,
        "floor_pipelined_per_s": floor.pipelined_per_s,
        "python_pipelined_per_s": py.pipelined_per_s,
        "sdk_seq_p50_us": rust.latency_us,
        "floor_seq_p50_us": floor.latency_us,
        "python_seq_p50_us": py.latency_us,
        "python_package_pipelined_per_s": py_package.pipelined_per_s,
        "python_package_seq_p50_us": py_package.latency_us,
        "sdk_host_floor_plugin_pipelined_per_s": sdk_host_floor_plugin.pipelined_per_s,
        "sdk_host_floor_plugin_seq_p50_us": sdk_host_floor_plugin.latency_us,
        "floor_host_sdk_plugin_pipelined_per_s": floor_host_sdk_plugin.pipelined_per_s,
        "floor_host_sdk_plugin_seq_p50_us": floor_host_sdk_plugin.latency_us,
        "sdk_share_of_floor_pipelined": share,
        "sdk_events_per_s": events_sdk,
        "python_events_per_s": events_py,
        "unsupported_rejection_us": reject_us,
        "window": WINDOW,
    });
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("bench");
    let path = dir.join("roundtrip.json");
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&figures).unwrap_or_default() + "\n",
        )
    });
    match written {
        Ok(()) => println!("figures: {}", path.display()),
        Err(err) => {
            eprintln!("cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
