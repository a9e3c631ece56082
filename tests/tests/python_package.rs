//! The Python plugin package (`python/`, `devctl_plugin`): its own unit
//! tests pass, plugins written with it pass the conformance suite (the
//! README's `python/examples/hello.py` and a plugin using every kind of
//! handler), and `pip install ./python` from a checkout gives a working
//! package in a fresh virtual environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use devctl_conformance::{Status, Suite};
use e2e::{search_path, skip, workspace};

fn python_dir() -> PathBuf {
    workspace().join("python")
}

/// The real `python3` (not a version manager's shim), or a skip.
fn python3() -> Option<String> {
    let output = Command::new("python3")
        .env("PATH", search_path())
        .args(["-c", "import sys; print(sys.executable)"])
        .output();
    match output {
        Ok(out) if out.status.success() => {
            Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }
        _ => {
            skip("python3 is not installed: the Python plugin package cannot be tested");
            None
        }
    }
}

fn shown(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_package_unit_tests_pass() {
    let Some(python) = python3() else { return };
    let output = Command::new(&python)
        .current_dir(python_dir())
        .env("PATH", search_path())
        .args(["-m", "unittest", "discover", "-s", "tests", "-t", "."])
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "{}", shown(&output));
    // unittest reports on stderr: "Ran N tests" then "OK".
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(report.contains("\nOK"), "{report}");
}

fn conformant(
    python: &str,
    script: &Path,
    package_path: Option<&Path>,
) -> devctl_conformance::Report {
    let mut suite = Suite::command([python.to_owned(), script.display().to_string()])
        .repo_root(workspace().join("examples/moments"))
        .probe_commands(true);
    if let Some(dir) = package_path {
        suite = suite.env("PYTHONPATH", dir.display().to_string());
    }
    let report = suite.run().expect("the plugin starts");
    report.assert_passed();
    assert!(report.failed_ids().is_empty(), "{}", report.human());
    report
}

fn status(report: &devctl_conformance::Report, id: &str) -> Option<Status> {
    report.check(id).map(|check| check.status)
}

#[test]
fn the_hello_example_is_conformant() {
    let Some(python) = python3() else { return };
    let script = python_dir().join("examples/hello.py");
    let lines = std::fs::read_to_string(&script)
        .expect("hello.py")
        .lines()
        .count();
    assert!(
        lines <= 30,
        "hello.py is the README's example: {lines} lines, at most 30"
    );
    let report = conformant(&python, &script, Some(&python_dir()));
    assert_eq!(status(&report, "schema.launch.plan"), Some(Status::Pass));
    assert_eq!(status(&report, "commands.greet"), Some(Status::Pass));
}

#[test]
fn a_plugin_with_every_kind_of_handler_is_conformant() {
    let Some(python) = python3() else { return };
    let script = python_dir().join("tests/plugins/pipeline.py");
    let report = conformant(&python, &script, Some(&python_dir()));
    for id in [
        "schema.config.mutate",
        "schema.validate.run",
        "schema.build.run",
        "schema.launch.plan",
        "streams.end-arrives",
        "streams.nothing-after-end",
        "concurrency.pipelined",
        "commands.doctor",
    ] {
        assert_eq!(
            status(&report, id),
            Some(Status::Pass),
            "{id}\n{}",
            report.human()
        );
    }
}

#[test]
fn pip_install_from_a_checkout_gives_a_working_package() {
    let Some(python) = python3() else { return };
    let venv = tempfile::tempdir().expect("temp dir");
    let created = Command::new(&python)
        .args(["-m", "venv"])
        .arg(venv.path())
        .output()
        .expect("python3 runs");
    if !created.status.success() {
        skip(&format!(
            "python3 -m venv does not work here (Debian: apt-get install python3-venv): {}",
            String::from_utf8_lossy(&created.stderr).trim()
        ));
        return;
    }
    let venv_python = venv.path().join("bin/python");
    // pip fetches the build backend (setuptools) from PyPI, as it does for
    // a plugin author; the package itself has no dependencies.
    let mut pip = Command::new(&venv_python);
    pip.args(["-m", "pip", "install", "-q", "--disable-pip-version-check"]);
    // From a copy: building writes build/ and *.egg-info next to the sources.
    let source = venv.path().join("src");
    copy_dir(&python_dir(), &source);
    let installed = pip.arg(&source).output().expect("pip runs");
    assert!(
        installed.status.success(),
        "pip install ./python: {}",
        shown(&installed)
    );
    // Installed, not read from the checkout: no PYTHONPATH, cwd elsewhere.
    let report = conformant(
        &venv_python.display().to_string(),
        &python_dir().join("examples/hello.py"),
        None,
    );
    assert_eq!(status(&report, "handshake.valid"), Some(Status::Pass));
}

/// Copies the package's sources (not caches) to `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        if name_text == "__pycache__" || name_text == "build" || name_text.ends_with(".egg-info") {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}
