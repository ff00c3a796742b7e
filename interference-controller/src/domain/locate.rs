//! Spans of every key and value of a TOML document, by field path (`policy.tiers.gold`),
//! so a problem found on the decoded value can be reported at its line. The same
//! approach as the agent's config loader (interference-user/src/config.rs), until both
//! use interference-core's.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

pub struct Locator {
    entries: Vec<Entry>,
}

/// A field path, the span of its value and of its key (array items have none).
type Entry = (String, Range<usize>, Option<Range<usize>>);

enum Node {
    Leaf,
    Table(Vec<(Spanned<String>, Spanned<Node>)>),
    Array(Vec<Spanned<Node>>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(key) = map.next_key()? {
                    items.push((key, map.next_value()?));
                }
                Ok(Node::Table(items))
            }
        }
        d.deserialize_any(NodeVisitor)
    }
}

impl Locator {
    /// None if `text` is not TOML at all.
    pub fn new(text: &str) -> Option<Self> {
        let root: Node = toml::from_str(text).ok()?;
        let mut entries = Vec::new();
        walk(&root, "", &mut entries);
        Some(Self { entries })
    }

    /// The field whose key or value is the narrowest one around `span`.
    pub fn field_at(&self, span: &Range<usize>) -> String {
        let around = |r: &Range<usize>| r.start <= span.start && span.end <= r.end.max(r.start + 1);
        self.entries
            .iter()
            .flat_map(|(path, value, key)| {
                [Some(value), key.as_ref()]
                    .into_iter()
                    .flatten()
                    .map(move |r| (path, r))
            })
            .filter(|(_, r)| around(r))
            .rev()
            .min_by_key(|(_, r)| r.end - r.start)
            .map(|(path, _)| path.clone())
            .unwrap_or_default()
    }

    /// Span of `field`'s value, or of its nearest ancestor present in the document.
    pub fn span_of(&self, field: &str) -> Option<Range<usize>> {
        let mut field = field;
        loop {
            if let Some((_, value, _)) = self.entries.iter().find(|(p, _, _)| p == field) {
                return Some(value.clone());
            }
            let cut = field.rfind(['.', '['])?;
            field = &field[..cut];
        }
    }
}

fn walk(node: &Node, at: &str, out: &mut Vec<Entry>) {
    match node {
        Node::Leaf => {}
        Node::Table(items) => {
            for (key, value) in items {
                let k = quote_key(key.get_ref());
                let path = if at.is_empty() {
                    k
                } else {
                    format!("{at}.{k}")
                };
                out.push((path.clone(), value.span(), Some(key.span())));
                walk(value.get_ref(), &path, out);
            }
        }
        Node::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                let path = format!("{at}[{i}]");
                out.push((path.clone(), value.span(), None));
                walk(value.get_ref(), &path, out);
            }
        }
    }
}

fn quote_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// 1-based line of byte offset `at`.
pub fn line_of(text: &str, at: usize) -> u32 {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    (before.matches('\n').count() + 1) as u32
}

/// The line of `field` found by its name alone, for documents the span walk cannot
/// read (toml 0.8 refuses spans under a dotted table header such as
/// `[policy.migration]`): the deepest segment of the path that appears as a key
/// (`name = ...`) or at the end of a table header (`[... .name]`).
pub fn line_by_name(text: &str, field: &str) -> u32 {
    let segments: Vec<&str> = field
        .split('.')
        .map(|s| s.split('[').next().unwrap_or(s))
        .filter(|s| !s.is_empty())
        .collect();
    for seg in segments.iter().rev() {
        for (n, line) in text.lines().enumerate() {
            let l = line.trim();
            let is_key = l
                .strip_prefix(seg)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            let header = l.trim_start_matches('[').trim_end_matches(']');
            let is_header =
                l.starts_with('[') && (header == *seg || header.ends_with(&format!(".{seg}")));
            if is_key || is_header {
                return n as u32 + 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_headers_are_located_by_name() {
        let text =
            "[policy.migration]\nenabled = true\n[[policy.migration.targets]]\nuri = \"x\"\n";
        assert!(
            Locator::new(text).is_none(),
            "toml 0.8 spans under dotted headers"
        );
        assert_eq!(line_by_name(text, "policy.migration.targets"), 3);
        assert_eq!(line_by_name(text, "policy.migration.targets[0].uri"), 4);
        assert_eq!(line_by_name(text, "policy.migration.enabled"), 2);
        assert_eq!(line_by_name(text, "billing.currency"), 0);
    }
}
