//! The config as a stack of layers, stored compactly and merged on read.
//!
//! A 50 MB config must not cost ten times that in memory, so a [`Layer`]
//! is not a tree of boxed values: every key and every value lives in one
//! byte arena (keys as UTF-8, values that are not maps as compact JSON), and
//! each map is a sorted, contiguous run of 20-byte entries. Layers are never
//! copied into a merged tree either: a [`View`] is "the nodes of each layer
//! at one path", and merging happens as a view is read (maps deep-merge;
//! anything else replaces what is below it, as viper and figment do).

use std::cmp::Ordering;
use std::ops::Range;

use serde_json::Value;

use crate::config::Origin;

/// A run of bytes in a layer's arena, or of entries in its entry list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn range(self) -> Range<usize> {
        self.start as usize..self.start as usize + self.len as usize
    }
}

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    /// A map: its entries, sorted by key.
    Map(Span),
    /// Anything else (scalar or list), as compact JSON text.
    Json(Span),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    key: Span,
    node: Node,
}

/// More than 4 GiB of keys and values in one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// One layer of config (a file, the defaults, an env var or a flag).
#[derive(Debug)]
pub struct Layer {
    origin: Origin,
    arena: Vec<u8>,
    entries: Vec<Entry>,
    root: Span,
}

impl Layer {
    pub(crate) fn new(origin: Origin) -> Layer {
        Layer {
            origin,
            arena: Vec::new(),
            entries: Vec::new(),
            root: Span::default(),
        }
    }

    /// A layer holding `value` (a JSON object; anything else is empty).
    pub fn from_json(origin: Origin, value: &Value) -> Result<Layer, TooLarge> {
        let mut layer = Layer::new(origin);
        if let Value::Object(map) = value {
            let mut entries = Vec::with_capacity(map.len());
            for (key, inner) in map {
                let key = layer.push_text(key.as_bytes())?;
                let node = layer.push_json_node(inner)?;
                entries.push(Entry { key, node });
            }
            layer.root = layer.push_map(entries)?;
        }
        Ok(layer)
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    pub(crate) fn set_root(&mut self, root: Span) {
        self.root = root;
    }

    /// Appends bytes to the arena.
    pub(crate) fn push_text(&mut self, bytes: &[u8]) -> Result<Span, TooLarge> {
        let start = u32::try_from(self.arena.len()).map_err(|_| TooLarge)?;
        let len = u32::try_from(bytes.len()).map_err(|_| TooLarge)?;
        start.checked_add(len).ok_or(TooLarge)?;
        self.arena.extend_from_slice(bytes);
        Ok(Span { start, len })
    }

    /// The arena, for writers that append JSON to it directly.
    pub(crate) fn arena_mut(&mut self) -> &mut Vec<u8> {
        &mut self.arena
    }

    /// The span from `start` to the end of the arena.
    pub(crate) fn span_from(&self, start: usize) -> Result<Span, TooLarge> {
        let end = u32::try_from(self.arena.len()).map_err(|_| TooLarge)?;
        let start = u32::try_from(start).map_err(|_| TooLarge)?;
        Ok(Span {
            start,
            len: end - start,
        })
    }

    /// The first key that appears twice among `entries` (sorting them).
    pub(crate) fn duplicate_key(&self, entries: &mut [Entry]) -> Option<String> {
        entries.sort_by(|a, b| self.text(a.key).cmp(self.text(b.key)));
        entries
            .windows(2)
            .find(|pair| self.text(pair[0].key) == self.text(pair[1].key))
            .map(|pair| self.text(pair[0].key).to_owned())
    }

    /// Stores the entries of one map: sorted by key, the last of duplicate
    /// keys kept (as a YAML map read into a dictionary keeps it).
    pub(crate) fn push_map(&mut self, mut entries: Vec<Entry>) -> Result<Span, TooLarge> {
        // Stable: duplicates stay in document order, so the last one wins.
        entries.sort_by(|a, b| self.text(a.key).cmp(self.text(b.key)));
        entries.dedup_by(|later, kept| {
            let same = self.text(later.key) == self.text(kept.key);
            if same {
                *kept = *later;
            }
            same
        });
        let start = u32::try_from(self.entries.len()).map_err(|_| TooLarge)?;
        let len = u32::try_from(entries.len()).map_err(|_| TooLarge)?;
        start.checked_add(len).ok_or(TooLarge)?;
        self.entries.extend_from_slice(&entries);
        Ok(Span { start, len })
    }

    pub(crate) fn entry(key: Span, node: Node) -> Entry {
        Entry { key, node }
    }

    /// A JSON value as a node: objects become maps, the rest JSON text.
    pub(crate) fn push_json_node(&mut self, value: &Value) -> Result<Node, TooLarge> {
        match value {
            Value::Object(map) => {
                let mut entries = Vec::with_capacity(map.len());
                for (key, inner) in map {
                    let key = self.push_text(key.as_bytes())?;
                    let node = self.push_json_node(inner)?;
                    entries.push(Entry { key, node });
                }
                Ok(Node::Map(self.push_map(entries)?))
            }
            other => {
                let start = self.arena.len();
                // Writing JSON into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut self.arena, other);
                Ok(Node::Json(self.span_from(start)?))
            }
        }
    }

    fn text(&self, span: Span) -> &str {
        // Only UTF-8 is ever written to the arena.
        std::str::from_utf8(self.arena.get(span.range()).unwrap_or_default()).unwrap_or_default()
    }

    fn entries(&self, span: Span) -> &[Entry] {
        self.entries.get(span.range()).unwrap_or_default()
    }

    fn find(&self, map: Span, key: &str) -> Option<Node> {
        let entries = self.entries(map);
        entries
            .binary_search_by(|entry| self.text(entry.key).cmp(key))
            .ok()
            .map(|at| entries[at].node)
    }

    /// The JSON value of a node (maps rebuilt from their entries).
    pub(crate) fn to_json(&self, node: Node) -> Value {
        match node {
            Node::Json(span) => serde_json::from_str(self.text(span)).unwrap_or(Value::Null),
            Node::Map(span) => Value::Object(
                self.entries(span)
                    .iter()
                    .map(|entry| (self.text(entry.key).to_owned(), self.to_json(entry.node)))
                    .collect(),
            ),
        }
    }

    /// Every leaf key of this layer (a non-map value or an empty map), in
    /// sorted order, with `f(key)`.
    pub fn for_each_leaf(&self, mut f: impl FnMut(&str)) {
        let mut path = String::new();
        self.leaves_under(self.root, &mut path, &mut f);
    }

    fn leaves_under(&self, map: Span, path: &mut String, f: &mut impl FnMut(&str)) {
        for entry in self.entries(map) {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(self.text(entry.key));
            match entry.node {
                Node::Map(inner) if inner.len > 0 => self.leaves_under(inner, path, f),
                _ => f(path),
            }
            path.truncate(len);
        }
    }
}

/// The layers of one config, lowest precedence first.
#[derive(Debug, Default)]
pub struct Layers {
    layers: Vec<Layer>,
}

impl Layers {
    pub fn push(&mut self, layer: Layer) {
        self.layers.push(layer);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Layer> {
        self.layers.iter()
    }

    /// Everything: every layer's root, highest first.
    pub fn root(&self) -> View<'_> {
        View {
            parts: self
                .layers
                .iter()
                .rev()
                .map(|layer| (layer, Node::Map(layer.root)))
                .collect(),
        }
    }

