//! The SQL, grouped by domain; one function per statement or transaction. Handlers and
//! jobs call these; nothing else writes SQL.

pub mod customer;
pub mod customer_tokens;
pub mod group_commit;
pub mod hosts;
pub mod influence;
pub mod ingest;
pub mod models;
pub mod placement;
pub mod policy;
pub mod rollouts;
pub mod secrets;
pub mod status;
pub mod tokens;
