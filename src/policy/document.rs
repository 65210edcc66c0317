//! The spanned document tree: scalars, sequences and mappings with the line and
//! column where each starts, read from YAML (through `yaml-rust2`'s event
//! stream) or JSON (a small parser of our own, for exact JSON syntax).
//!
//! Invariants, so hostile files cannot hurt the process: the tree is built
//! iteratively and is never deeper than [`MAX_DEPTH`] (recursive walks and
//! `Drop` are therefore bounded); mapping keys are scalars and unique within
//! their mapping; aliases expand to at most [`MAX_ALIAS_NODES`] nodes in all.
//! Knows nothing of the policy schema.

use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::error::Collector;

/// Deepest nesting of sequences and mappings a document may have.
pub const MAX_DEPTH: usize = 64;
/// Most nodes all YAML alias expansions of one document may add together.
pub const MAX_ALIAS_NODES: usize = 100_000;
/// Most values (scalars, lists, mappings) one document may hold: far above
/// any real estate that fits in the file size cap, low enough to bound memory.
pub const MAX_NODES: usize = 8_000_000;

fn too_many_nodes(errors: &mut Collector, position: Position) {
    errors.push(
        "",
        Some(position),
        format!("the document holds more than {MAX_NODES} values; refusing to read further"),
    );
}

/// Line and column, both 1-based.
pub(crate) type Position = (usize, usize);

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub position: Position,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    Scalar(Scalar),
    Sequence(Vec<Node>),
    Mapping(Vec<(Key, Node)>),
}

/// A scalar's text; `quoted` scalars are always strings, plain ones are
/// resolved by the YAML 1.2 core schema (JSON literals included).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar {
    pub text: String,
    pub quoted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub text: String,
    pub position: Position,
}

/// What a scalar means.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Resolved<'a> {
    Null,
    Bool(bool),
    /// An integer; `None` when it does not fit in an `i64`.
    Int(Option<i64>),
    Float,
    Str(&'a str),
}

impl Scalar {
    pub(crate) fn resolve(&self) -> Resolved<'_> {
        if self.quoted {
            return Resolved::Str(&self.text);
        }
        let t = self.text.as_str();
        match t {
            "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
            "true" | "True" | "TRUE" => return Resolved::Bool(true),
            "false" | "False" | "FALSE" => return Resolved::Bool(false),
            ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf"
            | "-.INF" | ".nan" | ".NaN" | ".NAN" => return Resolved::Float,
            _ => {}
        }
        if let Some(int) = resolve_int(t) {
            return Resolved::Int(int);
        }
        if is_float(t) {
            return Resolved::Float;
        }
        Resolved::Str(t)
    }
}

fn resolve_int(t: &str) -> Option<Option<i64>> {
    let (negative, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, body) = if let Some(hex) = t.strip_prefix("0x") {
        (16, hex)
    } else if let Some(oct) = t.strip_prefix("0o") {
        (8, oct)
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    if radix != 10 && body.len() != t.len() - 2 {
        return None;
    }
    let value = i64::from_str_radix(body, radix).ok();
    Some(if negative { value.map(|v| -v) } else { value })
}

fn is_float(t: &str) -> bool {
    let t = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = match fraction {
        Some(f) => digits(whole) && digits(f) && !(whole.is_empty() && f.is_empty()),
        None => !whole.is_empty() && digits(whole),
    };
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && digits(e)
        }
    };
    mantissa_ok && exponent_ok
}

impl Node {
    /// How the node's type is named in messages: "a string", "a list", ….
    pub(crate) fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Sequence(_) => "a list",
            NodeKind::Mapping(_) => "a mapping",
            NodeKind::Scalar(s) => match s.resolve() {
                Resolved::Null => "null",
                Resolved::Bool(_) => "a boolean",
                Resolved::Int(_) => "an integer",
                Resolved::Float => "a floating-point number",
                Resolved::Str(_) => "a string",
            },
        }
    }
}

