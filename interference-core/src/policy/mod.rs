//! The `[policy]` table: thresholds, tiers, the ladder, cooldowns, migration targets,
//! with its defaults and the checks serde cannot make. The agent decides with it; the
//! controller validates fleet policy documents with the same checks.

pub mod config;

pub use config::{
    rung_name, MigrationConfig, MigrationTarget, PairThresholds, PolicyConfig, Thresholds,
    TierThresholds,
};
