//! The terminal while the TUI owns it: raw mode and the alternate screen,
//! undone whatever way the TUI ends — returning, an error, or a panic (a
//! hook restores the terminal before the panic message is printed, so the
//! message is readable and the shell is usable).

use std::io::{Stdout, Write};
use std::sync::Once;

use crossterm::cursor::{Hide, Show};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;

pub type Screen = ratatui::Terminal<CrosstermBackend<Stdout>>;

/// Owns the terminal; dropping it gives the terminal back as it was.
pub struct Guard {
    pub screen: Screen,
}

impl Guard {
    pub fn enter() -> std::io::Result<Guard> {
        install_panic_hook();
        enable_raw_mode()?;
        // From here on, a failure must undo raw mode: build the guard first.
        let mut stdout = std::io::stdout();
        if let Err(err) = crossterm::execute!(stdout, EnterAlternateScreen, Hide) {
            restore();
            return Err(err);
        }
        match ratatui::Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(screen) => Ok(Guard { screen }),
            Err(err) => {
                restore();
                Err(err)
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen, shows the cursor, ends raw mode. Safe to
/// call more than once.
pub fn restore() {
    let mut stdout = std::io::stdout();
    let _ = crossterm::execute!(stdout, LeaveAlternateScreen, Show);
    let _ = stdout.flush();
    let _ = disable_raw_mode();
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}
