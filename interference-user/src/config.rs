//! The TOML configuration: `[[vm]]` (static inventory), `[collect]`, `[discovery]`.
//!
//! Loading is two stages, like the CLI: serde decodes the text into [`Config`]
//! (unknown tables and keys refused), then [`Config::problems`] checks what serde
//! cannot (unique names, cgroup paths inside a mounted cgroup filesystem, minimum
//! interval). Every error names the file, line, column and field, e.g.
//! `config.toml:7:12: vm[1].priority: unknown variant "urgent", expected one of low,
//! normal, high` (`interference_core::toml_file`, shared with the controller's policy
//! documents).
//!
//! Adding a table (`[policy]`, `[billing]`, `[model]`): a struct with
//! `#[serde(deny_unknown_fields, default)]`, a field on [`Config`], and, if it needs
//! checks, one call in [`Config::problems`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use interference_core::humantime_serde::{humantime_duration, humantime_opt};
pub use interference_core::toml_file::{self, Problem, TomlError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

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
    #[serde(default)]
    pub forecast: ForecastConfig,
    #[serde(default)]
    pub fleet: FleetConfig,
}

/// `[fleet]`: the link to a central controller (`interference-controller`,
/// docs/controller.md). Off unless `controller` is set: the agent alone is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// `http://controller:7070`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// The host's token (`interference-controller hosts tokens create --host NAME`),
    /// in a file readable by root only.
    pub token_file: PathBuf,
    /// The upload cursor (how far into the ledger the controller has acknowledged).
    pub state_dir: PathBuf,
    /// How often new ledger lines are sent.
    #[serde(with = "humantime_duration")]
    pub upload_every: Duration,
    /// The most lines in one batch (the controller may accept fewer: it says so when
    /// the agent registers).
    pub batch_lines: u32,
    /// The outbox (action phases, score events, capacity, rollups waiting for the
    /// controller) is kept under this many MiB by dropping its oldest summaries; action
    /// phases are never dropped. 64 MiB is some 200 hours of a 50-VM host's items.
    pub buffer_mib: u64,
    /// Each VM's summary (rollup) covers this long, aligned on the epoch.
    #[serde(with = "humantime_duration")]
    pub rollup_window: Duration,
    /// Where this host's management layer has a QEMU waiting for incoming migrations
    /// (`tcp:10.0.0.7:4444`), told to the controller so that it can place VMs here.
    /// None: the controller never places a VM on this host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration_uri: Option<String>,
    /// Take no migrated VMs (maintenance): the heartbeat says so and placement skips
    /// the host.
    pub draining: bool,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            controller: None,
            token_file: PathBuf::from("/etc/interference/host-token"),
            state_dir: PathBuf::from("/var/lib/interference/fleet"),
            upload_every: Duration::from_secs(5),
            batch_lines: 500,
            buffer_mib: 64,
            rollup_window: Duration::from_secs(300),
            migration_uri: None,
            draining: false,
        }
    }
}

impl FleetConfig {
    fn check(&self, out: &mut Vec<(String, String)>) {
        if let Some(url) = &self.controller {
            if !url.starts_with("http://") {
                out.push((
                    "fleet.controller".into(),
                    format!("{url:?} must start with http:// (this build has no TLS: put the controller behind a TLS proxy)"),
                ));
            }
        }
        if self.upload_every.is_zero() {
            out.push(("fleet.upload_every".into(), "must be more than 0".into()));
        }
        if self.buffer_mib == 0 {
            out.push(("fleet.buffer_mib".into(), "must be at least 1".into()));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.rollup_window) {
            out.push((
                "fleet.rollup_window".into(),
                format!(
                    "{} is not within 1s..=1h",
                    humantime::format_duration(self.rollup_window)
                ),
            ));
        }
        if let Some(uri) = &self.migration_uri {
            if !["tcp:", "unix:", "rdma:"]
                .iter()
                .any(|p| uri.starts_with(p))
                || uri.len() < 6
            {
                out.push((
                    "fleet.migration_uri".into(),
                    format!("{uri:?} is not a QEMU migration URI (tcp:HOST:PORT, unix:PATH or rdma:HOST:PORT)"),
                ));
            }
        }
        if !(1..=10_000).contains(&self.batch_lines) {
            out.push((
                "fleet.batch_lines".into(),
                format!("{} is not within 1..=10000", self.batch_lines),
            ));
        }
    }
}

/// `[forecast]`: per-VM demand forecasts turned into forecast pair scores the policy
/// acts on (issue 16; docs/forecast.md). Needs the nowcast scorer, which calibrates the
/// pair mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    /// Off by default: the forecast rung is opt-in until it has been measured against
    /// the lab's trace replays (docs/forecast.md, "Acting on forecasts").
    pub enabled: bool,
    /// The forecaster's step: its rollups and its model's time steps.
    #[serde(with = "humantime_duration")]
    pub step: Duration,
    /// One day of the tenants' rhythm; `day / step` must be the model's 288 steps (the
    /// lab compresses a day by shortening both).
    #[serde(with = "humantime_duration")]
    pub day: Duration,
    /// Seconds from Monday 00:00 UTC to the start of the tenants' week (minus their
    /// UTC offset: UTC+2 is -7200).
    pub origin_offset_seconds: i64,
    /// How far ahead the policy looks: a whole number of steps up to 12, or less than
    /// one step (the next step's forecast).
    #[serde(with = "humantime_duration")]
    pub horizon: Duration,
    /// Where the per-VM rollups and the pair calibration are kept across restarts.
    pub state_dir: PathBuf,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            step: Duration::from_secs(300),
            day: Duration::from_secs(86_400),
            origin_offset_seconds: 0,
            horizon: Duration::from_secs(300),
            state_dir: PathBuf::from("/var/lib/interference/forecast"),
        }
    }
}

