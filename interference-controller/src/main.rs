//! `interference-controller`: a thin edge over the library; errors are printed with
//! their chain and exit with status 1 (2 for usage errors, from clap).

mod cli;

use anyhow::Context as _;
use clap::Parser;

use cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    interference_core::cli::init_logging(cli.logs.log_format, "info,sqlx=warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let db = cli.database.clone();
    let result = runtime.block_on(async move {
        match &cli.command {
            None => {
                cli::serve::run(
                    &db,
                    &cli::serve::ServeArgs {
                        listen: "127.0.0.1:7070".into(),
                        max_connections: 16,
                        heartbeat_every: None,
                        max_batch_items: 5000,
                        max_ingest_in_flight: 64,
                        customer_rate: 20.0,
                    },
                )
                .await
            }
            Some(Command::Serve(args)) => cli::serve::run(&db, args).await,
            Some(Command::Status(args)) => cli::status::run(&db, args).await,
            Some(Command::Hosts { command }) => cli::hosts::run(&db, command).await,
            Some(Command::Tokens { command }) => cli::tokens::run(&db, command).await,
            Some(Command::Customers { command }) => cli::customers::run(&db, command).await,
            Some(Command::Admin { command }) => cli::hosts::run_admin(&db, command).await,
            Some(Command::Models { command }) => cli::models::run(&db, command).await,
            Some(Command::Policy { command }) => cli::policy::run(&db, command).await,
            Some(Command::Completions(args)) => {
                interference_core::cli::completions::<Cli>(args).context("writing the completions")
            }
            Some(Command::Man(args)) => interference_core::cli::man::<Cli>(args)
                .with_context(|| format!("writing manual pages into {}", args.dir.display())),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
