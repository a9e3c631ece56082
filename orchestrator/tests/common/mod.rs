//! A temp repo with a `.devctl.yaml` of fixture plugins, and `devctl` run in it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

pub struct Repo {
    _dir: TempDir,
    pub root: PathBuf,
}

impl Repo {
    /// A repo whose plugins are the fixture configured by each spec, as
    /// `(id, priority, spec)`.
    pub fn with(plugins: &[(&str, i64, Value)]) -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().canonicalize().expect("root");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fixture.py");
        std::fs::copy(&fixture, root.join("fixture.py")).expect("copy fixture");
        let mut yaml = String::from("plugins:\n");
        for (id, priority, spec) in plugins {
            let spec = serde_json::to_string(spec).expect("spec");
            yaml.push_str(&format!(
                "  - id: {id}\n    path: ./fixture.py\n    priority: {priority}\n    args: [{}]\n",
                serde_json::to_string(&spec).expect("quoted")
            ));
        }
        std::fs::write(root.join(".devctl.yaml"), yaml).expect("write config");
        Repo { _dir: dir, root }
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.root.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    pub fn path(&self, relative: &str) -> String {
        self.root.join(relative).display().to_string()
    }

    pub fn devctl(&self, args: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("devctl").expect("devctl binary");
        cmd.env("PATH", e2e::search_path())
            .arg("--repo-root")
            .arg(&self.root)
            .args(args);
        cmd
    }

    /// `devctl plan --json`, parsed.
    pub fn plan(&self, extra: &[&str]) -> (Value, std::process::Output) {
        let mut args = vec!["plan", "--json"];
        args.extend(extra);
        let output = self.devctl(&args).output().expect("runs");
        let plan = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        (plan, output)
    }
}

pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
