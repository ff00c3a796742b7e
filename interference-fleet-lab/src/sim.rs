//! Simulated agents: each makes deterministic batches of idempotent items (ledger
//! lines shaped like the agent's, action phases, rollups, score events, capacity),
//! sends each until acknowledged (the real client, its backoff and `Retry-After`),
//! and remembers everything it sent: the controller must end up with exactly the union.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use interference_fleet::wire::{
    ActionPhase, Capacity, CapacitySample, IngestAck, IngestBatch, Item, LedgerLine, Phase, Rollup,
    ScoreEvent, ROLLUP_WINDOW_MS,
};
use interference_fleet::{ClientConfig, FleetClient, RetryPolicy};

/// What one agent sent, by kind and id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// record id -> the line's JSON text.
    pub ledger: BTreeMap<String, String>,
    /// The other kinds by `<host>/<id>` (their ids are unique on their host).
    pub phases: BTreeMap<String, ()>,
    pub rollups: BTreeMap<String, ()>,
    pub scores: BTreeMap<String, ()>,
    pub capacity: BTreeMap<String, ()>,
}

impl Sent {
    pub fn merge(&mut self, other: &Sent) {
        self.ledger
            .extend(other.ledger.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.phases
            .extend(other.phases.keys().map(|k| (k.clone(), ())));
        self.rollups
            .extend(other.rollups.keys().map(|k| (k.clone(), ())));
        self.scores
            .extend(other.scores.keys().map(|k| (k.clone(), ())));
        self.capacity
            .extend(other.capacity.keys().map(|k| (k.clone(), ())));
    }
}

/// Per-batch results, for tests and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub batches: u64,
    pub items: u64,
    /// Time from first send to acknowledgement, per batch.
    pub latencies: Vec<Duration>,
    /// Batches resent for a reason other than being throttled (timeouts, cut
    /// connections, lost answers, 5xx).
    pub retried: u64,
    /// Errors answered with a 5xx status (each attempt).
    pub server_errors: u64,
    /// Attempts answered 429 (throttled, with Retry-After).
    pub throttled: u64,
}

/// Which items a batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mix {
    /// Mostly ledger lines, every kind present (tests: the ledger is what must match).
    #[default]
    LedgerHeavy,
    /// A host with 50 VMs over an hour (docs/controller.md): per 93 items, 60 rollups,
    /// 12 ledger lines, 12 score events, 6 capacity samples, 3 action phases.
    HostHour,
}

pub struct SimAgent {
    pub host: String,
    pub mix: Mix,
    pub client: FleetClient,
    next_seq: u64,
    next_item: u64,
    /// The agent's clock for item timestamps (fixed base: ids are stable).
    base_ms: u64,
    pub sent: Sent,
}

impl SimAgent {
    pub fn new(host: &str, base_url: &str, token: &str, retry: RetryPolicy) -> Result<Self> {
        let mut config = ClientConfig::new(base_url, token);
        config.retry = retry;
        config.request_timeout = Duration::from_secs(10);
        Ok(Self {
            host: host.to_owned(),
            mix: Mix::default(),
            client: FleetClient::new(config)?,
            next_seq: 1,
            next_item: 0,
            base_ms: 1_795_651_200_000, // 2026-11-26T00:00:00Z
            sent: Sent::default(),
        })
    }

