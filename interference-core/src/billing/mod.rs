//! Billing that does not depend on where it runs: the price of allocation and of every
//! mitigation, the ledger's lines and files, invoices and explanations a customer reads
//! (docs/billing.md). The agent meters and posts; the controller stores and serves;
//! both read and price with this.
//!
//! - [`price`] holds the formulas (pure: same input, same lines, same ids);
//! - [`ledger`] writes and reads the JSONL files (FOCUS columns, [`record`]);
//! - [`invoice`](mod@invoice) and [`explain`](mod@explain) turn lines into what a customer reads, with
//!   neighbours of other customers shown by [`alias`] only.

pub mod alias;
pub mod config;
pub mod describe;
pub mod explain;
pub mod invoice;
pub mod ledger;
pub mod money;
pub mod period;
pub mod price;
pub mod record;

pub use config::{BillingConfig, Payer, PriceTable, DEFAULT_LEDGER_DIR};
pub use invoice::{invoice, Invoice, InvoiceError, InvoiceLine};
pub use ledger::{BadLine, Contents, Ledger, LedgerError};
pub use money::Money;
pub use period::{Period, Segment};
pub use price::{Billable, Pricer, VmUsage};
pub use record::{ChargeCategory, LedgerRecord, LineKind, ResourceDelta, Role};
