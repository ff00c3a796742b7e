//! `interference-controller tokens ...`: customer API tokens, created, listed and
//! revoked by an operator against the database.

use anyhow::{Context as _, Result};
use clap::{Subcommand, ValueEnum};

use interference_controller::db::{Db, DbOptions};
use interference_controller::store::customer_tokens::{self, Scope};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScopeArg {
    /// Read the customer's VMs, scores, actions, charges and invoices.
    Read,
    /// Also change the customer's preferences and requests.
    Write,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Print a new customer token (shown once; stored hashed) and its id.
    ///
    /// Example: interference-controller tokens create --customer acme --scope read --expires 90d
    Create {
        /// The customer (BillingAccountId on its ledger lines).
        #[arg(long)]
        customer: String,
        #[arg(long, value_enum, default_value = "read")]
        scope: ScopeArg,
        /// Lifetime, e.g. 30d, 12h (one minute to two years).
        #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
        /// A note for the operator (who the token was given to).
        #[arg(long)]
        label: Option<String>,
    },
    /// Tokens (never their secret), newest first.
    List {
        #[arg(long)]
        customer: Option<String>,
    },
    /// Revoke one token by its id (tok_...): it answers 401 from the next request.
    Revoke { id: String },
}

pub async fn run(database: &str, command: &TokensCommand) -> Result<()> {
    let db = Db::connect_and_migrate(database, &DbOptions::default()).await?;
    match command {
        TokensCommand::Create {
            customer,
            scope,
            expires,
            label,
        } => {
            let scope = match scope {
                ScopeArg::Read => Scope::Read,
                ScopeArg::Write => Scope::Write,
            };
            let lifetime = i64::try_from(expires.as_secs()).unwrap_or(i64::MAX);
            let (id, token) =
                customer_tokens::create(&db, customer, scope, lifetime, label.as_deref())
                    .await
                    .context("cannot create the token")?;
            println!("{token}");
            eprintln!(
                "token {id} for customer {customer} ({}), expires in {}",
                scope.as_str(),
                humantime::format_duration(*expires)
            );
        }
        TokensCommand::List { customer } => {
            let rows = customer_tokens::list(&db, customer.as_deref()).await?;
            println!(
                "{:<22} {:<20} {:<6} {:<24} {:<24} LABEL",
                "ID", "CUSTOMER", "SCOPE", "EXPIRES", "REVOKED"
            );
            for r in rows {
                let at = |ms: i64| {
                    interference_core::billing::period::rfc3339(u64::try_from(ms).unwrap_or(0))
                };
                println!(
                    "{:<22} {:<20} {:<6} {:<24} {:<24} {}",
                    r.id,
                    r.customer,
                    r.scope.as_str(),
                    at(r.expires_ms),
                    r.revoked_ms.map(at).unwrap_or_else(|| "-".into()),
                    r.label.unwrap_or_default()
                );
            }
        }
        TokensCommand::Revoke { id } => {
            customer_tokens::revoke(&db, id).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}
