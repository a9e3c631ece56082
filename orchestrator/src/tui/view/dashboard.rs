//! The dashboard: every service with its state, pid, uptime, restarts,
//! last exit and where it answers; below, the selected one's last lines.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use crate::state::{human_ms, ServiceState};

use super::super::app::{printable, App};
use super::log::line_of;

/// The fewest lines of the selected service worth showing under the table.
const PREVIEW: u16 = 3;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let services = app.snapshot.services();
    // The table as tall as its rows (borders and heading too); the
    // selected service's last lines below, where there is room.
    let rows = u16::try_from(services.len()).unwrap_or(u16::MAX).max(1);
    let table_height = rows.saturating_add(3);
    let preview = area.height.saturating_sub(table_height);
    let preview = if preview >= PREVIEW + 2 { preview } else { 0 };
    let [table_area, preview_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(preview)]).areas(area);
    if services.is_empty() {
        frame.render_widget(
            Paragraph::new(empty_text(app)).block(Block::default().borders(Borders::ALL)),
            area,
        );
        return;
    }
    // A narrow terminal keeps the columns that matter most, narrower.
    let (columns, widest_cell) = if area.width < 60 { (3, 12) } else { (7, 40) };
    let all: Vec<(Color, Vec<String>)> = services
        .iter()
        .enumerate()
        .map(|(i, service)| {
            let alive = app.snapshot.alive.get(i).copied().unwrap_or(false);
            cells(service, alive, app)
        })
        .collect();
    let mut heading = vec![
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "LAST EXIT",
        "URL",
    ];
    heading.truncate(columns);
    // Each column as wide as its widest cell; the URL takes the rest.
    let mut widths: Vec<Constraint> = heading
        .iter()
        .enumerate()
        .map(|(c, title)| {
            let widest = all
                .iter()
                .filter_map(|(_, cells)| cells.get(c))
                .map(|cell| cell.chars().count())
                .chain([title.len()])
                .max()
                .unwrap_or(0);
            Constraint::Length(widest.min(widest_cell) as u16)
        })
        .collect();
    if columns == 7 {
        widths[6] = Constraint::Fill(1);
    }
    let rows = all.into_iter().map(|(colour, mut cells)| {
        cells.truncate(columns);
        Row::new(cells).style(Style::default().fg(colour))
    });
    let table = Table::new(rows, widths)
        .header(Row::new(heading).style(Style::default().add_modifier(Modifier::BOLD)))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ")
        .block(Block::default().borders(Borders::ALL).title(" services "));
    let mut selection = TableState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(table, table_area, &mut selection);
    if preview > 0 {
        let name = app.selected_service().unwrap_or_default();
        let wanted = app.pane_service.as_deref() == Some(name);
        let height = usize::from(preview_area.height.saturating_sub(2));
        let lines: Vec<Line> = if wanted {
            let start = app.pane.lines.len().saturating_sub(height);
            app.pane.lines.range(start..).map(line_of).collect()
        } else {
            Vec::new()
        };
        frame.render_widget(
            Paragraph::new(lines).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" {name} · last lines (enter opens) ")),
            ),
            preview_area,
        );
    }
}

/// A service's colour and cells, most important first.
fn cells(service: &ServiceState, alive: bool, app: &App) -> (Color, Vec<String>) {
    let now = app.snapshot.now_ms;
    let supervised = app.snapshot.supervisor.is_some();
    let status = service.shown_status(now, alive, supervised);
    let colour = match status.as_str() {
        "ready" => Color::Green,
        "starting" | "waiting" => Color::Yellow,
        s if s.starts_with("restarting") => Color::Yellow,
        "stopped" => Color::DarkGray,
        _ => Color::Red,
    };
    let pid = match (alive, service.pid) {
        (true, Some(pid)) => pid.to_string(),
        _ => "-".into(),
    };
    let cells = [
        service.name.clone(),
        status,
        pid,
        service.uptime_ms(now, alive).map_or("-".into(), human_ms),
        service.restarts.to_string(),
        service.exit.map_or("-".into(), |e| e.to_string()),
        service.endpoint.clone().unwrap_or_else(|| "-".into()),
    ];
    // Names and URLs come from a state file, which may be forged.
    let cells = cells.iter().map(|c| printable(c.as_bytes())).collect();
    (colour, cells)
}

fn empty_text(app: &App) -> Vec<Line<'static>> {
    let snapshot = &app.snapshot;
    let mut lines = Vec::new();
    if let Some(reason) = &snapshot.damaged {
        lines.push(Line::from(format!(
            "warning: {}",
            printable(reason.as_bytes())
        )));
    }
    if snapshot.supervisor.is_some() {
        lines.push(Line::from("the environment is starting (planning)…"));
    } else {
        lines.push(Line::from("nothing is running here."));
        lines.push(Line::from("press u to bring the environment up."));
    }
    if snapshot.orphans > 0 {
        lines.push(Line::from(format!(
            "{} process(es) of ours run without a supervisor: d stops them",
            snapshot.orphans
        )));
    }
    lines
}
