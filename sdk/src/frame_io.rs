//! Reading and writing NDJSON lines: the only place frames touch a pipe.
//!
//! [`LineReader`] reads one line at a time with a hard bound on its length,
//! so a peer that sends a huge line cannot make us buffer it. [`Writer`]
//! owns the writing half: every frame goes out whole, one line each, in the
//! order it was handed over.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite};
use tokio::sync::{mpsc, Notify, Semaphore};

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("a line exceeded {limit} bytes")]
    TooLarge { limit: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads `\n`-terminated lines of at most `limit` bytes.
///
/// [`LineReader::next_line`] is cancel-safe: a read cut short (a timeout)
/// keeps the part of the line already read, and the next call goes on
/// from there.
pub struct LineReader<R> {
    inner: R,
    /// A line that arrived in pieces, gathered here.
    line: Vec<u8>,
    limit: usize,
    /// After an oversized line: skip input up to the next newline.
    discarding: bool,
    /// Where the line returned last is, to let go of on the next call.
    returned: Returned,
}

enum Returned {
    Nothing,
    /// In `line`.
    Gathered,
    /// Still in `inner`'s buffer: this many bytes, newline included.
    InBuffer(usize),
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, limit: usize) -> Self {
        LineReader {
            inner,
            line: Vec::new(),
            limit,
            discarding: false,
            returned: Returned::Nothing,
        }
    }

    /// The next line without its `\n` (and without a trailing `\r`), or
    /// `None` at end of input. An oversized line is reported as soon as it
    /// crosses the limit; the next call resumes after it.
    pub async fn next_line(&mut self) -> Result<Option<&[u8]>, LineError> {
        match std::mem::replace(&mut self.returned, Returned::Nothing) {
            Returned::Nothing => {}
            Returned::Gathered => self.line.clear(),
            Returned::InBuffer(length) => self.inner.consume(length),
        }
        // The usual case: a whole line is buffered, returned without a copy.
        if self.line.is_empty() && !self.discarding {
            let buf = self.inner.fill_buf().await?;
            if let Some(at) = memchr::memchr(b'\n', buf).filter(|&at| at <= self.limit) {
                self.returned = Returned::InBuffer(at + 1);
                // A buffer that is not empty is handed back as it is.
                let buf = self.inner.fill_buf().await?;
                return Ok(Some(trim_cr(&buf[..at])));
            }
        }
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                if self.line.is_empty() || self.discarding {
                    self.discarding = false;
                    return Ok(None);
                }
                self.returned = Returned::Gathered;
                return Ok(Some(trim_cr(&self.line)));
            }
            let (chunk, found) = match memchr::memchr(b'\n', buf) {
                Some(at) => (&buf[..at], Some(at)),
                None => (buf, None),
            };
            if self.discarding {
                let consumed = found.map_or(buf.len(), |at| at + 1);
                self.inner.consume(consumed);
                if found.is_some() {
                    self.discarding = false;
                }
                continue;
            }
            if self.line.len() + chunk.len() > self.limit {
                let consumed = found.map_or(buf.len(), |at| at + 1);
                self.discarding = found.is_none();
                self.inner.consume(consumed);
                self.line.clear();
                return Err(LineError::TooLarge { limit: self.limit });
            }
            self.line.extend_from_slice(chunk);
            match found {
                Some(at) => {
                    self.inner.consume(at + 1);
                    self.returned = Returned::Gathered;
                    return Ok(Some(trim_cr(&self.line)));
                }
                None => {
                    let len = buf.len();
                    self.inner.consume(len);
                }
            }
        }
    }
}