fn position(mark: &Marker) -> Position {
    (mark.line(), mark.col() + 1)
}

/// A collection being built.
enum Frame {
    Sequence {
        items: Vec<Node>,
        position: Position,
        anchor: usize,
        path: String,
    },
    Mapping {
        path: String,
        entries: Vec<(Key, Node)>,
        seen: HashSet<String>,
        pending_key: Option<Key>,
        position: Position,
        anchor: usize,
    },
}

/// The document path of the next node placed into the innermost collection.
fn next_path(stack: &[Frame]) -> String {
    match stack.last() {
        None => String::new(),
        Some(Frame::Sequence { items, path, .. }) => format!("{path}[{}]", items.len()),
        Some(Frame::Mapping {
            pending_key, path, ..
        }) => match pending_key {
            Some(key) if path.is_empty() => key.text.clone(),
            Some(key) => format!("{path}.{}", key.text),
            None => path.clone(),
        },
    }
}

/// Where a finished node goes.
enum Placed {
    /// Inserted into the parent (or dropped as a duplicate).
    Done,
    /// The document's root.
    Root(Node),
}

/// An anchored node kept for its aliases, with its size and depth.
struct Anchored {
    node: Node,
    nodes: usize,
    depth: usize,
}

fn size_and_depth(node: &Node) -> (usize, usize) {
    // Iterative: the tree is bounded in depth, but be frugal with the stack anyway.
    let mut nodes = 0;
    let mut depth = 0;
    let mut stack = vec![(node, 1usize)];
    while let Some((n, d)) = stack.pop() {
        nodes += 1;
        match &n.kind {
            NodeKind::Scalar(_) => depth = depth.max(d - 1),
            NodeKind::Sequence(items) => {
                depth = depth.max(d);
                stack.extend(items.iter().map(|i| (i, d + 1)));
            }
            NodeKind::Mapping(entries) => {
                depth = depth.max(d);
                stack.extend(entries.iter().map(|(_, v)| (v, d + 1)));
            }
        }
    }
    (nodes, depth)
}

