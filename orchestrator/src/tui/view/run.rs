//! The last run, as the supervisor reported it (`.devctl/supervisor.log`):
//! the pipeline view (phases, build and prepare steps with their results and
//! durations, validation errors with their fixes, plugin messages, the
//! outcome) and the plugins view (each plugin's handshake and its stderr).

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use crate::events::UpEvent;

use super::super::app::{printable, App};

fn clean(text: &str) -> String {
    printable(text.as_bytes())
}

fn bold(text: String) -> Span<'static> {
    Span::styled(text, Style::default().add_modifier(Modifier::BOLD))
}

fn coloured(text: String, colour: Color) -> Span<'static> {
    Span::styled(text, Style::default().fg(colour))
}

fn nothing_yet(app: &App) -> Option<Vec<Line<'static>>> {
    app.run.is_empty().then(|| {
        vec![Line::from(
            "no run recorded yet (.devctl/supervisor.log): u brings the environment up",
        )]
    })
}

fn pipeline_lines(app: &App) -> Vec<Line<'static>> {
    if let Some(lines) = nothing_yet(app) {
        return lines;
    }
    let phases: Vec<String> = app
        .run
        .iter()
        .filter_map(|e| match e {
            UpEvent::Phase { name } => Some(clean(name)),
            _ => None,
        })
        .collect();
    let mut lines = vec![Line::from(vec![
        bold("phases ".into()),
        Span::raw(phases.join(" → ")),
    ])];
    for event in &app.run {
        match event {
            UpEvent::Step {
                phase,
                name,
                plugin,
                ok,
                duration_ms,
            } => lines.push(Line::from(vec![
                Span::raw(format!("  {:<8} {:<20} ", clean(phase), clean(name))),
                if *ok {
                    coloured("ok    ".into(), Color::Green)
                } else {
                    coloured("FAILED".into(), Color::Red)
                },
                Span::raw(format!(" {duration_ms:>6} ms  ({})", clean(plugin))),
            ])),
            UpEvent::Invalid {
                plugin,
                code,
                message,
                fix,
            } => {
                lines.push(Line::from(vec![
                    coloured(format!("  invalid [{}] ", clean(code)), Color::Red),
                    Span::raw(format!("{} ({})", clean(message), clean(plugin))),
                ]));
                if let Some(fix) = fix {
                    lines.push(Line::from(format!("      fix: {}", clean(fix))));
                }
            }
            UpEvent::PluginMessage {
                plugin,
                level,
                text,
            } => lines.push(Line::from(format!(
                "  {} {}: {}",
                clean(level),
                clean(plugin),
                clean(text)
            ))),
            UpEvent::Replanned { line, .. } => {
                lines.push(Line::from(format!("  re-plan: {}", clean(line))))
            }
            UpEvent::Ready {
                services,
                elapsed_ms,
            } => lines.push(Line::from(coloured(
                format!("ready: {services} service(s) in {elapsed_ms} ms"),
                Color::Green,
            ))),
            UpEvent::Failed { reason, .. } => lines.push(Line::from(coloured(
                format!("failed: {}", clean(reason)),
                Color::Red,
            ))),
            _ => {}
        }
    }
    lines
}

fn plugin_lines(app: &App) -> Vec<Line<'static>> {
    if let Some(lines) = nothing_yet(app) {
        return lines;
    }
    let mut lines = Vec::new();
    for event in &app.run {
        let UpEvent::Plugin {
            id,
            name,
            ops,
            streams,
            commands,
        } = event
        else {
            continue;
        };
        let list = |items: &[String]| {
            if items.is_empty() {
                "-".to_owned()
            } else {
                clean(&items.join(", "))
            }
        };
        lines.push(Line::from(vec![
            bold(clean(id)),
            Span::raw(format!(" (plugin_name {})", clean(name))),
        ]));
        lines.push(Line::from(format!("  ops       {}", list(ops))));
        lines.push(Line::from(format!("  streams   {}", list(streams))));
        lines.push(Line::from(format!("  commands  {}", list(commands))));
        let said: Vec<&UpEvent> = app
            .run
            .iter()
            .filter(|e| matches!(e, UpEvent::PluginOutput { plugin, .. } if plugin == id))
            .collect();
        lines.push(Line::from(format!("  stderr    {} line(s)", said.len())));
        for said in said {
            if let UpEvent::PluginOutput { line, .. } = said {
                lines.push(Line::from(coloured(
                    format!("    | {}", clean(line)),
                    Color::DarkGray,
                )));
            }
        }
    }
    // Plugins that never shook hands (crashed, hung) still said something.
    let mut silent: Vec<&String> = Vec::new();
    for event in &app.run {
        if let UpEvent::PluginOutput { plugin, line } = event {
            let shook = app
                .run
                .iter()
                .any(|e| matches!(e, UpEvent::Plugin { id, .. } if id == plugin));
            if !shook {
                if !silent.contains(&plugin) {
                    silent.push(plugin);
                    lines.push(Line::from(vec![
                        bold(clean(plugin)),
                        coloured(" (no handshake)".into(), Color::Red),
                    ]));
                }
                lines.push(Line::from(coloured(
                    format!("    | {}", clean(line)),
                    Color::DarkGray,
                )));
            }
        }
    }
    if lines.is_empty() {
        lines.push(Line::from("no plugin started in the last run"));
    }
    lines
}

fn framed(frame: &mut Frame, area: Rect, app: &App, title: &str, lines: Vec<Line<'static>>) {
    let offset = u16::try_from(app.offset).unwrap_or(u16::MAX);
    frame.render_widget(
        Paragraph::new(lines).scroll((offset, 0)).block(
            Block::default()
                .borders(Borders::ALL)
                .title(title.to_owned()),
        ),
        area,
    );
}

pub fn pipeline(frame: &mut Frame, area: Rect, app: &App) {
    framed(
        frame,
        area,
        app,
        " last plan (j/k scroll) ",
        pipeline_lines(app),
    );
}

pub fn plugins(frame: &mut Frame, area: Rect, app: &App) {
    framed(
        frame,
        area,
        app,
        " plugins of the last run (j/k scroll) ",
        plugin_lines(app),
    );
}
