//! Drawing the model: one function per view, plus the frame around them
//! (a header saying what runs where, a bottom line for questions, typing,
//! outcomes and key hints, the `?` overlay). Pure: the same [`App`] draws
//! the same screen, which is what the snapshot tests check.

mod dashboard;
mod log;
mod run;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table};
use ratatui::Frame;

use super::app::{App, Prompt, View};
use super::input::KEYS;

/// Draws the whole screen.
pub fn render(frame: &mut Frame, app: &App) {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header_line(app)), header);
    match app.view {
        View::Dashboard => dashboard::render(frame, body, app),
        View::Service => log::service(frame, body, app),
        View::Events => log::events(frame, body, app),
        View::Pipeline => run::pipeline(frame, body, app),
        View::Plugins => run::plugins(frame, body, app),
    }
    frame.render_widget(Paragraph::new(footer_line(app)), footer);
    if app.help {
        help(frame, body);
    }
}

fn header_line(app: &App) -> Line<'static> {
    let view = match app.view {
        View::Dashboard => "dashboard",
        View::Service => "service",
        View::Events => "events",
        View::Pipeline => "pipeline",
        View::Plugins => "plugins",
    };
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut spans = vec![Span::styled(format!("devctl {view} · "), bold)];
    let snapshot = &app.snapshot;
    match (&snapshot.state, snapshot.supervisor) {
        (Some(state), Some(pid)) => spans.push(Span::styled(
            format!(
                "{} (supervisor {pid}, gen {})",
                state.phase_name(),
                state.generation
            ),
            Style::default().fg(Color::Green),
        )),
        (_, Some(pid)) => spans.push(Span::raw(format!("supervisor {pid}, state unknown"))),
        (_, None) => spans.push(Span::styled("down", Style::default().fg(Color::Yellow))),
    }
    spans.push(Span::raw(format!(" · {}", app.root)));
    Line::from(spans)
}

fn footer_line(app: &App) -> Line<'static> {
    let reverse = Style::default().add_modifier(Modifier::REVERSED);
    match &app.prompt {
        Some(Prompt::Confirm(op)) => {
            return Line::from(Span::styled(format!(" {} [y/n] ", op.question()), reverse))
        }
        Some(Prompt::Filter(text)) => return Line::from(format!("/{text}▏")),
        None => {}
    }
    if let Some(op) = &app.busy {
        return Line::from(Span::styled(op.doing(), Style::default().fg(Color::Yellow)));
    }
    if let Some(outcome) = &app.outcome {
        let colour = if outcome.ok { Color::Green } else { Color::Red };
        return Line::from(Span::styled(
            outcome.text.clone(),
            Style::default().fg(colour),
        ));
    }
    let hints = match app.view {
        View::Dashboard => "tab events · j/k select · enter open · r restart · s stop · x kill · u up · d down · ? help · q quit",
        View::Service => "esc back · tab streams · f follow · / filter · ctrl+l clear · r restart · ? help · q quit",
        View::Events => "tab pipeline · e level · p pause · / filter (text or service) · ctrl+l clear · q quit",
        View::Pipeline => "tab plugins · j/k scroll · ? help · q quit",
        View::Plugins => "tab dashboard · j/k scroll · ? help · q quit",
    };
    Line::from(Span::styled(hints, Style::default().fg(Color::DarkGray)))
}

/// The key table over the view.
fn help(frame: &mut Frame, area: Rect) {
    let height = (KEYS.len() as u16 + 2).min(area.height);
    let width = 72.min(area.width);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let rows = KEYS
        .iter()
        .map(|(keys, what)| Row::new([keys.to_string(), what.to_string()]));
    let table = Table::new(rows, [Constraint::Length(10), Constraint::Min(10)]).block(
        Block::default()
            .borders(Borders::ALL)
            .title(" keys (any key closes) "),
    );
    frame.render_widget(Clear, popup);
    frame.render_widget(table, popup);
}

/// `14:27:38.123` of a record's `2026-11-23T14:27:38.123456Z`.
fn clock(time: &str) -> &str {
    time.get(11..23).unwrap_or(time)
}

#[cfg(test)]
mod tests;
