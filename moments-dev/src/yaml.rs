//! Reading one YAML file into a [`Layer`], event by event.
//!
//! A parser that first builds a document tree (or a list of every event,
//! as serde's YAML deserializer does) costs several times the file's size;
//! this one streams `saphyr-parser` events straight into the layer's compact
//! form, so memory stays near the size of the keys and values themselves.
//! Scalars are typed the way the backend's YAML library and `yaml_serde`
//! type them (YAML 1.2 core schema: `null`/`~`, `true`/`false`, integers
//! with `0x`/`0o`/`0b`, floats with `.inf`/`.nan`; leading-zero digits stay
//! strings). Lists are stored as compact JSON; maps inside lists are built
//! as JSON values one item at a time.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::rc::Rc;

use devctl_support::yaml::YamlError;
use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span as YamlSpan, Tag};
use serde_json::{Map, Number, Value};

use crate::config::Origin;
use crate::layers::{Entry, Layer, Node, Span, TooLarge};

/// Deeper nesting is refused (the readers of a layer recurse).
const MAX_DEPTH: usize = 128;

/// Aliases may expand a document to at most this many times its events
/// (plus a small allowance), so a "billion laughs" file fails fast.
const REPETITION_FACTOR: u64 = 100;
const REPETITION_ALLOWANCE: u64 = 10_000;

/// Reads YAML from `input` as one layer. The top level must be a map (an
/// empty file is an empty map). The input is decoded as it is parsed, so
/// the file's text is never held whole.
pub fn read_layer(input: impl Read, origin: Origin) -> Result<Layer, YamlError> {
    let mut reader = Reader {
        layer: Layer::new(origin),
        stack: Vec::new(),
        anchors: HashMap::new(),
        events: 0,
        expanded: 0,
        documents: 0,
        at: Marker::new(0, 1, 0),
    };
    let failure = Rc::new(RefCell::new(None));
    let chars = Utf8Chars {
        input: BufReader::with_capacity(CHUNK, input),
        carry: Vec::new(),
        decoded: String::new(),
        next: 0,
        offset: 0,
        failure: failure.clone(),
    };
    let mut parser = Parser::new_from_iter(chars);
    let mut outcome = Ok(());
    while let Some(next) = parser.next_event() {
        outcome = match next {
            Ok((event, span)) => {
                reader.at = span.start;
                reader.event(event, span)
            }
            Err(err) => Err(located(
                err.marker(),
                format!("malformed YAML: {}", err.info()),
            )),
        };
        if outcome.is_err() {
            break;
        }
    }
    // A read error ends the input early: it, not what the parser made of
    // the cut text, is the problem.
    if let Some(problem) = failure.borrow_mut().take() {
        return Err(located(&reader.at, problem));
    }
    outcome.map(|()| reader.layer)
}

/// How much of the file is read at a time.
const CHUNK: usize = 64 * 1024;

/// The characters of a UTF-8 stream, decoded a chunk at a time. The parser
/// wants an iterator of `char`, which cannot fail: a read error or invalid
/// UTF-8 ends the iteration and is left in `failure`.
struct Utf8Chars<R> {
    input: BufReader<R>,
    /// The bytes of a character cut by the end of the last chunk.
    carry: Vec<u8>,
    decoded: String,
    next: usize,
    /// Bytes decoded before `decoded`, for error messages.
    offset: usize,
    failure: Rc<RefCell<Option<String>>>,
}

impl<R: Read> Utf8Chars<R> {
    /// Decodes the next chunk; false at the end (or on failure).
    fn refill(&mut self) -> bool {
        self.offset += self.decoded.len();
        self.decoded.clear();
        self.next = 0;
        while self.decoded.is_empty() {
            let bytes = match self.input.fill_buf() {
                Ok(bytes) => bytes,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return self.fail(format!("cannot read the file: {err}")),
            };
            let at_end = bytes.is_empty();
            if at_end && self.carry.is_empty() {
                return false;
            }
            let mut chunk = std::mem::take(&mut self.carry);
            chunk.extend_from_slice(bytes);
            let read = bytes.len();
            self.input.consume(read);
            let valid = match std::str::from_utf8(&chunk) {
                Ok(text) => text.len(),
                // A character cut by the chunk's end waits for its other bytes.
                Err(err) if err.error_len().is_none() && !at_end => err.valid_up_to(),
                Err(err) => {
                    let at = self.offset + err.valid_up_to();
                    return self.fail(format!("the file is not valid UTF-8 (at byte {at})"));
                }
            };
            self.carry = chunk.split_off(valid);
            self.decoded = String::from_utf8(chunk).unwrap_or_default();
        }
        true
    }

