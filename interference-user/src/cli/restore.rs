//! `interference restore`: puts back every cgroup value and balloon target that the
//! journal says an agent changed and did not restore (after a crash, or by hand).
//! Like the agent at start, it first bills what the journal still owes into the
//! ledger (unless --no-ledger), so a crash never loses their lines. The work is
//! `interference::agent::restore`; this prints the report.

use std::path::PathBuf;

use interference::agent::{restore, Overrides};
use interference::enforce::DEFAULT_JOURNAL;

use super::args::ConfigArgs;

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The agent's write-ahead journal.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_JOURNAL)]
    pub journal: PathBuf,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The ledger directory [default: `[billing] ledger_dir` of --config, else
    /// /var/lib/interference/ledger].
    #[arg(long, value_name = "DIR")]
    pub ledger: Option<PathBuf>,
    /// Do not bill the restored changes.
    #[arg(long, conflicts_with = "ledger")]
    pub no_ledger: bool,
}

pub fn run(args: RestoreArgs) -> anyhow::Result<()> {
    let settings = args.config.settings(Overrides {
        journal: Some(args.journal.clone()),
        ledger: args.ledger,
        no_ledger: args.no_ledger,
        ..Overrides::default()
    })?;
    let report = restore(&settings)?;
    for o in &report.outcomes {
        for e in &o.effects {
            println!(
                "{} {}: {} -> {} ({})",
                o.action_id,
                e.target.display(),
                e.before,
                e.after,
                o.result.as_str()
            );
        }
        if let Some(err) = &o.error {
            eprintln!("{}: {err}", o.action_id);
        }
    }
    println!(
        "{}: {} values restored, {} actions failed, {} changes still in effect",
        args.journal.display(),
        report.restored(),
        report.failures().count(),
        report.left_in_effect,
    );
    if !report.is_clean() {
        anyhow::bail!(
            "{} changes could not be restored; see the messages above",
            report.left_in_effect
        );
    }
    if report.unbilled_lines > 0 {
        // The host came first: it was restored anyway. The journal keeps owing what
        // the ledger did not take, so nothing is lost; say so and fail.
        anyhow::bail!(
            "{} ledger lines could not be written to {}; the journal {} still owes them: run `interference restore` (or start the agent) again once the ledger's disk is fixed",
            report.unbilled_lines,
            settings
                .ledger
                .as_deref()
                .map_or_else(|| "the ledger".into(), |d| d.display().to_string()),
            args.journal.display()
        );
    }
    Ok(())
}
