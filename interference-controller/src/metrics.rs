//! The controller's own metrics, in Prometheus text format at `/metrics`. Names start
//! with `interference_controller_`, base units, counters end in `_total`. Each metric
//! is written in one place (here); the code that does the work only records events.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use interference_fleet::wire::ItemKind;

/// Request duration buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    /// (route, method, status) -> count
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route -> duration histogram
    durations: Mutex<BTreeMap<String, Histogram>>,
    /// (kind, result) -> items
    items: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    batches: AtomicU64,
    batches_replayed: AtomicU64,
    throttled: AtomicU64,
    ledger_conflicts: AtomicU64,
    db_unavailable: AtomicU64,
    long_polls: AtomicI64,
    leader: AtomicI64,
    generation: AtomicI64,
    reservations: Mutex<BTreeMap<&'static str, u64>>,
    rollout_transitions: Mutex<BTreeMap<String, u64>>,
    job_errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    pub fn request(&self, route: &str, method: &str, status: u16, took: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((route.to_owned(), method.to_owned(), status))
                .or_default() += 1;
        }
        if let Ok(mut m) = self.durations.lock() {
            let h = m.entry(route.to_owned()).or_default();
            let s = took.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if s <= *b {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += s;
        }
    }

    pub fn batch(&self, replayed: bool, conflicts: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        if replayed {
            self.batches_replayed.fetch_add(1, Ordering::Relaxed);
        }
        self.ledger_conflicts
            .fetch_add(conflicts as u64, Ordering::Relaxed);
    }

    pub fn items(&self, kind: ItemKind, inserted: u64, duplicates: u64) {
        if let Ok(mut m) = self.items.lock() {
            *m.entry((kind.as_str(), "inserted")).or_default() += inserted;
            *m.entry((kind.as_str(), "duplicate")).or_default() += duplicates;
        }
    }

    pub fn rejected_items(&self, n: u64) {
        if let Ok(mut m) = self.items.lock() {
            *m.entry(("any", "rejected")).or_default() += n;
        }
    }

    /// A batch turned away because too many were in flight.
    pub fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    pub fn db_unavailable(&self) {
        self.db_unavailable.fetch_add(1, Ordering::Relaxed);
    }

    /// A long poll started (+1) or ended (-1).
    pub fn long_poll(&self, delta: i64) {
        self.long_polls.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.store(i64::from(leader), Ordering::Relaxed);
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed) == 1
    }

    pub fn set_generation(&self, g: i64) {
        self.generation.store(g, Ordering::Relaxed);
    }

    pub fn reservation(&self, outcome: &'static str) {
        if let Ok(mut m) = self.reservations.lock() {
            *m.entry(outcome).or_default() += 1;
        }
    }

    pub fn rollout_transition(&self, to: &str) {
        if let Ok(mut m) = self.rollout_transitions.lock() {
            *m.entry(to.to_owned()).or_default() += 1;
        }
    }

    pub fn job_error(&self, job: &'static str) {
        if let Ok(mut m) = self.job_errors.lock() {
            *m.entry(job).or_default() += 1;
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let p = "interference_controller";
        let _ = writeln!(out, "# HELP {p}_http_requests_total HTTP requests answered, by route, method and status.\n# TYPE {p}_http_requests_total counter");
        if let Ok(m) = self.requests.lock() {
            for ((route, method, status), n) in m.iter() {
                let _ = writeln!(out, "{p}_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}");
            }
        }
        let _ = writeln!(out, "# HELP {p}_http_request_duration_seconds Time to answer, by route.\n# TYPE {p}_http_request_duration_seconds histogram");
        if let Ok(m) = self.durations.lock() {
            for (route, h) in m.iter() {
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(out, "{p}_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}", h.counts[i]);
                }
                let _ = writeln!(
                    out,
                    "{p}_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "{p}_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "{p}_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    h.count
                );
            }
        }
        let _ = writeln!(out, "# HELP {p}_ingest_items_total Items received, by kind and result (inserted, duplicate, rejected).\n# TYPE {p}_ingest_items_total counter");
        if let Ok(m) = self.items.lock() {
            for ((kind, result), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "{p}_ingest_items_total{{kind=\"{kind}\",result=\"{result}\"}} {n}"
                );
            }
        }
        let counters = [
            (
                "ingest_batches_total",
                "Batches committed (acknowledged).",
                self.batches.load(Ordering::Relaxed),
            ),
            (
                "ingest_batches_replayed_total",
                "Batches whose sequence number had been committed before (a resend).",
                self.batches_replayed.load(Ordering::Relaxed),
            ),
            (
                "ledger_conflicts_total",
                "Ledger record ids received with content other than stored.",
                self.ledger_conflicts.load(Ordering::Relaxed),
            ),
            (
                "database_unavailable_total",
                "Requests answered 503 because the database was out of reach.",
                self.db_unavailable.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {p}_{name} {help}\n# TYPE {p}_{name} counter\n{p}_{name} {v}"
            );
        }
        let gauges = [
            (
                "long_polls",
                "Desired-state long polls waiting now.",
                self.long_polls.load(Ordering::Relaxed),
            ),
            (
                "leader",
                "1 if this replica runs the background jobs (holds the advisory lock).",
                self.leader.load(Ordering::Relaxed),
            ),
            (
                "generation",
                "The fleet generation this replica's desired states are built from.",
                self.generation.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {p}_{name} {help}\n# TYPE {p}_{name} gauge\n{p}_{name} {v}"
            );
        }
        let _ = writeln!(out, "# HELP {p}_placements_total Placement requests, by outcome.\n# TYPE {p}_placements_total counter");
        if let Ok(m) = self.reservations.lock() {
            for (outcome, n) in m.iter() {
                let _ = writeln!(out, "{p}_placements_total{{outcome=\"{outcome}\"}} {n}");
            }
        }
        let _ = writeln!(out, "# HELP {p}_rollout_transitions_total Rollout stage changes, by stage entered.\n# TYPE {p}_rollout_transitions_total counter");
        if let Ok(m) = self.rollout_transitions.lock() {
            for (to, n) in m.iter() {
                let _ = writeln!(out, "{p}_rollout_transitions_total{{to=\"{to}\"}} {n}");
            }
        }
        let _ = writeln!(out, "# HELP {p}_job_errors_total Background job runs that failed, by job.\n# TYPE {p}_job_errors_total counter");
        if let Ok(m) = self.job_errors.lock() {
            for (job, n) in m.iter() {
                let _ = writeln!(out, "{p}_job_errors_total{{job=\"{job}\"}} {n}");
            }
        }
        out
    }
}
