//! The policy stage: Contention Scores in, [`Action`]s out (docs/architecture.md,
//! step 5): thresholds with hysteresis per pair, who is protected and who is reduced,
//! the action ladder, cooldowns, a cap per tick, rollback after quiet ticks (once the
//! aggressor's CPU demand has fallen too), dry-run.
//!
//! | module   | job                                                                  |
//! |----------|----------------------------------------------------------------------|
//! | `action` | the boundary types: [`Action`], [`Change`], [`Rung`], [`Outcome`]     |
//! | `config` | `[policy]`: [`PolicyConfig`], its defaults and semantic checks         |
//! | `who`    | which VM of a hot pair is protected and which is reduced              |
//! | `ladder` | what one rung changes for one pair (weight, pin, balloon, migrate)    |
//! | `state`  | [`PolicyState`]: hysteresis counters, rungs, changes in force (serde) |
//! | `engine` | [`Policy::decide`]: one tick, pure logic, no I/O                      |
//! | `forecast` | acting on forecast scores: weight only, confirm, roll back a miss   |
//!
//! Usage, once per tick: build a [`PolicyInput`] (scores, VMs, host CPUs, the previous
//! decision's outcomes), call [`Policy::decide`], hand the [`Decision`]'s actions to the
//! enforcement stage, and pass its outcomes to the next call. The state is not
//! persisted (see [`Policy::new`]).

pub use interference_core::action;
pub use interference_core::policy::config;
mod decision;
pub mod engine;
mod escalate;
pub mod forecast;
mod gate;
pub mod input;
pub mod ladder;
mod rollback;
mod rules;
pub mod state;
mod tick;
pub mod who;

#[cfg(test)]
mod tests;

pub use action::*;
pub use config::{
    MigrationConfig, MigrationTarget, PairThresholds, PolicyConfig, Thresholds, TierThresholds,
};
pub use decision::{Decision, ForecastResult};
pub use engine::{Policy, PolicyError};
pub use input::{Placement, PolicyInput, VmInput};
pub use state::{pair_key, ForecastWatch, Migrated, PairState, PolicyState};