impl<R: tokio::io::AsyncRead> LineReader<tokio::io::BufReader<R>> {
    /// Whether a whole line is already buffered, so the next
    /// [`LineReader::next_line`] returns without waiting for input.
    pub fn has_buffered_line(&self) -> bool {
        let buffered = self.inner.buffer();
        // Past the line returned last, if it is still in the buffer.
        let unread = match self.returned {
            Returned::InBuffer(length) => buffered.get(length..).unwrap_or_default(),
            _ => buffered,
        };
        memchr::memchr(b'\n', unread).is_some()
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A queue into the single frame writer. Each message is one or more whole
/// lines, newlines included. The queue is bounded, in messages and in bytes:
/// a producer faster than the pipe waits instead of piling up memory.
#[derive(Clone)]
pub struct FrameSender {
    queue: mpsc::Sender<Vec<u8>>,
    /// Bytes that may still be queued.
    credit: Arc<Semaphore>,
}

impl FrameSender {
    /// Queues `lines`, waiting while the queue is full.
    pub async fn send(&self, lines: Vec<u8>) -> Result<(), WriterStopped> {
        let permit = self
            .credit
            .acquire_many(cost(&lines))
            .await
            .map_err(|_| WriterStopped)?;
        self.queue.send(lines).await.map_err(|_| WriterStopped)?;
        // Given back by the writer when it takes the lines.
        permit.forget();
        Ok(())
    }
}

/// The credit a message takes (a message larger than the whole credit
/// takes all of it, so it still goes, alone).
fn cost(lines: &[u8]) -> u32 {
    u32::try_from(lines.len().min(QUEUE_BYTES)).unwrap_or(u32::MAX)
}

/// Messages queued for the writer before senders wait…
const QUEUE: usize = 4096;
/// …and bytes.
const QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// [`Writer::push`] encodes straight into the pending bytes while fewer than
/// this are waiting (a burst of requests from many callers at once fits),
/// and queues beyond it (so the queue's bound is what callers feel).
const DIRECT_LIMIT: usize = 1024 * 1024;
/// The writer takes from its queue until this much is pending, then writes:
/// about what a pipe holds, so the reader can start on the first part while
/// the rest is collected (and the queue's bound is what producers feel).
const WRITE_CHUNK: usize = 64 * 1024;

/// The single frame writer: one pipe, written whole line by whole line.
///
/// Frames reach it two ways. [`FrameSender`]s queue them for the writer task,
/// which writes whatever is queued in one go and flushes when the queue runs
/// dry (so pipelined frames share a write, and a lone frame is never held
/// back). [`Writer::send`] writes at once from the calling task when the
/// pipe is idle, which spares a lone answer the wake-up of another task; when
/// the pipe is busy it queues like everyone else.
pub struct Writer {
    shared: Arc<WriterShared>,
    queue: FrameSender,
}

struct WriterShared {
    state: Mutex<WriterState>,
    credit: Arc<Semaphore>,
    /// Tells the writer task that bytes are pending or that it should stop.
    wake: Notify,
}

struct WriterState {
    sink: Pin<Box<dyn AsyncWrite + Send>>,
    /// Accepted, not yet written: `pending[written..]` (so a partial write
    /// does not move the rest).
    pending: Vec<u8>,
    written: usize,
    /// Written, not yet flushed.
    unflushed: bool,
    failed: Option<std::io::Error>,
    closed: bool,
    /// Frames not started are dropped: the queue is not taken from again.
    cut: bool,
    /// The writer task has ended: nothing handed over from now on goes out.
    stopped: bool,
}

/// The writer has stopped (the peer closed its end, or it was closed).
#[derive(Debug, thiserror::Error)]
#[error("the frame writer has stopped")]
pub struct WriterStopped;

impl WriterState {
    /// Writes everything pending, then flushes.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = loop {
            if self.written == self.pending.len() {
                self.pending.clear();
                self.written = 0;
                break Poll::Ready(Ok(()));
            }
            match self
                .sink
                .as_mut()
                .poll_write(cx, &self.pending[self.written..])
            {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.written += n;
                    self.unflushed = true;
                }
                Poll::Ready(Err(err)) => break Poll::Ready(Err(err)),
                Poll::Pending => break Poll::Pending,
            }
        };
        match result {
            Poll::Ready(Ok(())) if self.unflushed => {
                let flushed = self.sink.as_mut().poll_flush(cx);
                if let Poll::Ready(Ok(())) = flushed {
                    self.unflushed = false;
                }
                flushed
            }
            other => other,
        }
    }

    /// Bytes accepted and not yet written.
    fn backlog(&self) -> usize {
        self.pending.len() - self.written
    }
}

