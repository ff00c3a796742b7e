//! The enforcement stage: applies the policy's actions to VMs.
//!
//! | module | job                                                              |
//! |--------|------------------------------------------------------------------|
//! | `qmp`  | QMP commands that change a VM: balloon target, stats polling, migration |
//!
//! The QMP transport itself is [`crate::qmp`], shared with the inventory; cgroup
//! writers (cpu.weight, cpusets) and the journal that makes every change undoable
//! will join here.

pub mod qmp;

pub use crate::qmp::{QmpClient, QmpError};