impl ForecastConfig {
    /// The host's forecast clock these settings describe, for a model whose day is
    /// `model_day_steps` steps: the agent's and `forecast --import`'s alike.
    pub fn clock(
        &self,
        model_day_steps: usize,
    ) -> Result<interference_forecast::Clock, interference_forecast::ClockError> {
        interference_forecast::Clock::host(
            self.step,
            self.day,
            self.origin_offset_seconds,
            model_day_steps,
        )
    }

    fn check(&self, score: &ScoreConfig, out: &mut Vec<(String, String)>) {
        use interference_forecast::{contract::DAY_STEPS, Horizon, SubStep};
        if !self.enabled {
            return;
        }
        if score.scorer != ScorerKind::Nowcast {
            out.push((
                "forecast.enabled".into(),
                format!(
                    "forecasting calibrates on the nowcast; this config's scorer is {}",
                    score.scorer
                ),
            ));
        }
        let (step, day) = (self.step.as_nanos(), self.day.as_nanos());
        if step == 0 {
            out.push(("forecast.step".into(), "must be more than 0".into()));
            return;
        }
        if day != step * DAY_STEPS as u128 {
            out.push((
                "forecast.day".into(),
                format!(
                    "{} is not {DAY_STEPS} steps of {} (the model's day); set day = step x {DAY_STEPS}",
                    humantime::format_duration(self.day),
                    humantime::format_duration(self.step)
                ),
            ));
        }
        if let Err(e) = Horizon::from_duration(self.horizon).column(self.step, SubStep::NextStep) {
            out.push(("forecast.horizon".into(), e.to_string()));
        }
    }
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
    /// Only QEMU processes in the agent's own network namespace are this host's: for
    /// hosts simulated as network namespaces on one machine (the fleet lab, where a VM
    /// migrates between "hosts" by moving to a QEMU in another namespace). Off: every
    /// QEMU of the machine is this host's.
    pub own_netns_only: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            qemu: true,
            libvirt: true,
            own_netns_only: false,
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

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, not the shape of a [`Config`], or invalid content: every
    /// problem with its file, line, column and field.
    #[error(transparent)]
    Toml(#[from] TomlError),
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
        Ok(toml_file::parse(text, file, |c: &Self| c.problems(mounts))?)
    }

    /// Like [`Config::parse`], but every problem of the file at once (`check-config`):
    /// a decode error does not hide the ones after it.
    pub fn parse_all(text: &str, file: &Path, mounts: &Mounts) -> Result<Self, ConfigError> {
        Ok(toml_file::parse_all(text, file, |c: &Self| {
            c.problems(mounts)
        })?)
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
        self.forecast.check(&self.score, &mut out);
        self.fleet.check(&mut out);
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
            own_netns_only: self.discovery.own_netns_only,
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
                libvirt: false,
                own_netns_only: false,
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
            r#"config.toml:4:2: polcy: unknown field "polcy", expected one of vm, collect, discovery, score, policy, billing, forecast, fleet"#
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
                r#"{}:3:1: discovery.foo: unknown field "foo", expected one of qemu, libvirt, own_netns_only"#,
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
    fn forecast_section_is_checked_with_its_lines() {
        let ok =
            parse("[forecast]\nenabled = true\nstep = \"1s\"\nday = \"288s\"\nhorizon = \"10s\"\n")
                .unwrap();
        assert!(ok.forecast.enabled);
        assert_eq!(ok.forecast.horizon, Duration::from_secs(10));
        assert!(!Config::default().forecast.enabled);

        let e = err("[forecast]\nenabled = true\nday = \"12h\"\nhorizon = \"7m\"\n");
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 2, "{e}");
        assert!(
            lines[0].starts_with("config.toml:3:7: forecast.day: 12h is not 288 steps of 5m"),
            "{e}"
        );
        assert!(
            lines[1].starts_with("config.toml:4:11: forecast.horizon: "),
            "{e}"
        );

        let e = err("[score]\nscorer = \"lstm\"\n[forecast]\nenabled = true\n");
        assert!(
            e.starts_with(
                "config.toml:4:11: forecast.enabled: forecasting calibrates on the nowcast"
            ),
            "{e}"
        );
        // Off, nothing else is checked.
        assert!(parse("[forecast]\nday = \"1h\"\n").is_ok());
    }

    #[test]
    fn fleet_section_is_checked() {
        assert!(Config::default().fleet.controller.is_none());
        let ok = parse("[fleet]\ncontroller = \"http://ctl:7070\"\n").unwrap();
        assert_eq!(ok.fleet.controller.as_deref(), Some("http://ctl:7070"));
        let e = err("[fleet]\ncontroller = \"https://ctl\"\nbatch_lines = 0\n");
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 2, "{e}");
        assert!(
            lines[0].starts_with(
                "config.toml:2:14: fleet.controller: \"https://ctl\" must start with http://"
            ),
            "{e}"
        );
        assert!(
            lines[1].starts_with("config.toml:3:15: fleet.batch_lines: 0 is not within"),
            "{e}"
        );
        let e = err("[fleet]\nmigration_uri = \"10.0.0.7:4444\"\n");
        assert!(
            e.starts_with("config.toml:2:17: fleet.migration_uri: \"10.0.0.7:4444\" is not a QEMU migration URI"),
            "{e}"
        );
        let ok =
            parse("[fleet]\nmigration_uri = \"tcp:10.0.0.7:4444\"\ndraining = true\n").unwrap();
        assert_eq!(ok.fleet.migration_uri.as_deref(), Some("tcp:10.0.0.7:4444"));
        assert!(ok.fleet.draining);
    }
}
