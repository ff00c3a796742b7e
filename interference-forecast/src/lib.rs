//! The demand forecaster of issue 16: per-VM demand forecasts from compact on-disk
//! rollups, run by tract for all VMs in one batch, and the mapping from forecast
//! demands to forecast pair slowdowns.
//!
//! `docs/forecast.md` is the contract this crate implements (every formula; the Python
//! reference is `scripts/forecast/`). Modules, each with one job, dependencies pointing
//! down the list:
//!
//! | module | job | depends on |
//! |---|---|---|
//! | [`contract`] | the model format's constants (steps, lags, features) | - |
//! | [`clock`] | instants to absolute steps; refuses a day that is not the model's | - |
//! | [`rollup`] | per-VM ring of step values; ticks to steps; the crash-safe file | clock, contract |
//! | [`inputs`] | L, S, M and the `[36, 12]` inputs of one VM | rollup, contract |
//! | [`model`] | sidecar and sha checks; tract prepare/run behind two traits | contract |
//! | [`forecaster`] | one round: inputs, one batched run, post-processing, fallbacks | inputs, model, rollup |
//! | [`horizon`] | horizons in time to output columns | contract |
//! | [`engine`] | the agent's glue: ticks in, a round at the end of each step | clock, rollup, forecaster |
//! | [`replay`] | `interference forecast --replay`: a trace through the same code | all of the above |
//! | [`import`] | `interference forecast --import`: a trace's history into the rollups | replay's reader, rollup |
//! | [`pairs`] | fair-share pair slowdowns from forecast demands, calibrated on the nowcast | - |
//!
//! No tokio, no aya: the agent calls in from its own loop; everything but the rollup
//! file, the model file and the traces read by a replay or an import is pure.

pub mod clock;
pub mod contract;
pub mod engine;
pub mod forecaster;
pub mod horizon;
pub mod import;
pub mod inputs;
pub mod model;
pub mod pairs;
pub mod replay;
pub mod rollup;

pub use clock::{Clock, ClockError};
pub use engine::{demand_percent, ForecastEngine, StepEnd};
pub use forecaster::{ForecastSource, Forecaster, Round, Skipped, VmForecast};
pub use horizon::{Horizon, HorizonError, SubStep};
pub use import::{import_trace, ImportError, ImportSummary};
pub use model::{DemandModel, ModelError, ModelRuntime, PreparedModel, RunError, TractRuntime};
pub use replay::{replay_file, ReplayError, ReplaySummary};
pub use rollup::{RollupProblem, RollupStore, TickOutcome, VmRollup};
