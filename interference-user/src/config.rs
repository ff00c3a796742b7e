//! The TOML configuration: `[[vm]]` (static inventory), `[collect]`, `[discovery]`.
//!
//! Loading is two stages, like the CLI: serde decodes the text into [`Config`]
//! (unknown tables and keys refused), then [`Config::problems`] checks what serde
//! cannot (unique names, cgroup paths inside a mounted cgroup filesystem, minimum
//! interval). Every error names the file, line, column and field, e.g.
//! `config.toml:7:12: vm[1].priority: unknown variant "urgent", expected one of low,
//! normal, high`. Lines come from a second, generic pass over the text that records
//! the span of every key and value (`Locator`), so serde errors (which carry a span)
//! get their field path and validation problems (which carry a field path) get their
//! line, without `Spanned` wrappers in the public types.
//!
//! Adding a table (`[policy]`, `[billing]`, `[model]`): a struct with
//! `#[serde(deny_unknown_fields, default)]`, a field on [`Config`], and, if it needs
//! checks, one call in [`Config::problems`].

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use toml::Spanned;

use crate::inventory::names::check_vm_name;
use crate::inventory::{InventoryOptions, Mounts, MountsError, StaticVm};

/// Shortest tick accepted: below it the per-tick cgroup and map reads dominate.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[[vm]]`: VMs declared by hand (their cgroups are given).
    #[serde(default, rename = "vm", skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<StaticVm>,
    #[serde(default)]
    pub collect: CollectConfig,
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    #[serde(default)]
    pub score: ScoreConfig,
    #[serde(default)]
    pub policy: crate::policy::PolicyConfig,
    #[serde(default)]
    pub billing: crate::billing::BillingConfig,
}

/// `[collect]`: the tick and where its output goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectConfig {
    /// Tick length, humantime syntax ("5s", "500ms"); at least [`MIN_INTERVAL`].
    #[serde(with = "humantime_duration")]
    pub interval: Duration,
    /// JSONL file of raw samples, if wanted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<PathBuf>,
    /// Prometheus textfile, if wanted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_file: Option<PathBuf>,
    /// Host name in the output instead of the kernel's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl Default for CollectConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            samples: None,
            metrics_file: None,
            host: None,
        }
    }
}

/// `[discovery]`: which automatic sources run besides the static `[[vm]]` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// QEMU processes that belong to no static or libvirt VM are VMs of their own.
    /// (/proc is read either way, to find the pid and QMP socket of the others.)
    pub qemu: bool,
    /// libvirt's machine cgroups.
    pub libvirt: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            qemu: true,
            libvirt: true,
        }
    }
}

pub use crate::predict::ScorerKind;

/// `[score]`: the Contention Score stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreConfig {
    /// How often every pair is scored; a multiple of `collect.interval`. Unset: every
    /// collector tick for the nowcast; for the models, the first multiple of the
    /// collector's interval from 5 s.
    #[serde(
        default,
        with = "humantime_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
    pub scorer: ScorerKind,
    /// ONNX model; its sidecar is the same path with `.json`. Default: the model built
    /// into the binary (models/contention-lstm.onnx).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// The nowcast's window: the score is the share of the victim's runnable time its
    /// neighbour took over the collector ticks of the last `smoothing`.
    #[serde(with = "humantime_duration")]
    pub smoothing: Duration,
}

impl Default for ScoreConfig {
    fn default() -> Self {
        Self {
            interval: None,
            scorer: ScorerKind::Nowcast,
            model: None,
            smoothing: crate::predict::DEFAULT_SMOOTHING,
        }
    }
}

impl ScoreConfig {
    /// The scoring interval of `scorer` for a collector ticking every `tick`.
    pub fn every(&self, scorer: ScorerKind, tick: Duration) -> Duration {
        if scorer == ScorerKind::Nowcast {
            return self.interval.unwrap_or(tick);
        }
        self.interval.unwrap_or_else(|| {
            let tick = tick.max(Duration::from_millis(1));
            let n = Duration::from_secs(5)
                .as_nanos()
                .div_ceil(tick.as_nanos())
                .max(1);
            tick * u32::try_from(n).unwrap_or(u32::MAX)
        })
    }

