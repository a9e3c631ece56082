//! One log record per line, a format `grep` still reads:
//!
//! ```text
//! 2026-11-23T14:27:38.123456Z o GET /rpc/v1/health 200
//! 2026-11-23T14:27:38.125002Z e Traceback (most recent call last):
//! 2026-11-23T14:27:39.000000Z d exited with exit code 1
//! ```
//!
//! The time (UTC, microseconds, always 27 bytes, so records sort as text)
//! is when the supervisor read the line; the tag is the stream: `o` stdout,
//! `e` stderr, `d` devctl's own lifecycle lines. A line longer than
//! [`MAX_LINE`] is cut into records of that size, each after the first
//! tagged `o+`/`e+` (it continues the previous one). A line that has no end
//! yet (a prompt, a service that died mid-line) is written once it has been
//! quiet for a moment or its stream ends. Everything else is the line's own
//! bytes, as the service wrote them (without the newline).

use std::time::SystemTime;

/// The longest record text; longer lines are cut (and marked).
pub const MAX_LINE: usize = 16 * 1024;
/// Bytes of the timestamp.
pub const TIME_LEN: usize = 27;
/// The longest line a record file can hold (time, tag, text). Readers skip
/// longer lines: devctl never wrote them, and holding one whole would let a
/// stray file cost any amount of memory.
pub const MAX_RECORD: usize = TIME_LEN + 4 + MAX_LINE;

/// Which stream a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
    /// devctl's own lines about the service (started, ready, exited…).
    Devctl,
}

impl Stream {
    pub fn tag(self) -> u8 {
        match self {
            Stream::Stdout => b'o',
            Stream::Stderr => b'e',
            Stream::Devctl => b'd',
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Devctl => "devctl",
        }
    }

    fn from_tag(tag: u8) -> Option<Stream> {
        match tag {
            b'o' => Some(Stream::Stdout),
            b'e' => Some(Stream::Stderr),
            b'd' => Some(Stream::Devctl),
            _ => None,
        }
    }
}

/// `2026-11-23T14:27:38.123456Z`.
pub fn timestamp(at: SystemTime) -> String {
    // Nothing is logged before 1970; the formatter cannot write it either
    // (`--since 500000h` reaches back that far).
    humantime::format_rfc3339_micros(at.max(SystemTime::UNIX_EPOCH)).to_string()
}

/// Appends one record to `out`: timestamp, tag, text, newline.
pub fn push(out: &mut Vec<u8>, time: &[u8], stream: Stream, continued: bool, text: &[u8]) {
    out.extend_from_slice(time);
    out.push(b' ');
    out.push(stream.tag());
    if continued {
        out.push(b'+');
    }
    out.push(b' ');
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The timestamp as written (sorts as text).
    pub time: String,
    pub stream: Stream,
    /// It continues the previous record (a cut line).
    pub continued: bool,
    pub text: Vec<u8>,
}

impl Record {
    /// Parses one line (without its newline); `None` if it is not a record
    /// (a file written by something else, or garbage).
    pub fn parse(line: &[u8]) -> Option<Record> {
        let time = line.get(..TIME_LEN)?;
        if time.get(10) != Some(&b'T') || time.last() != Some(&b'Z') {
            return None;
        }
        let rest = line.get(TIME_LEN..)?;
        let rest = rest.strip_prefix(b" ")?;
        let stream = Stream::from_tag(*rest.first()?)?;
        let (continued, rest) = match rest.get(1) {
            Some(b'+') => (true, &rest[2..]),
            _ => (false, &rest[1..]),
        };
        let text = match rest {
            [] => &[][..],
            [b' ', text @ ..] => text,
            _ => return None,
        };
        Some(Record {
            time: String::from_utf8(time.to_vec()).ok()?,
            stream,
            continued,
            text: text.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_before_1970_is_written_as_the_epoch() {
        let before = SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(3600);
        assert_eq!(timestamp(before), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn records_round_trip_and_sort_as_text() {
        let earlier =
            timestamp(SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_000_001));
        let later =
            timestamp(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000));
        assert_eq!(earlier.len(), TIME_LEN);
        assert_eq!(later.len(), TIME_LEN);
        assert!(earlier < later);
        let mut out = Vec::new();
        push(
            &mut out,
            earlier.as_bytes(),
            Stream::Stderr,
            false,
            b"boom \xff bytes",
        );
        push(&mut out, later.as_bytes(), Stream::Stdout, true, b"");
        let lines: Vec<&[u8]> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let first = Record::parse(lines[0]).unwrap();
        assert_eq!(first.time, earlier);
        assert_eq!(first.stream, Stream::Stderr);
        assert!(!first.continued);
        assert_eq!(first.text, b"boom \xff bytes");
        let second = Record::parse(lines[1]).unwrap();
        assert!(second.continued);
        assert!(second.text.is_empty());
        assert_eq!(Record::parse(b"not a record"), None);
        assert_eq!(Record::parse(b"2026-11-23T14:27:38.123456Z x text"), None);
    }
}
