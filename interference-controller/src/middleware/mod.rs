//! Request concerns that no handler may forget: authentication (extractors), the body
//! envelope, error mapping to JSON with the right status and `Retry-After`, request
//! metrics and logs.

pub mod auth;
pub mod body;
pub mod error;
pub mod observe;
pub mod rate_limit;
