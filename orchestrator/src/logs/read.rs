//! Reading logs back: every service's records (and devctl's own), across
//! rotated files, filtered by time, merged in time order, and followed as
//! they grow. Memory stays bounded whatever the size of the files: history
//! is merged as a stream, `tail` reads files from their end, and following
//! reads only what was appended.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::record::{Record, MAX_RECORD};
use super::rotation::files_of;

/// Opens a log file: a regular file only (a FIFO put in a log's place
/// would block the reader forever), never through a symlink.
fn open_log(path: &Path) -> Option<File> {
    devctl_support::fs::open_regular(path).ok().flatten()
}

/// Reads one line into `line` (without its newline), skipping any longer
/// than [`MAX_RECORD`] without holding it; `Ok(false)` at the end.
fn read_record_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<bool> {
    line.clear();
    let mut oversized = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(!line.is_empty() || oversized);
        }
        let (piece, ended) = match memchr::memchr(b'\n', available) {
            Some(at) => (&available[..at], true),
            None => (available, false),
        };
        if !oversized {
            if line.len() + piece.len() > MAX_RECORD {
                oversized = true;
                line.clear();
            } else {
                line.extend_from_slice(piece);
            }
        }
        let used = piece.len() + usize::from(ended);
        reader.consume(used);
        if ended {
            return Ok(true);
        }
    }
}

/// The label and file of devctl's own log (a name no service can have).
pub const DEVCTL_LABEL: &str = "devctl";
pub const DEVCTL_LOG: &str = "@devctl.log";

/// One log: a label and its files, oldest first (the last is current).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub label: String,
    pub paths: Vec<PathBuf>,
}

/// The logs in `dir`: `order` first (the services of the state, in their
/// order), then any other service that has a log, then devctl's own.
pub fn sources(dir: &Path, order: &[String]) -> Vec<Source> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut services: Vec<String> = order.to_vec();
    let mut others: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix(".log"))
        .filter(|n| !n.starts_with('@') && !services.iter().any(|s| s == n))
        .map(str::to_owned)
        .collect();
    others.sort();
    services.extend(others);
    let mut found: Vec<Source> = services
        .into_iter()
        .map(|service| {
            let paths = files_of(&format!("{service}.log"), &names)
                .into_iter()
                .map(|f| dir.join(f))
                .collect();
            Source {
                label: service,
                paths,
            }
        })
        .collect();
    let devctl = files_of(DEVCTL_LOG, &names);
    if !devctl.is_empty() {
        found.push(Source {
            label: DEVCTL_LABEL.to_owned(),
            paths: devctl.into_iter().map(|f| dir.join(f)).collect(),
        });
    }
    found
}

/// Which records to show, by time (timestamps compare as text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<String>,
    pub until: Option<String>,
}

impl Window {
    pub fn contains(&self, record: &Record) -> bool {
        self.since
            .as_ref()
            .is_none_or(|since| &record.time >= since)
            && self
                .until
                .as_ref()
                .is_none_or(|until| &record.time <= until)
    }
}

/// Where the current file of each source ended when following began:
/// history is read up to there, following goes on from there, so no line is
/// shown twice or missed.
#[derive(Debug, Clone)]
pub struct Mark {
    ends: Vec<Option<(u64, u64)>>, // (inode, length) of each source's current file
}

impl Mark {
    pub fn now(sources: &[Source]) -> Mark {
        Mark {
            ends: sources
                .iter()
                .map(|s| {
                    let meta = std::fs::metadata(s.paths.last()?).ok()?;
                    Some((meta.ino(), meta.len()))
                })
                .collect(),
        }
    }
}