/// Reads a YAML document into a tree. `None` when the document is empty.
/// Syntax errors end reading (one error); duplicate keys are reported and the
/// later entry dropped, and reading goes on.
pub(crate) fn read_yaml(text: &str, errors: &mut Collector) -> Result<Option<Node>, ()> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Anchored> = HashMap::new();
    let mut alias_nodes = 0usize;
    let mut nodes = 0usize;
    let mut root: Option<Node> = None;
    let mut documents = 0usize;

    loop {
        let (event, mark) = match parser.next_token() {
            Ok(pair) => pair,
            Err(e) => {
                errors.push(
                    "",
                    Some(position(e.marker())),
                    format!("YAML syntax error: {}", e.info()),
                );
                return Err(());
            }
        };
        let here = position(&mark);
        let finished: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => None,
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    errors.push(
                        "",
                        Some(here),
                        "a policy file holds one YAML document; found a second one".into(),
                    );
                    return Err(());
                }
                None
            }
            Event::Alias(id) => {
                let Some(anchored) = anchors.get(&id) else {
                    errors.push("", Some(here), "unknown YAML alias".into());
                    return Err(());
                };
                let as_key = matches!(
                    stack.last(),
                    Some(Frame::Mapping {
                        pending_key: None,
                        ..
                    })
                );
                if as_key && !matches!(anchored.node.kind, NodeKind::Scalar(_)) {
                    errors.push(
                        "",
                        Some(here),
                        "mapping keys must be plain strings, not lists or mappings".into(),
                    );
                    return Err(());
                }
                alias_nodes = alias_nodes.saturating_add(anchored.nodes);
                if alias_nodes > MAX_ALIAS_NODES {
                    errors.push(
                        "",
                        Some(here),
                        format!(
                            "YAML aliases expand to more than {MAX_ALIAS_NODES} nodes; \
                             refusing to expand them (alias bomb?)"
                        ),
                    );
                    return Err(());
                }
                if stack.len() + anchored.depth > MAX_DEPTH {
                    errors.push(
                        "",
                        Some(here),
                        format!("the document nests deeper than {MAX_DEPTH} levels"),
                    );
                    return Err(());
                }
                let mut node = anchored.node.clone();
                node.position = here;
                Some((node, 0))
            }
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..)
                if nodes >= MAX_NODES =>
            {
                too_many_nodes(errors, here);
                return Err(());
            }
            Event::Scalar(text, style, anchor, tag) => {
                nodes += 1;
                let mut quoted = style != TScalarStyle::Plain;
                if let Some(tag) = tag {
                    if tag.handle == "tag:yaml.org,2002:" && tag.suffix == "str" {
                        quoted = true;
                    } else if tag.handle != "tag:yaml.org,2002:" {
                        errors.push(
                            "",
                            Some(here),
                            format!("YAML tag `{}{}` is not supported", tag.handle, tag.suffix),
                        );
                        return Err(());
                    }
                }
                Some((
                    Node {
                        kind: NodeKind::Scalar(Scalar { text, quoted }),
                        position: here,
                    },
                    anchor,
                ))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                nodes += 1;
                if let Some(Frame::Mapping {
                    pending_key: None, ..
                }) = stack.last()
                {
                    errors.push(
                        "",
                        Some(here),
                        "mapping keys must be plain strings, not lists or mappings".into(),
                    );
                    return Err(());
                }
                if stack.len() >= MAX_DEPTH {
                    errors.push(
                        "",
                        Some(here),
                        format!("the document nests deeper than {MAX_DEPTH} levels"),
                    );
                    return Err(());
                }
                let path = next_path(&stack);
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Sequence {
                        items: Vec::new(),
                        position: here,
                        anchor,
                        path,
                    }
                } else {
                    Frame::Mapping {
                        path,
                        entries: Vec::new(),
                        seen: HashSet::new(),
                        pending_key: None,
                        position: here,
                        anchor,
                    }
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Sequence {
                    items,
                    position,
                    anchor,
                    ..
                }) => Some((
                    Node {
                        kind: NodeKind::Sequence(items),
                        position,
                    },
                    anchor,
                )),
                Some(Frame::Mapping {
                    entries,
                    position,
                    anchor,
                    ..
                }) => {
                    // A block mapping's start event points past its first key;
                    // the mapping starts where that key does.
                    let position = entries
                        .first()
                        .map_or(position, |(k, _)| position.min(k.position));
                    Some((
                        Node {
                            kind: NodeKind::Mapping(entries),
                            position,
                        },
                        anchor,
                    ))
                }
                None => None,
            },
        };
        let Some((node, anchor)) = finished else {
            continue;
        };
        if anchor != 0 {
            let (nodes, depth) = size_and_depth(&node);
            anchors.insert(
                anchor,
                Anchored {
                    node: node.clone(),
                    nodes,
                    depth,
                },
            );
        }
        if let Placed::Root(node) = place(&mut stack, node, errors) {
            root = Some(node);
        }
    }
    Ok(root)
}

/// Puts a finished node into the collection being built, or returns it as the root.
fn place(stack: &mut [Frame], node: Node, errors: &mut Collector) -> Placed {
    match stack.last_mut() {
        None => Placed::Root(node),
        Some(Frame::Sequence { items, .. }) => {
            items.push(node);
            Placed::Done
        }
        Some(Frame::Mapping {
            entries,
            seen,
            pending_key,
            path,
            ..
        }) => {
            match pending_key.take() {
                None => {
                    // The node is a key; collections were refused at their start.
                    let text = match node.kind {
                        NodeKind::Scalar(s) => s.text,
                        _ => String::new(),
                    };
                    *pending_key = Some(Key {
                        text,
                        position: node.position,
                    });
                }
                Some(key) => {
                    if seen.contains(&key.text) {
                        let first = entries
                            .iter()
                            .find(|(k, _)| k.text == key.text)
                            .map(|(k, _)| k.position)
                            .unwrap_or(key.position);
                        let key_path = if path.is_empty() {
                            key.text.clone()
                        } else {
                            format!("{path}.{}", key.text)
                        };
                        errors.push(
                            &key_path,
                            Some(key.position),
                            format!(
                                "duplicate key `{}` (first given at line {}, column {})",
                                key.text, first.0, first.1
                            ),
                        );
                    } else {
                        seen.insert(key.text.clone());
                        entries.push((key, node));
                    }
                }
            }
            Placed::Done
        }
    }
}

