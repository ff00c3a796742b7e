//! `interference-controller hosts ...` and `admin tokens create`.

use anyhow::{bail, Result};
use clap::Subcommand;

use interference_controller::db::{Db, DbOptions};
use interference_controller::store::{hosts, tokens};

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Host tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Take no migrated VMs (or take them again with --off).
    Drain {
        host: String,
        #[arg(long)]
        off: bool,
    },
    /// Move a host to a policy group.
    Group { host: String, group: String },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Print a new token for a host (created if new). Shown once; stored hashed.
    Create {
        #[arg(long)]
        host: String,
        #[arg(long, default_value = "default")]
        group: String,
    },
    /// Revoke every token of a host.
    Revoke {
        #[arg(long)]
        host: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Admin tokens.
    Tokens {
        #[command(subcommand)]
        command: AdminTokensCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminTokensCommand {
    /// Print a new admin token. Shown once; stored hashed.
    Create {
        #[arg(long)]
        name: String,
    },
}

pub async fn run(database: &str, command: &HostsCommand) -> Result<()> {
    let db = Db::connect_and_migrate(database, &DbOptions::default()).await?;
    match command {
        HostsCommand::Tokens {
            command: TokensCommand::Create { host, group },
        } => {
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                bail!("host name {host:?}: use letters, digits, '-', '_' and '.'");
            }
            println!("{}", tokens::create_host_token(&db, host, group).await?);
        }
        HostsCommand::Tokens {
            command: TokensCommand::Revoke { host },
        } => {
            let n = tokens::revoke_host_tokens(&db, host).await?;
            println!("revoked {n} token(s) of {host}");
        }
        HostsCommand::Drain { host, off } => {
            if !hosts::set_draining(&db, host, !off).await? {
                bail!("no host {host:?}");
            }
            println!(
                "{host} {}",
                if *off {
                    "takes migrations again"
                } else {
                    "is draining"
                }
            );
        }
        HostsCommand::Group { host, group } => {
            if !hosts::set_group(&db, host, group).await? {
                bail!("no host {host:?}");
            }
            println!("{host} is in group {group}");
        }
    }
    Ok(())
}

pub async fn run_admin(database: &str, command: &AdminCommand) -> Result<()> {
    let db = Db::connect_and_migrate(database, &DbOptions::default()).await?;
    match command {
        AdminCommand::Tokens {
            command: AdminTokensCommand::Create { name },
        } => println!("{}", tokens::create_admin_token(&db, name).await?),
    }
    Ok(())
}
