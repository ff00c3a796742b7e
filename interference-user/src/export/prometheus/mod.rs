//! The Prometheus textfile: `interference_*` metrics for node_exporter's textfile
//! collector, rewritten atomically every tick.
//!
//! Samples are per-tick deltas; Prometheus wants cumulative counters. [`MetricsExporter`]
//! keeps the running totals per series, drops the series of VMs that vanished, and
//! renders through a [`TextWriter`]. Other stages' metrics (contention scores, actions,
//! billing) are added by rendering their own families into the same writer before
//! [`write_atomic`]:
//!
//! ```no_run
//! # use interference::export::prometheus::*;
//! # fn f(exporter: &MetricsExporter) -> Result<(), TextfileError> {
//! let mut w = TextWriter::new();
//! exporter.render_into(&mut w);
//! w.gauge("interference_pair_contention_score", "...").sample(&[("victim", "a")], 42.0);
//! write_atomic("/var/lib/node_exporter/interference.prom".as_ref(), w.finish().as_bytes())
//! # }
//! ```

mod billing;
mod exporter;
mod forecast;
mod process;
mod scores;
mod text;
mod textfile;

#[cfg(test)]
mod check;
#[cfg(test)]
mod tests;

pub use billing::render_billing;
pub use exporter::MetricsExporter;
pub use forecast::{render_forecast, ForecastMetrics};
pub use process::{open_fds, render_process, resident_memory_bytes};
pub use scores::ScoreMetrics;
pub use text::{
    escape_help, escape_label_value, format_value, Family, HistogramFamily, Labels, TextWriter,
    Value,
};
pub use textfile::{write_atomic, TextfileError};