/// Calls `emit` for every record of `sources` in `window`, merged in time
/// order (records of one source keep their file order), up to `mark`.
/// With `tail`, only the last `tail` records of each source are shown.
pub fn history(
    sources: &[Source],
    window: &Window,
    tail: Option<usize>,
    mark: &Mark,
    mut emit: impl FnMut(usize, Record) -> bool,
) {
    if let Some(n) = tail {
        // `--tail N` asked for: read as far back as it takes.
        let last = tail_where(sources, n, window.since.as_deref(), mark, None, |r| {
            window.contains(r)
        });
        for (index, record) in last {
            if !emit(index, record) {
                return;
            }
        }
        return;
    }
    let mut readers: Vec<Forward> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| Forward::new(s, mark.ends.get(i).copied().flatten()))
        .collect();
    // (time, source, seq) orders ties by source and keeps each file's order.
    let mut heap = BinaryHeap::new();
    let mut heads: Vec<Option<Record>> = Vec::with_capacity(readers.len());
    for (index, reader) in readers.iter_mut().enumerate() {
        let head = reader.next_in(window);
        if let Some(record) = &head {
            heap.push(Reverse((record.time.clone(), index)));
        }
        heads.push(head);
    }
    while let Some(Reverse((_, index))) = heap.pop() {
        let Some(record) = heads[index].take() else {
            continue;
        };
        if !emit(index, record) {
            return;
        }
        if let Some(next) = readers[index].next_in(window) {
            heap.push(Reverse((next.time.clone(), index)));
            heads[index] = Some(next);
        }
    }
}

/// How far back from the end of a service's logs a look for its last
/// lines goes when it must answer at once (a dashboard, `status`): a filter
/// that matches little, or a file of one endless line, must not make it
/// read a gigabyte.
pub const QUICK_SCAN: u64 = 8 << 20;

/// The last `n` records that `keep` accepts of each source (none older
/// than `since`), up to `mark`, merged in time order: read from the end of
/// the files, so a 1 GB log costs what its last lines cost; at most `scan`
/// bytes of each source are read (all of it when `None`).
pub fn tail_where(
    sources: &[Source],
    n: usize,
    since: Option<&str>,
    mark: &Mark,
    scan: Option<u64>,
    keep: impl Fn(&Record) -> bool,
) -> Vec<(usize, Record)> {
    let mut all: Vec<(String, usize, usize, Record)> = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        let end = mark.ends.get(index).copied().flatten();
        let last = last_records(source, n, end, since, scan, &keep);
        all.extend(
            last.into_iter()
                .enumerate()
                .map(|(seq, r)| (r.time.clone(), index, seq, r)),
        );
    }
    all.sort_by(|a, b| (&a.0, a.1, a.2).cmp(&(&b.0, b.1, b.2)));
    all.into_iter().map(|(_, i, _, r)| (i, r)).collect()
}

/// Records of one source in file order, stopping at the mark.
struct Forward {
    paths: Vec<PathBuf>,
    end: Option<(u64, u64)>,
    current: Option<(BufReader<std::io::Take<File>>, bool)>,
    next: usize,
    line: Vec<u8>,
}

impl Forward {
    fn new(source: &Source, end: Option<(u64, u64)>) -> Forward {
        Forward {
            paths: source.paths.clone(),
            end,
            current: None,
            next: 0,
            line: Vec::new(),
        }
    }

    fn next_in(&mut self, window: &Window) -> Option<Record> {
        // Read on past `until`: a clock stepped back writes earlier times
        // after later ones, and those lines are in the window too.
        loop {
            let record = self.next_record()?;
            if window.contains(&record) {
                return Some(record);
            }
        }
    }

    fn next_record(&mut self) -> Option<Record> {
        loop {
            if self.current.is_none() {
                let path = self.paths.get(self.next)?;
                let is_last = self.next + 1 == self.paths.len();
                self.next += 1;
                let Some(file) = open_log(path) else { continue };
                let limit = match (is_last, self.end) {
                    (true, Some((inode, len))) if file.metadata().ok()?.ino() == inode => len,
                    _ => u64::MAX,
                };
                self.current = Some((
                    BufReader::with_capacity(64 * 1024, file.take(limit)),
                    is_last,
                ));
            }
            let (reader, _) = self.current.as_mut()?;
            match read_record_line(reader, &mut self.line) {
                Ok(false) | Err(_) => self.current = None,
                Ok(true) => {
                    if let Some(record) = Record::parse(&self.line) {
                        return Some(record);
                    }
                }
            }
        }
    }
}

/// The last `n` texts a service wrote to `stream` in its current run, from
/// its log in `dir`.
pub fn last_lines(dir: &Path, service: &str, stream: super::Stream, n: usize) -> Vec<String> {
    let source = sources(dir, &[service.to_owned()])
        .into_iter()
        .find(|s| s.label == service);
    let Some(mut source) = source else {
        return Vec::new();
    };
    // Only the current file: each run starts a new one, and an earlier
    // run's error must not be shown as this run's.
    source.paths = source.paths.split_off(source.paths.len().saturating_sub(1));
    last_records(&source, n, None, None, Some(QUICK_SCAN), |r| {
        r.stream == stream
    })
    .into_iter()
    .map(|r| String::from_utf8_lossy(&r.text).into_owned())
    .collect()
}

