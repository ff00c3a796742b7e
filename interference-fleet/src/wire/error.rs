//! The body of every error the controller answers with.

use serde::{Deserialize, Serialize};

/// `{"code": "invalid_policy", "message": "...", "fields": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable, machine-readable: `unauthorized`, `not_found`, `invalid_policy`,
    /// `sha_mismatch`, `no_target`, `unavailable`, ...
    pub code: String,
    /// For people.
    pub message: String,
    /// Problems located in a document (a policy), in file order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

/// One problem in a TOML document, located like the agent's own config errors:
/// `fleet.toml:7:12: policy.off_threshold: 45 must be below on_threshold (40)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub file: String,
    /// 1-based; 0 when the text could not be located.
    pub line: u32,
    /// `policy.off_threshold`; empty for a syntax error.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}
