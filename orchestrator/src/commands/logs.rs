//! `devctl logs` and the log view of a foreground `devctl up`: every
//! service's stdout, stderr and lifecycle lines (and devctl's own), merged
//! in time order, prefixed per service (coloured on a terminal unless
//! NO_COLOR), optionally followed until the environment stops.
//!
//! ```text
//! backend | listening on 127.0.0.1:8083
//! backend ! Traceback (most recent call last):
//! web     * ready after 120 ms at localhost:5173
//! ```
//!
//! The mark after the name is the stream: `|` stdout, `!` stderr, `*`
//! devctl's own line about the service.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use devctl::environment::Environment;
use devctl::logs::{history, sources, Follower, Mark, Record, Source, Stream, Window};
use devctl_support::fs::PrivateDir;

use super::Usage;
use crate::cli::LogsArgs;

const COLOURS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];
/// How often a follow looks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(50);

/// How records are printed.
pub struct Printer {
    labels: Vec<String>,
    width: usize,
    colour: bool,
    timestamps: bool,
    prefix: bool,
    json: bool,
    streams: Vec<Stream>,
}

impl Printer {
    pub fn new(sources: &[Source]) -> Printer {
        let colour = std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Printer {
            labels: sources.iter().map(|s| s.label.clone()).collect(),
            width: sources.iter().map(|s| s.label.len()).max().unwrap_or(0),
            colour,
            timestamps: false,
            prefix: true,
            json: false,
            streams: vec![Stream::Stdout, Stream::Stderr, Stream::Devctl],
        }
    }

    /// Knows a source added after it was made (a service started later).
    fn learn(&mut self, source: &Source) {
        self.labels.push(source.label.clone());
        self.width = self.width.max(source.label.len());
    }

    fn shows(&self, record: &Record) -> bool {
        self.streams.contains(&record.stream)
    }

    /// Prints one record; `false` once stdout is closed (`| head`).
    fn print(&self, index: usize, record: &Record) -> bool {
        if !self.shows(record) {
            return true;
        }
        let label = self.labels.get(index).map(String::as_str).unwrap_or("?");
        let text = String::from_utf8_lossy(&record.text);
        let mut out = std::io::stdout().lock();
        let result = if self.json {
            let mut doc = serde_json::json!({
                "time": record.time,
                "service": label,
                "stream": record.stream.name(),
                "line": text,
            });
            if record.continued {
                doc["continued"] = serde_json::json!(true);
            }
            writeln!(out, "{doc}")
        } else {
            let mut line = String::new();
            if self.timestamps {
                line.push_str(&record.time);
                line.push(' ');
            }
            if self.prefix {
                let mark = match record.stream {
                    Stream::Stdout => '|',
                    Stream::Stderr => '!',
                    Stream::Devctl => '*',
                };
                let head = format!("{label:<width$} {mark}", width = self.width);
                if self.colour {
                    let code = COLOURS[index % COLOURS.len()];
                    line.push_str(&format!("\x1b[{code}m{head}\x1b[0m "));
                } else {
                    line.push_str(&head);
                    line.push(' ');
                }
            }
            line.push_str(&text);
            writeln!(out, "{line}")
        };
        result.is_ok()
    }
}

/// `--since`/`--until`: `10m` (ago), `1h30m`, or an RFC 3339 time.
fn bound(flag: &str, text: &str) -> Result<String, Usage> {
    if let Ok(ago) = humantime::parse_duration(text) {
        let at = SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| Usage(format!("{flag} {text}: too long ago")))?;
        return Ok(devctl::logs::record::timestamp(at));
    }
    humantime::parse_rfc3339_weak(text)
        .map(devctl::logs::record::timestamp)
        .map_err(|_| {
            Usage(format!(
                "{flag} {text:?}: give a duration ago (10m, 1h30m) or a time (2026-11-23T14:00:00Z)"
            ))
        })
}

/// `.devctl/logs/`, opened without following links (an error naming the
/// link if it is one); `None` when there is none yet. Read it through
/// [`PrivateDir::handle`], never through its path.
pub fn open_logs(environment: &Environment) -> Result<Option<PrivateDir>> {
    Ok(match environment.dir() {
        Some(dir) => dir.existing_logs()?,
        None => None,
    })
}

