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
use interference_core::cli::{CompletionsArgs, LogArgs, ManArgs};

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
    #[command(flatten)]
    pub logs: LogArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve agents and operators over HTTP (the default command).
    #[command(after_help = "Examples:
  interference-controller serve --listen 0.0.0.0:7070
  interference-controller --database postgres://ic@db/ic serve   # one of several replicas")]
    Serve(serve::ServeArgs),
    /// Hosts, heartbeat ages, policy and model versions, rollout stage, ingest lag.
    #[command(after_help = "Examples:
  interference-controller status
  interference-controller status --format json   # for scripts")]
    Status(status::StatusArgs),
    /// Host tokens, draining and groups.
    #[command(after_help = "Examples:
  interference-controller hosts tokens create --host h1 --group rack-a
  interference-controller hosts drain h1          # take no migrated VMs
  interference-controller hosts drain h1 --off")]
    Hosts {
        #[command(subcommand)]
        command: hosts::HostsCommand,
    },
    /// Customers' SLA tiers, settings and requests.
    #[command(after_help = "Examples:
  interference-controller customers set-tier acme gold
  interference-controller customers show acme")]
    Customers {
        #[command(subcommand)]
        command: customers::CustomersCommand,
    },
    /// Customer API tokens: create, list, revoke.
    #[command(after_help = "Examples:
  interference-controller tokens create --customer acme --scope read --expires 90d
  interference-controller tokens list --customer acme
  interference-controller tokens revoke tok_...")]
    Tokens {
        #[command(subcommand)]
        command: tokens::TokensCommand,
    },
    /// Admin tokens (for the admin API).
    #[command(after_help = "Example:
  interference-controller admin tokens create --name ops")]
    Admin {
        #[command(subcommand)]
        command: hosts::AdminCommand,
    },
    /// The model registry and rollouts.
    #[command(after_help = "Examples:
  interference-controller models upload model.onnx  # prints the bundle's sha256
  interference-controller models promote SHA256     # shadow, then canary, then fleet
  interference-controller models rollback")]
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// Fleet, group and host policy documents.
    #[command(after_help = "Examples:
  interference-controller policy set fleet fleet.toml
  interference-controller policy set group:rack-a rack-a.toml --author alice
  interference-controller policy show host:h1")]
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Shell completions on stdout (the package installs them).
    #[command(after_help = "Example:
  interference-controller completions bash > /etc/bash_completion.d/interference-controller")]
    Completions(CompletionsArgs),
    /// Write the manual pages into a directory.
    #[command(hide = true)]
    Man(ManArgs),
}