    fn fail(&mut self, problem: String) -> bool {
        *self.failure.borrow_mut() = Some(format!("malformed YAML: {problem}"));
        false
    }
}

impl<R: Read> Iterator for Utf8Chars<R> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        if self.next >= self.decoded.len() && !self.refill() {
            return None;
        }
        let c = self.decoded[self.next..].chars().next()?;
        self.next += c.len_utf8();
        Some(c)
    }
}

fn located(at: &Marker, message: String) -> YamlError {
    YamlError {
        line: at.line().max(1),
        column: at.col() + 1,
        message,
    }
}

/// A finished value on its way to its parent.
#[derive(Clone)]
enum Done {
    /// Stored in the layer already (a map's entries, or JSON text).
    Node(Node),
    /// Built in memory (inside a list, or a scalar).
    Json(Value),
}

enum Frame {
    /// A map whose values become layer nodes.
    Map {
        entries: Vec<Entry>,
        key: Option<Span>,
        opened: Opened,
    },
    /// A list outside any other list: JSON written to the arena as items end.
    List {
        start: usize,
        items: usize,
        opened: Opened,
    },
    /// A map inside a list item.
    JsonMap {
        map: Map<String, Value>,
        key: Option<String>,
        opened: Opened,
    },
    /// A list inside a list item.
    JsonList { items: Vec<Value>, opened: Opened },
}

/// Where a collection started, for its anchor and its expanded size.
#[derive(Clone, Copy)]
struct Opened {
    /// Where it started, for errors about the collection as a whole.
    at: Marker,
    anchor: usize,
    events: u64,
    expanded: u64,
}

struct Reader {
    layer: Layer,
    stack: Vec<Frame>,
    /// Anchored values and how many nodes each expands to.
    anchors: HashMap<usize, (Done, u64)>,
    events: u64,
    /// Nodes added by alias expansion so far.
    expanded: u64,
    documents: usize,
    at: Marker,
}

impl Reader {
    fn error(&self, message: impl Into<String>) -> YamlError {
        located(&self.at, format!("malformed YAML: {}", message.into()))
    }

    fn duplicate(&self, key: &str) -> YamlError {
        self.error(format!(
            "the key {key:?} appears twice in the map that starts here; keep one"
        ))
    }

    fn too_large(&self, _: TooLarge) -> YamlError {
        self.error("more than 4 GiB of keys and values in one file")
    }

