//! The command line: `serve` (the default), and the operator's commands, which run
//! straight against the database (`--database`), so they work before any server runs
//! and on any replica's database.

pub mod customers;
pub mod hosts;
pub mod models;
pub mod policy;
pub mod serve;
pub mod status;
pub mod tokens;

use clap::{Parser, Subcommand};

use interference_controller::db::DEFAULT_DATABASE;

#[derive(Debug, Parser)]
#[command(
    name = "interference-controller",
    version,
    about = "Central controller for interference agents: ingest, fleet policy, model rollouts, migration placement",
    long_about = "Central controller for interference agents.\n\nWith no command, serves with the embedded default: a SQLite file at /var/lib/interference/controller.db. For a fleet with several replicas, point every replica at one PostgreSQL database with --database postgres://..."
)]
pub struct Cli {
    /// sqlite:///path/to/file.db or postgres://user:pass@host:port/db.
    #[arg(long, global = true, env = "INTERFERENCE_CONTROLLER_DATABASE", default_value = DEFAULT_DATABASE)]
    pub database: String,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve agents and operators over HTTP (the default command).
    Serve(serve::ServeArgs),
    /// Hosts, heartbeat ages, policy and model versions, rollout stage, ingest lag.
    Status(status::StatusArgs),
    /// Host tokens, draining and groups.
    Hosts {
        #[command(subcommand)]
        command: hosts::HostsCommand,
    },
    /// Customers' SLA tiers, settings and requests.
    Customers {
        #[command(subcommand)]
        command: customers::CustomersCommand,
    },
    /// Customer API tokens: create, list, revoke.
    Tokens {
        #[command(subcommand)]
        command: tokens::TokensCommand,
    },
    /// Admin tokens (for the admin API).
    Admin {
        #[command(subcommand)]
        command: hosts::AdminCommand,
    },
    /// The model registry and rollouts.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// Fleet, group and host policy documents.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
}
