//! Peak memory of the real `moments-dev` on big generated configs: at most
//! 4× the size of the config it reads, whatever the shape of the config
//! (many keys, many small maps, a long list, one long string), for the
//! everyday commands and for `config dump`, which prints every value.
//!
//! The peak is the child's own high-water mark (`getrusage(RUSAGE_CHILDREN)`
//! in a python3 wrapper whose only child is `moments-dev`), so it does not
//! depend on timing.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use common::RepoCopy;

/// Big enough that the binary's own few MiB do not matter, small enough
/// for an unoptimised test build.
const SIZE: usize = 16 << 20;

fn base_yaml(repo: &RepoCopy) -> String {
    std::fs::read_to_string(repo.root.join("config/app/base.yaml")).expect("base.yaml")
}

/// `base.yaml` followed by `SIZE` bytes of `line(n)` for n = 0, 1, …
fn generate(repo: &RepoCopy, header: &str, line: impl Fn(usize) -> String) -> usize {
    let mut text = base_yaml(repo);
    text.push_str(header);
    let mut n = 0;
    while text.len() < SIZE {
        text.push_str(&line(n));
        n += 1;
    }
    std::fs::write(repo.root.join("config/app/base.yaml"), &text).expect("write");
    text.len()
}

/// Runs `moments-dev args` and returns (exit code, peak RSS in bytes).
fn peak_rss(repo: &Path, args: &[&str]) -> Option<(i32, u64)> {
    let wrapper = "import os, resource, subprocess, sys\n\
        with open(os.devnull, 'wb') as null:\n\
        \x20   code = subprocess.call(sys.argv[1:], stdout=null, stderr=null)\n\
        print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n";
    let output = Command::new("python3")
        .args(["-c", wrapper])
        .arg(assert_cmd::cargo::cargo_bin("moments-dev"))
        .arg("--repo-root")
        .arg(repo)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let mut words = text.split_whitespace();
    let code = words.next()?.parse().ok()?;
    let kib: u64 = words.next()?.parse().ok()?;
    Some((code, kib * 1024))
}

#[test]
fn peak_memory_stays_within_four_times_the_config_size() {
    if Command::new("python3").arg("--version").output().is_err() {
        e2e::skip("python3 is not installed, so the child's peak RSS cannot be read");
        return;
    }
    type Line = fn(usize) -> String;
    let shapes: [(&str, &str, Line); 4] = [
        ("many keys", "extra:\n", |n| {
            format!("  key-{n:08}: value-{n:08}-abcdefghij\n")
        }),
        ("many small maps with lists", "groups:\n", |n| {
            format!("  group-{n:07}:\n    a: {n}\n    b: text-{n}\n    c: [1, 2, 3]\n")
        }),
        ("a long list", "items:\n", |n| {
            format!("  - item-{n:08}-abcdefghijklmnop\n")
        }),
        ("one long string", "blob: \"", |_| "x".repeat(4096)),
    ];
    let mut report = String::new();
    let mut over = Vec::new();
    for (shape, header, line) in shapes {
        let repo = RepoCopy::new();
        let size = generate(&repo, header, line);
        if shape == "one long string" {
            let path = repo.root.join("config/app/base.yaml");
            let mut text = std::fs::read_to_string(&path).expect("read");
            text.push_str("\"\n");
            std::fs::write(&path, text).expect("write");
        }
        for args in [
            &["dev", "vite-env"][..],
            &["dev", "config", "dump", "--show-origin"],
        ] {
            let (code, peak) = peak_rss(&repo.root, args).expect("python3 runs moments-dev");
            assert_eq!(code, 0, "{shape}: {args:?} failed");
            let ratio = peak as f64 / size as f64;
            let _ = writeln!(
                report,
                "{shape:>28} {:>34}: peak {:>4} MiB for {} MiB of config ({ratio:.2}x)",
                args.join(" "),
                peak >> 20,
                size >> 20
            );
            if peak > 4 * size as u64 {
                over.push(format!("{shape}: {args:?} peaked at {ratio:.2}x"));
            }
        }
    }
    println!("{report}");
    assert!(
        over.is_empty(),
        "over 4x the config size:\n{over:#?}\n{report}"
    );
}
