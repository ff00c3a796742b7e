//! The fleet protocol between an `interference` agent and the central controller.
//!
//! Two halves with one job each:
//! - [`wire`]: every message that crosses the network, as plain serde types inside a
//!   versioned [`wire::Envelope`]. The controller and the agent both depend on them, so
//!   a change to the protocol is a change to this crate and nowhere else.
//! - [`client`]: what the agent calls (reqwest over plain HTTP, tokio): bounded
//!   timeouts, jittered exponential backoff that honours `Retry-After`, long polls.
//!
//! [`routes`] names every path once. No database or server code lives here: the agent
//! links this crate and must not pull in sqlx or axum.

pub mod client;
pub mod routes;
pub mod wire;

pub use client::{Backoff, ClientConfig, ClientError, FleetClient, RetryPolicy};
pub use wire::Envelope;