/// The last `n` records of a source that `keep` accepts, read from the end
/// of its files (a 1 GB log costs what its last lines cost); reading stops
/// at records older than `since`.
fn last_records(
    source: &Source,
    n: usize,
    end: Option<(u64, u64)>,
    since: Option<&str>,
    scan: Option<u64>,
    keep: impl Fn(&Record) -> bool,
) -> Vec<Record> {
    let mut found: Vec<Record> = Vec::new();
    if n == 0 {
        return found;
    }
    let mut budget = scan.unwrap_or(u64::MAX);
    'files: for (position, path) in source.paths.iter().enumerate().rev() {
        let Some(mut file) = open_log(path) else {
            continue;
        };
        let Ok(meta) = file.metadata() else { continue };
        let is_last = position + 1 == source.paths.len();
        let mut pos = match (is_last, end) {
            (true, Some((inode, len))) if meta.ino() == inode => len.min(meta.len()),
            _ => meta.len(),
        };
        // The start of a line that began in an earlier block; dropped
        // (and its first piece skipped) once it passes MAX_RECORD.
        let mut tail: Vec<u8> = Vec::new();
        let mut oversized = false;
        while pos > 0 && found.len() < n {
            if budget == 0 {
                break 'files;
            }
            let step = pos.min(64 * 1024).min(budget);
            budget -= step;
            pos -= step;
            let mut block = vec![0u8; step as usize];
            if file.seek(SeekFrom::Start(pos)).is_err() || file.read_exact(&mut block).is_err() {
                break;
            }
            block.extend_from_slice(&tail);
            // The first line of the block may be cut: keep it for the next.
            let cut = if pos > 0 {
                memchr::memchr(b'\n', &block).map_or(block.len(), |i| i + 1)
            } else {
                0
            };
            tail = block[..cut].to_vec();
            let mut lines = block[cut..].split(|b| *b == b'\n').rev();
            if std::mem::take(&mut oversized) {
                // The start of the oversized line: not a record.
                lines.next();
            }
            if tail.len() > MAX_RECORD {
                tail.clear();
                oversized = true;
            }
            for line in lines {
                if let Some(record) = Record::parse(line) {
                    if since.is_some_and(|s| record.time.as_str() < s) {
                        // Everything before is older still.
                        break 'files;
                    }
                    if keep(&record) {
                        found.push(record);
                        if found.len() == n {
                            break;
                        }
                    }
                }
            }
        }
        if found.len() == n {
            break;
        }
    }
    found.reverse();
    found
}

/// Follows sources as they grow (and rotate): each [`Follower::poll`]
/// returns what was appended since, in time order.
pub struct Follower {
    tails: Vec<Tail>,
}

struct Tail {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    offset: u64,
    /// The start of a line whose end has not been appended yet.
    partial: Vec<u8>,
    /// The line being appended passed MAX_RECORD: skip to its end.
    oversized: bool,
}

impl Follower {
    /// Starts at `mark` (where history stopped).
    pub fn new(sources: &[Source], mark: &Mark) -> Follower {
        Follower {
            tails: sources
                .iter()
                .enumerate()
                .map(|(i, source)| {
                    let path = source
                        .paths
                        .last()
                        .cloned()
                        .unwrap_or_else(|| PathBuf::from("/nonexistent"));
                    let (inode, offset) = mark.ends.get(i).copied().flatten().unwrap_or((0, 0));
                    Tail {
                        file: open_log(&path)
                            .filter(|f| f.metadata().map(|m| m.ino() == inode).unwrap_or(false)),
                        path,
                        inode,
                        offset,
                        partial: Vec::new(),
                        oversized: false,
                    }
                })
                .collect(),
        }
    }

    /// Follows the current file of a source that had none when it began
    /// (`<svc>.log` for a service started later), as the next index;
    /// `false` when it was followed already (or has no file).
    pub fn watch(&mut self, source: &Source) -> bool {
        let Some(path) = source.paths.last() else {
            return false;
        };
        if self.tails.iter().any(|t| &t.path == path) {
            return false;
        }
        self.tails.push(Tail {
            path: path.clone(),
            file: None,
            inode: 0,
            offset: 0,
            partial: Vec::new(),
            oversized: false,
        });
        true
    }

