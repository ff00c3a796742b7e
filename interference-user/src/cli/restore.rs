//! `interference restore`: puts back every cgroup value and balloon target that the
//! journal says an agent changed and did not restore (after a crash, or by hand).

use std::path::PathBuf;

use anyhow::Context as _;
use interference::enforce::{self, DEFAULT_JOURNAL};

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The agent's write-ahead journal.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_JOURNAL)]
    pub journal: PathBuf,
}

pub fn run(args: RestoreArgs) -> anyhow::Result<()> {
    let report = enforce::restore(&args.journal)
        .with_context(|| format!("restoring from {}", args.journal.display()))?;
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
        report.journal.display(),
        report.restored(),
        report.failures().count(),
        report.left_in_effect
    );
    if !report.is_clean() {
        anyhow::bail!(
            "{} changes could not be restored; see the messages above",
            report.left_in_effect
        );
    }
    Ok(())
}