impl Writer {
    /// A queue into this writer, for other tasks.
    pub fn sender(&self) -> FrameSender {
        self.queue.clone()
    }

    /// Drops every frame not started yet, so the writer ends as soon as the
    /// frame under way is whole (for a peer that reads too slowly at exit).
    pub fn cut_to_current_frame(&self) {
        let mut state = lock(&self.shared.state);
        let written = state.written;
        let cut = if written == 0 || state.pending.get(written - 1) == Some(&b'\n') {
            written
        } else {
            state.pending[written..]
                .iter()
                .position(|&byte| byte == b'\n')
                .map_or(state.pending.len(), |at| written + at + 1)
        };
        state.pending.truncate(cut);
        state.closed = true;
        state.cut = true;
        drop(state);
        self.shared.wake.notify_one();
    }

    /// Writes `lines` now if the pipe is idle, else queues them.
    pub async fn send(&self, lines: Vec<u8>) {
        let mut lines = Some(lines);
        std::future::poll_fn(|cx| {
            let mut state = lock(&self.shared.state);
            if state.backlog() > 0 || state.closed || state.stopped || state.failed.is_some() {
                return Poll::Ready(());
            }
            if let Some(lines) = lines.take() {
                state.pending.extend_from_slice(&lines);
            }
            match state.drive(cx) {
                Poll::Ready(Ok(())) => {}
                // The writer task goes on (with a waker of its own).
                Poll::Pending => self.shared.wake.notify_one(),
                Poll::Ready(Err(err)) => {
                    state.failed = Some(err);
                    self.shared.wake.notify_one();
                }
            }
            Poll::Ready(())
        })
        .await;
        if let Some(lines) = lines {
            // A closed queue means the writer stopped: the host is gone.
            let _ = self.queue.send(lines).await;
        }
    }

    /// Hands `frame` to the writer task. While little is pending it is
    /// encoded straight into the writer's buffer (no line of its own, no
    /// queue message); otherwise it waits in the queue like everyone else.
    /// Frames pushed together go out in one write.
    pub async fn push(
        &self,
        frame: &devctl_contract::protocol::Frame,
    ) -> Result<(), WriterStopped> {
        {
            let mut state = lock(&self.shared.state);
            if state.stopped || state.closed {
                return Err(WriterStopped);
            }
            if state.backlog() < DIRECT_LIMIT && state.failed.is_none() {
                frame.write_line(&mut state.pending);
                drop(state);
                self.shared.wake.notify_one();
                return Ok(());
            }
        }
        self.queue
            .send(frame_line(frame))
            .await
            .map_err(|_| WriterStopped)
    }

    /// The writer task writes what is queued already, then stops.
    pub fn close(&self) {
        lock(&self.shared.state).closed = true;
        self.shared.wake.notify_one();
    }
}

/// Starts the writer task. It ends when every sender (the [`Writer`] and
/// each [`FrameSender`]) is dropped or [`Writer::close`] is called, after
/// writing what was queued, or when a write fails; its result says which.
pub fn spawn_writer<W>(output: W) -> (Writer, tokio::task::JoinHandle<std::io::Result<()>>)
where
    W: AsyncWrite + Send + 'static,
{
    let (queue, receiver) = mpsc::channel::<Vec<u8>>(QUEUE);
    let credit = Arc::new(Semaphore::new(QUEUE_BYTES));
    let queue = FrameSender {
        queue,
        credit: credit.clone(),
    };
    let shared = Arc::new(WriterShared {
        state: Mutex::new(WriterState {
            sink: Box::pin(output),
            pending: Vec::new(),
            written: 0,
            unflushed: false,
            failed: None,
            closed: false,
            cut: false,
            stopped: false,
        }),
        wake: Notify::new(),
        credit,
    });
    let task = tokio::spawn({
        let shared = shared.clone();
        async move {
            let mut receiver = receiver;
            let result = write_frames(&shared, &mut receiver).await;
            // Before the queue closes, so no frame slips in between.
            lock(&shared.state).stopped = true;
            result
        }
    });
    (Writer { shared, queue }, task)
}