    fn check(&self, collect: &CollectConfig, out: &mut Vec<(String, String)>) {
        if let (Some(m), ScorerKind::Nowcast | ScorerKind::Heuristic) = (&self.model, self.scorer) {
            out.push((
                "score.model".into(),
                format!(
                    "{}: only scorer = \"lstm\" uses a model (this config's scorer is {})",
                    m.display(),
                    self.scorer
                ),
            ));
        }
        if self.smoothing.is_zero() || self.smoothing > Duration::from_secs(3600) {
            out.push((
                "score.smoothing".into(),
                format!(
                    "{} must be more than 0 and at most 1h",
                    humantime::format_duration(self.smoothing)
                ),
            ));
        }
        let Some(interval) = self.interval else {
            return;
        };
        let tick = collect.interval.as_millis().max(1);
        let every = interval.as_millis();
        if every == 0 || !every.is_multiple_of(tick) {
            out.push((
                "score.interval".into(),
                format!(
                    "{} is not a multiple of collect.interval ({})",
                    humantime::format_duration(interval),
                    humantime::format_duration(collect.interval)
                ),
            ));
        }
    }
}

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

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or not the shape of a [`Config`].
    #[error("{0}")]
    Parse(Problem),
    /// Valid shape, invalid content; one line per problem.
    #[error("{}", .0.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    #[error("cannot check cgroup paths: {0}")]
    Mounts(#[from] MountsError),
}

impl Config {
    /// Load and validate `path` against this host's cgroup mounts.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mounts = Mounts::read(Path::new("/proc"))?;
        Self::load_with(path, &mounts)
    }

    /// Load and validate `path` against the given mounts.
    pub fn load_with(path: &Path, mounts: &Mounts) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, mounts)
    }

    /// Decode and validate `text`; `file` only names it in errors.
    pub fn parse(text: &str, file: &Path, mounts: &Mounts) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| {
            let span = e.span();
            let field = match (&span, Locator::new(text)) {
                (Some(span), Some(locator)) => locator.field_at(span),
                _ => String::new(),
            };
            ConfigError::Parse(Problem {
                file: file.to_path_buf(),
                position: span.map(|s| position(text, s.start)),
                field,
                message: plain_message(e.message()),
            })
        })?;
        let problems = config.problems(mounts);
        if problems.is_empty() {
            return Ok(config);
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
        // File order; problems without a position (none expected) last.
        problems.sort_by_key(|p| p.position.unwrap_or((usize::MAX, 0)));
        Err(ConfigError::Invalid(problems))
    }

    /// What is wrong with the content, as (field path, message). Empty when valid;
    /// `Config::default()` always is.
    pub fn problems(&self, mounts: &Mounts) -> Vec<(String, String)> {
        let mut out = Vec::new();
        check_vms(&self.vms, mounts, &mut out);
        self.collect.check("collect", &mut out);
        self.score.check(&self.collect, &mut out);
        out.extend(self.policy.check());
        out.extend(self.billing.check());
        out
    }

    /// The inventory stage's options for this config.
    pub fn inventory_options(&self, proc_root: &Path, mounts: Mounts) -> InventoryOptions {
        InventoryOptions {
            proc_root: proc_root.to_path_buf(),
            mounts,
            static_vms: self.vms.clone(),
            qemu: self.discovery.qemu,
            libvirt: self.discovery.libvirt,
        }
    }
}

impl CollectConfig {
    fn check(&self, at: &str, out: &mut Vec<(String, String)>) {
        if self.interval < MIN_INTERVAL {
            out.push((
                format!("{at}.interval"),
                format!(
                    "{} is below the minimum of {}",
                    humantime::format_duration(self.interval),
                    humantime::format_duration(MIN_INTERVAL)
                ),
            ));
        }
        if self.host.as_deref() == Some("") {
            out.push((
                format!("{at}.host"),
                "must not be empty (leave the key out instead)".into(),
            ));
        }
    }
}

