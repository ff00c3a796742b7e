//! Exporters: the Prometheus textfile (cumulative metrics for dashboards and alerts)
//! and JSONL samples (the raw per-tick record, for replay and training data).

pub mod jsonl;
pub mod prometheus;
