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
    let value: T =
        toml::from_str(text).map_err(|e| TomlError::Parse(decode_problem(text, file, &e)))?;
    let problems = located(text, file, check(&value));
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(TomlError::Invalid(problems))
    }
}

/// Like [`parse`], but every problem at once, for `check-config`: after a decode
/// error the offending entry is blanked out (its lines become spaces, so every later
/// position is unchanged) and decoding goes on, until the rest decodes and `check`
/// runs on it. Stops early only where nothing can be blanked without shifting other
/// fields (a syntax error, an array item's own shape).
pub fn parse_all<T: DeserializeOwned>(
    text: &str,
    file: &Path,
    check: impl FnOnce(&T) -> Vec<(String, String)>,
) -> Result<T, TomlError> {
    let mut work = text.to_owned();
    let mut problems = Vec::new();
    let mut blanked: Vec<String> = Vec::new();
    let decoded = loop {
        match toml::from_str::<T>(&work) {
            Ok(value) => break Some(value),
            Err(e) => {
                let problem = decode_problem(text, file, &e);
                let lines = Locator::new(&work).and_then(|l| l.lines_of(&work, &problem.field));
                let field = problem.field.clone();
                problems.push(problem);
                match lines {
                    Some(range) if !field.is_empty() && !blanked.contains(&field) => {
                        blank(&mut work, range);
                        blanked.push(field);
                    }
                    _ => break None,
                }
            }
        }
    };
    if let Some(value) = decoded {
        // A blanked field took its default: what `check` says of it is not the file's.
        let checked = check(&value)
            .into_iter()
            .filter(|(field, _)| !blanked.iter().any(|b| within(field, b)))
            .collect();
        problems.extend(located(text, file, checked));
        if problems.is_empty() {
            return Ok(value);
        }
    }
    problems.sort_by_key(|p| p.position.unwrap_or((usize::MAX, 0)));
    Err(TomlError::Invalid(problems))
}

/// Every field path the file sets (tables, arrays, their items and leaves), e.g. to
/// tell a value from the file from an embedded default. Empty if `text` is not TOML.
pub fn fields_set(text: &str) -> Vec<String> {
    Locator::new(text)
        .map(|l| l.entries.into_iter().map(|(path, _, _)| path).collect())
        .unwrap_or_default()
}

/// The 1-based line where the file sets `field` (or its nearest ancestor).
pub fn line_of(text: &str, field: &str) -> Option<usize> {
    let span = Locator::new(text)?.span_of(field)?;
    Some(position(text, span.start).0)
}

/// `table` as TOML, every value the file did not set (not in `set`, from
/// [`fields_set`]) marked `# default`: the settings in effect and where each comes from.
pub fn render_marking_defaults(table: &toml::Table, set: &[String]) -> String {
    let mut out = String::new();
    render_table(table, "", set, &mut out);
    out
}