/// `devctl logs [SVC]… [-f] [-t] [--since T] [--until T] [--tail N] …`.
pub async fn run(root: &Path, args: &LogsArgs) -> Result<u8> {
    let environment = Environment::open(root)?;
    let shown_dir = root.join(".devctl/logs");
    let Some(logs) = open_logs(&environment)? else {
        eprintln!("no logs yet in {}", shown_dir.display());
        return Ok(0);
    };
    let state = environment.observe().await.state;
    let order: Vec<String> = state
        .iter()
        .flat_map(|s| s.services.iter().map(|s| s.name.clone()))
        .collect();
    let logs_dir = logs.handle();
    let all = sources(&logs_dir, &order);
    let wanted = args.services();
    for name in &wanted {
        if !all.iter().any(|s| &s.label == name) {
            let known: Vec<&str> = all.iter().map(|s| s.label.as_str()).collect();
            return Err(Usage(format!(
                "no logs for service {name:?} (services with logs: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ))
            .into());
        }
    }
    let chosen: Vec<Source> = all
        .into_iter()
        .filter(|s| wanted.is_empty() || wanted.contains(&s.label))
        .collect();
    let window = Window {
        since: args
            .since
            .as_deref()
            .map(|t| bound("--since", t))
            .transpose()?,
        until: args
            .until
            .as_deref()
            .map(|t| bound("--until", t))
            .transpose()?,
    };
    // What cannot be read is said, not silently left out.
    for path in chosen.iter().flat_map(|s| &s.paths) {
        let regular = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
        if !regular {
            let name = path.file_name().unwrap_or_default();
            eprintln!(
                "devctl: skipped {}: not a regular file (devctl reads only the files it wrote)",
                shown_dir.join(name).display()
            );
        }
    }
    if let (Some(since), Some(until)) = (&window.since, &window.until) {
        if until < since {
            return Err(Usage(format!(
                "--until ({until}) is before --since ({since}): no line can match"
            ))
            .into());
        }
    }
    let mut printer = Printer::new(&chosen);
    printer.timestamps = args.timestamps;
    printer.prefix = !args.no_prefix;
    printer.json = args.json;
    if args.stderr {
        printer.streams = vec![Stream::Stderr];
    }
    if chosen.is_empty() {
        eprintln!("no logs yet in {}", shown_dir.display());
        return Ok(0);
    }
    let mark = Mark::now(&chosen);
    let mut open = true;
    history(&chosen, &window, args.tail, &mark, |index, record| {
        open = printer.print(index, &record);
        open
    });
    if !open || !args.follow || window.until.is_some() {
        return Ok(0);
    }
    let mut interrupts = super::Interrupts::listen()?;
    let stopped = async {
        // Ends when the environment stops (the supervisor let go of its lock).
        while environment.supervisor().is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        code = interrupts.next() => {
            let _ = code;
            Ok(0)
        }
        () = follow(&logs_dir, &order, wanted, chosen, mark, &window, printer, stopped) => Ok(0),
    }
}

/// Prints what the sources gain until `stop` resolves (then what is left).
/// New services' logs are picked up as they appear (unless `only` names
/// which to show).
#[allow(clippy::too_many_arguments)]
pub async fn follow(
    dir: &Path,
    order: &[String],
    only: Vec<String>,
    sources_now: Vec<Source>,
    mark: Mark,
    window: &Window,
    mut printer: Printer,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut follower = Follower::new(&sources_now, &mark);
    let mut known: Vec<Source> = sources_now;
    tokio::pin!(stop);
    let mut ticks: u32 = 0;
    loop {
        for (index, record) in follower.poll() {
            if window.contains(&record) && !printer.print(index, &record) {
                return;
            }
        }
        // `logs -f | head -1`: end when nobody reads any more, not at the
        // next line.
        if stdout_closed() {
            return;
        }
        ticks = ticks.wrapping_add(1);
        if ticks % 20 == 0 {
            for source in sources(dir, order) {
                let wanted = only.is_empty() || only.contains(&source.label);
                if wanted && !known.iter().any(|k| k.label == source.label) {
                    follower.watch(&source);
                    printer.learn(&source);
                    known.push(source);
                }
            }
        }
        tokio::select! {
            () = &mut stop => {
                for (index, record) in follower.poll() {
                    if window.contains(&record) && !printer.print(index, &record) {
                        return;
                    }
                }
                return;
            }
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
    }
}

/// Whether stdout is a pipe whose reader has gone.
fn stdout_closed() -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLOUT)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}

/// The foreground `up`: this run's lines so far, then what comes, until
/// `stop` resolves.
pub async fn follow_run(
    root: &Path,
    services: &[String],
    since: SystemTime,
    stop: impl std::future::Future<Output = ()>,
) {
    let logs = Environment::open(root)
        .ok()
        .and_then(|environment| open_logs(&environment).ok().flatten());
    let Some(logs) = logs else {
        stop.await;
        return;
    };
    let dir = logs.handle();
    let chosen = sources(&dir, services);
    let window = Window {
        since: Some(devctl::logs::record::timestamp(since)),
        until: None,
    };
    let printer = Printer::new(&chosen);
    let mark = Mark::now(&chosen);
    let mut open = true;
    history(&chosen, &window, None, &mark, |index, record| {
        open = printer.print(index, &record);
        open
    });
    if open {
        follow(
            &dir,
            services,
            Vec::new(),
            chosen,
            mark,
            &window,
            printer,
            stop,
        )
        .await;
    }
}