    fn event(&mut self, event: Event<'_>, _span: YamlSpan) -> Result<(), YamlError> {
        self.events += 1;
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(self.error(
                        "more than one document (`---`) in a config file is not supported",
                    ));
                }
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let is_map = matches!(event, Event::MappingStart(..));
                if self.wants_key() {
                    return Err(self.error(format!(
                        "a key must be a string, found a {}",
                        if is_map { "map" } else { "list" }
                    )));
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(self.error(format!("nested more than {MAX_DEPTH} levels deep")));
                }
                let opened = Opened {
                    at: self.at,
                    anchor,
                    events: self.events,
                    expanded: self.expanded,
                };
                let in_list = self.in_list();
                let frame = match (is_map, in_list) {
                    (true, false) => Frame::Map {
                        entries: Vec::new(),
                        key: None,
                        opened,
                    },
                    (false, false) => {
                        let start = self.layer.arena_mut().len();
                        self.layer.arena_mut().push(b'[');
                        Frame::List {
                            start,
                            items: 0,
                            opened,
                        }
                    }
                    (true, true) => Frame::JsonMap {
                        map: Map::new(),
                        key: None,
                        opened,
                    },
                    (false, true) => Frame::JsonList {
                        items: Vec::new(),
                        opened,
                    },
                };
                self.stack.push(frame);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Ok(());
                };
                let (done, opened) = match frame {
                    Frame::Map {
                        mut entries,
                        opened,
                        ..
                    } => {
                        // As the Go devctl's YAML reader (and Viper) do: a
                        // key twice is an error, not a silent last-wins.
                        if let Some(key) = self.layer.duplicate_key(&mut entries) {
                            self.at = opened.at;
                            return Err(self.duplicate(&key));
                        }
                        let span = self
                            .layer
                            .push_map(entries)
                            .map_err(|e| self.too_large(e))?;
                        (Done::Node(Node::Map(span)), opened)
                    }
                    Frame::List { start, opened, .. } => {
                        self.layer.arena_mut().push(b']');
                        let span = self.layer.span_from(start).map_err(|e| self.too_large(e))?;
                        (Done::Node(Node::Json(span)), opened)
                    }
                    Frame::JsonMap { map, opened, .. } => (Done::Json(Value::Object(map)), opened),
                    Frame::JsonList { items, opened } => (Done::Json(Value::Array(items)), opened),
                };
                self.at = opened.at;
                if opened.anchor != 0 {
                    let weight = (self.events - opened.events) + (self.expanded - opened.expanded);
                    self.anchors.insert(opened.anchor, (done.clone(), weight));
                }
                self.deliver(done)?;
            }
            Event::Scalar(value, style, anchor, tag) => {
                if self.wants_key() {
                    self.key(&value)?;
                    return Ok(());
                }
                let resolved = resolve(value, style, tag.as_deref()).map_err(|m| self.error(m))?;
                if anchor != 0 {
                    self.anchors
                        .insert(anchor, (Done::Json(resolved.clone()), 1));
                }
                self.deliver(Done::Json(resolved))?;
            }
            Event::Alias(id) => {
                if self.wants_key() {
                    return Err(self.error("an alias cannot be used as a key"));
                }
                let Some((done, weight)) = self.anchors.get(&id).cloned() else {
                    return Err(
                        self.error("an alias names an anchor that is not defined before it")
                    );
                };
                self.expanded = self.expanded.saturating_add(weight);
                let limit = self
                    .events
                    .saturating_mul(REPETITION_FACTOR)
                    .saturating_add(REPETITION_ALLOWANCE);
                if self.expanded > limit {
                    return Err(
                        self.error("repetition limit exceeded: aliases expand the file too much")
                    );
                }
                self.deliver(done)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn wants_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Map { key: None, .. } | Frame::JsonMap { key: None, .. })
        )
    }

    fn in_list(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::List { .. } | Frame::JsonMap { .. } | Frame::JsonList { .. })
        )
    }

    fn key(&mut self, key: &str) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            Some(Frame::Map { key: slot, .. }) => {
                let span = self
                    .layer
                    .push_text(key.as_bytes())
                    .map_err(|_| located(&self.at, "malformed YAML: file too large".into()))?;
                *slot = Some(span);
            }
            Some(Frame::JsonMap { key: slot, .. }) => *slot = Some(key.to_owned()),
            _ => {}
        }
        Ok(())
    }

    /// Hands a finished value to the frame it belongs to.
    fn deliver(&mut self, done: Done) -> Result<(), YamlError> {
        let at = self.at;
        let too_large = |_: TooLarge| located(&at, "malformed YAML: file too large".into());
        match self.stack.last_mut() {
            None => match done {
                Done::Node(Node::Map(span)) => self.layer.set_root(span),
                Done::Json(Value::Null) => {}
                Done::Json(Value::Object(map)) => {
                    let node = self
                        .layer
                        .push_json_node(&Value::Object(map))
                        .map_err(too_large)?;
                    if let Node::Map(span) = node {
                        self.layer.set_root(span);
                    }
                }
                Done::Node(Node::Json(_)) => {
                    return Err(self.error("invalid type: sequence, expected a map"))
                }
                Done::Json(other) => {
                    return Err(self.error(format!(
                        "invalid type: {}, expected a map",
                        json_kind(&other)
                    )))
                }
            },
            Some(Frame::Map { entries, key, .. }) => {
                let Some(key) = key.take() else {
                    return Ok(());
                };
                let node = match done {
                    Done::Node(node) => node,
                    Done::Json(value) => self.layer.push_json_node(&value).map_err(too_large)?,
                };
                entries.push(Layer::entry(key, node));
            }
            Some(Frame::List { items, .. }) => {
                let value = match done {
                    Done::Json(value) => value,
                    Done::Node(node) => self.layer.to_json(node),
                };
                let arena = self.layer.arena_mut();
                if *items > 0 {
                    arena.push(b',');
                }
                *items += 1;
                // Writing JSON into a Vec cannot fail.
                let _ = serde_json::to_writer(arena, &value);
            }
            Some(Frame::JsonMap { map, key, .. }) => {
                let value = match done {
                    Done::Json(value) => value,
                    Done::Node(node) => self.layer.to_json(node),
                };
                if let Some(key) = key.take() {
                    if map.contains_key(&key) {
                        return Err(self.duplicate(&key));
                    }
                    map.insert(key, value);
                }
            }
            Some(Frame::JsonList { items, .. }) => {
                let value = match done {
                    Done::Json(value) => value,
                    Done::Node(node) => self.layer.to_json(node),
                };
                items.push(value);
            }
        }
        Ok(())
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "unit",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "map",
    }
}