    /// What was appended since the last poll: (source index, record), in
    /// time order.
    pub fn poll(&mut self) -> Vec<(usize, Record)> {
        let mut fresh = Vec::new();
        for (index, tail) in self.tails.iter_mut().enumerate() {
            for record in tail.read_new() {
                fresh.push((index, record));
            }
        }
        fresh.sort_by(|a, b| a.1.time.cmp(&b.1.time));
        fresh
    }
}

impl Tail {
    fn read_new(&mut self) -> Vec<Record> {
        let mut records = Vec::new();
        let meta = std::fs::metadata(&self.path).ok();
        let replaced = meta.as_ref().is_some_and(|m| m.ino() != self.inode);
        // Finish the file being read first (it may have been rotated away,
        // still open here), then move to the new one.
        if let Some(file) = self.file.as_mut() {
            records.extend(read_appended(
                file,
                &mut self.offset,
                &mut self.partial,
                &mut self.oversized,
            ));
        }
        if replaced || self.file.is_none() {
            if let (Some(meta), Some(file)) = (meta, open_log(&self.path)) {
                self.file = Some(file);
                self.inode = meta.ino();
                self.offset = 0;
                self.partial.clear();
                self.oversized = false;
                if let Some(file) = self.file.as_mut() {
                    records.extend(read_appended(
                        file,
                        &mut self.offset,
                        &mut self.partial,
                        &mut self.oversized,
                    ));
                }
            }
        }
        records
    }
}

