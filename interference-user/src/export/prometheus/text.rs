//! A small writer for the Prometheus text exposition format, version 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>).
//!
//! Exporters add metric families one after the other; each family writes its `# HELP`
//! and `# TYPE` lines before its first sample, so every sample is grouped under its
//! family as the format requires, and a family without samples writes nothing. The
//! writer owns the escaping and number formatting rules, and turns per-bucket counts
//! into the cumulative `le` buckets a histogram needs, so callers cannot get them wrong.

use std::collections::HashSet;
use std::fmt::Write as _;

/// Label pairs of one series, in the order they are written.
pub type Labels<'a> = [(&'a str, &'a str)];

/// A sample value: integers are written exactly, floats in Prometheus' spelling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(v.into())
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(v.into())
    }
}

#[derive(Debug, Default)]
pub struct TextWriter {
    out: String,
    families: HashSet<String>,
}

impl TextWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter family; by convention its name ends in `_total`.
    pub fn counter<'a>(&'a mut self, name: &'a str, help: &'a str) -> Family<'a> {
        debug_assert!(
            name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        self.family(name, help, "counter")
    }

    pub fn gauge<'a>(&'a mut self, name: &'a str, help: &'a str) -> Family<'a> {
        self.family(name, help, "gauge")
    }

    /// A histogram family; write series with [`HistogramFamily::series`].
    pub fn histogram<'a>(&'a mut self, name: &'a str, help: &'a str) -> HistogramFamily<'a> {
        HistogramFamily(self.family(name, help, "histogram"))
    }

    pub fn as_str(&self) -> &str {
        &self.out
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn family<'a>(&'a mut self, name: &'a str, help: &'a str, kind: &'static str) -> Family<'a> {
        debug_assert!(valid_name(name), "invalid metric name {name:?}");
        let fresh = self.families.insert(name.to_string());
        debug_assert!(fresh, "metric family {name} written twice");
        Family {
            w: self,
            name,
            help,
            kind,
            started: false,
        }
    }
}

/// One metric family being written.
pub struct Family<'a> {
    w: &'a mut TextWriter,
    name: &'a str,
    help: &'a str,
    kind: &'static str,
    started: bool,
}

impl Family<'_> {
    /// One sample of a counter or gauge.
    pub fn sample(&mut self, labels: &Labels, value: impl Into<Value>) {
        self.line(self.name, "", labels, None, value.into());
    }

    fn header(&mut self) {
        if !self.started {
            self.started = true;
            let help = escape_help(self.help);
            let _ = writeln!(self.w.out, "# HELP {} {help}", self.name);
            let _ = writeln!(self.w.out, "# TYPE {} {}", self.name, self.kind);
        }
    }

    /// `name{labels[,le="…"]} value`. Writing to a String cannot fail.
    fn line(&mut self, name: &str, suffix: &str, labels: &Labels, le: Option<&str>, value: Value) {
        self.header();
        let out = &mut self.w.out;
        out.push_str(name);
        out.push_str(suffix);
        let extra = le.map(|le| ("le", le));
        if !labels.is_empty() || extra.is_some() {
            out.push('{');
            for (i, (k, v)) in labels.iter().chain(extra.iter()).enumerate() {
                debug_assert!(valid_label_name(k), "invalid label name {k:?}");
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                push_escaped_label_value(out, v);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        push_value(out, value);
        out.push('\n');
    }
}

/// A histogram family being written.
pub struct HistogramFamily<'a>(Family<'a>);

impl HistogramFamily<'_> {
    /// One histogram series. `buckets` are (upper bound, observations in that bucket
    /// only) for the finite buckets in increasing order; the writer makes them
    /// cumulative and adds `le="+Inf"` equal to `_count`. Observations above the last
    /// finite bound count only in `count`, which is raised to at least the sum of the
    /// finite buckets so that the +Inf bucket is never below them.
    pub fn series(
        &mut self,
        labels: &Labels,
        buckets: impl IntoIterator<Item = (f64, u64)>,
        sum: f64,
        count: u64,
    ) {
        let name = self.0.name;
        let mut cumulative = 0u64;
        let mut last_le = f64::NEG_INFINITY;
        let mut le_text = String::new();
        for (le, n) in buckets {
            debug_assert!(le > last_le, "bucket bounds of {name} must increase");
            last_le = le;
            cumulative = cumulative.saturating_add(n);
            le_text.clear();
            push_value(&mut le_text, Value::Float(le));
            self.0
                .line(name, "_bucket", labels, Some(&le_text), cumulative.into());
        }
        self.finish_series(labels, cumulative, sum, count);
    }

    /// Like [`Self::series`] with the `le` labels already rendered, for writers that
    /// emit the same bucket bounds for many series every tick.
    pub fn series_with_le<'s>(
        &mut self,
        labels: &Labels,
        buckets: impl IntoIterator<Item = (&'s str, u64)>,
        sum: f64,
        count: u64,
    ) {
        let name = self.0.name;
        let mut cumulative = 0u64;
        for (le, n) in buckets {
            cumulative = cumulative.saturating_add(n);
            self.0
                .line(name, "_bucket", labels, Some(le), cumulative.into());
        }
        self.finish_series(labels, cumulative, sum, count);
    }

    fn finish_series(&mut self, labels: &Labels, cumulative: u64, sum: f64, count: u64) {
        let name = self.0.name;
        let count = count.max(cumulative);
        self.0
            .line(name, "_bucket", labels, Some("+Inf"), count.into());
        self.0.line(name, "_sum", labels, None, sum.into());
        self.0.line(name, "_count", labels, None, count.into());
    }
}

