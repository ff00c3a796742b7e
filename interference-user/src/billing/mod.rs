//! Billing: the price of allocation and of every mitigation, in an append-only ledger
//! customers can audit (DESIGN.md, "Billing").
//!
//! - [`Billing`] runs inside the agent: it meters VMs and applied actions and posts
//!   ledger lines ([`meter`]);
//! - [`price`] holds the formulas (pure: same input, same lines, same ids);
//! - [`ledger`] writes and reads the JSONL files (FOCUS columns, [`record`]);
//! - [`invoice`] and [`explain`] turn lines into what a customer reads, with
//!   neighbours of other customers shown by [`alias`] only.

pub mod alias;
pub mod config;
pub mod describe;
pub mod explain;
pub mod invoice;
pub mod ledger;
pub mod meter;
pub mod money;
pub mod period;
pub mod price;
pub mod record;

pub use config::{BillingConfig, PriceTable, DEFAULT_LEDGER_DIR};
pub use invoice::{invoice, Invoice, InvoiceError, InvoiceLine};
pub use ledger::{BadLine, Contents, Ledger, LedgerError};
pub use meter::Billing;
pub use money::Money;
pub use period::{Period, Segment};
pub use price::{Billable, Pricer, VmUsage};
pub use record::{ChargeCategory, LedgerRecord, LineKind, ResourceDelta, Role};

#[cfg(test)]
mod tests;
