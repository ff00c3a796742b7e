//! Where `bill`, `explain` and `restore` find the ledger: `--ledger DIR`, else the
//! config's `[billing] ledger_dir`, else the default.

use std::path::PathBuf;

use anyhow::Context as _;
use interference::config::Config;

use super::ConfigArgs;

#[derive(Debug, clap::Args)]
pub struct LedgerArgs {
    /// The ledger directory [default: `[billing] ledger_dir` of --config, else
    /// /var/lib/interference/ledger].
    #[arg(long, value_name = "DIR")]
    pub ledger: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

impl LedgerArgs {
    /// The configuration (default without --config), its `[billing] ledger_dir`
    /// replaced by --ledger when given.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut cfg = match &self.config.config {
            Some(path) => {
                Config::load(path).with_context(|| format!("loading {}", path.display()))?
            }
            None => Config::default(),
        };
        if let Some(dir) = &self.ledger {
            cfg.billing.ledger_dir = dir.clone();
        }
        Ok(cfg)
    }
}
