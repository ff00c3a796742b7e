//! TOML documents with errors a person can act on: every problem names the file, the
//! line and column, and the field (`config.toml:7:12: vm[1].priority: unknown variant
//! "urgent", expected one of low, normal, high`), for the agent's config file and the
//! controller's policy documents alike.
//!
//! Two stages: serde decodes the text (its errors carry a span), then the caller's
//! check looks at what serde cannot (its problems carry a field path). A second,
//! generic pass over the text records the span of every key and value (`Locator`), so
//! serde errors get their field path and check problems get their line, without
//! `Spanned` wrappers in the public types.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

/// One thing wrong with the file, located as precisely as known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line and column, when the offending text could be found.
    pub position: Option<(usize, usize)>,
    /// `vm[1].priority`, `collect.interval`; empty for a syntax error.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What is wrong with a document: not TOML or not its shape (one problem), or its
/// content (every problem, in file order).
#[derive(Debug, Error)]
pub enum TomlError {
    #[error("{0}")]
    Parse(Problem),
    #[error("{}", .0.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl TomlError {
    /// Every problem, for callers that report them one by one.
    pub fn problems(&self) -> Vec<&Problem> {
        match self {
            Self::Parse(p) => vec![p],
            Self::Invalid(ps) => ps.iter().collect(),
        }
    }
}

/// Decode `text` (named `file` in errors) as a `T`, then run `check` on it: its
/// (field path, message) problems come back located in the text.
pub fn parse<T: DeserializeOwned>(
    text: &str,
    file: &Path,
    check: impl FnOnce(&T) -> Vec<(String, String)>,
) -> Result<T, TomlError> {
    let value: T = toml::from_str(text).map_err(|e| {
        let span = e.span();
        let field = match (&span, Locator::new(text)) {
            (Some(span), Some(locator)) => locator.field_at(span),
            _ => String::new(),
        };
        TomlError::Parse(Problem {
            file: file.to_path_buf(),
            position: span.map(|s| position(text, s.start)),
            field,
            message: plain_message(e.message()),
        })
    })?;
    let problems = check(&value);
    if problems.is_empty() {
        return Ok(value);
    }
    let locator = Locator::new(text);
    let mut problems: Vec<Problem> = problems
        .into_iter()
        .map(|(field, message)| Problem {
            file: file.to_path_buf(),
            position: locator
                .as_ref()
                .and_then(|l| l.span_of(&field))
                .map(|s| position(text, s.start)),
            field,
            message,
        })
        .collect();
    // File order; problems without a position last.
    problems.sort_by_key(|p| p.position.unwrap_or((usize::MAX, 0)));
    Err(TomlError::Invalid(problems))
}

/// serde's messages quote with backticks (``unknown variant `urgent`, expected one of
/// `low`, `normal`, `high` ``). For people: the first quoted item is what they wrote,
/// shown in double quotes; the rest is a list of what is allowed, shown bare.
fn plain_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, piece) in message.trim_end().split('`').enumerate() {
        match i {
            1 => {
                out.push('"');
                out.push_str(piece);
                out.push('"');
            }
            _ => out.push_str(piece),
        }
    }
    out
}

/// 1-based (line, column) of byte offset `at`; columns count characters.
fn position(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Spans of every key and value of a TOML document, by field path (`vm[1].name`).
struct Locator {
    entries: Vec<Entry>,
}

/// A field path, the span of its value and of its key (array items have none).
type Entry = (String, Range<usize>, Option<Range<usize>>);

/// A TOML value with the spans of its parts, and nothing else.
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
    /// None if `text` is not TOML at all (then serde's own error stands alone).
    fn new(text: &str) -> Option<Self> {
        let root: Node = toml::from_str(text).ok()?;
        let mut entries = Vec::new();
        Self::walk(&root, "", &mut entries);
        Some(Self { entries })
    }

    fn walk(node: &Node, at: &str, out: &mut Vec<Entry>) {
        match node {
            Node::Leaf => {}
            Node::Table(items) => {
                for (key, value) in items {
                    let path = if at.is_empty() {
                        quote_key(key.get_ref())
                    } else {
                        format!("{at}.{}", quote_key(key.get_ref()))
                    };
                    out.push((path.clone(), value.span(), Some(key.span())));
                    Self::walk(value.get_ref(), &path, out);
                }
            }
            Node::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    let path = format!("{at}[{i}]");
                    out.push((path.clone(), value.span(), None));
                    Self::walk(value.get_ref(), &path, out);
                }
            }
        }
    }

    /// The field whose key or value is the narrowest one around `span` (on a tie the
    /// deeper one: a one-table `[[vm]]` array and its table share a span).
    fn field_at(&self, span: &Range<usize>) -> String {
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

    /// Span of `field`'s value, or of its nearest ancestor present in the file.
    fn span_of(&self, field: &str) -> Option<Range<usize>> {
        let mut field = field;
        loop {
            if let Some((_, value, _)) = self.entries.iter().find(|(path, _, _)| path == field) {
                return Some(value.clone());
            }
            let cut = field.rfind(['.', '['])?;
            field = &field[..cut];
        }
    }
}

/// Keys are shown bare when TOML allows it, quoted otherwise.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_rewrite() {
        assert_eq!(
            plain_message("unknown variant `x`, expected `a` or `b`\n"),
            r#"unknown variant "x", expected a or b"#
        );
        assert_eq!(plain_message("no quotes"), "no quotes");
        assert_eq!(position("ab\ncdé\nx", 7), (2, 4));
        assert_eq!(position("ab\ncdé\nx", 8), (3, 1));
    }
}
