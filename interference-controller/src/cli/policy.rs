//! `interference-controller policy set|show`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use interference_controller::db::{Db, DbOptions};
use interference_controller::domain::policy_layers::Scope;
use interference_controller::ops::{self, PolicyError};
use interference_controller::store::policy;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Store FILE as the next version of SCOPE (fleet, group:<name>, host:<name>) after
    /// checking it alone and merged with the other layers.
    Set {
        scope: String,
        file: PathBuf,
        #[arg(long, default_value = "cli")]
        author: String,
    },
    /// Print the latest document of SCOPE.
    Show { scope: String },
}

pub async fn run(database: &str, command: &PolicyCommand) -> Result<()> {
    let db = Db::connect_and_migrate(database, &DbOptions::default()).await?;
    match command {
        PolicyCommand::Set {
            scope,
            file,
            author,
        } => {
            let body = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            match ops::set_policy(&db, scope, &body, author).await {
                Ok(v) => println!("{scope} is at version {v}"),
                Err(PolicyError::Invalid(problems)) => {
                    for p in &problems {
                        // Name the file as given, not the scope's file name.
                        let p = interference_fleet::wire::FieldError {
                            file: file.display().to_string(),
                            ..p.clone()
                        };
                        eprintln!("{p}");
                    }
                    bail!("{} refused: {} problem(s)", file.display(), problems.len());
                }
                Err(e) => return Err(e.into()),
            }
        }
        PolicyCommand::Show { scope } => {
            let s = Scope::parse(scope).map_err(anyhow::Error::msg)?;
            match policy::latest(&db, &s).await? {
                Some(l) => {
                    println!("# {} version {}", l.scope, l.version);
                    print!("{}", l.body);
                }
                None => bail!("no document for {scope}"),
            }
        }
    }
    Ok(())
}
