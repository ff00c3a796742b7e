//! `interference agent`: the main job. Every tick it collects, scores every VM pair,
//! decides and enforces; on exit (end of --duration, SIGINT, SIGTERM) it puts back every
//! change it made, and at start it first restores what a crashed run left behind.
//! Applied actions and the VMs' allocation are billed into the ledger as it goes. The
//! work is `interference::agent::Agent`; this parses and logs.

use std::path::PathBuf;

use interference::agent::{Agent, Overrides};
use interference::enforce::DEFAULT_JOURNAL;

use super::args::{LoopArgs, ScorerArgs};

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub tick: LoopArgs,
    #[command(flatten)]
    pub scorer: ScorerArgs,
    /// Decide, log and report, change nothing (overrides `[policy] dry_run`).
    #[arg(long)]
    pub dry_run: bool,
    /// The write-ahead journal of every change.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_JOURNAL)]
    pub journal: PathBuf,
    /// The billing ledger's directory [default: `[billing] ledger_dir`,
    /// /var/lib/interference/ledger].
    #[arg(long, value_name = "DIR")]
    pub ledger: Option<PathBuf>,
    /// Do not bill (overrides `[billing] enabled`).
    #[arg(long, conflicts_with = "ledger")]
    pub no_ledger: bool,
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let overrides = args.scorer.add_to(Overrides {
        journal: Some(args.journal),
        ledger: args.ledger,
        no_ledger: args.no_ledger,
        dry_run: args.dry_run,
        ..args.tick.overrides()
    });
    let settings = args.tick.config.settings(overrides)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut agent = Agent::build(&settings)?;
    let result = runtime.block_on(agent.run(args.tick.duration, |report| {
        if let Some(top) = report.scores.as_ref().and_then(|r| r.contention.first()) {
            tracing::info!(
                "top pair {}/{}: {:.1} ({} slowed by {})",
                top.vm,
                top.neighbor,
                top.score,
                top.victim,
                top.aggressor
            );
        }
    }));
    // Whatever ended the loop, the host gets its values back.
    agent.shutdown();
    drop(agent);
    result?;
    Ok(())
}
