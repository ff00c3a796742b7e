//! The enforcement stage: applies the policy's actions to VMs, journals every change
//! before making it, and puts everything back on exit, after a crash, or on request.
//!
//! | module    | job                                                                     |
//! |-----------|-------------------------------------------------------------------------|
//! | `apply`   | [`Enforcer`]: one action in, one [`Outcome`](crate::policy::Outcome) out |
//! | `restore` | putting journalled values back (rollbacks, exit, start, `interference restore`) |
//! | `journal` | the write-ahead journal (JSONL, fsynced intents, torn-tail repair)       |
//! | `guard`   | path confinement: only files of managed VMs' own cgroups, on cgroupfs    |
//! | `cgroup`  | v1/v2 backends: which files, current values, write order                 |
//! | `cpuset`  | CPU lists, and the order that keeps v1's subset rule at every step       |
//! | `weight`  | `cpu.weight` <-> `cpu.shares` as systemd and runc convert                |
//!
//! Life of a change: the policy hands an [`Action`](crate::policy::Action) and the VM
//! to [`Enforcer::apply`]; the guard admits the VM's cgroups; the backend reads every
//! value the change touches; the journal records (and syncs) each value's original
//! before anything is written; the writes follow; the outcome says Applied (with each
//! file's before and after), Simulated (dry run: nothing written, not even the
//! journal) or Failed (with the reason; never billed). [`Enforcer::restore_all`] undoes
//! everything still in effect; a kill -9 at any instant leaves at most changes that
//! have an intent, which the next start (or `interference restore`) puts back.
//!
//! The QMP transport itself is [`crate::qmp`], shared with the inventory.

pub mod apply;
pub mod cgroup;
pub mod cpuset;
mod error_chain;
pub mod journal;
pub mod restore;
pub use interference_core::cpu_weight as weight;

pub use crate::host::guard::{self, GuardError, ManagedRoots};
pub use crate::qmp::{QmpClient, QmpError};
pub use apply::{EnforceError, Enforcer, EnforcerOptions};
pub use cpuset::CpuList;
pub use error_chain::error_chain;
pub use journal::{Entry, EntryState, Journal, JournalError, Owed, Target, DEFAULT_JOURNAL};
