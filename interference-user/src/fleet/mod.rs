//! The agent's link to a central controller (`[fleet]`, issue 17): registration,
//! heartbeats with the host's capacity, and the ledger uploaded line for line by a
//! cursor into the agent's own fsync'd files (docs/controller.md). Without a
//! controller, or while it is unreachable, the agent runs exactly as alone.
//!
//! | module   | job                                                            |
//! |----------|----------------------------------------------------------------|
//! | `cursor` | how far the controller has acknowledged, saved crash-safe       |
//! | `tail`   | the whole ledger lines after the cursor                        |
//! | `facts`  | CPU model, QEMU version, capacity                              |
//! | `report` | action phases, hot pairs, capacity, rollups from the ticks      |
//! | `outbox` | the bounded on-disk buffer those items wait in                  |
//! | `desired`| the desired state's long poll, saved for a restart, queued for the ticks |
//! | `models` | model bundles fetched, verified, golden-checked, kept on disk   |
//! | `assign` | which bundles act and shadow, prepared off the tick             |
//! | `limits` | the fleet's per-tenant action cap, applied between controller polls |
//! | `placement` | the migrate rung's target asked from the controller, released after |
//! | `link`   | the thread that registers, uploads and heartbeats, with backoff |
//! | `metrics`| `interference_fleet_*` in the metrics textfile                 |

pub mod assign;
pub mod cursor;
pub mod desired;
pub mod facts;
pub mod limits;
mod link;
mod metrics;
pub mod models;
pub mod outbox;
pub mod placement;
pub mod report;
pub mod tail;

pub use desired::{Prepared, DESIRED_FILE};
pub use link::{FleetLink, HostFacts, LinkError, LinkStatus};
pub use metrics::render_status;
