//! `devctl logs` and the log view of a foreground `devctl up`: the services'
//! log files under `.devctl/logs/`, merged with a prefix per service
//! (coloured on a terminal), optionally followed as they grow. A file that
//! is replaced (a restart rotates it to `.1`) is picked up from its start.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use std::path::Path;

use anyhow::Result;
use devctl::environment::Environment;
use devctl::state::{tail_of, State};
use devctl::supervisor::spawn::log_name;

use super::Usage;
use crate::cli::LogsArgs;

/// One log file to show, and the prefix of its lines.
#[derive(Debug, Clone)]
pub struct Source {
    pub label: String,
    pub path: PathBuf,
}

const COLOURS: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

/// Prints lines with aligned, optionally coloured prefixes.
pub struct Printer {
    width: usize,
    colours: BTreeMap<String, &'static str>,
    colour: bool,
    closed: std::cell::Cell<bool>,
}

impl Printer {
    pub fn new(sources: &[Source]) -> Printer {
        let mut colours = BTreeMap::new();
        for source in sources {
            let name = source
                .label
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned();
            let next = COLOURS[colours.len() % COLOURS.len()];
            colours.entry(name).or_insert(next);
        }
        Printer {
            width: sources.iter().map(|s| s.label.len()).max().unwrap_or(0),
            colours,
            colour: std::io::stdout().is_terminal(),
            closed: std::cell::Cell::new(false),
        }
    }

    pub fn line(&self, label: &str, text: &str) {
        let name = label.split_whitespace().next().unwrap_or("");
        let mut out = std::io::stdout().lock();
        let result = match (self.colour, self.colours.get(name)) {
            (true, Some(code)) => writeln!(
                out,
                "\x1b[{code}m{label:<width$} |\x1b[0m {text}",
                width = self.width
            ),
            _ => writeln!(out, "{label:<width$} | {text}", width = self.width),
        };
        // A closed pipe (`| head`) ends following; it is not worth a panic.
        if result.is_err() {
            self.closed.set(true);
        }
    }

    pub fn closed(&self) -> bool {
        self.closed.get()
    }
}

/// The log files of `services` (all recorded ones when empty), from the
/// state's service list, else from the files present.
pub fn sources(
    root: &Path,
    state: Option<&State>,
    services: &[String],
    streams: &[&str],
) -> Result<Vec<Source>> {
    let logs = root.join(".devctl/logs");
    let recorded: Vec<String> = match state {
        Some(state) => state.services.iter().map(|s| s.name.clone()).collect(),
        None => {
            let mut names: Vec<String> = std::fs::read_dir(&logs)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter_map(|e| {
                            e.file_name()
                                .to_str()?
                                .strip_suffix(".stdout.log")
                                .map(str::to_owned)
                        })
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        }
    };
    let chosen: Vec<String> = if services.is_empty() {
        recorded.clone()
    } else {
        services.to_vec()
    };
    for name in &chosen {
        if !recorded.contains(name) {
            return Err(Usage(format!(
                "no logs for service {name:?} (services: {})",
                recorded.join(", ")
            ))
            .into());
        }
    }
    let mut sources = Vec::new();
    for name in chosen {
        for stream in streams {
            let label = if streams.len() > 1 && *stream == "stderr" {
                format!("{name} (err)")
            } else {
                name.clone()
            };
            sources.push(Source {
                label,
                path: logs.join(log_name(&name, stream)),
            });
        }
    }
    Ok(sources)
}

/// Follows `sources` until `stop` resolves, printing new lines as they come.
pub async fn follow(
    sources: Vec<Source>,
    from_start: bool,
    stop: impl std::future::Future<Output = ()>,
) {
    let printer = Printer::new(&sources);
    let mut tails: Vec<Tail> = sources
        .into_iter()
        .map(|s| Tail::new(s, from_start))
        .collect();
    tokio::pin!(stop);
    loop {
        let mut any = false;
        for tail in &mut tails {
            any |= tail.poll(&printer);
        }
        if printer.closed() {
            return;
        }
        let pause = if any {
            Duration::from_millis(5)
        } else {
            Duration::from_millis(50)
        };
        tokio::select! {
            _ = &mut stop => {
                for tail in &mut tails {
                    tail.poll(&printer);
                    tail.flush(&printer);
                }
                return;
            }
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

struct Tail {
    source: Source,
    file: Option<std::fs::File>,
    inode: u64,
    offset: u64,
    partial: Vec<u8>,
    from_start: bool,
}

impl Tail {
    fn new(source: Source, from_start: bool) -> Tail {
        Tail {
            source,
            file: None,
            inode: 0,
            offset: 0,
            partial: Vec::new(),
            from_start,
        }
    }

    /// Reads what is new; true if anything was.
    fn poll(&mut self, printer: &Printer) -> bool {
        let Ok(meta) = std::fs::metadata(&self.source.path) else {
            return false;
        };
        if self.file.is_none() || meta.ino() != self.inode || meta.len() < self.offset {
            let Ok(file) = std::fs::File::open(&self.source.path) else {
                return false;
            };
            if self.file.is_some() {
                self.flush(printer);
                self.offset = 0;
            } else if !self.from_start {
                self.offset = meta.len();
            }
            self.inode = meta.ino();
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            return false;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return false;
        }
        let mut fresh = Vec::new();
        let Ok(read) = file.take(1 << 20).read_to_end(&mut fresh) else {
            return false;
        };
        if read == 0 {
            return false;
        }
        self.offset += read as u64;
        self.partial.extend_from_slice(&fresh);
        while let Some(at) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=at).collect();
            printer.line(
                &self.source.label,
                String::from_utf8_lossy(&line[..line.len() - 1]).trim_end_matches('\r'),
            );
        }
        true
    }

    fn flush(&mut self, printer: &Printer) {
        if !self.partial.is_empty() {
            printer.line(&self.source.label, &String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
    }
}

/// `devctl logs [SVC]… [-f] [--tail N] [--stderr]`.
pub async fn run(root: &Path, args: &LogsArgs) -> Result<u8> {
    let (services, follow_on, tail, stderr) =
        (&args.services(), args.follow, args.tail, args.stderr);
    let environment = Environment::open(root)?;
    let state = environment.observe().await.state;
    let stream = if stderr { "stderr" } else { "stdout" };
    let sources = sources(root, state.as_ref(), services, &[stream])?;
    if sources.is_empty() {
        outln!("no logs yet in {}", root.join(".devctl/logs").display());
        return Ok(0);
    }
    let printer = Printer::new(&sources);
    for source in &sources {
        let lines = match (tail, std::fs::File::open(&source.path)) {
            (Some(n), Ok(file)) => tail_of(file, n),
            (None, Ok(_)) => std::fs::read_to_string(&source.path)
                .map(|t| t.lines().map(str::to_owned).collect())
                .unwrap_or_default(),
            (_, Err(_)) => Vec::new(),
        };
        for line in lines {
            printer.line(&source.label, &line);
        }
    }
    if follow_on {
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        follow(sources, false, stop).await;
    }
    Ok(0)
}
