//! devctl start-up with 10 configured plugins, one of which never finishes
//! its handshake (Python stdlib plugins, real processes):
//!
//! - `devctl --help` and `devctl status` must not start plugins: ≤ 20 ms;
//! - a plugin command: ≤ 600 ms, against the baseline devctl's original
//!   design implies (discover commands one plugin at a time, 2 s each),
//!   measured here in the same run with the same plugins.
//!
//! Run: `cargo bench -p devctl --bench startup`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use devctl_sdk::host::{Client, HostOptions, PluginSpec, RequestMeta, StderrSink};
use serde_json::json;

/// The plugin that never finishes its handshake.
const HUNG: &str = "p5";

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn time_devctl(root: &Path, args: &[&str], runs: usize) -> Duration {
    let devctl = env!("CARGO_BIN_EXE_devctl");
    let samples = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let status = Command::new(devctl)
                .arg("--repo-root")
                .arg(root)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("devctl runs");
            assert!(status.success(), "devctl {args:?} failed");
            started.elapsed()
        })
        .collect();
    median(samples)
}

/// The baseline: plugins started one after another, 2 s handshake budget
/// each, then the command run on the plugin that has it.
async fn sequential_discovery(root: &Path, specs: &[(String, Vec<String>)]) -> Duration {
    let started = Instant::now();
    let mut provider = None;
    for (id, args) in specs {
        let spec = PluginSpec {
            id: id.clone(),
            program: root.join("fixture.py"),
            args: args.clone(),
            workdir: Some(root.to_path_buf()),
            ..PluginSpec::default()
        };
        let options = HostOptions {
            handshake_timeout: Duration::from_secs(2),
            stderr: StderrSink::Discard,
            ..HostOptions::default()
        };
        let started = Client::start(&spec, RequestMeta::default(), options).await;
        // Only the hung plugin may fail; any other failure would make the
        // baseline look faster than it is.
        let client = match started {
            Ok(client) => Some(client),
            Err(_) if id == HUNG => None,
            Err(err) => panic!("bench aborted: plugin {id} did not start: {}", err.message),
        };
        if let Some(client) = client {
            if client
                .handshake()
                .capabilities
                .commands
                .iter()
                .any(|c| c.name == "hello")
                && provider.is_none()
            {
                provider = Some(client);
            } else {
                client.close().await;
            }
        }
    }
    let client = provider.expect("a provider");
    client
        .call(
            "command.run",
            json!({"name": "hello", "argv": [], "config": {}}),
            Duration::from_secs(5),
        )
        .await
        .expect("command runs");
    client.close().await;
    started.elapsed()
}

fn main() {
    // The real interpreter, not a version manager's shim: what is measured
    // is devctl, in both devctl and the baseline.
    std::env::set_var("PATH", e2e::search_path());
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fixture.py");
    std::fs::copy(&fixture, root.join("fixture.py")).expect("copy fixture");
    let mut specs = Vec::new();
    let mut yaml = String::from("plugins:\n");
    for n in 0..10 {
        let mut spec = json!({"name": format!("p{n}"), "services": []});
        // Worst case: the provider runs last, the hung plugin before it, so
        // discovery must wait out the hung plugin's whole budget.
        if n == 9 {
            spec["commands"] = json!([{"name": "hello"}]);
        }
        if format!("p{n}") == HUNG {
            spec["hang"] = json!("handshake");
        }
        let arg = spec.to_string();
        yaml.push_str(&format!(
            "  - {{id: p{n}, path: ./fixture.py, args: [{}]}}\n",
            serde_json::to_string(&arg).unwrap()
        ));
        specs.push((format!("p{n}"), vec![arg]));
    }
    std::fs::write(root.join(".devctl.yaml"), yaml).expect("config");

    // A second repo: a plugin that ignores SIGTERM (and stays after stdin
    // closes) runs before the provider, so it is started, answers, and must
    // be stopped.
    let stubborn_dir = tempfile::tempdir().expect("temp dir");
    let stubborn_root = stubborn_dir.path();
    std::fs::copy(&fixture, stubborn_root.join("fixture.py")).expect("copy fixture");
    let stubborn = json!({"name": "stubborn", "stubborn": true}).to_string();
    let provider = json!({"name": "tools", "commands": [{"name": "hello"}]}).to_string();
    std::fs::write(
        stubborn_root.join(".devctl.yaml"),
        format!(
            "plugins:\n  - {{id: stubborn, priority: 5, path: ./fixture.py, args: [{}]}}\n  - {{id: tools, priority: 10, path: ./fixture.py, args: [{}]}}\n",
            serde_json::to_string(&stubborn).unwrap(),
            serde_json::to_string(&provider).unwrap()
        ),
    )
    .expect("config");

    let help = time_devctl(root, &["--help"], 30);
    let status = time_devctl(root, &["status"], 30);
    let command = time_devctl(root, &["hello"], 7);
    let with_stubborn = time_devctl(stubborn_root, &["hello"], 7);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let baseline = median(
        (0..3)
            .map(|_| runtime.block_on(sequential_discovery(root, &specs)))
            .collect(),
    );

    println!("devctl with 10 plugins configured, one of which never handshakes (medians)");
    println!(
        "  devctl --help                 {:>8.1} ms   (target <= 20 ms)",
        ms(help)
    );
    println!(
        "  devctl status                 {:>8.1} ms   (target <= 20 ms)",
        ms(status)
    );
    println!(
        "  devctl hello (plugin command) {:>8.1} ms   (target <= 600 ms)",
        ms(command)
    );
    println!(
        "  devctl hello, a plugin ignoring SIGTERM before the provider {:>8.1} ms   (target <= 600 ms)",
        ms(with_stubborn)
    );
    println!(
        "  baseline: sequential 2 s/plugin discovery {:>8.1} ms   ({:.1}x slower)",
        ms(baseline),
        baseline.as_secs_f64() / command.as_secs_f64()
    );
    let met = ms(help) <= 20.0
        && ms(status) <= 20.0
        && ms(command) <= 600.0
        && ms(with_stubborn) <= 600.0;
    println!(
        "  targets: {}",
        devctl_support::measure::verdict(met, 30 + 30 + 7 + 7)
    );
}
