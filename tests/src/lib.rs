//! What the cross-crate end-to-end tests share: locating (and if need be
//! building) workspace binaries, temp copies of the example repo on free
//! ports, running `devctl` there, and finding processes left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Path of a workspace binary (`--bin`) or SDK example (`--example`), built
/// with the same profile as the tests when it is missing or stale.
///
/// Cargo runs once per binary per test process: a build can take seconds
/// (cargo resolves features differently for `-p` than for `cargo test
/// --workspace`), and parallel tests would otherwise queue on cargo's lock
/// inside the very commands they observe.
pub fn built(package: &str, kind: &str, name: &str) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let key = format!("{package} {kind} {name}");
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let path = build(package, kind, name);
    built.insert(key, path.clone());
    path
}

fn build(package: &str, kind: &str, name: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(["build", "-q", "-p", package, kind, name])
        .status()
        .unwrap_or_else(|err| panic!("cannot run cargo to build {name}: {err}"));
    assert!(status.success(), "building {name} failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let dir = target.join("debug");
    match kind {
        "--example" => dir.join("examples").join(name),
        _ => dir.join(name),
    }
}

pub use devctl_support::testing::skip;

/// Whether `pid` runs (a zombie does not). Fails the test when /proc
/// cannot be read, rather than answering "gone" without knowing.
pub fn running(pid: u32) -> bool {
    assert!(
        devctl_sdk::host::ProcessTable::read().is_ok(),
        "/proc cannot be read here: whether a process runs is unknown"
    );
    devctl_sdk::host::process_id(pid).is_some()
}

/// PATH for the programs tests start, with the real Python interpreter's
/// directory first: a version manager's `python3` shim (pyenv's is a shell
/// script) can cost more than a plugin's whole 500 ms start-up budget on a
/// loaded machine, which tests of devctl's own timing must not pay.
pub fn search_path() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let inherited = std::env::var("PATH").unwrap_or_default();
        let real = Command::new("python3")
            .args([
                "-c",
                "import os, sys; print(os.path.dirname(os.path.realpath(sys.executable)))",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|dir| !dir.is_empty());
        match real {
            Some(dir) => format!("{dir}:{inherited}"),
            None => inherited,
        }
    })
    .clone()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A temp repo that `devctl` runs in; everything it started is stopped when
/// it is dropped (so a failing test leaves nothing behind either).
pub struct TestRepo {
    _dir: TempDir,
    pub root: PathBuf,
}

impl TestRepo {
    /// A copy of `examples/moments` whose backend and web use free ports.
    pub fn moments() -> (TestRepo, u16, u16) {
        let repo = TestRepo::empty("moments");
        copy_example_repo(&repo.root);
        let (backend, web) = (free_port(), free_port());
        repo.write(
            "config/app/local.yaml",
            &format!(
                "server:\n  port: {backend}\nplatform:\n  mento-service-identity-base-url: http://localhost:{backend}\n  mento-service-public-base-url: http://localhost:{backend}\ndev:\n  web-port: {web}\nintegrations:\n  stytch:\n    stytch-public-token: e2e-public-token\n"
            ),
        );
        (repo, backend, web)
    }

    /// A repo whose only plugin is the orchestrator's fixture, configured by
    /// `spec` (see orchestrator/tests/fixtures/fixture.py).
    pub fn with_fixture(spec: &Value) -> TestRepo {
        let repo = TestRepo::empty("fixture");
        std::fs::copy(
            workspace().join("orchestrator/tests/fixtures/fixture.py"),
            repo.root.join("fixture.py"),
        )
        .expect("copy fixture");
        // A YAML double-quoted string with only ASCII in it: raw, a NEL or
        // a line separator in the spec would be folded as a line break.
        let arg: String = serde_json::to_string(&spec.to_string())
            .expect("quote")
            .chars()
            .map(|c| match c as u32 {
                0..=0x7e => c.to_string(),
                code @ 0x7f..=0xffff => format!("\\u{code:04x}"),
                code => format!("\\U{code:08x}"),
            })
            .collect();
        repo.write(
            ".devctl.yaml",
            &format!("plugins:\n  - id: fixture\n    path: ./fixture.py\n    args: [{arg}]\n"),
        );
        repo
    }

    /// An empty repo (no `.devctl.yaml`) named `name`.
    pub fn empty(name: &str) -> TestRepo {
        // Build first, so no test's timing or deadline includes cargo.
        built("devctl", "--bin", "devctl");
        built("moments-dev", "--bin", "moments-dev");
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().canonicalize().expect("root").join(name);
        std::fs::create_dir_all(&root).expect("mkdir");
        TestRepo { _dir: dir, root }
    }

    /// Copies a fixture plugin (`orchestrator/tests/fixtures/<name>`) to
    /// `relative` in the repo.
    pub fn fixture(&self, name: &str, relative: &str) {
        let to = self.root.join(relative);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(
            workspace().join("orchestrator/tests/fixtures").join(name),
            to,
        )
        .expect("copy fixture");
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.root.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// Runs `devctl <args>` in the repo, with the workspace's binaries on PATH.
    pub fn devctl(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("devctl runs")
    }

    /// `devctl <args>` in the repo, with the workspace's binaries on PATH,
    /// to adjust (environment, stdio) before running it.
    pub fn command(&self, args: &[&str]) -> Command {
        let devctl = built("devctl", "--bin", "devctl");
        built("moments-dev", "--bin", "moments-dev");
        let path = format!(
            "{}:{}",
            devctl.parent().expect("bin dir").display(),
            search_path()
        );
        let mut command = Command::new(devctl);
        command.current_dir(&self.root).env("PATH", path).args(args);
        command
    }

    /// `devctl status --json`, parsed.
    pub fn status(&self) -> Value {
        serde_json::from_slice(&self.devctl(&["status", "--json"]).stdout).unwrap_or(Value::Null)
    }

    pub fn pid_of(&self, service: &str) -> Option<u64> {
        self.status()["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == service)?["pid"]
            .as_u64()
    }

    /// Live processes whose cwd or command line is under this repo.
    pub fn leftovers(&self) -> Vec<String> {
        leftovers_under(&self.root)
    }

    /// Waits (with a deadline) until nothing under the repo runs.
    pub fn wait_for_nothing_left(&self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = self.leftovers();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestRepo {
    fn drop(&mut self) {
        if !self.leftovers().is_empty() {
            let _ = self.devctl(&["down", "--grace", "200ms"]);
        }
    }
}

pub fn leftovers_under(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let root_text = root.display().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !running(pid) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        if cwd.starts_with(root) || cmdline.contains(&root_text) {
            found.push(format!("{pid} {}", cmdline.trim()));
        }
    }
    found
}

/// `GET url` → (status, body), for checking what services serve.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let answer = devctl_support::http::get_blocking(url, Duration::from_secs(5)).ok()?;
    Some((answer.status, answer.body))
}

/// Copies `examples/moments` to `to`, without the example's own run-time
/// state (logs, keys, caches), which must not leak into a test.
pub fn copy_example_repo(to: &Path) {
    copy_dir(&workspace().join("examples/moments"), to);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let name = entry.file_name();
        if [".devctl", "keys", "var", "__pycache__"].contains(&name.to_string_lossy().as_ref()) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
