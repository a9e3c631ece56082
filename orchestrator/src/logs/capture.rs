//! Capturing a service's output with time, without slowing it down.
//!
//! Each service's stdout and stderr are pipes. A reader thread per pipe
//! reads big blocks, stamps every line of a block with the time it was read
//! (one clock read and one formatting per block), and hands the records to
//! the service's writer thread, which appends them to `<svc>.log` through a
//! large buffer and rotates the file by size. The supervisor's event loop is
//! never in this path.
//!
//! The pipe is the only buffer a service waits on. If the disk is slower
//! than a service writes for long enough that [`QUEUE_LIMIT`] of records are
//! waiting, the reader keeps draining the pipe and drops what it reads
//! (counting it), so the service is never blocked by the disk; once the
//! writer catches up, a `d` record says how many lines and bytes were
//! dropped. A slow `devctl logs` reader never matters: it reads the files.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use devctl_support::fs::PrivateDir;

use super::record::{push, timestamp, Stream, MAX_LINE};
use super::rotation::{rotate, LogLimits};

/// Records waiting for the disk, per service, before the readers drop.
pub const QUEUE_LIMIT: usize = 8 << 20;
/// A line without its end is written after this much quiet.
pub const PARTIAL_AFTER: Duration = Duration::from_millis(200);
/// How much a reader asks for at once.
const READ_SIZE: usize = 64 * 1024;
/// The writer's buffer.
const WRITE_BUFFER: usize = 256 * 1024;

/// One service's log: its writer, and the pipes its processes write to.
pub struct Capture {
    tx: mpsc::Sender<Vec<u8>>,
    /// Bytes handed to the writer and not yet flushed to the file.
    queued: Arc<AtomicUsize>,
    /// Pipes whose reader has not seen the end yet.
    open_pipes: Arc<AtomicUsize>,
}