    /// The next batch: `n` items, mostly ledger lines, every kind present. Does not
    /// record it as sent (see [`Self::record`]).
    pub fn make_batch(&mut self, n: usize) -> IngestBatch {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            let i = self.next_item;
            self.next_item += 1;
            items.push(self.item(i));
        }
        IngestBatch { seq, items }
    }

    /// Item number `i` of this agent (the same `i` is always the same item).
    pub fn item(&self, i: u64) -> Item {
        let h = &self.host;
        let at = self.base_ms + i * 1000;
        let kind = match self.mix {
            Mix::LedgerHeavy => i % 10,
            Mix::HostHour => match i % 93 {
                0..=59 => 7,
                60..=71 => 0,
                72..=83 => 8,
                84..=89 => 9,
                _ => 6,
            },
        };
        match kind {
            0..=5 => {
                let seg = at / 3_600_000 * 3_600_000;
                let kind = if i.is_multiple_of(2) {
                    "charge"
                } else {
                    "credit"
                };
                let cost = if kind == "charge" {
                    0.000_096_942
                } else {
                    -0.000_077_554
                };
                let line = format!(
                    r#"{{"x_RecordId":"{h}-1-{i}/{seg}/{kind}","BillingAccountId":"cust-{c}","BillingCurrency":"USD","ChargePeriodStart":"{start}","ChargePeriodEnd":"{end}","ChargeCategory":"{cat}","ResourceId":"{h}/vm-{v}","SkuId":"imc-cpu-weight","PricingQuantity":0.008996750000000001,"BilledCost":{cost},"EffectiveCost":{cost},"x_Host":"{h}","x_Period":"2026-11","x_Kind":"{kind}","x_ActionId":"{h}-1-{i}","x_Action":"cpu_weight","x_Formula":"IMC = 0.008997 vCPU-Hours x 0.01 USD x 1.0775 = {cost} USD"}}"#,
                    c = i % 7,
                    v = i % 50,
                    start = rfc3339(at),
                    end = rfc3339(at + 1000),
                    cat = if kind == "charge" { "Usage" } else { "Credit" },
                );
                Item::Ledger {
                    line: LedgerLine::from_json_line(&line).unwrap_or_else(|_| {
                        LedgerLine::from_json_line("{}").expect("an empty object is JSON")
                    }),
                    vm_uuid: Some(format!("00000000-0000-4000-8000-{:012}", i % 50)),
                }
            }
            6 => Item::ActionPhase(ActionPhase {
                id: format!("{h}-1-{i}/done/{i}"),
                action_id: format!("{h}-1-{i}"),
                phase: Phase::Done,
                at_ms: at,
                rung: Some("cpu_weight".into()),
                vm: Some(format!("vm-{}", i % 50)),
                vm_uuid: None,
                customer: Some(format!("cust-{}", i % 7)),
                model_sha: None,
                victim_wait_after_ms: None,
                detail: serde_json::Value::Null,
            }),
            7 => Item::Rollup(Rollup {
                vm: format!("vm-{}", i % 50),
                vm_uuid: None,
                customer: Some(format!("cust-{}", i % 7)),
                window_start_ms: (at / ROLLUP_WINDOW_MS) * ROLLUP_WINDOW_MS + i * ROLLUP_WINDOW_MS,
                window_ms: ROLLUP_WINDOW_MS,
                cpu_usage_cores: 1.5,
                run_queue_wait_ms: 12.0,
                preempted_ms: 3.0,
                io_ops: 100,
                io_bytes: 409_600,
                memory_mib: 4096,
                max_score: 31.0,
                actions: 1,
                model_sha: None,
                forecast_abs_error: None,
            }),
            8 => Item::Score(ScoreEvent {
                victim: format!("vm-{}", i % 50),
                aggressor: format!("vm-{}", (i + 1) % 50),
                at_ms: at,
                score: 42.0,
                model_sha: None,
                shadow: false,
            }),
            _ => Item::Capacity(CapacitySample {
                at_ms: at,
                capacity: Capacity {
                    total_vcpus: 64,
                    total_memory_mib: 262_144,
                    free_vcpus: 16,
                    free_memory_mib: 65_536,
                    vms: 50,
                },
            }),
        }
    }

    /// Remembers a batch as sent (call before sending: a batch whose answer is lost may
    /// still be stored).
    pub fn record(&mut self, batch: &IngestBatch) {
        for item in &batch.items {
            let Some(id) = item.id() else { continue };
            // Ledger record ids are fleet-wide; the others are unique on their host.
            let scoped = format!("{}/{id}", self.host);
            match item {
                Item::Ledger { line, .. } => {
                    self.sent.ledger.insert(id, line.as_str().to_owned());
                }
                Item::ActionPhase(_) => {
                    self.sent.phases.insert(scoped, ());
                }
                Item::Rollup(_) => {
                    self.sent.rollups.insert(scoped, ());
                }
                Item::Score(_) => {
                    self.sent.scores.insert(scoped, ());
                }
                Item::Capacity(_) => {
                    self.sent.capacity.insert(scoped, ());
                }
            }
        }
    }

    /// Sends `batch` until acknowledged, counting attempts and 5xx answers.
    pub async fn send(&mut self, batch: &IngestBatch, report: &mut Report) -> Result<IngestAck> {
        self.record(batch);
        let started = Instant::now();
        let attempts = AtomicU64::new(0);
        let server_errors = AtomicU64::new(0);
        let throttled = AtomicU64::new(0);
        let policy = self.client.config().retry;
        let client = &self.client;
        let ack = client
            .retrying("ingest", policy, || async {
                attempts.fetch_add(1, Ordering::Relaxed);
                let r = client.ingest(batch).await;
                if let Err(e) = &r {
                    if e.status().is_some_and(|s| s >= 500) {
                        server_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    if e.status() == Some(429) {
                        throttled.fetch_add(1, Ordering::Relaxed);
                    }
                }
                r
            })
            .await?;
        report.batches += 1;
        report.items += batch.items.len() as u64;
        report.latencies.push(started.elapsed());
        if attempts.load(Ordering::Relaxed) > throttled.load(Ordering::Relaxed) + 1 {
            report.retried += 1;
        }
        report.throttled += throttled.load(Ordering::Relaxed);
        report.server_errors += server_errors.load(Ordering::Relaxed);
        Ok(ack)
    }

    /// Makes and sends `batches` batches of `items` items, `pace` apart.
    pub async fn run(&mut self, batches: usize, items: usize, pace: Duration) -> Result<Report> {
        let mut report = Report::default();
        for _ in 0..batches {
            let batch = self.make_batch(items);
            self.send(&batch, &mut report).await?;
            if !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
        }
        Ok(report)
    }
}

/// RFC 3339 UTC with milliseconds, as the ledger writes instants.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(
            super::rfc3339(1_795_658_549_169),
            "2026-11-26T02:02:29.169Z"
        );
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
    }
}
