//! `interference-controller status`.

use anyhow::Result;
use clap::{Args, ValueEnum};

use interference_controller::db::{Db, DbOptions};
use interference_controller::store::status;

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub async fn run(database: &str, args: &StatusArgs) -> Result<()> {
    let db = Db::connect_and_migrate(database, &DbOptions::default()).await?;
    let s = status::fleet(&db).await?;
    if matches!(args.format, Format::Json) {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let short = |sha: &Option<String>| {
        sha.as_deref()
            .map_or_else(|| "built-in".to_owned(), |s| s.chars().take(12).collect())
    };
    println!(
        "{:<20} {:<10} {:>10} {:<28} {:<13} {:>9} {:>8} {:>8}",
        "HOST", "GROUP", "HEARTBEAT", "POLICY", "MODEL", "LAG", "BACKLOG", "SEQ"
    );
    for h in &s.hosts {
        let age = h
            .heartbeat_age_s
            .map_or_else(|| "never".into(), |a| format!("{a:.0}s ago"));
        let lag = h
            .ingest_lag_s
            .map_or_else(|| "-".into(), |l| format!("{l:.0}s"));
        let drain = if h.draining { " (draining)" } else { "" };
        println!(
            "{:<20} {:<10} {:>10} {:<28} {:<13} {:>9} {:>8} {:>8}{drain}",
            h.host,
            h.group,
            age,
            h.policy_version.as_deref().unwrap_or("-"),
            short(&h.model_sha),
            lag,
            h.backlog_items,
            h.last_seq
        );
    }
    println!();
    println!("backend      {} (generation {})", s.backend, s.generation);
    println!("fleet model  {}", short(&s.fleet_model));
    match &s.rollout {
        Some(r) => println!(
            "rollout      {} of {} in {} ({}% of hosts){}",
            r.id,
            &r.model_sha[..r.model_sha.len().min(12)],
            r.stage.as_str(),
            r.share_pct,
            r.reason
                .as_deref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default()
        ),
        None => println!("rollout      none running"),
    }
    println!(
        "policy       {}",
        if s.policy_layers.is_empty() {
            "defaults (no document)".to_owned()
        } else {
            s.policy_layers.join(", ")
        }
    );
    let res: Vec<String> = s
        .reservations
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "reservations {}",
        if res.is_empty() {
            "none".into()
        } else {
            res.join(", ")
        }
    );
    let rows: Vec<String> = s.tables.iter().map(|(t, n)| format!("{t} {n}")).collect();
    println!("rows         {}", rows.join(", "));
    Ok(())
}