/// Appends `v` escaped as a label value, without allocating.
fn push_escaped_label_value(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    out.push_str(&escape_label_value(v));
}

/// Appends a sample value as [`format_value`] renders it, without allocating.
fn push_value(out: &mut String, v: Value) {
    match v {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_finite() => {
            let _ = write!(out, "{f}");
        }
        other => out.push_str(&format_value(other)),
    }
}

/// Label values escape backslash, double quote and line feed.
pub fn escape_label_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text escapes backslash and line feed only.
pub fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Integers exactly; floats as Go's ParseFloat reads them, with `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => "NaN".to_string(),
        Value::Float(f) if f == f64::INFINITY => "+Inf".to_string(),
        Value::Float(f) if f == f64::NEG_INFINITY => "-Inf".to_string(),
        Value::Float(f) => f.to_string(),
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn valid_name(n: &str) -> bool {
    let mut b = n.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn valid_label_name(n: &str) -> bool {
    let mut b = n.bytes();
    !n.starts_with("__")
        && b.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_exactly() {
        let mut w = TextWriter::new();
        w.counter("demo_requests_total", "Requests.\nSecond \\ line.")
            .sample(&[("vm", "a"), ("op", "read")], 3u64);
        let mut g = w.gauge("demo_temperature_celsius", "Temperature.");
        g.sample(&[], 21.5);
        g.sample(&[("where", "out")], f64::NEG_INFINITY);
        w.gauge("demo_empty", "Writes nothing without samples.");
        w.histogram("demo_latency_seconds", "Latency.").series(
            &[("vm", "a")],
            [(0.001, 2), (0.01, 0), (0.1, 3)],
            0.25,
            6,
        );
        assert_eq!(
            w.finish(),
            r#"# HELP demo_requests_total Requests.\nSecond \\ line.
# TYPE demo_requests_total counter
demo_requests_total{vm="a",op="read"} 3
# HELP demo_temperature_celsius Temperature.
# TYPE demo_temperature_celsius gauge
demo_temperature_celsius 21.5
demo_temperature_celsius{where="out"} -Inf
# HELP demo_latency_seconds Latency.
# TYPE demo_latency_seconds histogram
demo_latency_seconds_bucket{vm="a",le="0.001"} 2
demo_latency_seconds_bucket{vm="a",le="0.01"} 2
demo_latency_seconds_bucket{vm="a",le="0.1"} 5
demo_latency_seconds_bucket{vm="a",le="+Inf"} 6
demo_latency_seconds_sum{vm="a"} 0.25
demo_latency_seconds_count{vm="a"} 6
"#
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("line\nbreak"), "line\\nbreak");
        assert_eq!(escape_label_value("plain-vm_1.é"), "plain-vm_1.é");
        let mut w = TextWriter::new();
        w.gauge("x", "h").sample(&[("vm", "we\"ird\\\nname")], 1u64);
        assert!(
            w.as_str().contains(r#"x{vm="we\"ird\\\nname"} 1"#),
            "{}",
            w.as_str()
        );
    }

    #[test]
    fn histogram_count_is_never_below_the_buckets() {
        let mut w = TextWriter::new();
        w.histogram("h_seconds", "h")
            .series(&[], [(1.0, 4)], 1.0, 3);
        let s = w.finish();
        assert!(s.contains("h_seconds_bucket{le=\"+Inf\"} 4\n"), "{s}");
        assert!(s.contains("h_seconds_count 4\n"), "{s}");
    }

    #[test]
    fn numbers() {
        assert_eq!(format_value(Value::Int(u64::MAX)), "18446744073709551615");
        assert_eq!(format_value(1.0.into()), "1");
        assert_eq!(format_value(0.000000002.into()), "0.000000002");
        assert_eq!(format_value(f64::NAN.into()), "NaN");
        assert_eq!(format_value(f64::INFINITY.into()), "+Inf");
        assert_eq!(format_value(true.into()), "1");
    }

    #[test]
    fn names() {
        assert!(valid_name("interference_vm_threads"));
        assert!(valid_name("a:b_c1"));
        assert!(!valid_name("1abc"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(""));
        assert!(valid_label_name("vm"));
        assert!(!valid_label_name("__name__"));
        assert!(!valid_label_name("le-x"));
    }
}