/// Reads a JSON document into a tree. `None` when the text is only whitespace.
/// Any syntax error ends reading (one error); duplicate keys are reported and
/// the later member dropped.
pub(crate) fn read_json(text: &str, errors: &mut Collector) -> Result<Option<Node>, ()> {
    JsonReader {
        bytes: text.as_bytes(),
        text,
        offset: 0,
        line: 1,
        line_start: 0,
        column_cache: (0, 1),
    }
    .read(errors)
}

struct JsonReader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    offset: usize,
    line: usize,
    line_start: usize,
    /// (offset, column) of the last position computed.
    column_cache: (usize, usize),
}

impl JsonReader<'_> {
    /// Counts characters from the last position asked for on the same line,
    /// so long one-line documents stay linear.
    fn position(&mut self) -> Position {
        let (from, base) =
            if self.column_cache.0 >= self.line_start && self.column_cache.0 <= self.offset {
                self.column_cache
            } else {
                (self.line_start, 1)
            };
        let column = base + self.text[from..self.offset].chars().count();
        self.column_cache = (self.offset, column);
        (self.line, column)
    }

    fn skip_whitespace(&mut self) {
        while let Some(&b) = self.bytes.get(self.offset) {
            match b {
                b' ' | b'\t' | b'\r' => self.offset += 1,
                b'\n' => {
                    self.offset += 1;
                    self.line += 1;
                    self.line_start = self.offset;
                }
                _ => break,
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.offset).copied()
    }

    fn fail(&mut self, errors: &mut Collector, message: String) -> Result<Option<Node>, ()> {
        errors.push(
            "",
            Some(self.position()),
            format!("JSON syntax error: {message}"),
        );
        Err(())
    }

    fn found(&self) -> String {
        match self.text[self.offset..].chars().next() {
            None => "the end of the file".to_string(),
            Some(c) => format!("`{}`", c.escape_debug()),
        }
    }

    fn read(mut self, errors: &mut Collector) -> Result<Option<Node>, ()> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut nodes = 0usize;
        self.skip_whitespace();
        if self.peek().is_none() {
            return Ok(None);
        }
        loop {
            // Expect a value here.
            self.skip_whitespace();
            let here = self.position();
            nodes += 1;
            if nodes > MAX_NODES {
                too_many_nodes(errors, here);
                return Err(());
            }
            let value = match self.peek() {
                Some(b'{') | Some(b'[') => {
                    if stack.len() >= MAX_DEPTH {
                        errors.push(
                            "",
                            Some(here),
                            format!("the document nests deeper than {MAX_DEPTH} levels"),
                        );
                        return Err(());
                    }
                    let object = self.peek() == Some(b'{');
                    self.offset += 1;
                    self.skip_whitespace();
                    let closing = if object { b'}' } else { b']' };
                    if self.peek() == Some(closing) {
                        self.offset += 1;
                        Node {
                            kind: if object {
                                NodeKind::Mapping(Vec::new())
                            } else {
                                NodeKind::Sequence(Vec::new())
                            },
                            position: here,
                        }
                    } else if object {
                        let key = self.read_key(errors)?;
                        let path = next_path(&stack);
                        stack.push(Frame::Mapping {
                            path,
                            entries: Vec::new(),
                            seen: HashSet::new(),
                            pending_key: Some(key),
                            position: here,
                            anchor: 0,
                        });
                        continue;
                    } else {
                        let path = next_path(&stack);
                        stack.push(Frame::Sequence {
                            items: Vec::new(),
                            position: here,
                            anchor: 0,
                            path,
                        });
                        continue;
                    }
                }
                Some(b'"') => {
                    let text = self.read_string(errors)?;
                    Node {
                        kind: NodeKind::Scalar(Scalar { text, quoted: true }),
                        position: here,
                    }
                }
                Some(b'-' | b'0'..=b'9') => {
                    let start = self.offset;
                    if !self.scan_number() {
                        return self.fail(errors, "malformed number".into());
                    }
                    Node {
                        kind: NodeKind::Scalar(Scalar {
                            text: self.text[start..self.offset].to_string(),
                            quoted: false,
                        }),
                        position: here,
                    }
                }
                _ => {
                    let rest = &self.text[self.offset..];
                    let literal = ["true", "false", "null"]
                        .into_iter()
                        .find(|l| rest.starts_with(l));
                    match literal {
                        Some(l) => {
                            self.offset += l.len();
                            Node {
                                kind: NodeKind::Scalar(Scalar {
                                    text: l.to_string(),
                                    quoted: false,
                                }),
                                position: here,
                            }
                        }
                        None => {
                            let found = self.found();
                            return self.fail(errors, format!("expected a value, found {found}"));
                        }
                    }
                }
            };
            // A value is complete: place it and close finished collections.
            let mut value = value;
            loop {
                if let Placed::Root(node) = place(&mut stack, value, errors) {
                    self.skip_whitespace();
                    if self.peek().is_some() {
                        let found = self.found();
                        return self.fail(
                            errors,
                            format!("expected the end of the file, found {found}"),
                        );
                    }
                    return Ok(Some(node));
                }
                self.skip_whitespace();
                let object = matches!(stack.last(), Some(Frame::Mapping { .. }));
                let closing = if object { b'}' } else { b']' };
                match self.peek() {
                    Some(b',') => {
                        self.offset += 1;
                        if object {
                            self.skip_whitespace();
                            let key = self.read_key(errors)?;
                            if let Some(Frame::Mapping { pending_key, .. }) = stack.last_mut() {
                                *pending_key = Some(key);
                            }
                        }
                        break;
                    }
                    Some(c) if c == closing => {
                        self.offset += 1;
                        value = match stack.pop() {
                            Some(Frame::Mapping {
                                entries, position, ..
                            }) => Node {
                                kind: NodeKind::Mapping(entries),
                                position,
                            },
                            Some(Frame::Sequence {
                                items, position, ..
                            }) => Node {
                                kind: NodeKind::Sequence(items),
                                position,
                            },
                            None => unreachable_root(),
                        };
                    }
                    _ => {
                        let found = self.found();
                        let what = if object { "`,` or `}`" } else { "`,` or `]`" };
                        return self.fail(errors, format!("expected {what}, found {found}"));
                    }
                }
            }
        }
    }

    /// Reads `"key"` and the colon after it.
    fn read_key(&mut self, errors: &mut Collector) -> Result<Key, ()> {
        self.skip_whitespace();
        let position = self.position();
        if self.peek() != Some(b'"') {
            let found = self.found();
            self.fail(
                errors,
                format!("expected a quoted member name, found {found}"),
            )?;
        }
        let text = self.read_string(errors)?;
        self.skip_whitespace();
        if self.peek() != Some(b':') {
            let found = self.found();
            self.fail(
                errors,
                format!("expected `:` after a member name, found {found}"),
            )?;
        }
        self.offset += 1;
        Ok(Key { text, position })
    }

    fn read_string(&mut self, errors: &mut Collector) -> Result<String, ()> {
        self.offset += 1; // opening quote
        let mut out = String::new();
        loop {
            let start = self.offset;
            while let Some(&b) = self.bytes.get(self.offset) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.offset += 1;
            }
            out.push_str(&self.text[start..self.offset]);
            match self.peek() {
                None => {
                    self.fail(errors, "unterminated string".into())?;
                }
                Some(b'"') => {
                    self.offset += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.offset += 1;
                    let escape = self.peek();
                    self.offset += 1;
                    let c = match escape {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let high = self.read_hex4(errors)?;
                            let code = if (0xD800..0xDC00).contains(&high) {
                                if !self.text[self.offset..].starts_with("\\u") {
                                    self.fail(errors, "unpaired surrogate in \\u escape".into())?;
                                }
                                self.offset += 2;
                                let low = self.read_hex4(errors)?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    self.fail(errors, "unpaired surrogate in \\u escape".into())?;
                                }
                                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                high
                            };
                            match char::from_u32(code) {
                                Some(c) => c,
                                None => {
                                    self.fail(errors, "unpaired surrogate in \\u escape".into())?;
                                    continue;
                                }
                            }
                        }
                        _ => {
                            self.offset -= 1;
                            self.fail(errors, "invalid escape in string".into())?;
                            continue;
                        }
                    };
                    out.push(c);
                }
                Some(_) => {
                    self.fail(
                        errors,
                        "control character in string (escape it, e.g. \\n)".into(),
                    )?;
                }
            }
        }
    }

    fn read_hex4(&mut self, errors: &mut Collector) -> Result<u32, ()> {
        let digits = self.bytes.get(self.offset..self.offset + 4);
        let value = digits
            .filter(|d| d.iter().all(u8::is_ascii_hexdigit))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u32::from_str_radix(d, 16).ok());
        match value {
            Some(v) => {
                self.offset += 4;
                Ok(v)
            }
            None => {
                self.fail(errors, "invalid \\u escape in string".into())?;
                Ok(0)
            }
        }
    }

    /// Advances over a JSON number; false when it is malformed.
    fn scan_number(&mut self) -> bool {
        let digits = |r: &mut Self| {
            let start = r.offset;
            while r.peek().is_some_and(|b| b.is_ascii_digit()) {
                r.offset += 1;
            }
            r.offset - start
        };
        if self.peek() == Some(b'-') {
            self.offset += 1;
        }
        match self.peek() {
            Some(b'0') => self.offset += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return false,
        }
        if self.peek() == Some(b'.') {
            self.offset += 1;
            if digits(self) == 0 {
                return false;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.offset += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.offset += 1;
            }
            if digits(self) == 0 {
                return false;
            }
        }
        !self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.')
    }
}

