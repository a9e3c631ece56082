//! The views drawn into ratatui's test backend, compared with the
//! committed snapshots (`cargo insta review` after an intended change).

use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use crate::logs::{Record, Stream};
use crate::state::{Exit, Phase, ServiceState, ServiceStatus, State};
use crate::tui::app::{App, LogLine, Op, Snapshot, View};
use crate::tui::press;

const NOW: u64 = 1_800_000_000_000;

fn service(name: &str, status: ServiceStatus, pid: u32, endpoint: &str) -> ServiceState {
    let mut s = ServiceState::new(name);
    s.status = status;
    s.pid = Some(pid);
    s.started_at_ms = Some(NOW - 83_000);
    s.endpoint = Some(endpoint.to_owned());
    s
}

fn running() -> Snapshot {
    let mut state = State::new(Path::new("/work/moments"), false);
    state.supervisor_pid = 4100;
    state.phase = Phase::Running;
    state.generation = 2;
    let backend = service(
        "backend",
        ServiceStatus::Ready,
        4242,
        "http://127.0.0.1:8083/rpc/v1/health",
    );
    let mut web = service("web", ServiceStatus::Restarting, 4300, "localhost:5173");
    web.restarts = 2;
    web.exit = Some(Exit {
        code: Some(1),
        signal: None,
    });
    web.next_restart_at_ms = Some(NOW + 1_500);
    state.services = vec![backend, web];
    Snapshot {
        supervisor: Some(4100),
        state: Some(state),
        alive: vec![true, false],
        damaged: None,
        orphans: 0,
        now_ms: NOW,
    }
}

fn line(stream: Stream, second: u32, text: &str) -> LogLine {
    LogLine::new(
        "backend",
        Record {
            time: format!("2026-11-23T14:27:{second:02}.123456Z"),
            stream,
            continued: false,
            text: text.as_bytes().to_vec(),
        },
    )
}

fn app() -> App {
    let mut app = App::new("/work/moments");
    app.observed(running());
    app.pane_opened(
        "backend",
        vec![
            line(Stream::Devctl, 1, "started (pid 4242): python3 server.py"),
            line(Stream::Stdout, 2, "backend: listening on 127.0.0.1:8083"),
            line(Stream::Stderr, 3, "warning: using the dev signing key"),
            line(
                Stream::Devctl,
                4,
                "ready after 120 ms at http://127.0.0.1:8083/rpc/v1/health",
            ),
        ],
    );
    app
}

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| super::render(f, app)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            let row: String = (0..width).map(|x| buffer[(x, y)].symbol()).collect();
            row.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn key(app: &mut App, code: KeyCode) -> Option<Op> {
    press(app, KeyEvent::new(code, KeyModifiers::NONE))
}

#[test]
fn dashboard() {
    insta::assert_snapshot!(screen(&app(), 100, 16));
}

#[test]
fn dashboard_in_a_tiny_terminal() {
    insta::assert_snapshot!(screen(&app(), 40, 10));
}

#[test]
fn dashboard_with_nothing_running() {
    let mut app = App::new("/work/moments");
    app.observed(Snapshot {
        orphans: 1,
        ..Snapshot::default()
    });
    insta::assert_snapshot!(screen(&app, 80, 8));
}

#[test]
fn restart_asks_first_and_only_yes_does_it() {
    let mut app = app();
    assert_eq!(key(&mut app, KeyCode::Char('j')), None);
    assert_eq!(key(&mut app, KeyCode::Char('r')), None);
    insta::assert_snapshot!(screen(&app, 100, 8));
    // n cancels; r then y restarts the selected service, once.
    assert_eq!(key(&mut app, KeyCode::Char('n')), None);
    assert_eq!(app.prompt, None);
    key(&mut app, KeyCode::Char('r'));
    assert_eq!(
        key(&mut app, KeyCode::Char('y')),
        Some(Op::Restart("web".into()))
    );
    assert_eq!(key(&mut app, KeyCode::Char('y')), None);
    assert!(screen(&app, 100, 8).ends_with("restarting web…"));
}

#[test]
fn service_view_filters_and_toggles_streams() {
    let mut app = app();
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.view, View::Service);
    insta::assert_snapshot!("service_view", screen(&app, 80, 9));
    key(&mut app, KeyCode::Tab); // stdout only (and devctl's lines)
    key(&mut app, KeyCode::Char('/'));
    for c in "listen".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!("service_view_filtered", screen(&app, 80, 6));
    press(
        &mut app,
        KeyEvent::new(KeyCode::Char('l'), KeyModifiers::CONTROL),
    );
    assert_eq!(app.filter, None);
    key(&mut app, KeyCode::Esc);
    assert_eq!(app.view, View::Dashboard);
}

