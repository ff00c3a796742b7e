//! What every stage and the controller know about a VM regardless of where it runs.

use serde::{Deserialize, Serialize};

/// A VM's priority: a `high` VM is protected first (the policy stage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}
