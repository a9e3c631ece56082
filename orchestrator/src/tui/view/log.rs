//! The log views: one service's merged output (service view) and every
//! service's lifecycle lines (events view), newest at the bottom, filtered,
//! following or scrolled back.

use std::collections::VecDeque;

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use crate::logs::Stream;

use super::super::app::{App, Level, LogLine};
use super::clock;

/// One line: time, the stream's mark (`|` stdout, `!` stderr, `*` devctl,
/// as `devctl logs` shows them), the text.
pub fn line_of(line: &LogLine) -> Line<'static> {
    let (mark, colour) = match line.stream {
        Stream::Stdout => ('|', Color::Reset),
        Stream::Stderr => ('!', Color::Red),
        Stream::Devctl => ('*', Color::Cyan),
    };
    Line::from(vec![
        Span::styled(
            format!("{} {mark} ", clock(&line.time)),
            Style::default().fg(Color::DarkGray),
        ),
        Span::styled(line.text.clone(), Style::default().fg(colour)),
    ])
}

fn event_of(line: &LogLine) -> Line<'static> {
    let level = match Level::of(&line.text) {
        Level::Error => Color::Red,
        Level::Warn => Color::Yellow,
        Level::Info => Color::Reset,
    };
    Line::from(vec![
        Span::styled(
            format!("{} ", clock(&line.time)),
            Style::default().fg(Color::DarkGray),
        ),
        Span::styled(
            format!("{:<10} ", line.service),
            Style::default().fg(Color::Cyan),
        ),
        Span::styled(line.text.clone(), Style::default().fg(level)),
    ])
}

/// The lines `app` shows of `lines` in `height` rows: filtered, the newest
/// at the bottom (or `scroll` lines back). Walks from the end, so it costs
/// the screen, not the buffer.
fn visible<'a>(app: &App, lines: &'a VecDeque<LogLine>, height: usize) -> Vec<&'a LogLine> {
    let skip = if app.follow { 0 } else { app.scroll };
    let mut shown: Vec<&LogLine> = lines
        .iter()
        .rev()
        .filter(|l| app.shows(l))
        .skip(skip)
        .take(height)
        .collect();
    shown.reverse();
    shown
}

fn title(app: &App, what: &str) -> String {
    let mut parts = vec![what.to_owned()];
    parts.push(if app.follow {
        "follow".into()
    } else {
        format!("scrolled {} up", app.scroll)
    });
    if let Some(filter) = &app.filter {
        parts.push(format!("filter {filter:?}"));
    }
    format!(" {} ", parts.join(" · "))
}

pub fn service(frame: &mut Frame, area: Rect, app: &App) {
    let name = app.selected_service().unwrap_or("?");
    let height = usize::from(area.height.saturating_sub(2));
    let lines: Vec<Line> = if app.pane_service.as_deref() == Some(name) {
        visible(app, &app.pane.lines, height)
            .into_iter()
            .map(line_of)
            .collect()
    } else {
        Vec::new()
    };
    let block = Block::default()
        .borders(Borders::ALL)
        .title(title(app, &format!("{name} · {}", app.streams.name())));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

pub fn events(frame: &mut Frame, area: Rect, app: &App) {
    let height = usize::from(area.height.saturating_sub(2));
    let lines: Vec<Line> = visible(app, &app.events.lines, height)
        .into_iter()
        .map(event_of)
        .collect();
    let mut what = format!("lifecycle events · {}+", app.level.name());
    if app.paused {
        what.push_str(" · PAUSED (p resumes)");
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .title(title(app, &what));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