#[test]
fn events_view_pauses() {
    let mut app = app();
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.view, View::Events);
    app.events_grew(vec![
        line(Stream::Devctl, 5, "stopped (pid 4300)"),
        line(
            Stream::Devctl,
            6,
            "exited with exit code 1; restarting in 400 ms",
        ),
        line(Stream::Devctl, 7, "exited with exit code 3 while starting"),
    ]);
    key(&mut app, KeyCode::Char('p'));
    app.events_grew(vec![line(Stream::Devctl, 8, "not shown while paused")]);
    insta::assert_snapshot!(screen(&app, 80, 8));
    // e: warnings and up, then errors only.
    key(&mut app, KeyCode::Char('e'));
    let warnings = screen(&app, 80, 8);
    assert!(
        warnings.contains("restarting in") && !warnings.contains("stopped (pid"),
        "{warnings}"
    );
    key(&mut app, KeyCode::Char('e'));
    let errors = screen(&app, 80, 8);
    assert!(
        errors.contains("while starting") && !errors.contains("restarting in"),
        "{errors}"
    );
}

#[test]
fn help_lists_every_key_and_any_key_closes_it() {
    let mut app = app();
    key(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!(screen(&app, 80, 20));
    key(&mut app, KeyCode::Char('z'));
    assert!(!app.help);
    // Quitting never asks: the environment keeps running.
    key(&mut app, KeyCode::Char('q'));
    assert!(app.quit);
}

#[test]
fn the_log_pane_stays_bounded() {
    let mut app = app();
    for n in 0..(crate::tui::app::PANE_LINES + 10) {
        app.pane_grew(vec![line(Stream::Stdout, 7, &format!("line {n}"))]);
    }
    assert_eq!(app.pane.lines.len(), crate::tui::app::PANE_LINES);
    assert_eq!(app.pane.dropped, 14);
}

#[test]
fn a_service_cannot_drive_the_terminal_through_its_output() {
    let mut app = app();
    app.pane_grew(vec![line(
        Stream::Stdout,
        8,
        "\x1b[2J\x1b]0;pwned\x07evil\ttab\rcarriage \u{9b}31m",
    )]);
    // A forged state file: a service named with escapes.
    let mut snapshot = running();
    if let Some(state) = snapshot.state.as_mut() {
        state.services[1].name = "web\x1b[2J\x07".into();
    }
    app.observed(snapshot);
    let screen = screen(&app, 100, 16);
    assert!(!screen.contains('\x1b') && !screen.contains('\x07') && !screen.contains('\u{9b}'));
    assert!(screen.contains("evil    tabcarriage"), "{screen}");
    assert!(
        screen.contains("> backend") && screen.contains("  web "),
        "{screen}"
    );
}

fn last_run() -> Vec<crate::events::UpEvent> {
    use crate::events::UpEvent;
    let phase = |name: &str| UpEvent::Phase { name: name.into() };
    vec![
        phase("plugins"),
        UpEvent::Plugin {
            id: "moments".into(),
            name: "moments-dev".into(),
            ops: vec![
                "config.mutate".into(),
                "build.run".into(),
                "launch.plan".into(),
            ],
            streams: vec![],
            commands: vec!["db-reset".into()],
        },
        phase("config"),
        phase("build"),
        UpEvent::PluginOutput {
            plugin: "moments".into(),
            line: "build backend: running `go build`".into(),
        },
        phase("prepare"),
        phase("validate"),
        UpEvent::Step {
            phase: "build".into(),
            name: "backend".into(),
            plugin: "moments".into(),
            ok: true,
            duration_ms: 1234,
        },
        UpEvent::Step {
            phase: "prepare".into(),
            name: "jwt-keys".into(),
            plugin: "moments".into(),
            ok: false,
            duration_ms: 12,
        },
        UpEvent::Invalid {
            plugin: "moments".into(),
            code: "E_PORT_MISMATCH".into(),
            message: "identity URL port 8082 is not server.port 8083".into(),
            fix: Some(
                "set platform.mento-service-identity-base-url to http://localhost:8083".into(),
            ),
        },
        UpEvent::Failed {
            reason: "validation failed; nothing was started".into(),
            service: None,
            exit: None,
            stderr_tail: vec![],
        },
    ]
}

#[test]
fn pipeline_and_plugins_views_show_the_last_run() {
    let mut app = app();
    for _ in 0..2 {
        key(&mut app, KeyCode::Tab);
    }
    assert_eq!(app.view, View::Pipeline);
    assert!(app.wants_run(), "the loop is asked to read the last run");
    app.run_read(last_run());
    assert!(!app.wants_run());
    insta::assert_snapshot!("pipeline_view", screen(&app, 90, 12));
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.view, View::Plugins);
    insta::assert_snapshot!("plugins_view", screen(&app, 90, 11));
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.view, View::Dashboard);
}

#[test]
fn every_view_draws_in_any_size_without_panicking() {
    let mut app = app();
    app.run_read(last_run());
    let views = [
        View::Dashboard,
        View::Service,
        View::Events,
        View::Pipeline,
        View::Plugins,
    ];
    for view in views {
        for (help, question) in [(false, false), (true, false), (false, true)] {
            app.view = view;
            app.help = help;
            app.prompt = question.then_some(crate::tui::app::Prompt::Confirm(Op::Down));
            for (width, height) in [(1, 1), (5, 2), (10, 3), (40, 10), (200, 60)] {
                let screen = screen(&app, width, height);
                assert_eq!(screen.lines().count(), usize::from(height), "{view:?}");
            }
        }
    }
}
