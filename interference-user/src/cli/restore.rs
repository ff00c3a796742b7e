//! `interference restore`: puts back every cgroup value and balloon target that the
//! journal says an agent changed and did not restore (after a crash, or by hand).
//! Like the agent at start, it first bills what the journal still owes into the
//! ledger (changes in effect up to now, changes already put back up to when they
//! were), unless --no-ledger, so a crash never loses their lines.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use interference::billing::Billing;
use interference::clock::now_ms;
use interference::collect::bill_owed;
use interference::enforce::{Enforcer, EnforcerOptions, DEFAULT_JOURNAL};
use interference::inventory::Mounts;
use interference::policy::ActionResult;

use super::collect::host_name;
use super::ledger_args::LedgerArgs;

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The agent's write-ahead journal.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_JOURNAL)]
    pub journal: PathBuf,
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// Do not bill the restored changes.
    #[arg(long, conflicts_with = "ledger")]
    pub no_ledger: bool,
}

pub fn run(args: RestoreArgs) -> anyhow::Result<()> {
    let mounts = Mounts::read(Path::new("/proc")).context("reading the cgroup mounts")?;
    let mut enforcer = Enforcer::open(
        EnforcerOptions {
            journal: args.journal.clone(),
            owes_ledger: !args.no_ledger,
            ..EnforcerOptions::default()
        },
        mounts,
    )
    .with_context(|| format!("restoring from {}", args.journal.display()))?;
    let mut unbilled = None;
    if !args.no_ledger {
        let cfg = args.ledger.config()?;
        let host = host_name(&cfg);
        let billing = cfg.billing;
        let dir = billing.ledger_dir.clone();
        let mut b = Billing::open(billing, &host, false)
            .with_context(|| format!("opening the ledger {}", dir.display()))?;
        bill_owed(&enforcer, &mut b, now_ms());
        let settled = b.take_settled();
        enforcer.mark_billed(settled.iter().map(String::as_str));
        if b.backlog_lines() > 0 {
            // The host comes first: restore anyway. The journal keeps owing what the
            // ledger did not take, so nothing is lost; say so and fail at the end.
            unbilled = Some(format!(
                "{} ledger lines could not be written to {}; the journal {} still owes them: run `interference restore` (or start the agent) again once the ledger's disk is fixed",
                b.backlog_lines(),
                dir.display(),
                args.journal.display()
            ));
        }
    }
    let outcomes = enforcer.restore_all();
    let left_in_effect = enforcer.in_effect().len();
    let mut restored = 0;
    for o in &outcomes {
        restored += o.effects.len();
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
        "{}: {restored} values restored, {} actions failed, {left_in_effect} changes still in effect",
        args.journal.display(),
        outcomes
            .iter()
            .filter(|o| o.result == ActionResult::Failed)
            .count(),
    );
    if left_in_effect > 0 {
        anyhow::bail!("{left_in_effect} changes could not be restored; see the messages above");
    }
    if let Some(why) = unbilled {
        anyhow::bail!(why);
    }
    Ok(())
}
