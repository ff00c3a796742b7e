//! HTTP handlers, grouped by who calls them: `agents/` (host tokens), `admin/` (admin
//! tokens), `customer/` (customer tokens), `health` (no token). Handlers are thin: authenticate (an extractor), call
//! the store and the domain, answer; errors map in `middleware::error`.

pub mod admin;
pub mod agents;
pub mod customer;
pub mod dashboard;
pub mod health;
