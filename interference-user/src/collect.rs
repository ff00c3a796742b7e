//! The tick loop of `interference collect`.
