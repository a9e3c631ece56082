//! What a plugin wrote to stdout in one session, sorted and counted in
//! bounded memory: whatever and however much a plugin sends (a million
//! events, endless non-frames), the suite keeps counters, a few samples and
//! per-stream tallies for a bounded number of streams, never the lines.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

use devctl_contract::protocol::{decode_frame, Frame, Response};
use serde::Deserialize;

/// Samples kept of each kind of mistake.
const SAMPLES: usize = 3;
/// Streams tallied one by one; events of further stream ids are counted
/// together.
const MAX_STREAMS: usize = 256;

/// A count and the first few examples.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sample {
    pub count: u64,
    pub first: Vec<String>,
}

impl Sample {
    pub fn add(&mut self, example: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.len() < SAMPLES {
            self.first.push(clip(&example(), 100));
        }
    }

    pub fn absorb(&mut self, other: &Sample) {
        self.count += other.count;
        for example in &other.first {
            if self.first.len() < SAMPLES {
                self.first.push(example.clone());
            }
        }
    }
}

/// The tally of one stream id.
#[derive(Debug, Default, Clone)]
pub(crate) struct StreamTally {
    pub events: u64,
    pub ended: Option<Instant>,
    pub after_end: u64,
}

/// One stdout line, classified.
pub(crate) enum Line {
    Blank,
    Response(Box<Response>),
    /// A response whose `request_id` is empty, null or missing.
    Anonymous,
    /// A `"type":"response"` object with a request id that is not a valid
    /// response frame (counted as a non-frame too).
    MalformedResponse {
        id: String,
        reason: String,
    },
    Event,
    /// A handshake or request frame (not for a plugin to send).
    Unexpected,
    NotAFrame,
}

/// Everything seen on stdout after the handshake.
#[derive(Default)]
pub(crate) struct Observed {
    pub non_frames: Sample,
    pub oversized: u64,
    pub unexpected: Sample,
    /// Stream ids that a response named (the streams the plugin started).
    pub started: HashSet<String>,
    pub streams: HashMap<String, StreamTally>,
    /// Events of stream ids beyond [`MAX_STREAMS`].
    pub untallied_events: u64,
}

impl Observed {
    /// Classifies `line` and records what it says about streams and
    /// mistakes. Responses are returned for the session to match.
    pub fn classify(&mut self, line: &str) -> Line {
        if line.trim().is_empty() {
            return Line::Blank;
        }
        // Events are the bulk of any flood: check them without building a
        // frame (the field map alone would cost an allocation per event).
        if let Some(event) = LightEvent::parse(line) {
            self.event(&event.stream_id, event.event == "end");
            return Line::Event;
        }
        match decode_frame(line) {
            Ok(Frame::Response(response)) if response.request_id.is_empty() => Line::Anonymous,
            Ok(Frame::Response(response)) => {
                if let Some(id) = stream_id_of(&response) {
                    self.started.insert(id.to_owned());
                }
                Line::Response(Box::new(response))
            }
            Ok(Frame::Event(event)) => {
                self.event(&event.stream_id, event.is_end());
                Line::Event
            }
            Ok(other) => {
                let kind = other.type_name();
                self.unexpected.add(|| kind.to_owned());
                Line::Unexpected
            }
            Err(_) if is_anonymous_response(line) => Line::Anonymous,
            Err(err) => {
                self.non_frames.add(|| line.to_owned());
                match response_id(line) {
                    Some(id) => Line::MalformedResponse {
                        id,
                        reason: clip(&err.to_string(), 160),
                    },
                    None => Line::NotAFrame,
                }
            }
        }
    }

    fn event(&mut self, stream_id: &str, is_end: bool) {
        let known = self.streams.contains_key(stream_id);
        if !known && self.streams.len() >= MAX_STREAMS {
            self.untallied_events += 1;
            return;
        }
        let tally = self.streams.entry(stream_id.to_owned()).or_default();
        tally.events += 1;
        if tally.ended.is_some() {
            tally.after_end += 1;
        } else if is_end {
            tally.ended = Some(Instant::now());
        }
    }

    /// Events whose stream id no response named: `(count, first ids)`.
    pub fn stray_events(&self) -> Sample {
        let mut strays = Sample::default();
        for (id, tally) in &self.streams {
            if !self.started.contains(id) {
                strays.count += tally.events;
                if strays.first.len() < SAMPLES {
                    strays.first.push(clip(id, 60));
                }
            }
        }
        strays.count += self.untallied_events;
        strays
    }
}

/// The `stream_id` of a successful response, when it carries one: the
/// response of a stream op.
pub(crate) fn stream_id_of(response: &Response) -> Option<&str> {
    response
        .output
        .as_ref()?
        .get("stream_id")?
        .as_str()
        .filter(|id| !id.is_empty() && response.ok)
}

/// An event frame, checked field by field without keeping its payload.
/// `None` for anything that is not a plain well-formed event (the full
/// decoder then decides).
#[derive(Deserialize)]
struct LightEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    stream_id: Cow<'a, str>,
    #[serde(borrow)]
    event: Cow<'a, str>,
    // Read only to check their types, as decoding an `Event` would.
    #[serde(default, borrow, rename = "level")]
    _level: Option<Cow<'a, str>>,
    #[serde(default, borrow, rename = "message")]
    _message: Option<Cow<'a, str>>,
    #[serde(default, rename = "ok")]
    _ok: Option<bool>,
}

