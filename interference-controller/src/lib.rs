//! The fleet's central controller for `interference` agents.
//!
//! Agents register, heartbeat, push idempotent batches (ledger lines, action phases,
//! rollups, score events, capacity), long-poll their desired state (layered policy,
//! model bundles, fleet limits) and ask for migration targets. The controller is an
//! axum HTTP+JSON service with no state of its own between requests: everything lives
//! in the database (sqlx; a SQLite file by default, PostgreSQL for several replicas),
//! so replicas are interchangeable and background jobs run on whichever holds the
//! leadership.
//!
//! Layout, top to bottom: `api` (handlers, by caller) over `middleware` (auth, body,
//! errors, metrics) over `ops` (admin operations shared with the CLI) over `store`
//! (all SQL) and `domain` (pure decisions) over `db` (pool, migrations, backends).
//! `desired` keeps each replica's in-memory snapshot of what the fleet wants; `jobs`
//! the leader and its periodic work; `state` is what every handler shares (with `token_cache`), `app` the router,
//! `server` wires it all for `serve` and the tests.

#![cfg_attr(test, recursion_limit = "256")]

pub mod api;
pub mod app;
pub mod db;
pub mod desired;
pub mod domain;
pub mod jobs;
pub mod metrics;
pub mod middleware;
pub mod ops;
pub mod server;
pub mod state;
pub mod store;
pub mod token_cache;

pub use db::{Backend, Db, DbOptions};
pub use server::{start, RunningServer, ServerConfig};
