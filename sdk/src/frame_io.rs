//! Reading and writing NDJSON lines: the only place frames touch a pipe.
//!
//! [`LineReader`] reads one line at a time with a hard bound on its length,
//! so a peer that sends a huge line cannot make us buffer it. [`spawn_writer`]
//! owns the writing half: every frame goes through one task, whole, one line
//! each, and the buffer is flushed whenever the queue runs dry (so pipelined
//! frames share a write, and a lone frame is never held back).

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

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
    line: Vec<u8>,
    limit: usize,
    /// After an oversized line: skip input up to the next newline.
    discarding: bool,
    /// `line` holds a line already returned (cleared on the next call).
    returned: bool,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, limit: usize) -> Self {
        LineReader {
            inner,
            line: Vec::new(),
            limit,
            discarding: false,
            returned: false,
        }
    }

    /// The next line without its `\n` (and without a trailing `\r`), or
    /// `None` at end of input. An oversized line is reported as soon as it
    /// crosses the limit; the next call resumes after it.
    pub async fn next_line(&mut self) -> Result<Option<&[u8]>, LineError> {
        if self.returned {
            self.line.clear();
            self.returned = false;
        }
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                if self.line.is_empty() || self.discarding {
                    self.discarding = false;
                    return Ok(None);
                }
                self.returned = true;
                return Ok(Some(trim_cr(&self.line)));
            }
            let (chunk, found) = match memchr_newline(buf) {
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
                    self.returned = true;
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

fn memchr_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The sending side of the single frame writer. Each message is one whole
/// line, newline included. The queue is bounded: a producer faster than the
/// pipe waits instead of piling up memory.
pub type FrameSender = mpsc::Sender<String>;

/// Lines queued for the writer before senders wait.
const QUEUE: usize = 4096;

/// Starts the writer task. It ends when every sender is dropped (after a
/// final flush) or when a write fails; its result says which.
pub fn spawn_writer<W>(output: W) -> (FrameSender, tokio::task::JoinHandle<std::io::Result<()>>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
    let handle = tokio::spawn(async move {
        let mut out = tokio::io::BufWriter::with_capacity(64 * 1024, output);
        while let Some(line) = rx.recv().await {
            out.write_all(line.as_bytes()).await?;
            // Drain whatever else is queued, then flush once.
            while let Ok(line) = rx.try_recv() {
                out.write_all(line.as_bytes()).await?;
            }
            out.flush().await?;
        }
        out.flush().await?;
        out.shutdown().await
    });
    (tx, handle)
}

/// Serializes a frame as one line, newline included.
pub fn frame_line(frame: &devctl_contract::protocol::Frame) -> String {
    let mut line = frame.to_line();
    line.push('\n');
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

    #[tokio::test]
    async fn the_writer_writes_every_line_in_order() {
        let (client, mut server) = tokio::io::duplex(64);
        let (tx, handle) = spawn_writer(client);
        let reader = tokio::spawn(async move {
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut server, &mut text)
                .await
                .unwrap();
            text
        });
        for n in 0..10_000 {
            tx.send(format!("{n}\n")).await.unwrap();
        }
        drop(tx);
        let text = reader.await.unwrap();
        handle.await.unwrap().unwrap();
        let expected: String = (0..10_000).map(|n| format!("{n}\n")).collect();
        assert_eq!(text, expected);
    }
}
