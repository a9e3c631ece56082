//! Keys to actions: the one table of what each key means (the Go devctl's
//! keys), in each mode. The README's key table and `?` show the same.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What a key means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Help,
    /// `tab`: next view (in the service view: next stream choice).
    NextView,
    Back,
    Up,
    Down,
    PageUp,
    PageDown,
    Open,
    Restart,
    Stop,
    Kill,
    EnvUp,
    EnvDown,
    Yes,
    No,
    Follow,
    Pause,
    /// Events view: the lowest level shown (info, warn, error).
    Level,
    Filter,
    ClearFilter,
    /// A character of the filter being typed.
    Type(char),
    Erase,
    Submit,
}

/// What keys mean depends on what is on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Normal navigation.
    Browse,
    /// A `y/n` question.
    Confirm,
    /// Typing a filter.
    Typing,
}

/// The keys, as `?` and the README show them: (keys, what they do).
pub const KEYS: &[(&str, &str)] = &[
    (
        "tab",
        "next view: dashboard, events, pipeline, plugins (service view: streams)",
    ),
    ("j k ↑ ↓", "select a service / scroll the log"),
    ("enter l", "open the selected service's log"),
    ("r", "restart the service (asks y/n)"),
    ("s", "stop the service (asks y/n)"),
    ("x", "kill the service (asks y/n)"),
    ("u", "bring the environment up, if it is down"),
    ("d", "take the environment down (asks y/n)"),
    ("f", "follow the log on/off"),
    ("/", "filter lines (enter applies, esc cancels)"),
    ("ctrl+l", "clear the filter"),
    ("p", "pause the events view"),
    ("e", "events view: show info+, warn+ or errors only"),
    ("esc", "back to the dashboard"),
    ("?", "this help"),
    ("q ctrl+c", "quit (the environment keeps running)"),
];

/// The action of `key` in `mode`, if it has one.
pub fn action(key: KeyEvent, mode: Mode) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match (key.code, ctrl) {
        (KeyCode::Char('c'), true) => return Some(Action::Quit),
        (KeyCode::Char('l'), true) if mode == Mode::Browse => return Some(Action::ClearFilter),
        _ => {}
    }
    match mode {
        Mode::Confirm => match key.code {
            KeyCode::Char('y' | 'Y') => Some(Action::Yes),
            KeyCode::Char('n' | 'N') | KeyCode::Esc => Some(Action::No),
            _ => None,
        },
        Mode::Typing => match key.code {
            KeyCode::Enter => Some(Action::Submit),
            KeyCode::Esc => Some(Action::Back),
            KeyCode::Backspace => Some(Action::Erase),
            KeyCode::Char(c) if !ctrl => Some(Action::Type(c)),
            _ => None,
        },
        Mode::Browse => browse(key.code),
    }
}

fn browse(code: KeyCode) -> Option<Action> {
    Some(match code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('?') => Action::Help,
        KeyCode::Tab => Action::NextView,
        KeyCode::Esc | KeyCode::Char('h') | KeyCode::Left => Action::Back,
        KeyCode::Char('k') | KeyCode::Up => Action::Up,
        KeyCode::Char('j') | KeyCode::Down => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Enter | KeyCode::Char('l') | KeyCode::Right => Action::Open,
        KeyCode::Char('r') => Action::Restart,
        KeyCode::Char('s') => Action::Stop,
        KeyCode::Char('x') => Action::Kill,
        KeyCode::Char('u') => Action::EnvUp,
        KeyCode::Char('d') => Action::EnvDown,
        KeyCode::Char('f') => Action::Follow,
        KeyCode::Char('p') => Action::Pause,
        KeyCode::Char('e') => Action::Level,
        KeyCode::Char('/') => Action::Filter,
        _ => return None,
    })
}

/// A thread that reads the terminal's events and sends them on, until the
/// receiver is gone. (crossterm's reader blocks; the loop must not.)
pub fn spawn_reader(
    events: tokio::sync::mpsc::UnboundedSender<crossterm::event::Event>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::time::Duration;
        while !events.is_closed() {
            match crossterm::event::poll(Duration::from_millis(100)) {
                Ok(true) => match crossterm::event::read() {
                    Ok(event) => {
                        if events.send(event).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                Ok(false) => {}
                Err(_) => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_mean_what_the_go_devctl_says_in_each_mode() {
        assert_eq!(
            action(key(KeyCode::Char('r')), Mode::Browse),
            Some(Action::Restart)
        );
        assert_eq!(
            action(key(KeyCode::Enter), Mode::Browse),
            Some(Action::Open)
        );
        assert_eq!(
            action(key(KeyCode::Char('l')), Mode::Browse),
            Some(Action::Open)
        );
        // In a question only y/n/esc count; `r` does not restart twice.
        assert_eq!(action(key(KeyCode::Char('r')), Mode::Confirm), None);
        assert_eq!(
            action(key(KeyCode::Char('y')), Mode::Confirm),
            Some(Action::Yes)
        );
        // Typing a filter, `q` is a letter, not quit; ctrl+c always quits.
        assert_eq!(
            action(key(KeyCode::Char('q')), Mode::Typing),
            Some(Action::Type('q'))
        );
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(action(ctrl_c, Mode::Typing), Some(Action::Quit));
        let ctrl_l = KeyEvent::new(KeyCode::Char('l'), KeyModifiers::CONTROL);
        assert_eq!(action(ctrl_l, Mode::Browse), Some(Action::ClearFilter));
    }
}