fn check_vms(vms: &[StaticVm], mounts: &Mounts, out: &mut Vec<(String, String)>) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    // Every cgroup claimed so far (normalised path, owning vm index).
    let mut claimed: Vec<(PathBuf, usize)> = Vec::new();
    for (i, vm) in vms.iter().enumerate() {
        let at = format!("vm[{i}]");
        match check_vm_name(&vm.name) {
            Err(e) => out.push((format!("{at}.name"), e)),
            Ok(()) => {
                if let Some(first) = names.insert(&vm.name, i) {
                    names.insert(&vm.name, first);
                    out.push((
                        format!("{at}.name"),
                        format!(
                            "duplicate VM name {:?}, already used by vm[{first}]",
                            vm.name
                        ),
                    ));
                }
            }
        }
        if vm.cgroups.is_empty() {
            out.push((
                format!("{at}.cgroups"),
                "at least one cgroup directory is required".into(),
            ));
        }
        for (j, path) in vm.cgroups.iter().enumerate() {
            let field = format!("{at}.cgroups[{j}]");
            let (mount, _, normal) = match mounts.locate(path) {
                Ok(found) => found,
                Err(e) => {
                    out.push((field, e.to_string()));
                    continue;
                }
            };
            if normal == mount.mount_point {
                out.push((field, format!("{} is the root of its cgroup hierarchy (the whole host), not a VM's cgroup", path.display())));
                continue;
            }
            if let Some((other, owner)) = claimed
                .iter()
                .find(|(other, _)| normal.starts_with(other) || other.starts_with(&normal))
            {
                let whose = if *owner == i {
                    "this VM".to_owned()
                } else {
                    format!("vm[{owner}] ({:?})", vms[*owner].name)
                };
                out.push((
                    field,
                    format!("{} overlaps {} of {whose}", path.display(), other.display()),
                ));
                continue;
            }
            claimed.push((normal, i));
        }
        for (key, value) in [("customer", &vm.customer), ("workload", &vm.workload)] {
            if value.as_deref() == Some("") {
                out.push((
                    format!("{at}.{key}"),
                    "must not be empty (leave the key out instead)".into(),
                ));
            }
        }
    }
}

/// Humantime strings ("5s", "250ms", "1m 30s") for `Duration` fields.
/// humantime strings ("5s", "500ms") for `Duration` fields, shared by every section.
pub(crate) mod humantime_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?}: {e} (write e.g. \"5s\" or \"500ms\")"
            ))
        })
    }

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*value).to_string())
    }
}

/// `Option<Duration>` in humantime syntax; absent means None.
mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::humantime_duration::deserialize(d).map(Some)
    }

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => super::humantime_duration::serialize(v, s),
            None => s.serialize_none(),
        }
    }
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
    use crate::inventory::Priority;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn mounts() -> Mounts {
        Mounts::parse(HYBRID, Path::new("mountinfo")).unwrap()
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("config.toml"), &mounts())
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const GOOD: &str = r#"
[collect]
interval = "2s"
metrics_file = "/var/lib/node_exporter/interference.prom"
host = "kvm-7"

[discovery]
libvirt = false

[[vm]]
name = "web-1"
cgroups = ["/sys/fs/cgroup/unified/lab/web-1", "/sys/fs/cgroup/cpu/lab/web-1"]
customer = "acme"
priority = "high"
workload = "web"

