//! `devctl logs` end to end: services' lines captured with time, merged in
//! time order, filtered, followed until the environment stops, rotated.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::TestRepo;
use serde_json::{json, Value};

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn service(name: &str, script: &str) -> Value {
    json!({"name": name, "cwd": ".", "command": ["sh", "-c", script]})
}

/// Waits (with a deadline) until `devctl logs` shows `needle`.
fn wait_logs(repo: &TestRepo, args: &[&str], needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut all = vec!["logs"];
        all.extend(args);
        let text = stdout(&repo.devctl(&all));
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn both_streams_of_every_service_merge_in_time_order() {
    // Two services take turns (each waits for the other's file), so the
    // true order interleaves them and their streams.
    let repo = TestRepo::with_fixture(&json!({"name": "f", "services": [
        service("api", "echo a1; until [ -e b1 ]; do sleep 0.01; done; echo a2-err >&2; touch a2; exec sleep 600"),
        service("web", "until [ -e .devctl/logs/api.log ] && grep -q a1 .devctl/logs/api.log; do sleep 0.01; done; echo b1; touch b1; until [ -e a2 ]; do sleep 0.01; done; echo b2; exec sleep 600"),
    ]}));
    let up = repo.devctl(&["up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));
    // A whole line: the "started" line of web also shows "echo b2".
    let text = wait_logs(&repo, &["--no-prefix"], "\nb2\n");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| ["a1", "b1", "a2-err", "b2"].contains(l))
        .collect();
    assert_eq!(lines, ["a1", "b1", "a2-err", "b2"], "{text}");

    let marked = stdout(&repo.devctl(&["logs"]));
    let has = |service: &str, rest: &str| {
        marked.lines().any(|l| {
            l.starts_with(&format!("{service} "))
                && l.trim_start_matches(service).trim_start().starts_with(rest)
        })
    };
    assert!(has("api", "! a2-err"), "stderr is marked: {marked}");
    assert!(has("web", "| b1"), "{marked}");
    assert!(has("api", "* started (pid "), "lifecycle lines: {marked}");
    assert!(!marked.contains("\x1b["), "no colours into a pipe");

    let stamped = stdout(&repo.devctl(&["logs", "-t", "api"]));
    let first = stamped.lines().next().unwrap_or("");
    assert!(
        first.len() > 28 && &first[10..11] == "T" && first[..27].ends_with('Z'),
        "{stamped}"
    );
    assert!(!stamped.contains("web"), "only api: {stamped}");

    let json_lines = stdout(&repo.devctl(&["logs", "--json", "--stderr"]));
    let docs: Vec<Value> = json_lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 1, "{json_lines}");
    assert_eq!(docs[0]["service"], "api");
    assert_eq!(docs[0]["stream"], "stderr");
    assert_eq!(docs[0]["line"], "a2-err");

    let tail = stdout(&repo.devctl(&["logs", "--tail", "1", "--no-prefix"]));
    assert_eq!(tail.lines().count(), 2, "one line per service: {tail}");
    let future = stdout(&repo.devctl(&["logs", "--since", "2999-01-01T00:00:00Z"]));
    assert!(future.is_empty(), "{future}");
    let past = stdout(&repo.devctl(&["logs", "--until", "2000-01-01T00:00:00Z"]));
    assert!(past.is_empty(), "{past}");
    let recent = stdout(&repo.devctl(&["logs", "--since", "10m", "--no-prefix"]));
    assert!(recent.contains("b2"), "{recent}");
    let bad = repo.devctl(&["logs", "--since", "yesterday-ish"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn following_ends_when_the_environment_stops() {
    let repo = TestRepo::with_fixture(&json!({"name": "f", "services": [
        service("ticker", "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.05; done")
    ]}));
    assert!(repo.devctl(&["up", "-d"]).status.success());
    let mut follow = repo
        .command(&["logs", "-f", "--no-prefix"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = lines.next().expect("a line").unwrap();
        if line == "tick-5" {
            break;
        }
        assert!(Instant::now() < deadline, "no tick-5");
    }
    assert!(repo.devctl(&["down"]).status.success());
    // The follower drains what is left and ends by itself.
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = follow.wait().unwrap();
    assert!(status.success());
    assert!(
        rest.iter().any(|l| l.starts_with("stopped (pid ")),
        "{rest:?}"
    );
}

#[test]
fn odd_output_is_kept_and_logs_rotate_by_size() {
    let repo = TestRepo::with_fixture(&json!({"name": "f", "services": [
        service("odd", "printf 'bin \\001\\377 end\\n'; head -c 40000 /dev/zero | tr '\\0' x; echo; printf 'no newline'; exec sleep 600"),
        service("loud", "i=0; while [ $i -lt 3000 ]; do echo line-$i-of-a-log-that-rotates; i=$((i+1)); done; exec sleep 600")
    ]}));
    let config = std::fs::read_to_string(repo.root.join(".devctl.yaml")).unwrap();
    repo.write(
        ".devctl.yaml",
        &format!("{config}logs:\n  max_size: 64KiB\n  max_files: 2\n"),
    );
    let up = repo.devctl(&["up", "-d"]);
    assert!(up.status.success(), "{}", stderr(&up));
    let text = wait_logs(&repo, &["odd", "--json"], "no newline");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["line"] == "bin \u{1}\u{fffd} end"),
        "{text}"
    );
    let long: Vec<&Value> = lines
        .iter()
        .filter(|l| l["line"].as_str().is_some_and(|t| t.starts_with("xxx")))
        .collect();
    assert!(long.len() >= 2, "a 40 KB line is cut into records");
    assert!(long[1]["continued"] == json!(true));
    let total: usize = long.iter().map(|l| l["line"].as_str().unwrap().len()).sum();
    assert_eq!(total, 40_000, "nothing of it is lost");

    let all = wait_logs(&repo, &["loud", "--no-prefix"], "line-2999-");
    let dir = repo.root.join(".devctl/logs");
    assert!(dir.join("loud.log.1").exists() && dir.join("loud.log.2").exists());
    assert!(!dir.join("loud.log.3").exists(), "at most 2 old files");
    for file in ["loud.log", "loud.log.1", "loud.log.2"] {
        assert!(
            std::fs::metadata(dir.join(file)).unwrap().len() <= 65_536,
            "{file}"
        );
    }
    // Read across rotations, in order, from the oldest kept line on.
    let numbers: Vec<u32> = all
        .lines()
        .filter_map(|l| l.strip_prefix("line-")?.split('-').next()?.parse().ok())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gap"
    );
    assert_eq!(numbers.last(), Some(&2999));
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn windows_hold_for_followed_and_out_of_order_lines_and_a_gone_reader_ends_f() {
    let repo = TestRepo::with_fixture(&json!({"name": "f", "services": [
        service("quiet", "echo hello; exec sleep 600")
    ]}));
    assert!(repo.devctl(&["up", "-d"]).status.success());
    wait_logs(&repo, &[], "hello");

    // A reader that goes away ends `-f` at once, though no line comes.
    let mut follow = repo
        .command(&["logs", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(follow.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // (the reader is dropped here: the pipe is closed)
    let deadline = Instant::now() + Duration::from_secs(5);
    while follow.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "logs -f outlived its reader");
        std::thread::sleep(Duration::from_millis(20));
    }

    // --since applies to what is followed too.
    let mut future = repo
        .command(&["logs", "-f", "--since", "2099-01-01T00:00:00Z"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = future.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut BufReader::new(out), &mut text).unwrap();
        text
    });
    // A line after it started: made by the restart below.
    let pid = repo.pid_of("quiet");
    assert!(repo.devctl(&["restart", "quiet"]).status.success());
    assert_ne!(repo.pid_of("quiet"), pid);
    assert!(repo.devctl(&["down"]).status.success());
    assert!(future.wait().unwrap().success());
    let shown = reader.join().unwrap();
    assert!(shown.is_empty(), "lines before --since: {shown}");

    // A clock stepped back: the earlier times after a later one are still
    // in an --until window.
    let log = repo.root.join(".devctl/logs/quiet.log");
    std::fs::write(
        &log,
        "2026-11-23T10:00:05.000000Z o five\n2026-11-23T10:00:01.000000Z o one\n2026-11-23T10:00:03.000000Z o three\n",
    )
    .unwrap();
    let window = repo.devctl(&[
        "logs",
        "--no-prefix",
        "--since",
        "2026-11-23T10:00:00Z",
        "--until",
        "2026-11-23T10:00:04Z",
    ]);
    assert_eq!(stdout(&window), "one\nthree\n", "{}", stderr(&window));
}
