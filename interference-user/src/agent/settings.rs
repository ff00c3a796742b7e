//! Flags and the configuration file, resolved once into the settings every command
//! runs with. One rule everywhere: a flag beats the file, the file beats the embedded
//! default. The command line fills [`Overrides`] (plain data, no clap here); the
//! result is checked here, so that a bad combination is refused before anything is
//! loaded or attached.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::config::{Config, ScorerKind, MIN_INTERVAL};
use crate::enforce::DEFAULT_JOURNAL;
use crate::inventory::Mounts;

/// What the command line may set; None (or false) leaves the file's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub interval: Option<Duration>,
    pub samples: Option<PathBuf>,
    pub metrics_file: Option<PathBuf>,
    /// The LLC columns from software events (a test of the perf plumbing).
    pub software_counters: bool,
    pub scorer: Option<ScorerKind>,
    pub model: Option<PathBuf>,
    /// How often every pair is scored.
    pub every: Option<Duration>,
    pub journal: Option<PathBuf>,
    /// The ledger directory; also turns billing on when the file turned it off.
    pub ledger: Option<PathBuf>,
    pub no_ledger: bool,
    pub dry_run: bool,
}

/// Everything a command runs with, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file (or the defaults), with `[policy] dry_run` and `[billing] ledger_dir`
    /// as resolved.
    pub config: Config,
    pub mounts: Mounts,
    /// `[collect] host`, else the kernel's host name: the prefix of action ids and the
    /// `x_Host` of ledger lines.
    pub host: String,
    pub interval: Duration,
    pub samples: Option<PathBuf>,
    pub metrics_file: Option<PathBuf>,
    pub software_counters: bool,
    pub scorer: ScorerKind,
    pub model: Option<PathBuf>,
    pub every: Duration,
    pub journal: PathBuf,
    /// Where the ledger is written; None: billing is off.
    pub ledger: Option<PathBuf>,
    pub dry_run: bool,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("--interval {}: below the minimum of {}", humantime::format_duration(*.0), humantime::format_duration(MIN_INTERVAL))]
    Interval(Duration),
    #[error(
        "scoring every {} with a {} collector tick: the score interval must be a multiple of the tick",
        humantime::format_duration(*every),
        humantime::format_duration(*tick)
    )]
    Every { every: Duration, tick: Duration },
    #[error("--model {}: only the lstm scorer uses a model; add --scorer lstm (the default scorer, nowcast, needs none)", .0.display())]
    ModelWithoutLstm(PathBuf),
    #[error("--ledger and --no-ledger contradict each other")]
    LedgerAndNoLedger,
}

impl Settings {
    /// The file's values, with `o`'s on top (see the module doc). `host` is the
    /// kernel's host name, used when `[collect] host` is unset.
    pub fn resolve(
        o: Overrides,
        mut config: Config,
        mounts: Mounts,
        host: &str,
    ) -> Result<Self, SettingsError> {
        let interval = o.interval.unwrap_or(config.collect.interval);
        if interval < MIN_INTERVAL {
            return Err(SettingsError::Interval(interval));
        }
        let scorer = o.scorer.unwrap_or(config.score.scorer);
        let model = o.model.or_else(|| config.score.model.clone());
        if let (Some(m), ScorerKind::Nowcast | ScorerKind::Heuristic) = (&model, scorer) {
            return Err(SettingsError::ModelWithoutLstm(m.clone()));
        }
        let every = o
            .every
            .unwrap_or_else(|| config.score.every(scorer, interval));
        let (tick_ms, every_ms) = (interval.as_millis(), every.as_millis());
        if every_ms == 0 || !every_ms.is_multiple_of(tick_ms.max(1)) {
            return Err(SettingsError::Every {
                every,
                tick: interval,
            });
        }
        if o.ledger.is_some() && o.no_ledger {
            return Err(SettingsError::LedgerAndNoLedger);
        }
        if let Some(dir) = &o.ledger {
            config.billing.ledger_dir = dir.clone();
            config.billing.enabled = true;
        }
        config.policy.dry_run |= o.dry_run;
        let ledger =
            (config.billing.enabled && !o.no_ledger).then(|| config.billing.ledger_dir.clone());
        Ok(Self {
            host: config
                .collect
                .host
                .clone()
                .unwrap_or_else(|| host.to_owned()),
            samples: o.samples.or_else(|| config.collect.samples.clone()),
            metrics_file: o
                .metrics_file
                .or_else(|| config.collect.metrics_file.clone()),
            software_counters: o.software_counters,
            journal: o.journal.unwrap_or_else(|| PathBuf::from(DEFAULT_JOURNAL)),
            dry_run: config.policy.dry_run,
            interval,
            scorer,
            model,
            every,
            ledger,
            mounts,
            config,
        })
    }

