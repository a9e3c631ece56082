//! Whole-process time of `moments-dev dev vite-env --format env` on the
//! example repo, against `/bin/true` measured side by side in the same run
//! (runs interleaved, so machine noise hits both alike).
//!
//! Target: median ≤ 3 ms and ≤ 3× the median of `true`.
//! Run: `cargo bench -p moments-dev --bench startup`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 400;
const WARMUP: usize = 20;

fn time_once(command: &mut Command) -> Duration {
    let start = Instant::now();
    let status = command.status().expect("spawn");
    let elapsed = start.elapsed();
    assert!(status.success(), "{command:?} failed");
    elapsed
}

fn quiet(program: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/moments");
    let repo = repo.to_str().expect("utf-8 path");
    let binary = Path::new(env!("CARGO_BIN_EXE_moments-dev"));
    let mut ours = quiet(
        binary,
        &["--repo-root", repo, "dev", "vite-env", "--format", "env"],
    );
    let mut baseline = quiet(Path::new("/bin/true"), &[]);

    for _ in 0..WARMUP {
        time_once(&mut ours);
        time_once(&mut baseline);
    }
    let mut ours_times = Vec::with_capacity(RUNS);
    let mut true_times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        ours_times.push(time_once(&mut ours));
        true_times.push(time_once(&mut baseline));
    }
    ours_times.sort();
    true_times.sort();

    let ours_median = percentile(&ours_times, 0.5);
    let true_median = percentile(&true_times, 0.5);
    let ratio = ours_median.as_secs_f64() / true_median.as_secs_f64();
    println!("moments-dev dev vite-env --format env vs /bin/true, {RUNS} interleaved runs each");
    println!(
        "  moments-dev: median {:.2} ms, p90 {:.2} ms",
        ms(ours_median),
        ms(percentile(&ours_times, 0.9))
    );
    println!(
        "  /bin/true:   median {:.2} ms, p90 {:.2} ms",
        ms(true_median),
        ms(percentile(&true_times, 0.9))
    );
    println!("  ratio of medians: {ratio:.2}x");
    let met = ms(ours_median) <= 3.0 && ratio <= 3.0;
    println!(
        "  target (median <= 3 ms and <= 3x true): {} ({RUNS} samples each)",
        if met { "met" } else { "MISSED" }
    );
}
