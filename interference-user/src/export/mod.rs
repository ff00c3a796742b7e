//! Exporters: Prometheus textfile and JSONL samples.
