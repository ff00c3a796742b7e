//! Desired states: what each host should run. Built from a [`Snapshot`] of the fleet's
//! documents, rollout and limits that every replica keeps in memory and reloads when the
//! fleet generation changes in the database (whichever replica, or CLI, made the
//! change), so that thousands of waiting long polls cost no query to wake.

mod snapshot;
mod watcher;

pub use snapshot::Snapshot;
pub use watcher::{spawn_watcher, RELOAD_EVERY};
