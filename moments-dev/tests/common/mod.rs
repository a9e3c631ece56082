//! Helpers shared by the moments-dev integration tests: a private copy of the
//! example repo and a `moments-dev` command with a clean environment.

#![allow(dead_code)]

use std::path::PathBuf;

use assert_cmd::Command;
use tempfile::TempDir;

/// `--check` flags for the validate checks that do not depend on the
/// machine (`ports`, `db` and `health` do).
pub const STATIC_CHECKS: [&str; 8] = [
    "--check",
    "config",
    "--check",
    "consistency",
    "--check",
    "tools",
    "--check",
    "keys",
];

/// A temp copy of the example repo, at `<tmp>/moments`.
pub struct RepoCopy {
    _dir: TempDir,
    pub root: PathBuf,
}

impl RepoCopy {
    pub fn new() -> RepoCopy {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("moments");
        e2e::copy_example_repo(&root);
        RepoCopy { _dir: dir, root }
    }

    pub fn write(&self, relative: &str, text: &str) -> &RepoCopy {
        let path = self.root.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        self
    }

    /// `moments-dev --repo-root <copy> <args…>` with a clean environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = moments_dev();
        cmd.arg("--repo-root").arg(&self.root).args(args);
        cmd
    }
}

/// `moments-dev` with only PATH and HOME set, so a developer's own
/// `MOMENTS_*` variables cannot change what the tests see.
pub fn moments_dev() -> Command {
    let mut cmd = Command::cargo_bin("moments-dev").expect("moments-dev binary");
    cmd.env_clear();
    for var in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    cmd
}

/// stdout of a finished command as UTF-8.
pub fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("utf-8 stderr")
}

/// A stand-in backend on 127.0.0.1 that answers the first
/// `GET /rpc/v1/health` with `status` and a body of `body_len` bytes (other
/// connections, like a liveness connect, are skipped), then waits for the
/// client to close. The thread returns what that last read saw: `Ok(0)` is
/// a clean close, an error a reset.
pub fn serve_health(
    status: &'static str,
    body_len: usize,
) -> (u16, std::thread::JoinHandle<std::io::Result<usize>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || -> std::io::Result<usize> {
        for stream in listener.incoming() {
            let mut stream = stream?;
            stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            if !request.starts_with(b"GET /rpc/v1/health ") {
                continue;
            }
            let body = "y".repeat(body_len);
            stream.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: {body_len}\r\n\r\n{body}").as_bytes(),
            )?;
            return stream.read(&mut buf);
        }
        Ok(0)
    });
    (port, server)
}
