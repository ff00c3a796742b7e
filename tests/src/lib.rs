//! Fixtures for the privileged integration tests.
