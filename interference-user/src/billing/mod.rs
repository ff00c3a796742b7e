//! Billing inside the agent: [`Billing`] meters the VMs and the applied actions and
//! posts ledger lines ([`meter`]). The prices, the ledger's lines and files, invoices
//! and explanations are `interference_core::billing`, shared with the controller, and
//! re-exported here.

pub mod meter;

pub use interference_core::billing::*;
pub use meter::{Billing, BillingMetrics, LedgerHealth};

#[cfg(test)]
mod tests;
