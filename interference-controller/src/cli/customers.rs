//! `interference-controller customers ...`: a customer's SLA tier (what its priority
//! requests may ask for, `[fleet.tiers]`) and a look at its settings and audit log.

use anyhow::Result;
use clap::Subcommand;

use interference_controller::db::{Db, DbOptions};
use interference_controller::store::customer_tokens::valid_customer;
use interference_controller::store::influence;
use interference_core::billing::Money;

#[derive(Debug, Subcommand)]
pub enum CustomersCommand {
    /// Put a customer in an SLA tier (a key of [fleet.tiers]), or out of any with --none.
    ///
    /// Example: interference-controller customers set-tier acme gold
    SetTier {
        customer: String,
        tier: Option<String>,
        #[arg(long, conflicts_with = "tier")]
        none: bool,
    },
    /// A customer's tier, preferences, grants and latest requests.
    Show { customer: String },
}

pub async fn run(database: &str, command: &CustomersCommand) -> Result<()> {
    let db = Db::connect_and_migrate(database, &DbOptions::default()).await?;
    match command {
        CustomersCommand::SetTier {
            customer,
            tier,
            none,
        } => {
            if !valid_customer(customer) {
                anyhow::bail!(
                    "customer {customer:?}: 1 to 128 letters, digits, '-', '_', '.', '@' or ':'"
                );
            }
            if tier.is_none() && !none {
                anyhow::bail!("name a tier, or --none to take {customer} out of any");
            }
            let mut row = influence::customer(&db, customer).await?;
            row.tier = tier.clone();
            influence::set_customer(&db, customer, &row).await?;
            match tier {
                Some(t) => println!(
                    "{customer} is in tier {t} (its limits: [fleet.tiers.{t}] of the fleet policy)"
                ),
                None => println!("{customer} has no tier: its priority requests are refused"),
            }
        }
        CustomersCommand::Show { customer } => {
            let row = influence::customer(&db, customer).await?;
            println!("customer   {customer}");
            println!("tier       {}", row.tier.as_deref().unwrap_or("-"));
            println!("no donor   {}", row.no_donor);
            println!(
                "charge cap {}",
                row.charge_cap_nanos
                    .map(|n| Money::from_nanos(n).to_string())
                    .unwrap_or_else(|| "-".into())
            );
            for p in influence::vm_prefs(&db, customer).await? {
                println!(
                    "vm         {} ({}) no donor {}",
                    p.name, p.vm_id, p.no_donor
                );
            }
            for g in influence::grants(&db, customer, 0).await? {
                println!(
                    "priority   {} {} {} -> {}{}",
                    g.id,
                    g.name,
                    g.start_ms,
                    g.effective_end_ms(),
                    if g.cancelled_ms.is_some() {
                        " (cancelled)"
                    } else {
                        ""
                    }
                );
            }
            for a in influence::audit_log(&db, customer, 20).await? {
                println!(
                    "request    {} {} {} {} {}",
                    a.at_ms,
                    a.request,
                    a.target,
                    if a.accepted { "accepted" } else { "refused" },
                    a.reason
                );
            }
        }
    }
    Ok(())
}
