//! `interference bill`: a customer's invoice for one billing period, from the ledger.

use interference::billing::invoice::{render_csv, render_table};
use interference::billing::{invoice, ledger, Period};

use super::args::LedgerArgs;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BillFormat {
    #[default]
    Table,
    Json,
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct BillArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// The customer id (as in the inventory's `customer`).
    #[arg(long)]
    pub customer: String,
    /// YYYY-MM [default: the latest period with records for the customer].
    #[arg(long, value_parser = parse_period)]
    pub period: Option<Period>,
    #[arg(long, value_enum, default_value_t)]
    pub format: BillFormat,
}

fn parse_period(s: &str) -> Result<Period, String> {
    s.parse()
}

pub fn run(args: BillArgs) -> anyhow::Result<()> {
    let dir = args.ledger.dir()?;
    // Every ledger error names its file or directory.
    let contents = ledger::read(&dir, args.period)?;
    for bad in &contents.bad {
        eprintln!("warning: {bad}");
    }
    // Unknown customer or empty period: the error lists what there is.
    let all = if args.period.is_some() {
        ledger::read(&dir, None)?.records
    } else {
        contents.records
    };
    let inv = invoice(&dir, &all, &args.customer, args.period)?;
    match args.format {
        BillFormat::Table => print!("{}", render_table(&inv)),
        BillFormat::Json => println!("{}", serde_json::to_string_pretty(&inv)?),
        BillFormat::Csv => print!("{}", render_csv(&inv)?),
    }
    Ok(())
}