async fn write_frames(
    shared: &WriterShared,
    receiver: &mut mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    loop {
        let senders_gone = tokio::select! {
            biased;
            line = receiver.recv() => match line {
                Some(line) => {
                    shared.take(&mut lock(&shared.state), line);
                    false
                }
                None => true,
            },
            () = shared.wake.notified() => false,
        };
        let stopping = {
            let mut state = lock(&shared.state);
            let stopping = senders_gone || state.closed;
            // Take what else is queued, up to a pipe's worth (all of it
            // when stopping), then write.
            while stopping || state.backlog() < WRITE_CHUNK {
                match receiver.try_recv() {
                    Ok(line) => shared.take(&mut state, line),
                    Err(_) => break,
                }
            }
            stopping
        };
        std::future::poll_fn(|cx| {
            let mut state = lock(&shared.state);
            if let Some(err) = state.failed.take() {
                return Poll::Ready(Err(err));
            }
            state.drive(cx)
        })
        .await?;
        if stopping {
            let mut sink =
                std::future::poll_fn(|cx| lock(&shared.state).sink.as_mut().poll_shutdown(cx));
            return (&mut sink).await;
        }
    }
}

impl WriterShared {
    /// Moves `lines` from the queue into the pending bytes (dropped after a
    /// cut) and gives their credit back to the senders.
    fn take(&self, state: &mut WriterState, lines: Vec<u8>) {
        self.credit.add_permits(cost(&lines) as usize);
        if !state.cut {
            state.pending.extend_from_slice(&lines);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The state is plain data, consistent after any panic.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Serializes a frame as one line, newline included.
pub fn frame_line(frame: &devctl_contract::protocol::Frame) -> Vec<u8> {
    // Most frames fit; fewer reallocations while encoding.
    let mut line = Vec::with_capacity(256);
    frame.write_line(&mut line);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &'static [u8], limit: usize) -> Vec<Result<String, String>> {
        let mut reader = LineReader::new(tokio::io::BufReader::with_capacity(4, input), limit);
        let mut out = Vec::new();
        loop {
            match reader.next_line().await {
                Ok(Some(line)) => out.push(Ok(String::from_utf8_lossy(line).into_owned())),
                Ok(None) => return out,
                Err(err) => out.push(Err(err.to_string())),
            }
        }
    }

    #[tokio::test]
    async fn lines_are_split_across_small_reads_and_crlf_is_trimmed() {
        let got = lines(b"alpha\r\nbeta\n\ngamma", 100).await;
        assert_eq!(
            got,
            vec![
                Ok("alpha".into()),
                Ok("beta".into()),
                Ok("".into()),
                Ok("gamma".into())
            ]
        );
    }

    #[tokio::test]
    async fn whole_buffered_lines_and_lines_in_pieces_read_alike() {
        // One big buffer: lines come straight from it; a small one: gathered.
        for capacity in [4, 64 * 1024] {
            let input: &[u8] = b"first\r\nsecond\ntoo-long-line\nlast";
            let mut reader =
                LineReader::new(tokio::io::BufReader::with_capacity(capacity, input), 8);
            let mut got = Vec::new();
            loop {
                match reader.next_line().await {
                    Ok(Some(line)) => got.push(String::from_utf8_lossy(line).into_owned()),
                    Ok(None) => break,
                    Err(err) => got.push(err.to_string()),
                }
            }
            assert_eq!(
                got,
                ["first", "second", "a line exceeded 8 bytes", "last"],
                "buffer of {capacity} bytes"
            );
        }
    }

    #[tokio::test]
    async fn a_returned_line_does_not_count_as_buffered() {
        let input: &[u8] = b"one\ntwo\nthree";
        let mut reader = LineReader::new(tokio::io::BufReader::new(input), 100);
        assert_eq!(reader.next_line().await.unwrap(), Some(&b"one"[..]));
        assert!(reader.has_buffered_line(), "two is buffered");
        assert_eq!(reader.next_line().await.unwrap(), Some(&b"two"[..]));
        assert!(!reader.has_buffered_line(), "three has no newline yet");
        assert_eq!(reader.next_line().await.unwrap(), Some(&b"three"[..]));
        assert_eq!(reader.next_line().await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_oversized_line_is_reported_and_skipped() {
        let got = lines(b"short\nthis-line-is-too-long\nafter\n", 8).await;
        assert_eq!(
            got,
            vec![
                Ok("short".into()),
                Err("a line exceeded 8 bytes".into()),
                Ok("after".into())
            ]
        );
    }

    #[tokio::test]
    async fn a_read_cut_short_resumes_where_it_stopped() {
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut lines = LineReader::new(tokio::io::BufReader::new(reader), 1024);
        tokio::io::AsyncWriteExt::write_all(&mut writer, b"{\"half\":")
            .await
            .unwrap();
        let cut =
            tokio::time::timeout(std::time::Duration::from_millis(20), lines.next_line()).await;
        assert!(cut.is_err(), "no whole line yet");
        tokio::io::AsyncWriteExt::write_all(&mut writer, b"1}\nnext\n")
            .await
            .unwrap();
        assert_eq!(lines.next_line().await.unwrap(), Some(&b"{\"half\":1}"[..]));
        assert_eq!(lines.next_line().await.unwrap(), Some(&b"next"[..]));
    }

    /// Everything `pipe` delivers until it closes.
    async fn read_all(mut pipe: tokio::io::DuplexStream) -> String {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut text)
            .await
            .unwrap();
        text
    }

    #[tokio::test]
    async fn the_writer_writes_every_line_in_order() {
        let (client, server) = tokio::io::duplex(64);
        let (writer, handle) = spawn_writer(client);
        let tx = writer.sender();
        drop(writer);
        let reader = tokio::spawn(read_all(server));
        for n in 0..10_000 {
            tx.send(format!("{n}\n").into_bytes()).await.unwrap();
        }
        drop(tx);
        let text = reader.await.unwrap();
        handle.await.unwrap().unwrap();
        let expected: String = (0..10_000).map(|n| format!("{n}\n")).collect();
        assert_eq!(text, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn direct_and_queued_frames_all_arrive_whole_through_a_small_pipe() {
        let (client, server) = tokio::io::duplex(64);
        let (writer, handle) = spawn_writer(client);
        let reader = tokio::spawn(read_all(server));
        let queued = writer.sender();
        let producer = tokio::spawn(async move {
            for n in 0..5_000 {
                queued
                    .send(format!("queued {n}\n").into_bytes())
                    .await
                    .unwrap();
            }
        });
        for n in 0..5_000 {
            // A stream's answer must precede its events: what is queued
            // after a direct send returns goes out after it.
            writer.send(format!("direct {n}\n").into_bytes()).await;
            writer
                .sender()
                .send(format!("after {n}\n").into_bytes())
                .await
                .unwrap();
        }
        producer.await.unwrap();
        writer.close();
        handle.await.unwrap().unwrap();
        drop(writer);
        let text = reader.await.unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            15_000,
            "every line arrived, none split or lost"
        );
        let position = |line: String| lines.iter().position(|l| *l == line).unwrap();
        for n in 0..5_000 {
            assert!(position(format!("direct {n}")) < position(format!("after {n}")));
            if n > 0 {
                assert!(position(format!("queued {}", n - 1)) < position(format!("queued {n}")));
            }
        }
    }
}
