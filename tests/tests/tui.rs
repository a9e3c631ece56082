//! `devctl tui` in a real terminal: tmux runs it against a copy of the
//! example, keys go in with `send-keys`, and what a user would see is read
//! back with `capture-pane`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e::TestRepo;

/// How long the screen may take to show something.
const PATIENCE: Duration = Duration::from_secs(30);

/// A tmux server of its own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `devctl tui` in `root` in a `width`×`height` terminal. After it
    /// exits, the pane prints its exit status and whether the terminal is
    /// back in cooked mode (raw mode undone).
    fn start(root: &Path, width: u16, height: u16) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            e2e::skip(
                "tmux is not installed (apt-get install tmux); the TUI's terminal tests need it",
            );
            return None;
        }
        let devctl = e2e::built("devctl", "--bin", "devctl");
        let path = format!(
            "{}:{}",
            devctl.parent().expect("bin dir").display(),
            e2e::search_path()
        );
        let script = format!(
            "PATH='{path}' '{}' tui; echo \"exit status $?\"; \
             if stty -a | tr ' ;' '\\n\\n' | grep -qx icanon; then echo cooked; else echo raw mode; fi",
            devctl.display()
        );
        let tmux = Tmux {
            socket: format!(
                "devctl-tui-test-{}-{}",
                std::process::id(),
                e2e::free_port()
            ),
        };
        let started = tmux.run(&[
            "-f",
            "/dev/null",
            "start-server",
            ";",
            "set-option",
            "-g",
            "remain-on-exit",
            "on",
            ";",
            "new-session",
            "-d",
            "-s",
            "tui",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-c",
            &root.display().to_string(),
            "sh",
            "-c",
            &script,
        ]);
        assert!(started.status.success(), "tmux: {}", text(&started.stderr));
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tui"];
        args.extend(keys);
        assert!(self.run(&args).status.success());
    }

    fn screen(&self) -> String {
        text(&self.run(&["capture-pane", "-p", "-t", "tui"]).stdout)
    }

    /// The screen and what scrolled off it (what the shell printed after
    /// the TUI gave the main screen back).
    fn screen_and_history(&self) -> String {
        text(
            &self
                .run(&["capture-pane", "-p", "-S", "-200", "-t", "tui"])
                .stdout,
        )
    }

    /// Waits until the screen satisfies `ok`; fails with the screen.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.wait_for_in(what, Tmux::screen, ok)
    }

    /// Waits until the pane's command has ended; what it printed.
    fn wait_for_exit(&self) -> String {
        self.wait_for_in("the exit status", Tmux::screen_and_history, |s| {
            s.contains("cooked") || s.contains("raw")
        })
    }

    fn wait_for_in(
        &self,
        what: &str,
        capture: fn(&Tmux) -> String,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = capture(self);
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "waited {PATIENCE:?} for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn format(&self, format: &str) -> String {
        text(
            &self
                .run(&["display-message", "-p", "-t", "tui", format])
                .stdout,
        )
        .trim()
        .to_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The dashboard row of `service`.
fn row<'a>(screen: &'a str, service: &str) -> Option<&'a str> {
    screen
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == service) && l.starts_with('│'))
}