    /// The kernel's host name (`/proc/sys/kernel/hostname`), `localhost` if unreadable.
    pub fn kernel_host_name() -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "localhost".into())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn mounts() -> Mounts {
        Mounts::parse(
            "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n",
            Path::new("mountinfo"),
        )
        .expect("mountinfo")
    }

    fn file(text: &str) -> Config {
        Config::parse(text, Path::new("c.toml"), &mounts()).expect("valid config")
    }

    fn resolve(o: Overrides, text: &str) -> Result<Settings, SettingsError> {
        Settings::resolve(o, file(text), mounts(), "kvm-1")
    }

    #[test]
    fn defaults_without_file_or_flags() {
        let s = resolve(Overrides::default(), "").unwrap();
        assert_eq!(s.interval, Duration::from_secs(5));
        assert_eq!(s.scorer, ScorerKind::Nowcast);
        assert_eq!(s.every, s.interval, "the nowcast scores every tick");
        assert_eq!(s.host, "kvm-1");
        assert_eq!(s.journal, Path::new(DEFAULT_JOURNAL));
        assert_eq!(
            s.ledger.as_deref(),
            Some(Path::new(crate::billing::DEFAULT_LEDGER_DIR))
        );
        assert!(!s.dry_run);
    }

    #[test]
    fn the_file_beats_the_default_and_a_flag_beats_the_file() {
        let text = "[collect]\ninterval = \"2s\"\nhost = \"h7\"\nsamples = \"/f.jsonl\"\n\
                    [score]\nscorer = \"heuristic\"\n[billing]\nledger_dir = \"/l\"\n";
        let s = resolve(Overrides::default(), text).unwrap();
        assert_eq!(
            (s.interval, s.host.as_str(), s.scorer),
            (Duration::from_secs(2), "h7", ScorerKind::Heuristic)
        );
        assert_eq!(
            s.every,
            Duration::from_secs(6),
            "a model's first multiple from 5 s"
        );
        assert_eq!(s.samples.as_deref(), Some(Path::new("/f.jsonl")));
        assert_eq!(s.ledger.as_deref(), Some(Path::new("/l")));
        let s = resolve(
            Overrides {
                interval: Some(Duration::from_secs(1)),
                samples: Some("/g.jsonl".into()),
                scorer: Some(ScorerKind::Nowcast),
                ledger: Some("/m".into()),
                ..Overrides::default()
            },
            text,
        )
        .unwrap();
        assert_eq!(s.interval, Duration::from_secs(1));
        assert_eq!(s.samples.as_deref(), Some(Path::new("/g.jsonl")));
        assert_eq!(
            (s.scorer, s.every),
            (ScorerKind::Nowcast, Duration::from_secs(1))
        );
        assert_eq!(s.ledger.as_deref(), Some(Path::new("/m")));
    }

    #[test]
    fn ledger_switches() {
        let off = "[billing]\nenabled = false\n";
        assert_eq!(resolve(Overrides::default(), off).unwrap().ledger, None);
        let on = Overrides {
            ledger: Some("/x".into()),
            ..Overrides::default()
        };
        assert_eq!(
            resolve(on, off).unwrap().ledger.as_deref(),
            Some(Path::new("/x")),
            "--ledger turns billing back on"
        );
        let no = Overrides {
            no_ledger: true,
            ..Overrides::default()
        };
        assert_eq!(resolve(no, "").unwrap().ledger, None);
        let both = Overrides {
            ledger: Some("/x".into()),
            no_ledger: true,
            ..Overrides::default()
        };
        assert_eq!(
            resolve(both, "").unwrap_err(),
            SettingsError::LedgerAndNoLedger
        );
    }

    #[test]
    fn dry_run_from_either_side() {
        let s = resolve(
            Overrides {
                dry_run: true,
                ..Overrides::default()
            },
            "",
        )
        .unwrap();
        assert!(s.dry_run && s.config.policy.dry_run);
        assert!(
            resolve(Overrides::default(), "[policy]\ndry_run = true\n")
                .unwrap()
                .dry_run
        );
    }

    #[test]
    fn bad_combinations_are_refused() {
        let e = resolve(
            Overrides {
                interval: Some(Duration::from_millis(10)),
                ..Overrides::default()
            },
            "",
        )
        .unwrap_err();
        assert!(e.to_string().contains("below the minimum"), "{e}");
        let e = resolve(
            Overrides {
                model: Some("/m.onnx".into()),
                ..Overrides::default()
            },
            "",
        )
        .unwrap_err();
        assert!(e.to_string().contains("--scorer lstm"), "{e}");
        let e = resolve(
            Overrides {
                interval: Some(Duration::from_secs(2)),
                every: Some(Duration::from_secs(3)),
                ..Overrides::default()
            },
            "",
        )
        .unwrap_err();
        assert!(e.to_string().contains("multiple of the tick"), "{e}");
    }
}
