//! Per-VM demand rollups (docs/forecast.md, section 3): a ring of the last
//! `HISTORY_STEPS` step values per VM ([`ring`]), fed by ticks and closed step by step
//! ([`store`]), kept on disk in one crash-safe file ([`file`](mod@file); its bytes, format
//! version 1, are [`codec`]'s).

pub mod codec;
pub mod file;
pub mod ring;
pub mod store;

pub use codec::RollupProblem;
pub use codec::{StoreGeometry, FORMAT_VERSION};
pub use file::{SaveError, FILE_NAME};
pub use ring::VmRollup;
pub use store::{ClosedStep, RollupStore, TickOutcome};
