//! What operators call, authenticated by an admin token. The same operations are in
//! the CLI (`interference-controller policy|models|hosts ...`), which runs them against
//! the database directly.

pub mod hosts;
pub mod models;
pub mod policy;
pub mod status;