    /// The value at a dotted key; `None` when no layer has it.
    pub fn view(&self, key: &str) -> Option<View<'_>> {
        key.split('.')
            .try_fold(self.root(), |view, segment| view.child(segment))
    }
}

/// The nodes that make up the value at one path, highest layer first: zero
/// or more maps, then at most one non-map (which replaced everything below
/// it, so nothing below it is kept).
#[derive(Debug, Clone)]
pub struct View<'a> {
    parts: Vec<(&'a Layer, Node)>,
}

impl<'a> View<'a> {
    /// The value of `key` inside this one, if any layer has it.
    pub fn child(&self, key: &str) -> Option<View<'a>> {
        let mut parts = Vec::new();
        for (layer, node) in &self.parts {
            let Node::Map(map) = node else { break };
            match layer.find(*map, key) {
                Some(found @ Node::Map(_)) => parts.push((*layer, found)),
                // A non-map is the value only if no higher layer has a map here.
                Some(found) => {
                    if parts.is_empty() {
                        parts.push((*layer, found));
                    }
                    break;
                }
                None => {}
            }
        }
        (!parts.is_empty()).then_some(View { parts })
    }

    /// Where the value came from: the highest layer that has it.
    pub fn origin(&self) -> Option<&'a Origin> {
        self.parts.first().map(|(layer, _)| layer.origin())
    }

    pub fn is_map(&self) -> bool {
        matches!(self.parts.first(), Some((_, Node::Map(_))))
    }

    /// A leaf is a non-map or a map with no entries in any layer.
    pub fn is_leaf(&self) -> bool {
        self.parts.iter().all(|(_, node)| match node {
            Node::Map(span) => span.len == 0,
            Node::Json(_) => true,
        })
    }

    /// The JSON text of a non-map value.
    pub fn json_text(&self) -> Option<&'a str> {
        match self.parts.first() {
            Some((layer, Node::Json(span))) => Some(layer.text(*span)),
            _ => None,
        }
    }

    /// The merged value as JSON.
    pub fn to_json(&self) -> Value {
        match self.parts.first() {
            Some((layer, node @ Node::Json(_))) => layer.to_json(*node),
            Some(_) => Value::Object(
                self.children()
                    .map(|(key, child)| (key.to_owned(), child.to_json()))
                    .collect(),
            ),
            None => Value::Null,
        }
    }

    /// The merged map's keys in sorted order, each with its value.
    pub fn children(&self) -> Children<'a> {
        let maps: Vec<(&'a Layer, &'a [Entry])> = self
            .parts
            .iter()
            .filter_map(|(layer, node)| match node {
                Node::Map(span) => Some((*layer, layer.entries(*span))),
                Node::Json(_) => None,
            })
            .collect();
        Children {
            cursors: vec![0; maps.len()],
            maps,
        }
    }

    /// Every leaf under this value, in sorted key order: `f(key, leaf)`.
    pub fn for_each_leaf(&self, prefix: &str, f: &mut impl FnMut(&str, &View<'a>)) {
        let mut path = prefix.to_owned();
        self.leaves_into(&mut path, f);
    }

    fn leaves_into(&self, path: &mut String, f: &mut impl FnMut(&str, &View<'a>)) {
        if self.is_leaf() {
            f(path, self);
            return;
        }
        for (key, child) in self.children() {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            child.leaves_into(path, f);
            path.truncate(len);
        }
    }
}

/// The keys of a merged map: a k-way merge of the layers' sorted entries.
pub struct Children<'a> {
    /// Each layer's entries, highest layer first.
    maps: Vec<(&'a Layer, &'a [Entry])>,
    cursors: Vec<usize>,
}