/// The typed value of a scalar, as `yaml_serde` would read it. Takes the
/// text by value: a big string is moved, not copied.
fn resolve(text: Cow<'_, str>, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag.filter(|tag| tag.is_yaml_core_schema()) {
        let bad = |expected: &str| format!("invalid value: string {text:?}, expected {expected}");
        return match tag.suffix.as_str() {
            "str" => Ok(Value::String(text.into_owned())),
            "int" => int(&text).ok_or_else(|| bad("an integer")),
            "float" => float(&text).ok_or_else(|| bad("a float")),
            "bool" => boolean(&text)
                .map(Value::Bool)
                .ok_or_else(|| bad("a boolean")),
            "null" if is_null(&text) => Ok(Value::Null),
            "null" => Err(bad("null")),
            _ => Ok(untagged(text)),
        };
    }
    Ok(match style {
        ScalarStyle::Plain => untagged(text),
        _ => Value::String(text.into_owned()),
    })
}

fn untagged(text: Cow<'_, str>) -> Value {
    if text.is_empty() || is_null(&text) {
        return Value::Null;
    }
    if let Some(value) = boolean(&text) {
        return Value::Bool(value);
    }
    if let Some(value) = int(&text) {
        return value;
    }
    if !digits_but_not_number(&text) {
        if let Some(value) = float(&text) {
            return value;
        }
    }
    Value::String(text.into_owned())
}

fn is_null(text: &str) -> bool {
    matches!(text, "null" | "Null" | "NULL" | "~")
}

fn boolean(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Decimal, `0x`, `0o` or `0b`, optionally signed; within 64 bits.
fn int(text: &str) -> Option<Value> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.starts_with(['+', '-']) {
        return None;
    }
    let (radix, digits) = [("0x", 16), ("0o", 8), ("0b", 2)]
        .into_iter()
        .find_map(|(prefix, radix)| digits.strip_prefix(prefix).map(|rest| (radix, rest)))
        .unwrap_or((10, digits));
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    if radix == 10 && digits_but_not_number(text) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if !negative {
        return Some(Value::Number(magnitude.into()));
    }
    let value = 0i64.checked_sub_unsigned(magnitude)?;
    Some(Value::Number(value.into()))
}

fn float(text: &str) -> Option<Value> {
    let unsigned = match text.strip_prefix('+') {
        Some(rest) if rest.starts_with(['+', '-']) => return None,
        Some(rest) => rest,
        None => text,
    };
    let value = match unsigned {
        ".inf" | ".Inf" | ".INF" => f64::INFINITY,
        "-.inf" | "-.Inf" | "-.INF" => f64::NEG_INFINITY,
        ".nan" | ".NaN" | ".NAN" => f64::NAN,
        other => other.parse::<f64>().ok().filter(|v| v.is_finite())?,
    };
    // JSON has no infinities or NaN: like serde_json, they read as null.
    Some(Number::from_f64(value).map_or(Value::Null, Value::Number))
}