[[vm]]
name = "db-1"
cgroups = ["/sys/fs/cgroup/unified/lab/db-1"]
"#;

    #[test]
    fn parses_a_full_config() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.collect.interval, Duration::from_secs(2));
        assert_eq!(c.collect.samples, None);
        assert_eq!(c.collect.host.as_deref(), Some("kvm-7"));
        assert_eq!(
            c.discovery,
            DiscoveryConfig {
                qemu: true,
                libvirt: false
            }
        );
        assert_eq!(c.vms.len(), 2);
        assert_eq!(
            (c.vms[0].priority, c.vms[0].customer.as_deref()),
            (Priority::High, Some("acme"))
        );
        assert_eq!(
            (c.vms[1].priority, c.vms[1].workload.as_deref()),
            (Priority::Normal, None)
        );
        let o = c.inventory_options(Path::new("/proc"), mounts());
        assert!(o.qemu && !o.libvirt && o.static_vms.len() == 2);
        // What we write, we read back.
        let again: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn default_and_empty_configs_are_valid() {
        let d = Config::default();
        assert!(d.problems(&Mounts::default()).is_empty());
        assert_eq!(d.collect.interval, Duration::from_secs(5));
        assert!(d.discovery.qemu && d.discovery.libvirt);
        assert_eq!(parse("").unwrap(), d);
    }

    #[test]
    fn unknown_variant_names_file_line_column_and_field() {
        let text = "[[vm]]\nname = \"a\"\ncgroups = [\"/sys/fs/cgroup/cpu/a\"]\n\n[[vm]]\nname = \"b\"\npriority = \"urgent\"\n";
        assert_eq!(
            err(text),
            r#"config.toml:7:12: vm[1].priority: unknown variant "urgent", expected one of low, normal, high"#
        );
    }

    #[test]
    fn unknown_keys_and_tables_are_refused() {
        assert_eq!(
            err("[[vm]]\nname = \"a\"\ncgroups = []\ncpu_weight = 3\n"),
            r#"config.toml:4:1: vm[0].cpu_weight: unknown field "cpu_weight", expected one of name, cgroups, customer, priority, workload, vcpus, memory_mib"#
        );
        assert_eq!(
            err("[collect]\ninterval = \"1s\"\n\n[polcy]\nthreshold = 50\n"),
            r#"config.toml:4:2: polcy: unknown field "polcy", expected one of vm, collect, discovery, score, policy, billing"#
        );
        assert_eq!(
            err("[discovery]\nqemu = \"yes\"\n"),
            r#"config.toml:2:8: discovery.qemu: invalid type: string "yes", expected a boolean"#
        );
    }

    #[test]
    fn missing_field_and_syntax_errors() {
        assert_eq!(
            err("[[vm]]\ncgroups = []\n"),
            r#"config.toml:1:1: vm[0]: missing field "name""#
        );
        let e = err("[collect]\ninterval = \n");
        assert!(e.starts_with("config.toml:2:12: "), "{e}");
    }

    #[test]
    fn interval_syntax_and_minimum() {
        let e = err("[collect]\ninterval = \"5x\"\n");
        assert!(
            e.starts_with(r#"config.toml:2:12: collect.interval: invalid duration "5x": "#),
            "{e}"
        );
        assert_eq!(
            err("[collect]\ninterval = \"50ms\"\n"),
            "config.toml:2:12: collect.interval: 50ms is below the minimum of 100ms"
        );
        assert_eq!(
            parse("[collect]\ninterval = \"100ms\"\n")
                .unwrap()
                .collect
                .interval,
            MIN_INTERVAL
        );
    }

    #[test]
    fn score_section_defaults_and_checks() {
        let c = parse("").unwrap();
        assert_eq!(c.score.scorer, ScorerKind::Nowcast);
        assert_eq!(
            c.score.every(ScorerKind::Nowcast, c.collect.interval),
            c.collect.interval
        );
        assert_eq!(c.score.smoothing, Duration::from_secs(5));
        assert_eq!(
            c.score.every(ScorerKind::Lstm, c.collect.interval),
            Duration::from_secs(5)
        );
        let c = parse("[score]\nscorer = \"lstm\"\nmodel = \"/m/x.onnx\"\n").unwrap();
        assert_eq!(c.score.scorer, ScorerKind::Lstm);
        assert_eq!(c.score.model.as_deref(), Some(Path::new("/m/x.onnx")));
        assert_eq!(
            err("[collect]\ninterval = \"2s\"\n[score]\ninterval = \"5s\"\n"),
            "config.toml:4:12: score.interval: 5s is not a multiple of collect.interval (2s)"
        );
        assert_eq!(
            err("[score]\nscorer = \"gru\"\n"),
            r#"config.toml:2:10: score.scorer: unknown variant "gru", expected one of nowcast, lstm, heuristic"#
        );
        let e = err("[score]\nmodel = \"/m/x.onnx\"\n");
        assert!(
            e.contains("score.model: /m/x.onnx: only scorer = \"lstm\" uses a model"),
            "{e}"
        );
        assert_eq!(
            err("[score]\nsmoothing = \"0s\"\n"),
            "config.toml:2:13: score.smoothing: 0s must be more than 0 and at most 1h"
        );
        // Unset, a model's interval follows the collector: the first multiple of it
        // from 5 s.
        let c = parse("[collect]\ninterval = \"2s\"\n").unwrap();
        assert_eq!(
            c.score.every(ScorerKind::Heuristic, c.collect.interval),
            Duration::from_secs(6)
        );
    }

    #[test]
    fn vm_names_are_checked() {
        let text = "[[vm]]\nname = \"web-1\"\ncgroups = [\"/sys/fs/cgroup/cpu/a\"]\n\n[[vm]]\nname = \"web-1\"\ncgroups = [\"/sys/fs/cgroup/cpu/b\"]\n";
        assert_eq!(
            err(text),
            r#"config.toml:6:8: vm[1].name: duplicate VM name "web-1", already used by vm[0]"#
        );
        let e = err("[[vm]]\nname = \"\"\ncgroups = [\"/sys/fs/cgroup/cpu/a\"]\n");
        assert_eq!(
            e,
            "config.toml:2:8: vm[0].name: a VM name must not be empty"
        );
        let e = err("[[vm]]\nname = \"../x\"\ncgroups = [\"/sys/fs/cgroup/cpu/a\"]\n");
        assert_eq!(
            e,
            r#"config.toml:2:8: vm[0].name: "../x" contains '/'; use only letters, digits, '-', '_' and '.'"#
        );
        let long = "x".repeat(65);
        let e = err(&format!(
            "[[vm]]\nname = \"{long}\"\ncgroups = [\"/sys/fs/cgroup/cpu/a\"]\n"
        ));
        assert_eq!(
            e,
            format!("config.toml:2:8: vm[0].name: \"{long}\" is longer than 64 characters")
        );
    }

    #[test]
    fn cgroup_paths_are_checked() {
        let e = err("[[vm]]\nname = \"a\"\ncgroups = []\n");
        assert_eq!(
            e,
            "config.toml:3:11: vm[0].cgroups: at least one cgroup directory is required"
        );
        let e = err("[[vm]]\nname = \"a\"\ncgroups = [\"/sys/fs/cgroup/cpu/a\", \"lab/a\"]\n");
        assert_eq!(
            e,
            "config.toml:3:36: vm[0].cgroups[1]: lab/a: a cgroup path must be absolute"
        );
        let e = err("[[vm]]\nname = \"a\"\ncgroups = [\"/sys/fs/cgroup/cpu/../memory/a\"]\n");
        assert_eq!(e, "config.toml:3:12: vm[0].cgroups[0]: /sys/fs/cgroup/cpu/../memory/a: a cgroup path must not contain `..`");
        let e = err("[[vm]]\nname = \"a\"\ncgroups = [\"/srv/a\"]\n");
        assert_eq!(
            e,
            "config.toml:3:12: vm[0].cgroups[0]: /srv/a is not inside a mounted cgroup filesystem \
             (cgroup mounts: /sys/fs/cgroup/cpu (cgroup v1: cpu), /sys/fs/cgroup/unified (cgroup2))"
        );
        let e = err("[[vm]]\nname = \"a\"\ncgroups = [\"/sys/fs/cgroup/unified\"]\n");
        assert!(
            e.ends_with("is the root of its cgroup hierarchy (the whole host), not a VM's cgroup"),
            "{e}"
        );
        let text = "[[vm]]\nname = \"a\"\ncgroups = [\"/sys/fs/cgroup/cpu/lab\"]\n[[vm]]\nname = \"b\"\ncgroups = [\"/sys/fs/cgroup/cpu/lab/b/\"]\n";
        assert_eq!(
            err(text),
            r#"config.toml:6:12: vm[1].cgroups[0]: /sys/fs/cgroup/cpu/lab/b/ overlaps /sys/fs/cgroup/cpu/lab of vm[0] ("a")"#
        );
    }

    #[test]
    fn several_problems_are_reported_together() {
        let text =
            "[collect]\ninterval = \"10ms\"\n[[vm]]\nname = \"a b\"\ncgroups = [\"/srv/a\"]\n";
        let e = err(text);
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert!(lines[0].starts_with("config.toml:2:12: collect.interval: "));
        assert!(lines[1].starts_with("config.toml:4:8: vm[0].name: "));
        assert!(lines[2].starts_with("config.toml:5:12: vm[0].cgroups[0]: "));
    }

    #[test]
    fn load_reads_the_file_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("interference.toml");
        std::fs::write(&path, "[discovery]\nqemu = false\nfoo = 1\n").unwrap();
        let e = Config::load_with(&path, &mounts()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                r#"{}:3:1: discovery.foo: unknown field "foo", expected qemu or libvirt"#,
                path.display()
            )
        );
        let missing = dir.path().join("none.toml");
        let e = Config::load_with(&missing, &mounts())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("cannot read config file {}: ", missing.display())),
            "{e}"
        );
    }

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