impl<'a> Iterator for Children<'a> {
    type Item = (&'a str, View<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let mut smallest: Option<&'a str> = None;
        for ((layer, entries), cursor) in self.maps.iter().zip(&self.cursors) {
            if let Some(entry) = entries.get(*cursor) {
                let key = layer.text(entry.key);
                if smallest.is_none_or(|s| key.cmp(s) == Ordering::Less) {
                    smallest = Some(key);
                }
            }
        }
        let key = smallest?;
        let mut parts = Vec::new();
        let mut replaced = false;
        for ((layer, entries), cursor) in self.maps.iter().zip(self.cursors.iter_mut()) {
            let Some(entry) = entries.get(*cursor) else {
                continue;
            };
            if layer.text(entry.key) != key {
                continue;
            }
            *cursor += 1;
            if replaced {
                continue;
            }
            match entry.node {
                Node::Map(_) => parts.push((*layer, entry.node)),
                Node::Json(_) => {
                    if parts.is_empty() {
                        parts.push((*layer, entry.node));
                    }
                    replaced = true;
                }
            }
        }
        Some((key, View { parts }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layers(values: &[Value]) -> Layers {
        let mut layers = Layers::default();
        for (n, value) in values.iter().enumerate() {
            layers.push(Layer::from_json(Origin::Env(format!("L{n}")), value).unwrap());
        }
        layers
    }

    #[test]
    fn maps_deep_merge_and_everything_else_replaces() {
        let layers = layers(&[
            json!({"a": {"x": 1, "y": [1, 2]}, "b": {"deep": true}, "c": 1}),
            json!({"a": {"y": [3], "z": "new"}, "b": "scalar now", "c": {"map": "now"}}),
        ]);
        assert_eq!(
            layers.root().to_json(),
            json!({"a": {"x": 1, "y": [3], "z": "new"}, "b": "scalar now", "c": {"map": "now"}})
        );
        assert_eq!(
            layers.view("a.x").unwrap().origin(),
            Some(&Origin::Env("L0".into()))
        );
        assert_eq!(
            layers.view("a.y").unwrap().origin(),
            Some(&Origin::Env("L1".into()))
        );
        assert!(layers.view("b.deep").is_none(), "replaced by a scalar");
        assert!(layers.view("a.nope").is_none());
        let mut leaves = Vec::new();
        layers.root().for_each_leaf("", &mut |key, view| {
            leaves.push((key.to_owned(), view.to_json()))
        });
        assert_eq!(
            leaves,
            [
                ("a.x".to_owned(), json!(1)),
                ("a.y".to_owned(), json!([3])),
                ("a.z".to_owned(), json!("new")),
                ("b".to_owned(), json!("scalar now")),
                ("c.map".to_owned(), json!("now")),
            ]
        );
    }
}
