//! How long a verdict takes, at `--timeout-scale 1`, for the gallery's good
//! and bad plugins (and, when `DEVCTL_GO_FIXTURES` names a checkout of the
//! original Go devctl, for its test fixtures and example).
//!
//! The baseline, measured in the same run, is one plugin start: spawn
//! `gallery.py good`, read its handshake, close stdin, wait for the exit.
//! Each row prints the suite's wall time and its ratio to that baseline
//! (the suite starts the plugin once per family, so a good plugin costs
//! roughly that many starts). Run: `cargo bench -p devctl-conformance`.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use devctl_conformance::Suite;

#[path = "../tests/support/mod.rs"]
mod support;

fn gallery() -> PathBuf {
    support::gallery_script()
}

/// Median of five plugin starts (spawn, handshake, EOF, exit).
fn baseline() -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let mut child = Command::new("python3")
                .arg(gallery())
                .arg("good")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3 runs");
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().expect("piped"))
                .read_line(&mut line)
                .expect("a handshake");
            drop(child.stdin.take());
            child.wait().expect("exits");
            started.elapsed()
        })
        .collect();
    times.sort();
    times[2]
}

fn row(name: &str, suite: Suite, baseline: Duration) {
    let started = Instant::now();
    let report = suite.run().expect("the suite runs");
    let took = started.elapsed();
    let verdict = if report.summary.ok {
        "conformant".to_owned()
    } else {
        format!(
            "NOT conformant ({})",
            report.summary.required_failed.join(", ")
        )
    };
    println!(
        "{name:<28} {:>7} ms  {:>5.1}x  {verdict}",
        took.as_millis(),
        took.as_secs_f64() / baseline.as_secs_f64()
    );
}

fn main() {
    let baseline = baseline();
    println!(
        "baseline: one plugin start (python3 gallery.py good) = {} ms\n",
        baseline.as_millis()
    );
    println!("{:<28} {:>10}  {:>6}  VERDICT", "PLUGIN", "WALL", "RATIO");
    let modes = ["good", "fragile"]
        .iter()
        .chain(support::GOOD_SHAPES)
        .chain(&[
            "stdout-chatty",
            "timeout-hang",
            "handshake-never",
            "response-wrong-id",
            "shutdown-ignore-eof",
            "shutdown-double-fork",
            "hang-all",
        ]);
    for mode in modes {
        let suite = Suite::command([
            "python3".to_owned(),
            gallery().display().to_string(),
            (*mode).to_owned(),
        ])
        .probe_commands(true);
        row(&format!("gallery {mode}"), suite, baseline);
    }
    let Some(go) = std::env::var_os("DEVCTL_GO_FIXTURES").map(PathBuf::from) else {
        println!(
            "\n(set DEVCTL_GO_FIXTURES to a checkout of the Go devctl to time its fixtures too)"
        );
        return;
    };
    let fixtures = [
        "ok-python",
        "command",
        "pipeline",
        "http-service",
        "stream",
        "telemetry",
        "long-running-plugin",
        "e2e",
        "validate-passfail",
        "launch-fail",
    ];
    for fixture in fixtures {
        let script = go.join("testdata/plugins").join(fixture).join("plugin.py");
        let mut suite = Suite::command(["python3".to_owned(), script.display().to_string()])
            .probe_commands(true);
        if fixture == "e2e" {
            suite = suite
                .env("DEVCTL_HTTP_ECHO_BIN", "/bin/true")
                .env("DEVCTL_LOG_SPEWER_BIN", "/bin/true")
                .env("DEVCTL_HTTP_ECHO_PORT", "18123");
        }
        row(&format!("go {fixture}"), suite, baseline);
    }
    let example = go.join("examples/plugins/python-minimal/plugin.py");
    row(
        "go examples/python-minimal",
        Suite::command(["python3".to_owned(), example.display().to_string()]).probe_commands(true),
        baseline,
    );
}
