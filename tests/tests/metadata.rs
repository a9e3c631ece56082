//! What an author outside this repo reads before depending on it: every
//! published crate says where it lives and what it is (crates.io shows
//! `repository`, `readme`, `keywords`), and every install command in the
//! README and docs/ is `--locked` (the toolkit's Cargo.lock, not whatever
//! resolves that day) and names the one repository URL.

use std::process::Command;

use e2e::workspace;
use serde_json::Value;

fn metadata() -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

fn repository() -> String {
    let metadata = metadata();
    let conformance = metadata["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "devctl-conformance"))
        .expect("devctl-conformance is in the workspace");
    conformance["repository"]
        .as_str()
        .expect("a repository")
        .to_owned()
}

#[test]
fn every_published_crate_has_its_metadata() {
    let metadata = metadata();
    let packages = metadata["packages"].as_array().expect("packages");
    let mut published = 0;
    for package in packages {
        let name = package["name"].as_str().unwrap_or("?");
        if package["publish"].as_array().is_some_and(Vec::is_empty) {
            continue;
        }
        published += 1;
        for field in ["description", "license", "repository", "readme"] {
            assert!(
                package[field].as_str().is_some_and(|v| !v.is_empty()),
                "{name} has no {field}"
            );
        }
        let keywords = package["keywords"].as_array().map_or(0, Vec::len);
        assert!(
            (1..=5).contains(&keywords),
            "{name}: {keywords} keywords (crates.io takes 1 to 5)"
        );
        let readme = workspace().join(
            std::path::Path::new(package["manifest_path"].as_str().unwrap_or_default())
                .parent()
                .unwrap_or(&workspace())
                .join(package["readme"].as_str().unwrap_or_default()),
        );
        assert!(
            readme.is_file(),
            "{name}'s readme {} is missing",
            readme.display()
        );
    }
    assert!(published >= 6, "only {published} published crates found");
}

#[test]
fn every_install_command_is_locked_and_names_the_repository() {
    let repository = repository();
    let mut files = vec![
        workspace().join("README.md"),
        workspace().join("python/README.md"),
    ];
    for entry in std::fs::read_dir(workspace().join("docs"))
        .expect("docs/")
        .flatten()
    {
        files.push(entry.path());
    }
    let mut installs = 0;
    for file in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(file).expect("readable");
        for (number, line) in text.lines().enumerate() {
            let place = format!("{}:{}", file.display(), number + 1);
            if let Some(at) = line.find("cargo install ") {
                installs += 1;
                assert!(line[at..].contains(" --locked"), "{place}: {line}");
            }
            for url in line.split(['"', ' ', '`', '(', ')', '<', '>', '@']) {
                let url = url.trim_start_matches("git+");
                if url.starts_with("https://github.com/devctl") {
                    assert!(
                        url.starts_with(&repository),
                        "{place} names {url}, but the repository is {repository}"
                    );
                }
            }
        }
    }
    assert!(installs >= 2, "no cargo install lines found");
}

/// `pip install ./conformance` (and `./orchestrator`, `./moments-dev`)
/// installs the crate's executable through maturin, with Cargo's version;
/// the plugin package in `python/` carries the same version by hand.
#[test]
fn python_packaging_follows_cargo() {
    let metadata = metadata();
    let version = |crate_name: &str| {
        metadata["packages"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == crate_name))
            .and_then(|p| p["version"].as_str())
            .unwrap_or_else(|| panic!("{crate_name} is in the workspace"))
            .to_owned()
    };
    for (dir, name) in [
        ("conformance", "devctl-conformance"),
        ("orchestrator", "devctl"),
        ("moments-dev", "moments-dev"),
    ] {
        let path = workspace().join(dir).join("pyproject.toml");
        let text = std::fs::read_to_string(&path).expect("pyproject.toml");
        for needed in [
            format!("name = \"{name}\""),
            "build-backend = \"maturin\"".to_owned(),
            "bindings = \"bin\"".to_owned(),
            "dynamic = [\"version\"".to_owned(),
        ] {
            assert!(text.contains(&needed), "{} lacks {needed}", path.display());
        }
        version(name);
    }
    let plugin_package = std::fs::read_to_string(workspace().join("python/pyproject.toml"))
        .expect("python/pyproject.toml");
    let init = std::fs::read_to_string(workspace().join("python/devctl_plugin/__init__.py"))
        .expect("__init__.py");
    let cargo_version = version("devctl-sdk");
    assert!(
        plugin_package.contains(&format!("version = \"{cargo_version}\""))
            && init.contains(&format!("__version__ = \"{cargo_version}\"")),
        "python/ must carry the toolkit's version {cargo_version}"
    );
}