#[test]
fn the_dashboard_shows_restarts_and_quits_leaving_the_environment_running() {
    let (repo, _, _) = TestRepo::moments();
    let up = repo.devctl(&["up", "-d"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    let backend = repo.pid_of("backend").expect("backend pid");
    let web = repo.pid_of("web").expect("web pid");
    let Some(tmux) = Tmux::start(&repo.root, 110, 30) else {
        return;
    };

    // Both services, ready, with their pids.
    tmux.wait_for("both services listed as ready with their pids", |s| {
        row(s, "backend").is_some_and(|r| r.contains("ready") && r.contains(&backend.to_string()))
            && row(s, "web").is_some_and(|r| r.contains("ready") && r.contains(&web.to_string()))
    });
    assert!(
        tmux.format("#{alternate_on}") == "1",
        "the TUI uses the alternate screen"
    );

    // enter: the backend's own lines.
    tmux.keys(&["Enter"]);
    tmux.wait_for("the backend's log", |s| {
        s.starts_with("devctl service") && s.contains("backend: listening on")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_for("the dashboard again", |s| s.starts_with("devctl dashboard"));

    // r asks; y restarts: a new pid, on screen.
    tmux.keys(&["r"]);
    tmux.wait_for("the question", |s| {
        s.contains("restart backend (and what depends on it)? [y/n]")
    });
    tmux.keys(&["y"]);
    let deadline = Instant::now() + PATIENCE;
    let restarted = loop {
        match repo.pid_of("backend") {
            Some(pid) if pid != backend && e2e::running(pid as u32) => break pid,
            _ => {}
        }
        assert!(Instant::now() < deadline, "backend was not restarted");
        std::thread::sleep(Duration::from_millis(20));
    };
    tmux.wait_for("the new pid, ready", |s| {
        row(s, "backend").is_some_and(|r| r.contains("ready") && r.contains(&restarted.to_string()))
            && s.contains("restarted backend, web")
    });

    // q: exit 0, the terminal given back, the services still running.
    tmux.keys(&["q"]);
    let screen = tmux.wait_for_exit();
    assert!(screen.contains("exit status 0"), "{screen}");
    assert!(screen.contains("cooked"), "raw mode left on:\n{screen}");
    assert_eq!(tmux.format("#{alternate_on}"), "0");
    let status = repo.status();
    assert_eq!(status["running"], true, "{status}");
    assert!(
        status["services"]
            .as_array()
            .expect("services")
            .iter()
            .all(|s| s["ready"] == true),
        "{status}"
    );
    assert!(e2e::running(restarted as u32));

    drop(tmux);
    let down = repo.devctl(&["down"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert_eq!(
        repo.wait_for_nothing_left(Duration::from_secs(10)),
        Vec::<String>::new()
    );
}

#[test]
fn the_environment_stopping_under_it_shows_and_u_brings_it_back() {
    let (repo, _, _) = TestRepo::moments();
    assert!(repo.devctl(&["up", "-d"]).status.success());
    let Some(tmux) = Tmux::start(&repo.root, 40, 10) else {
        return;
    };
    // A tiny terminal still shows each service and its state.
    tmux.wait_for("both services in 40x10", |s| {
        row(s, "backend").is_some_and(|r| r.contains("ready"))
            && row(s, "web").is_some_and(|r| r.contains("ready"))
    });
    let down = repo.devctl(&["down"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    tmux.wait_for("the environment shown down", |s| {
        s.starts_with("devctl dashboard · down")
    });
    // u asks, y brings it up (through `devctl up -d`: it outlives the TUI).
    tmux.keys(&["u"]);
    tmux.wait_for("the question", |s| s.contains("[y/n]"));
    tmux.keys(&["y"]);
    tmux.wait_for("both services ready again", |s| {
        s.contains("running (")
            && row(s, "backend").is_some_and(|r| r.contains("ready"))
            && row(s, "web").is_some_and(|r| r.contains("ready"))
    });
    // A resize redraws at the new size.
    assert!(tmux
        .run(&["resize-window", "-t", "tui", "-x", "100", "-y", "20"])
        .status
        .success());
    tmux.wait_for("the wide dashboard", |s| s.contains("LAST EXIT"));
    // tab tab: the run `u` started, its steps and the plugin's handshake.
    tmux.keys(&["Tab"]);
    tmux.wait_for("the events view", |s| s.starts_with("devctl events"));
    tmux.keys(&["Tab"]);
    tmux.wait_for("the pipeline's steps", |s| {
        s.starts_with("devctl pipeline")
            && s.contains("bootstrap")
            && s.contains("ready: 2 service(s)")
    });
    tmux.keys(&["Tab"]);
    tmux.wait_for("the plugin's handshake", |s| {
        s.starts_with("devctl plugins") && s.contains("launch.plan")
    });
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_for_exit();
    assert!(screen.contains("exit status 0"), "{screen}");
    assert!(screen.contains("cooked"), "raw mode left on:\n{screen}");
    assert_eq!(repo.status()["running"], true);
    assert!(repo.devctl(&["down"]).status.success());
}

#[test]
fn without_a_terminal_it_says_what_to_use_instead() {
    let repo = TestRepo::empty("plain");
    let output = repo.devctl(&["tui"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("devctl tui needs a terminal"),
        "{}",
        text(&output.stderr)
    );
}
