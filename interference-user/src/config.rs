//! The TOML configuration (placeholder until the inventory work lands).