/// Leading zeros followed by digits are a string in YAML 1.2 (`0123`).
fn digits_but_not_number(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    digits.len() > 1 && digits.starts_with('0') && digits[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::Layers;
    use serde_json::json;

    fn read(text: &str) -> Result<Value, YamlError> {
        let layer = read_layer(text.as_bytes(), Origin::Default)?;
        let mut layers = Layers::default();
        layers.push(layer);
        Ok(layers.root().to_json())
    }

    #[test]
    fn scalars_are_typed_like_the_backend_types_them() {
        let got = read(
            "a: 8083\nb: '8083'\nc: true\nd: ~\ne:\nf: 0x1F\ng: 0123\nh: 1.5\ni: .inf\nj: -7\nk: text\nl: !!str 12\nm: \"x\\ty\"\nn: [1, two, {k: v}, [3]]\n",
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"a": 8083, "b": "8083", "c": true, "d": null, "e": null, "f": 31,
                   "g": "0123", "h": 1.5, "i": null, "j": -7, "k": "text", "l": "12",
                   "m": "x\ty", "n": [1, "two", {"k": "v"}, [3]]})
        );
    }

    #[test]
    fn anchors_aliases_and_duplicates() {
        let got = read("base: &b {x: 1}\ncopy: *b\nlist: [*b, &s seven, *s]\nk: 1\n").unwrap();
        assert_eq!(
            got,
            json!({"base": {"x": 1}, "copy": {"x": 1}, "list": [{"x": 1}, "seven", "seven"], "k": 1})
        );
        for text in [
            "a: 1\nserver:\n  port: 1\n  port: 2\n",
            "list:\n  - {x: 1, x: 2}\n",
        ] {
            let err = read(text).unwrap_err();
            assert!(err.message.contains("appears twice"), "{err:?}");
            assert!(err.line >= 2, "{err:?}");
        }
    }

    #[test]
    fn errors_say_where() {
        let err = read("server:\n  port: 8083\n bad: [\n").unwrap_err();
        assert_eq!(err.line, 3, "{err:?}");
        assert!(err.message.starts_with("malformed YAML: "), "{err:?}");
        let err = read("- a\n- b\n").unwrap_err();
        assert!(err.message.contains("expected a map"), "{err:?}");
        assert_eq!((err.line, err.column), (1, 1), "where the list starts");
        assert_eq!(read("").unwrap(), json!({}));
        assert_eq!(read("# only a comment\n").unwrap(), json!({}));
    }

    #[test]
    fn input_is_decoded_across_chunk_boundaries_and_bad_utf8_is_named() {
        // A multi-byte character straddling the 64 KiB boundary.
        let mut text = format!("a: {}\n", "x".repeat(CHUNK - 5));
        text.push_str("b: ключ-значение\n");
        let got = read(&text).unwrap();
        assert_eq!(got["b"], "ключ-значение");
        let layer = read_layer(&b"a: \xff\n"[..], Origin::Default);
        let err = layer.unwrap_err();
        assert!(err.message.contains("not valid UTF-8"), "{err:?}");
    }

    #[test]
    fn a_billion_laughs_is_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
        let mut previous = "a";
        for name in names {
            text.push_str(&format!("{name}: &{name} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"));
            previous = name;
        }
        let err = read(&text).unwrap_err();
        assert!(err.message.contains("repetition limit"), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let flow = format!("a: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        let err = read(&flow).unwrap_err();
        assert!(err.message.contains("recursion limit"), "{err:?}");
        let block: String = (0..200)
            .map(|depth| format!("{}k:\n", "  ".repeat(depth)))
            .collect();
        let err = read(&block).unwrap_err();
        assert!(err.message.contains("levels deep"), "{err:?}");
    }
}