impl<'a> LightEvent<'a> {
    fn parse(line: &'a str) -> Option<LightEvent<'a>> {
        // `fields` must be an object of values: the full decoder judges it.
        if line.contains("\"fields\"") {
            return None;
        }
        let event: LightEvent = serde_json::from_str(line).ok()?;
        (event.kind == "event").then_some(event)
    }
}

/// The request id of a `"type":"response"` object, if it names one.
fn response_id(line: &str) -> Option<String> {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_str(line) else {
        // Not JSON at all (a `NaN`, a response printed over several
        // lines): the id, if the line names one, still says which request
        // this was meant to answer.
        return id_in_text(line);
    };
    if object.get("type").and_then(|t| t.as_str()) != Some("response") {
        return None;
    }
    object
        .get("request_id")
        .and_then(|id| id.as_str())
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// The string after `"request_id":` in a line that is not JSON.
fn id_in_text(line: &str) -> Option<String> {
    let at = line.find("\"request_id\"")? + "\"request_id\"".len();
    let rest = line[at..].trim_start().strip_prefix(':')?.trim_start();
    let id: String = serde_json::Deserializer::from_str(rest)
        .into_iter::<String>()
        .next()?
        .ok()?;
    (!id.is_empty()).then_some(id)
}

/// A JSON object with `"type": "response"` whose request id is missing,
/// null or empty: an answer to a request that had no id.
fn is_anonymous_response(line: &str) -> bool {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_str(line) else {
        return false;
    };
    object.get("type").and_then(|t| t.as_str()) == Some("response")
        && match object.get("request_id") {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::String(id)) => id.is_empty(),
            Some(_) => false,
        }
}

/// Text from a plugin, made fit for one line of a report: control
/// characters (newlines included) become spaces, runs of spaces one, and
/// at most `max` characters are kept.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let mut flat = String::with_capacity(text.len().min(max * 4));
    let mut kept = 0;
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && flat.ends_with(' ') {
            continue;
        }
        if kept == max {
            flat.push('…');
            return flat;
        }
        flat.push(c);
        kept += 1;
    }
    flat
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_sorted_and_streams_tallied() {
        let mut seen = Observed::default();
        assert!(matches!(seen.classify("  "), Line::Blank));
        assert!(matches!(
            seen.classify(
                r#"{"type":"response","request_id":"a","ok":true,"output":{"stream_id":"s"}}"#
            ),
            Line::Response(_)
        ));
        assert!(matches!(
            seen.classify(r#"{"type":"event","stream_id":"s","event":"tick"}"#),
            Line::Event
        ));
        assert!(matches!(
            seen.classify(r#"{"type":"event","stream_id":"s","event":"t","fields":{"n":1}}"#),
            Line::Event
        ));
        seen.classify(r#"{"type":"event","stream_id":"s","event":"end","ok":true}"#);
        seen.classify(r#"{"type":"event","stream_id":"s","event":"late"}"#);
        seen.classify(r#"{"type":"event","stream_id":"nobody","event":"x"}"#);
        assert!(matches!(
            seen.classify(r#"{"type":"response","ok":true}"#),
            Line::Anonymous
        ));
        assert!(matches!(
            seen.classify(r#"{"type":"response","request_id":"","ok":false}"#),
            Line::Anonymous
        ));
        assert!(matches!(seen.classify("hello"), Line::NotAFrame));
        assert!(matches!(
            seen.classify(r#"{"type":"event","stream_id":"s","event":"e","fields":[1]}"#),
            Line::NotAFrame
        ));
        assert!(matches!(
            seen.classify(r#"{"type":"request","request_id":"x","op":"y"}"#),
            Line::Unexpected
        ));
        let tally = &seen.streams["s"];
        assert_eq!((tally.events, tally.after_end), (4, 1));
        assert!(tally.ended.is_some());
        let strays = seen.stray_events();
        assert_eq!(
            (strays.count, strays.first.as_slice()),
            (1, &["nobody".to_owned()][..])
        );
        assert_eq!(seen.non_frames.count, 2);
    }

    #[test]
    fn plugin_text_is_made_fit_for_one_line() {
        assert_eq!(clip("a\n  fix:\tb\r\n", 100), "a fix: b ");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("abc", 3), "abc");
    }

    #[test]
    fn memory_stays_bounded_whatever_the_plugin_sends() {
        let mut seen = Observed::default();
        for n in 0..10_000 {
            seen.classify(&format!(
                r#"{{"type":"event","stream_id":"s{n}","event":"x"}}"#
            ));
            seen.classify(&format!("noise {n}"));
        }
        assert_eq!(seen.streams.len(), MAX_STREAMS);
        assert_eq!(seen.stray_events().count, 10_000);
        assert_eq!(seen.non_frames.first.len(), SAMPLES);
        assert_eq!(seen.non_frames.count, 10_000);
    }
}
