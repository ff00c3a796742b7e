//! What agents call, authenticated by their host token.

pub mod desired;
pub mod heartbeat;
pub mod ingest;
pub mod models;
pub mod placement;
pub mod register;