fn render_table(table: &toml::Table, at: &str, set: &[String], out: &mut String) {
    let path = |key: &str| {
        if at.is_empty() {
            quote_key(key)
        } else {
            format!("{at}.{}", quote_key(key))
        }
    };
    let is_tables = |v: &toml::Value| match v {
        toml::Value::Table(_) => true,
        toml::Value::Array(items) => !items.is_empty() && items.iter().all(toml::Value::is_table),
        _ => false,
    };
    for (key, value) in table.iter().filter(|(_, v)| !is_tables(v)) {
        let marker = if set.iter().any(|f| *f == path(key)) {
            ""
        } else {
            "  # default"
        };
        out.push_str(&format!("{} = {value}{marker}\n", quote_key(key)));
    }
    for (key, value) in table.iter().filter(|(_, v)| is_tables(v)) {
        let here = path(key);
        match value {
            toml::Value::Table(inner) => {
                out.push_str(&format!("\n[{here}]\n"));
                render_table(inner, &here, set, out);
            }
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(inner) = item {
                        out.push_str(&format!("\n[[{here}]]\n"));
                        render_table(inner, &format!("{here}[{i}]"), set, out);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `field` is `at` or lies inside it (`vm[1].name` within `vm[1]` and `vm`).
fn within(field: &str, at: &str) -> bool {
    field == at
        || field
            .strip_prefix(at)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// Replace every character of `range` but line ends with spaces, one per byte, so
/// that every later byte offset stays where it was.
fn blank(text: &mut String, range: Range<usize>) {
    let spaces: String = text[range.clone()]
        .chars()
        .map(|c| match c {
            '\n' => "\n".to_owned(),
            c => " ".repeat(c.len_utf8()),
        })
        .collect();
    text.replace_range(range, &spaces);
}

/// The problem serde's decode error describes, located in `text`.
fn decode_problem(text: &str, file: &Path, e: &toml::de::Error) -> Problem {
    let span = e.span();
    let field = match (&span, Locator::new(text)) {
        (Some(span), Some(locator)) => locator.field_at(span),
        _ => String::new(),
    };
    Problem {
        file: file.to_path_buf(),
        position: span.map(|s| position(text, s.start)),
        field,
        message: plain_message(e.message()),
    }
}

/// `check`'s (field path, message) problems with their positions, in file order
/// (problems without a position last).
fn located(text: &str, file: &Path, problems: Vec<(String, String)>) -> Vec<Problem> {
    if problems.is_empty() {
        return Vec::new();
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
    problems.sort_by_key(|p| p.position.unwrap_or((usize::MAX, 0)));
    problems
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

    /// The whole lines that hold `field`'s key, its value and everything inside it
    /// (a `[table]` header and its keys); None for an array item, which has no key of
    /// its own to remove.
    fn lines_of(&self, text: &str, field: &str) -> Option<Range<usize>> {
        let (_, value, key) = self.entries.iter().find(|(path, _, _)| path == field)?;
        let key = key.as_ref()?;
        let end = self
            .entries
            .iter()
            .filter(|(path, _, _)| within(path, field))
            .map(|(_, value, _)| value.end)
            .fold(value.end.max(key.end), usize::max)
            .min(text.len());
        let start = key.start.min(value.start).min(text.len());
        let start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let end = text[end..].find('\n').map_or(text.len(), |i| end + i);
        Some(start..end)
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

    #[derive(Debug, Deserialize, serde::Serialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Doc {
        interval: u32,
        name: String,
        inner: Inner,
    }

    #[derive(Debug, Deserialize, serde::Serialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        level: u8,
        mode: String,
    }

    fn check_doc(d: &Doc) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if d.interval > 100 {
            out.push(("interval".into(), "above 100".into()));
        }
        if d.inner.mode == "bad" {
            out.push(("inner.mode".into(), "not a mode".into()));
        }
        out
    }

    #[test]
    fn parse_all_reports_every_problem_in_file_order() {
        let text = "interval = 500\nnmae = \"x\"\n\n[inner]\nlevel = \"high\"\nmode = \"bad\"\n\n[extra]\na = 1\n";
        let err = parse_all::<Doc>(text, Path::new("c.toml"), check_doc).unwrap_err();
        let lines: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(
            lines[0].starts_with("c.toml:1:12: interval: above 100"),
            "{lines:#?}"
        );
        assert!(
            lines[1].starts_with("c.toml:2:1: nmae: unknown field \"nmae\""),
            "{lines:#?}"
        );
        assert!(
            lines[2].starts_with("c.toml:5:9: inner.level: invalid type"),
            "{lines:#?}"
        );
        assert!(
            lines[3].starts_with("c.toml:6:8: inner.mode: not a mode"),
            "{lines:#?}"
        );
        assert!(
            lines[4].starts_with("c.toml:8:2: extra: unknown field \"extra\""),
            "{lines:#?}"
        );
        // The first problem alone is what `parse` says.
        let first = parse::<Doc>(text, Path::new("c.toml"), check_doc).unwrap_err();
        assert_eq!(first.problems().len(), 1);
    }

    #[test]
    fn parse_all_of_a_valid_file_is_its_value() {
        let doc = parse_all::<Doc>(
            "interval = 5\n[inner]\nmode = \"a\"\n",
            Path::new("c.toml"),
            check_doc,
        )
        .unwrap();
        assert_eq!((doc.interval, doc.inner.mode.as_str()), (5, "a"));
        let err = parse_all::<Doc>("interval = [", Path::new("c.toml"), check_doc).unwrap_err();
        assert_eq!(err.problems().len(), 1, "a syntax error stands alone");
    }

    #[test]
    fn defaults_are_marked() {
        let text = "name = \"n\"\n[inner]\nlevel = 3\n";
        let doc: Doc = toml::from_str(text).unwrap();
        let table = toml::Table::try_from(&doc).unwrap();
        let shown = render_marking_defaults(&table, &fields_set(text));
        assert_eq!(
            shown,
            "interval = 0  # default\nname = \"n\"\n\n[inner]\nlevel = 3\nmode = \"\"  # default\n"
        );
    }
}