fn read_appended(
    file: &mut File,
    offset: &mut u64,
    partial: &mut Vec<u8>,
    oversized: &mut bool,
) -> Vec<Record> {
    let mut records = Vec::new();
    if file.seek(SeekFrom::Start(*offset)).is_err() {
        return records;
    }
    let mut fresh = Vec::new();
    let Ok(read) = file.take(8 << 20).read_to_end(&mut fresh) else {
        return records;
    };
    *offset += read as u64;
    let mut fresh = &fresh[..];
    if *oversized {
        match memchr::memchr(b'\n', fresh) {
            Some(end) => {
                fresh = &fresh[end + 1..];
                *oversized = false;
            }
            None => return records,
        }
    }
    partial.extend_from_slice(fresh);
    let complete = memchr::memrchr(b'\n', partial).map_or(0, |end| end + 1);
    for line in partial[..complete].split(|b| *b == b'\n') {
        if line.len() <= MAX_RECORD {
            if let Some(record) = Record::parse(line) {
                records.push(record);
            }
        }
    }
    partial.drain(..complete);
    if partial.len() > MAX_RECORD {
        partial.clear();
        *oversized = true;
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::{push, Stream};

    fn write(path: &Path, records: &[(&str, &str)]) {
        let mut out = Vec::new();
        for (time, text) in records {
            push(
                &mut out,
                time.as_bytes(),
                Stream::Stdout,
                false,
                text.as_bytes(),
            );
        }
        std::fs::write(path, out).unwrap();
    }

    fn t(second: u32) -> String {
        format!("2026-11-23T10:00:{second:02}.000000Z")
    }

    #[test]
    fn services_merge_in_time_order_across_rotations_with_tail_and_window() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("api.log.1"),
            &[(&t(1), "a1"), (&t(4), "a4")],
        );
        write(&dir.path().join("api.log"), &[(&t(6), "a6")]);
        write(
            &dir.path().join("web.log"),
            &[(&t(2), "w2"), (&t(5), "w5"), (&t(7), "w7")],
        );
        write(&dir.path().join("@devctl.log"), &[(&t(3), "plan 2")]);
        let sources = sources(dir.path(), &["web".into(), "api".into()]);
        let labels: Vec<&str> = sources.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["web", "api", "devctl"]);
        let mark = Mark::now(&sources);
        let collect = |window: &Window, tail: Option<usize>| {
            let mut shown = Vec::new();
            history(&sources, window, tail, &mark, |_, r| {
                shown.push(String::from_utf8(r.text).unwrap());
                true
            });
            shown
        };
        assert_eq!(
            collect(&Window::default(), None),
            ["a1", "w2", "plan 2", "a4", "w5", "a6", "w7"]
        );
        assert_eq!(collect(&Window::default(), Some(1)), ["plan 2", "a6", "w7"]);
        assert_eq!(
            collect(&Window::default(), Some(2)),
            ["plan 2", "a4", "w5", "a6", "w7"]
        );
        let window = Window {
            since: Some(t(3)),
            until: Some(t(5)),
        };
        assert_eq!(collect(&window, None), ["plan 2", "a4", "w5"]);
        assert_eq!(collect(&window, Some(1)), ["plan 2", "a4", "w5"]);
    }

    #[test]
    fn following_sees_appends_and_rotations_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.log");
        write(&path, &[(&t(1), "old")]);
        let sources = sources(dir.path(), &[]);
        let mark = Mark::now(&sources);
        let mut follower = Follower::new(&sources, &mark);
        assert!(follower.poll().is_empty(), "history is not repeated");
        let mut more = std::fs::read(&path).unwrap();
        push(&mut more, t(2).as_bytes(), Stream::Stdout, false, b"new");
        more.extend_from_slice(b"2026-11-23T10:00:03.000000Z o half");
        std::fs::write(&path, &more).unwrap_or(());
        // (rewriting keeps the inode; the file grew)
        let texts = |v: Vec<(usize, Record)>| -> Vec<String> {
            v.into_iter()
                .map(|(_, r)| String::from_utf8(r.text).unwrap())
                .collect()
        };
        assert_eq!(texts(follower.poll()), ["new"]);
        std::fs::rename(&path, dir.path().join("api.log.1")).unwrap();
        write(&path, &[(&t(4), "after rotation")]);
        assert_eq!(texts(follower.poll()), ["after rotation"]);
    }

    #[test]
    fn a_fifo_or_a_huge_stray_line_in_place_of_a_log_costs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&dir.path().join("pipe.log"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        // Records around 40 MB with no newline: read in one pass, in
        // bounded memory, and the records on both sides are kept.
        let mut bytes = Vec::new();
        push(
            &mut bytes,
            t(1).as_bytes(),
            Stream::Stdout,
            false,
            b"before",
        );
        bytes.extend(std::iter::repeat_n(b'z', 40 << 20));
        bytes.push(b'\n');
        push(&mut bytes, t(2).as_bytes(), Stream::Stdout, false, b"after");
        std::fs::write(dir.path().join("big.log"), &bytes).unwrap();
        let sources = sources(dir.path(), &[]);
        let mark = Mark::now(&sources);
        let texts = |tail: Option<usize>| {
            let mut shown = Vec::new();
            history(&sources, &Window::default(), tail, &mark, |_, r| {
                shown.push(String::from_utf8(r.text).unwrap());
                true
            });
            shown
        };
        assert_eq!(texts(None), ["before", "after"]);
        assert_eq!(texts(Some(5)), ["before", "after"]);

        // Following: a huge line appended is skipped, what follows it kept.
        let mut follower = Follower::new(&sources, &Mark::now(&sources));
        let mut more = bytes.clone();
        more.extend(std::iter::repeat_n(b'y', 20 << 20));
        std::fs::write(dir.path().join("big.log"), &more).unwrap();
        assert!(follower.poll().is_empty());
        more.push(b'\n');
        push(&mut more, t(3).as_bytes(), Stream::Stdout, false, b"later");
        std::fs::write(dir.path().join("big.log"), &more).unwrap();
        let mut later = Vec::new();
        for _ in 0..4 {
            later.extend(follower.poll().into_iter().map(|(_, r)| r.text));
        }
        assert_eq!(later, [b"later".to_vec()]);
    }

    #[test]
    fn the_stderr_tail_of_a_run_is_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut older = Vec::new();
        push(
            &mut older,
            t(1).as_bytes(),
            Stream::Stderr,
            false,
            b"old error",
        );
        std::fs::write(dir.path().join("api.log.1"), older).unwrap();
        let mut current = Vec::new();
        push(
            &mut current,
            t(2).as_bytes(),
            Stream::Stdout,
            false,
            b"hello",
        );
        push(
            &mut current,
            t(3).as_bytes(),
            Stream::Stderr,
            false,
            b"new error",
        );
        std::fs::write(dir.path().join("api.log"), current).unwrap();
        assert_eq!(
            last_lines(dir.path(), "api", Stream::Stderr, 5),
            ["new error"]
        );
        std::fs::write(dir.path().join("api.log"), b"").unwrap();
        assert!(last_lines(dir.path(), "api", Stream::Stderr, 5).is_empty());
    }
}
