//! Where the TUI's data comes from — the engine's API, nothing of its own:
//! the environment through [`Environment::observe`] (state file, lock,
//! control socket), logs through [`crate::logs`] (read from the end of the
//! files, then followed as they grow), so a 1 GB log opens as fast as an
//! empty one.

use std::path::{Path, PathBuf};

use crate::environment::Environment;
use crate::logs::read::QUICK_SCAN;
use crate::logs::{sources, tail_where, Follower, Mark, Record, Source, Stream};
use crate::state::now_ms;

use super::app::{LogLine, Snapshot, PANE_LINES};

/// The environment now. (`.devctl/` may have been created since the
/// environment was opened: `u` in a repo never run before.)
pub async fn observe(environment: &mut Environment, root: &Path) -> Snapshot {
    // `.devctl` may have appeared, or been deleted and made anew by an `up`
    // elsewhere: follow the one at the path.
    if environment.dir().is_none_or(|dir| !dir.is_current()) {
        if let Ok(fresh) = Environment::open(root) {
            *environment = fresh;
        }
    }
    let observed = environment.observe().await;
    let alive = observed
        .state
        .iter()
        .flat_map(|s| &s.services)
        .map(|s| s.alive())
        .collect();
    Snapshot {
        supervisor: observed.supervisor,
        state: observed.state,
        alive,
        damaged: observed.damaged,
        orphans: observed.orphans.len(),
        now_ms: now_ms(),
    }
}

/// Some logs, followed: what they gain since they were opened.
pub struct LogFeed {
    dir: PathBuf,
    /// The services (in order) whose logs this follows; empty for "all".
    order: Vec<String>,
    all: bool,
    keep: fn(&Record) -> bool,
    follower: Follower,
    /// The label of each source the follower reads, by its index.
    labels: Vec<String>,
    polls: u32,
}

fn everything(_: &Record) -> bool {
    true
}

fn lifecycle(record: &Record) -> bool {
    record.stream == Stream::Devctl
}

impl LogFeed {
    /// One service's log: its last `n` lines, and a feed of what comes.
    pub fn service(dir: &Path, service: &str, n: usize) -> (LogFeed, Vec<LogLine>) {
        let order = vec![service.to_owned()];
        let chosen: Vec<Source> = sources(dir, &order)
            .into_iter()
            .filter(|s| s.label == service)
            .collect();
        LogFeed::open(dir, order, false, chosen, n, everything)
    }

    /// devctl's lifecycle lines about every service, and its own (re-plans,
    /// failures): the last `n` of each, and a feed of what comes.
    pub fn events(dir: &Path, order: &[String], n: usize) -> (LogFeed, Vec<LogLine>) {
        let all = sources(dir, order);
        LogFeed::open(dir, order.to_vec(), true, all, n, lifecycle)
    }

    fn open(
        dir: &Path,
        order: Vec<String>,
        all: bool,
        chosen: Vec<Source>,
        n: usize,
        keep: fn(&Record) -> bool,
    ) -> (LogFeed, Vec<LogLine>) {
        let mark = Mark::now(&chosen);
        let labels: Vec<String> = chosen.iter().map(|s| s.label.clone()).collect();
        // At once, on the screen's thread: never more than QUICK_SCAN back.
        let lines = tail_where(&chosen, n, None, &mark, Some(QUICK_SCAN), keep)
            .into_iter()
            .map(|(i, r)| LogLine::new(&labels[i], r))
            .collect();
        let feed = LogFeed {
            dir: dir.to_path_buf(),
            order,
            all,
            keep,
            follower: Follower::new(&chosen, &mark),
            labels,
            polls: 0,
        };
        (feed, lines)
    }

    /// What the logs gained since the last poll (a log that appeared since,
    /// like a service started later, is read from its start): at most the
    /// last [`PANE_LINES`], all a view keeps, so a flood costs no more.
    pub fn poll(&mut self) -> Vec<LogLine> {
        self.polls = self.polls.wrapping_add(1);
        if self.polls % 10 == 1 {
            self.find_new_logs();
        }
        let keep = self.keep;
        let mut fresh: Vec<(usize, Record)> = self
            .follower
            .poll()
            .into_iter()
            .filter(|(_, r)| keep(r))
            .collect();
        let flood = fresh.len().saturating_sub(PANE_LINES);
        fresh
            .drain(flood..)
            .map(|(i, r)| {
                let label = self.labels.get(i).map_or("?", String::as_str);
                LogLine::new(label, r)
            })
            .collect()
    }

    fn find_new_logs(&mut self) {
        for source in sources(&self.dir, &self.order) {
            let wanted = self.all || self.order.contains(&source.label);
            if wanted && !source.paths.is_empty() && self.follower.watch(&source) {
                self.labels.push(source.label);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::SystemTime;

    use super::*;
    use crate::logs::record::{push, timestamp};

    fn append(path: &Path, stream: Stream, text: &str) {
        let mut line = Vec::new();
        push(
            &mut line,
            timestamp(SystemTime::now()).as_bytes(),
            stream,
            false,
            text.as_bytes(),
        );
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(&line).unwrap();
    }

    #[test]
    fn a_service_log_is_read_from_its_end_then_followed_even_when_it_appears_late() {
        let dir = tempfile::tempdir().unwrap();
        let web = dir.path().join("web.log");
        for n in 0..50 {
            append(&web, Stream::Stdout, &format!("old {n}"));
        }
        let (mut feed, lines) = LogFeed::service(dir.path(), "web", 3);
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["old 47", "old 48", "old 49"]);
        append(&web, Stream::Stderr, "new");
        let fresh = feed.poll();
        assert_eq!(fresh.len(), 1);
        assert_eq!(
            (fresh[0].stream, fresh[0].text.as_str()),
            (Stream::Stderr, "new")
        );

        // A service whose log does not exist yet: followed once it does.
        let (mut late, lines) = LogFeed::service(dir.path(), "backend", 3);
        assert!(lines.is_empty());
        assert!(late.poll().is_empty());
        append(&dir.path().join("backend.log"), Stream::Stdout, "first");
        let found: Vec<String> = (0..20).flat_map(|_| late.poll()).map(|l| l.text).collect();
        assert_eq!(found, ["first"]);
    }

    #[test]
    fn the_events_feed_keeps_only_lifecycle_lines() {
        let dir = tempfile::tempdir().unwrap();
        let web = dir.path().join("web.log");
        append(&web, Stream::Stdout, "GET /");
        append(&web, Stream::Devctl, "started (pid 1)");
        let (mut feed, lines) = LogFeed::events(dir.path(), &["web".to_owned()], 10);
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0].service.as_str(), lines[0].text.as_str()),
            ("web", "started (pid 1)")
        );
        append(&web, Stream::Stdout, "GET /again");
        append(&web, Stream::Devctl, "stopped (pid 1)");
        let fresh: Vec<String> = feed.poll().into_iter().map(|l| l.text).collect();
        assert_eq!(fresh, ["stopped (pid 1)"]);
    }
}
