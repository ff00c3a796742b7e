//! The features stage: `VmSample`s in, raw feature windows of ordered VM pairs out,
//! for the prediction stage (docs/dataset.md, "Model tick and window" and "Features,
//! in order").
//!
//! The model was trained on features the Python trainer (scripts/model/features.py)
//! computed from recorded samples; the agent must compute the very same numbers from
//! live ones, or the model sees inputs it never learned. So the formulas here follow
//! the contract operation for operation, in `f64`, and
//! `interference-user/tests/features_golden.rs` checks them against windows the
//! trainer wrote (data/contention-small/features.golden.json).
//!
//! | module      | job                                                                |
//! |-------------|--------------------------------------------------------------------|
//! | `names`     | feature names and layout, workload label -> class                  |
//! | `extract`   | the fields of one `VmSample` the features read                     |
//! | `cpumask`   | CPU sets as bitsets, for `pair_shared_cpus` (fast intersections)   |
//! | `aggregate` | k samples -> one model tick; per-VM, pair and time features (pure) |
//! | `window`    | per-VM rings of the last `T * k` samples, fed one tick at a time   |
//! | `pairs`     | all ordered pairs' `[n, T, F]` windows in one reused buffer        |
//! | `accounts`  | per-VM CPU accounts of the last ticks, for the nowcast             |
//! | `error`     | `FeatureError`                                                     |

mod accounts;
pub mod aggregate;
mod cpumask;
mod error;
pub mod extract;
pub mod names;
mod pairs;
mod window;

#[cfg(test)]
pub(crate) use accounts::testing as accounts_testing;
pub use accounts::{Account, CpuAccounts, NameId, Window};
pub use cpumask::{CpuMask, MAX_CPU_ID};
pub use error::FeatureError;
pub use names::{WorkloadClass, FEATURES, FEATURE_NAMES, PER_VM};
pub use pairs::PairWindows;
pub use window::FeatureWindows;
