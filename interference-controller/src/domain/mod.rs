//! Pure decisions, no I/O: policy documents (check, layers), rollout stages and their
//! rules, placement's filter and weights. Unit-tested here; the handlers and jobs feed
//! them rows from the store.

pub mod cap_credit;
pub mod fleet_settings;
pub mod influence;
pub mod locate;
pub mod placement;
pub mod policy_check;
pub mod policy_layers;
pub mod public_ids;
pub mod redact;
pub mod rollout;