/// `place` returned `Done`, so a collection was open.
fn unreachable_root() -> Node {
    Node {
        kind: NodeKind::Sequence(Vec::new()),
        position: (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<Option<Node>, String> {
        let mut c = Collector::new("t");
        read_yaml(text, &mut c).map_err(|_| c.into_errors().to_string())
    }

    fn json(text: &str) -> Result<Option<Node>, String> {
        let mut c = Collector::new("t");
        read_json(text, &mut c).map_err(|_| c.into_errors().to_string())
    }

    #[test]
    fn yaml_positions_are_one_based() {
        let root = yaml("a:\n  - x\n  - 'y'\n").unwrap().unwrap();
        let NodeKind::Mapping(entries) = &root.kind else {
            panic!()
        };
        assert_eq!(entries[0].0.position, (1, 1));
        let NodeKind::Sequence(items) = &entries[0].1.kind else {
            panic!()
        };
        assert_eq!(items[0].position, (2, 5));
        assert_eq!(items[1].position, (3, 5));
        assert!(matches!(&items[1].kind, NodeKind::Scalar(s) if s.quoted));
    }

    #[test]
    fn json_and_yaml_agree_on_values() {
        let j = json(r#"{"a": [1, "x\u00e9", true, null, -2.5e3]}"#).unwrap();
        let y = yaml(r#"{"a": [1, "xé", true, null, -2.5e3]}"#).unwrap();
        let strip = |n: Option<Node>| format!("{:?}", n).len();
        assert_eq!(strip(j), strip(y));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let mut c = Collector::new("t");
        read_yaml("a: 1\nb: 2\na: 3\n", &mut c).unwrap();
        assert_eq!(c.into_errors().len(), 1);
        let mut c = Collector::new("t");
        read_json(r#"{"a": 1, "a": 2}"#, &mut c).unwrap();
        assert_eq!(c.into_errors().len(), 1);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = "[".repeat(100_000);
        let e = yaml(&deep).unwrap_err();
        assert!(
            e.contains("deeper than 64") || e.contains("recursion limit"),
            "{e}"
        );
        assert!(json(&deep).unwrap_err().contains("deeper than 64"));
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(yaml(&ok).is_ok());
        assert!(json(&ok).is_ok());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(yaml(&text).unwrap_err().contains("alias"));
    }

    #[test]
    fn json_syntax_errors_have_positions() {
        let e = json("{\n  \"a\": [1, 2,]\n}").unwrap_err();
        assert!(e.starts_with("t:2:14: JSON syntax error"), "{e}");
        assert!(json("{\"a\": 01}").is_err());
        assert!(json("{\"a\": 1} x").is_err());
        assert!(json("\"\\ud800\"").is_err());
        assert_eq!(json("  \n").unwrap(), None);
    }

    #[test]
    fn core_schema_resolution() {
        let s = |t: &str| Scalar {
            text: t.into(),
            quoted: false,
        };
        assert_eq!(s("80").resolve(), Resolved::Int(Some(80)));
        assert_eq!(s("-5").resolve(), Resolved::Int(Some(-5)));
        assert_eq!(s("99999999999999999999").resolve(), Resolved::Int(None));
        assert_eq!(s("1e300").resolve(), Resolved::Float);
        assert_eq!(s("10.0").resolve(), Resolved::Float);
        assert_eq!(s("10.0.0.1").resolve(), Resolved::Str("10.0.0.1"));
        assert_eq!(s("8000-8080").resolve(), Resolved::Str("8000-8080"));
        assert_eq!(s("*").resolve(), Resolved::Str("*"));
        assert_eq!(s("0x1F").resolve(), Resolved::Int(Some(31)));
        assert_eq!(s("").resolve(), Resolved::Null);
    }

    fn same(node: &Node, value: &serde_json::Value) -> bool {
        use serde_json::Value;
        match (&node.kind, value) {
            (NodeKind::Scalar(s), Value::String(v)) => s.quoted && &s.text == v,
            (NodeKind::Scalar(s), Value::Number(n)) => !s.quoted && s.text == n.to_string(),
            (NodeKind::Scalar(s), Value::Bool(b)) => !s.quoted && s.text == b.to_string(),
            (NodeKind::Scalar(s), Value::Null) => !s.quoted && s.text == "null",
            (NodeKind::Sequence(items), Value::Array(values)) => {
                items.len() == values.len() && items.iter().zip(values).all(|(i, v)| same(i, v))
            }
            (NodeKind::Mapping(entries), Value::Object(map)) => {
                entries.len() == map.len()
                    && entries
                        .iter()
                        .all(|(k, v)| map.get(&k.text).is_some_and(|m| same(v, m)))
            }
            _ => false,
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| Value::Number(n.into())),
            any::<f64>()
                .prop_filter_map("finite", serde_json::Number::from_f64)
                .prop_map(Value::Number),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn json_reader_agrees_with_serde_json(value in json_value(), pretty in proptest::bool::ANY) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            let node = json(&text).unwrap().unwrap();
            proptest::prop_assert!(same(&node, &value), "{text}");
        }

        #[test]
        fn json_reader_rejects_what_serde_json_rejects(text in "[\\[\\]{}:,\" 0-9a-z.eE+\\\\-]{0,24}") {
            let ours = json(&text);
            let theirs = serde_json::from_str::<serde_json::Value>(&text);
            if text.trim().is_empty() {
                return Ok(());
            }
            proptest::prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{}", text);
        }
    }
}
