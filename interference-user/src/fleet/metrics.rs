//! The link's families of the metrics textfile (`interference_fleet_*`).

use super::link::LinkStatus;
use crate::export::prometheus::TextWriter;

pub fn render_status(w: &mut TextWriter, s: &LinkStatus) {
    w.gauge(
        "interference_fleet_registered",
        "1 once the controller accepted this host's registration.",
    )
    .sample(&[], u64::from(s.registered));
    w.counter(
        "interference_fleet_uploaded_lines_total",
        "Ledger lines the controller acknowledged since start.",
    )
    .sample(&[], s.uploaded_lines);
    w.gauge(
        "interference_fleet_backlog_lines",
        "Ledger lines waiting for the controller's acknowledgement (they wait in the ledger itself).",
    )
    .sample(&[], s.backlog_lines);
    w.counter(
        "interference_fleet_uploaded_items_total",
        "Action phases, score events, capacity samples and rollups the controller acknowledged since start.",
    )
    .sample(&[], s.uploaded_items);
    w.gauge(
        "interference_fleet_outbox_items",
        "Items waiting in the outbox for the controller's acknowledgement.",
    )
    .sample(&[], s.outbox_items);
    w.counter(
        "interference_fleet_outbox_dropped_total",
        "Rollups, score events and capacity samples dropped because the outbox was full.",
    )
    .sample(&[], s.outbox_dropped);
    w.counter(
        "interference_fleet_failures_total",
        "Calls to the controller that failed (each is retried with backoff).",
    )
    .sample(&[], s.failures);
    w.counter(
        "interference_fleet_heartbeats_total",
        "Heartbeats the controller acknowledged since start.",
    )
    .sample(&[], s.heartbeats);
}