impl Capture {
    /// Opens `<name>.log` in `dir` for a new run: the previous run's file is
    /// rotated away first. The writer thread ends once the `Capture` and
    /// every pipe it handed out are closed.
    pub fn open(dir: Arc<PrivateDir>, name: &str, limits: LogLimits) -> std::io::Result<Capture> {
        let file_name = format!("{name}.log");
        if dir
            .len(&file_name)
            .map_err(std::io::Error::other)?
            .is_some()
        {
            rotate(&dir, &file_name, limits.files).map_err(std::io::Error::other)?;
        }
        let file = dir.open_append(&file_name).map_err(std::io::Error::other)?;
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            dir,
            name: file_name,
            limits,
            written: file.metadata().map(|m| m.len()).unwrap_or(0),
            out: std::io::BufWriter::with_capacity(WRITE_BUFFER, file),
            queued: queued.clone(),
        };
        std::thread::Builder::new()
            .name(format!("log {name}"))
            .spawn(move || writer.run(rx))?;
        Ok(Capture {
            tx,
            queued,
            open_pipes: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Waits (at most `limit`) until every pipe has ended and everything
    /// read is in the file: a process that exited has had all it wrote
    /// logged (unless a descendant still holds its pipe open).
    pub async fn settled(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.open_pipes.load(Ordering::Acquire) > 0 || self.queued.load(Ordering::Acquire) > 0
        {
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A pipe for one stream of a process: give the write end to the child
    /// (`Stdio::from`); a reader thread drains the other end until every
    /// writer has closed it.
    pub fn pipe(&self, stream: Stream) -> std::io::Result<OwnedFd> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        self.open_pipes.fetch_add(1, Ordering::AcqRel);
        let reader = Reader {
            open: self.open_pipes.clone(),
            pipe: File::from(read),
            stream,
            tx: self.tx.clone(),
            queued: self.queued.clone(),
            limit: QUEUE_LIMIT,
            dropped_lines: 0,
            dropped_bytes: 0,
        };
        std::thread::Builder::new()
            .name(format!("log {}", stream.name()))
            .spawn(move || reader.run())?;
        Ok(write)
    }

    /// A line of devctl's own about the service (never dropped).
    pub fn note(&self, text: &str) {
        let mut record = Vec::with_capacity(text.len() + 32);
        push(
            &mut record,
            timestamp(SystemTime::now()).as_bytes(),
            Stream::Devctl,
            false,
            text.as_bytes(),
        );
        self.queued.fetch_add(record.len(), Ordering::AcqRel);
        if self.tx.send(record).is_err() {
            self.queued.store(0, Ordering::Release);
        }
    }
}

struct Reader {
    /// Counts this reader until it has handed over its last records.
    open: Arc<AtomicUsize>,
    pipe: File,
    stream: Stream,
    tx: mpsc::Sender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    /// Queued bytes past which records are dropped ([`QUEUE_LIMIT`]).
    limit: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl Reader {
    fn run(mut self) {
        let mut block = vec![0u8; READ_SIZE];
        // The start of a line whose end has not come yet.
        let mut pending = Pending::default();
        loop {
            if !pending.bytes.is_empty() && !self.readable_within(PARTIAL_AFTER) {
                self.write_partial(&mut pending);
                continue;
            }
            let read = match self.pipe.read(&mut block) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let time = timestamp(SystemTime::now());
            let (records, lines) = records(&time, self.stream, &mut pending, &block[..read]);
            if !records.is_empty() {
                self.hand_over(records, lines);
            }
        }
        if !pending.bytes.is_empty() {
            self.write_partial(&mut pending);
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// Writes a line that has no end yet (quiet for a while, or its stream
    /// ended) as a record of its own.
    fn write_partial(&mut self, pending: &mut Pending) {
        let mut records = Vec::with_capacity(pending.bytes.len() + 32);
        pending.finish(
            &mut records,
            &timestamp(SystemTime::now()),
            self.stream,
            &[],
        );
        self.hand_over(records, 1);
    }

    /// Whether the pipe has data (or its end) within `wait`.
    fn readable_within(&self, wait: Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.pipe.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        !matches!(poll(&mut fds, timeout), Ok(0))
    }

    /// Queues records for the writer, or drops them when the disk is behind.
    /// The note about earlier drops counts against the limit too, so the
    /// queue never holds more than `limit` bytes.
    fn hand_over(&mut self, records: Vec<u8>, lines: u64) {
        let mut batch = Vec::new();
        if self.dropped_lines > 0 {
            let note = format!(
                "dropped {} line(s) ({} bytes) of {}: the disk did not keep up",
                self.dropped_lines,
                self.dropped_bytes,
                self.stream.name()
            );
            batch.reserve(records.len() + note.len() + 32);
            push(
                &mut batch,
                timestamp(SystemTime::now()).as_bytes(),
                Stream::Devctl,
                false,
                note.as_bytes(),
            );
        }
        if self.queued.load(Ordering::Relaxed) + batch.len() + records.len() > self.limit {
            self.dropped_lines += lines;
            self.dropped_bytes += records.len() as u64;
            return;
        }
        let records = if batch.is_empty() {
            records
        } else {
            batch.extend_from_slice(&records);
            batch
        };
        self.dropped_lines = 0;
        self.dropped_bytes = 0;
        self.queued.fetch_add(records.len(), Ordering::AcqRel);
        if self.tx.send(records).is_err() {
            self.queued.store(0, Ordering::Release);
        }
    }
}

/// A line whose end has not been read yet.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Part of this line was already written (it was longer than a record).
    written_part: bool,
}

impl Pending {
    /// Adds bytes of the unfinished line, writing out whole records of
    /// [`MAX_LINE`] as they fill, so no line is ever held whole in memory.
    fn extend(&mut self, out: &mut Vec<u8>, time: &str, stream: Stream, bytes: &[u8]) -> u64 {
        self.bytes.extend_from_slice(bytes);
        let mut records = 0;
        while self.bytes.len() > MAX_LINE {
            let piece: Vec<u8> = self.bytes.drain(..MAX_LINE).collect();
            push(out, time.as_bytes(), stream, self.written_part, &piece);
            self.written_part = true;
            records += 1;
        }
        records
    }

    /// Ends the line with `last` (its final bytes).
    fn finish(&mut self, out: &mut Vec<u8>, time: &str, stream: Stream, last: &[u8]) {
        self.extend(out, time, stream, last);
        let line = strip_cr(&self.bytes);
        push(out, time.as_bytes(), stream, self.written_part, line);
        self.bytes.clear();
        self.written_part = false;
    }
}

/// The records of one block read from a pipe; `pending` carries the
/// unfinished line into the next block. Returns the records and how many
/// lines they hold.
fn records(time: &str, stream: Stream, pending: &mut Pending, block: &[u8]) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(block.len() + block.len() / 16 + 64);
    let mut lines = 0;
    let mut rest = block;
    while let Some(end) = memchr::memchr(b'\n', rest) {
        let line = &rest[..end];
        if pending.bytes.is_empty() && !pending.written_part && line.len() <= MAX_LINE {
            // The common case: a whole line in this block.
            push(&mut out, time.as_bytes(), stream, false, strip_cr(line));
        } else {
            pending.finish(&mut out, time, stream, line);
        }
        lines += 1;
        rest = &rest[end + 1..];
    }
    lines += pending.extend(&mut out, time, stream, rest);
    (out, lines)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

struct Writer {
    dir: Arc<PrivateDir>,
    name: String,
    limits: LogLimits,
    written: u64,
    out: std::io::BufWriter<File>,
    queued: Arc<AtomicUsize>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Vec<u8>>) {
        while let Ok(records) = rx.recv() {
            let mut batch = records.len();
            self.write(&records);
            // Everything already waiting goes out in the same buffer; the
            // file is flushed once nothing is waiting, so readers see lines
            // promptly without a write per line.
            while let Ok(more) = rx.try_recv() {
                batch += more.len();
                self.write(&more);
            }
            let _ = self.out.flush();
            self.queued.fetch_sub(batch, Ordering::AcqRel);
        }
        let _ = self.out.flush();
    }

    /// Writes records, rotating at a record boundary once the file would
    /// pass its limit (a single record bigger than the limit goes whole).
    fn write(&mut self, records: &[u8]) {
        let mut rest = records;
        while !rest.is_empty() {
            let room = usize::try_from(self.limits.bytes.saturating_sub(self.written))
                .unwrap_or(usize::MAX);
            if rest.len() <= room {
                self.append(rest);
                return;
            }
            let fits = memchr::memrchr(b'\n', &rest[..room]).map(|end| end + 1);
            let take = match fits {
                Some(end) => end,
                None if self.written == 0 => {
                    memchr::memchr(b'\n', rest).map_or(rest.len(), |e| e + 1)
                }
                None => 0,
            };
            self.append(&rest[..take]);
            rest = &rest[take..];
            self.rotate();
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.out.write_all(bytes).is_ok() {
            self.written += bytes.len() as u64;
        }
    }

    /// Starts a new file. If rotating fails (the directory went away, a
    /// rename was refused), writing goes on in the same file: a log is worth
    /// more than its limit, and nothing must loop on the failure.
    fn rotate(&mut self) {
        let _ = self.out.flush();
        if rotate(&self.dir, &self.name, self.limits.files).is_ok() {
            if let Ok(file) = self.dir.open_append(&self.name) {
                self.out = std::io::BufWriter::with_capacity(WRITE_BUFFER, file);
            }
        }
        self.written = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::record::Record;

    fn records_of(path: &std::path::Path) -> Vec<Record> {
        std::fs::read(path)
            .unwrap()
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| Record::parse(l).unwrap())
            .collect()
    }

    fn wait_for(path: &std::path::Path, records: usize) -> Vec<Record> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = if path.exists() {
                records_of(path)
            } else {
                Vec::new()
            };
            if found.len() >= records || std::time::Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn run(capture: &Capture, script: &str) {
        let status = std::process::Command::new("sh")
            .args(["-c", script])
            .stdout(std::process::Stdio::from(
                capture.pipe(Stream::Stdout).unwrap(),
            ))
            .stderr(std::process::Stdio::from(
                capture.pipe(Stream::Stderr).unwrap(),
            ))
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn lines_of_both_streams_are_stamped_and_partial_and_long_lines_kept() {
        let dir = tempfile::tempdir().unwrap();
        let logs = Arc::new(PrivateDir::create(dir.path()).unwrap());
        let capture = Capture::open(logs, "svc", LogLimits::default()).unwrap();
        capture.note("started (pid 1)");
        let long = "x".repeat(MAX_LINE * 2 + 10);
        run(
            &capture,
            &format!(
                "echo out; echo err >&2; printf 'crlf\\r\\n'; printf '{long}\\n'; printf 'no end'"
            ),
        );
        let records = wait_for(&dir.path().join("svc.log"), 8);
        let shown: Vec<(Stream, bool, usize)> = records
            .iter()
            .map(|r| (r.stream, r.continued, r.text.len()))
            .collect();
        assert_eq!(records[0].text, b"started (pid 1)");
        assert!(records
            .iter()
            .any(|r| r.stream == Stream::Stderr && r.text == b"err"));
        assert!(records
            .iter()
            .any(|r| r.stream == Stream::Stdout && r.text == b"crlf"));
        assert!(records.iter().any(|r| r.text == b"no end"), "{shown:?}");
        let long_pieces: Vec<&Record> = records
            .iter()
            .filter(|r| r.text.starts_with(b"xx"))
            .collect();
        assert_eq!(long_pieces.len(), 3, "{shown:?}");
        assert!(!long_pieces[0].continued && long_pieces[1].continued && long_pieces[2].continued);
        let total: usize = long_pieces.iter().map(|r| r.text.len()).sum();
        assert_eq!(total, long.len(), "nothing of the long line is lost");
    }

    #[test]
    fn a_disk_that_does_not_keep_up_costs_lines_never_the_service() {
        // No writer drains the queue: the reader must keep reading (the
        // service is never blocked), drop past the limit, and say so once
        // the queue has room again.
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let reader = Reader {
            open: Arc::new(AtomicUsize::new(1)),
            pipe: File::from(read),
            stream: Stream::Stdout,
            tx,
            queued: queued.clone(),
            limit: 256 * 1024,
            dropped_lines: 0,
            dropped_bytes: 0,
        };
        let thread = std::thread::spawn(move || reader.run());
        let mut writer = File::from(write);
        // Far more than a pipe holds: this only finishes if the reader drains.
        for n in 0..60_000 {
            writeln!(writer, "line {n:05} of a flood that nobody writes to disk").unwrap();
        }
        // The writer catches up now; the next line brings the note.
        let kept: Vec<Vec<u8>> = rx.try_iter().collect();
        queued.store(0, Ordering::Release);
        writeln!(writer, "after").unwrap();
        drop(writer);
        thread.join().unwrap();
        let kept_bytes: usize = kept.iter().map(Vec::len).sum();
        assert!(kept_bytes <= 256 * 1024, "bounded: {kept_bytes}");
        let after: Vec<u8> = rx.try_iter().flatten().collect();
        let text = String::from_utf8_lossy(&after);
        assert!(
            text.contains(" d dropped ")
                && text.contains("the disk did not keep up")
                && text.contains(" o after"),
            "{text}"
        );
    }

    #[test]
    fn files_rotate_by_size_and_a_new_run_starts_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let logs = Arc::new(PrivateDir::create(dir.path()).unwrap());
        let limits = LogLimits {
            bytes: 10_000,
            files: 2,
        };
        let capture = Capture::open(logs.clone(), "svc", limits).unwrap();
        run(
            &capture,
            "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done",
        );
        drop(capture);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !records_of(&dir.path().join("svc.log"))
            .iter()
            .any(|r| r.text == b"line-1999")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the last line arrives"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(dir.path().join("svc.log.1").exists());
        assert!(dir.path().join("svc.log.2").exists());
        assert!(
            !dir.path().join("svc.log.3").exists(),
            "at most 2 old files"
        );
        for file in ["svc.log", "svc.log.1", "svc.log.2"] {
            let len = std::fs::metadata(dir.path().join(file)).unwrap().len();
            assert!(len <= 10_000, "{file}: {len} bytes");
        }
        let _again = Capture::open(logs, "svc", limits).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join("svc.log")).unwrap().len(),
            0
        );
        assert!(records_of(&dir.path().join("svc.log.1"))
            .iter()
            .any(|r| r.text == b"line-1999"));
    }
}
