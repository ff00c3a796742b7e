//! `interference explain RECORD_ID`: the full derivation of one ledger line.

use interference::billing::explain::{explain, other_side_id};
use interference::billing::ledger;

use super::args::LedgerArgs;

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The line's `x_RecordId` (shown by `interference bill --format json|csv`).
    pub record_id: String,
    #[command(flatten)]
    pub ledger: LedgerArgs,
}

pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let dir = args.ledger.dir()?;
    // Every ledger error names its file or directory.
    let contents = ledger::read(&dir, None)?;
    for bad in &contents.bad {
        eprintln!("warning: {bad}");
    }
    let Some(record) = contents
        .records
        .iter()
        .find(|r| r.record_id == args.record_id)
    else {
        anyhow::bail!(
            "no record {:?} in the ledger {} ({} records in periods {})",
            args.record_id,
            dir.display(),
            contents.records.len(),
            contents
                .periods
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let other =
        other_side_id(record).and_then(|id| contents.records.iter().find(|r| r.record_id == id));
    print!("{}", explain(record, other));
    Ok(())
}
