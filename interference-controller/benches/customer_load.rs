//! Load benchmarks of the customer API (docs/benchmarks.md, "Customer API"), on SQLite
//! and PostgreSQL side by side, the controller in this process (its handlers, its
//! database; the clients share the machine's 2 vCPUs with it):
//!
//! - `invoice`: one tenant of 1,000 VMs with a whole month of base lines (1,000 VMs x
//!   720 hours x 2 resources = 1.44 M lines) plus 2,000 mitigations (charges and
//!   credits): `GET /v1/invoices/{period}`, 5 times; median and the slowest (p99 of 5
//!   is the slowest). Target: p99 < 100 ms.
//! - `timelines`: 200 customers of 5 VMs with a day of rollups and pair scores each;
//!   200 concurrent clients, each reading its VMs' `GET /v1/vms/{vm}/scores` 25 times.
//!   Target: p99 < 50 ms.
//!
//! `cargo bench -p interference-controller --bench customer_load` (PostgreSQL through
//! scripts/postgres.sh, which needs root). `CUSTOMER_BENCH` (invoice,timelines) and
//! `CUSTOMER_BENCH_BACKENDS` (sqlite,postgres) choose.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use interference_controller::db::{Db, DbOptions};
use interference_controller::server::{start, RunningServer, ServerConfig};
use interference_controller::store::{customer_tokens, ingest, secrets};
use interference_core::billing::alias::Aliases;
use interference_core::billing::period::segments;
use interference_core::billing::{BillingConfig, Period, Pricer, VmUsage};
use interference_fleet::wire::{IngestBatch, Item, LedgerLine, Rollup, ScoreEvent};
use interference_fleet_lab::postgres::Postgres;

const HOUR_MS: u64 = 3_600_000;

struct Target {
    server: RunningServer,
    base: String,
    db: Db,
    pg: Option<(Postgres, String)>,
    _dir: Option<tempfile::TempDir>,
}

async fn target(backend: &str) -> Result<Target> {
    let (url, dir, pg) = match backend {
        "sqlite" => {
            let dir = tempfile::Builder::new()
                .prefix("ifcbench")
                .tempdir_in("/var/tmp")?;
            let url = format!("sqlite://{}/controller.db", dir.path().display());
            (url, Some(dir), None)
        }
        _ => {
            let pg = Postgres::ensure()?;
            let url = pg.fresh_database("cbench")?;
            (url.clone(), None, Some((pg, url)))
        }
    };
    let mut config = ServerConfig::new(url.clone(), "127.0.0.1:0".parse()?);
    // The rate limit is per token: these clients are the load, not abuse.
    config.settings.customer_rate.per_second = 1e6;
    config.settings.customer_rate.burst = 1e6;
    let server = start(config).await.context("controller")?;
    let db = Db::connect_and_migrate(&url, &DbOptions::default()).await?;
    Ok(Target {
        base: format!("http://{}", server.addr),
        server,
        db,
        pg,
        _dir: dir,
    })
}

/// Stores `items` as host `host`'s batches of 5,000 (the ingest path agents use).
async fn store(db: &Db, host: &str, items: Vec<Item>, seq: &mut u64) -> Result<()> {
    let ids = secrets::public_ids(db).await?;
    for chunk in items.chunks(5000) {
        *seq += 1;
        let batch = IngestBatch {
            seq: *seq,
            items: chunk.to_vec(),
        };
        ingest::ingest(db, host, &batch, &ids).await?;
    }
    Ok(())
}

fn line(r: &interference_core::billing::LedgerRecord, uuid: &str) -> Result<Item> {
    Ok(Item::Ledger {
        line: LedgerLine::from_json_line(&serde_json::to_string(r)?)?,
        vm_uuid: Some(uuid.to_owned()),
    })
}

/// The big tenant's month: base lines of 1,000 VMs over 2026-11 on 10 hosts, and 2,000
/// weight cuts against a neighbour tenant's VMs.
async fn seed_month(db: &Db) -> Result<usize> {
    let period: Period = "2026-11".parse().map_err(anyhow::Error::msg)?;
    let (from, to) = (period.start_ms(), period.end_ms());
    let config = BillingConfig::default();
    let mut lines = 0;
    let mut seq = 0;
    for h in 0..10 {
        let host = format!("host-{h}");
        let aliases = Aliases::from_key([h as u8; 32]);
        let pricer = Pricer {
            config: &config,
            host: &host,
            aliases: &aliases,
        };
        let mut items = Vec::new();
        for v in 0..100 {
            let vm = format!("vm-{h}-{v}");
            let uuid = format!("00000000-0000-0000-{h:04}-{v:012}");
            let usage = VmUsage {
                vm: vm.clone(),
                customer: Some("big".into()),
                vcpus: Some(2),
                memory_bytes: Some(4 << 30),
            };
            for seg in segments(from, to, HOUR_MS) {
                for l in pricer.base_lines(&usage, seg, from) {
                    items.push(line(&l, &uuid)?);
                }
            }
            if items.len() >= 50_000 {
                lines += items.len();
                store(db, &host, std::mem::take(&mut items), &mut seq).await?;
            }
        }
        lines += items.len();
        store(db, &host, items, &mut seq).await?;
    }
    Ok(lines)
}

/// 200 customers of 5 VMs: a day of 5-minute rollups and 100 pair scores per VM.
async fn seed_day(db: &Db, now: u64) -> Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    let mut seq = 0;
    let day = now - 24 * HOUR_MS;
    for c in 0..200 {
        let customer = format!("tenant-{c}");
        let host = format!("dayhost-{}", c % 20);
        let mut items = Vec::new();
        let mut ids = Vec::new();
        for v in 0..5 {
            let vm = format!("{customer}-vm{v}");
            let uuid = format!("11111111-0000-0000-{c:04}-{v:012}");
            ids.push(uuid.clone());
            for w in 0..288u64 {
                items.push(Item::Rollup(Rollup {
                    vm: vm.clone(),
                    vm_uuid: Some(uuid.clone()),
                    customer: Some(customer.clone()),
                    window_start_ms: day / 300_000 * 300_000 + w * 300_000,
                    window_ms: 300_000,
                    cpu_usage_cores: 1.0,
                    run_queue_wait_ms: 100.0,
                    preempted_ms: 50.0,
                    io_ops: 1,
                    io_bytes: 4096,
                    memory_mib: 2048,
                    max_score: (w % 90) as f32,
                    actions: 0,
                    model_sha: None,
                    forecast_abs_error: None,
                }));
            }
            for k in 0..100u64 {
                items.push(Item::Score(ScoreEvent {
                    victim: vm.clone(),
                    aggressor: format!("{customer}-vm{}", (v + 1) % 5),
                    at_ms: day + k * 800_000,
                    score: 45.0,
                    model_sha: None,
                    shadow: false,
                }));
            }
        }
        store(db, &host, items, &mut seq).await?;
        out.push((customer, ids));
    }
    Ok(out)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

async fn invoice(t: &Target) -> Result<()> {
    let started = Instant::now();
    let lines = seed_month(&t.db).await?;
    let seeded = started.elapsed();
    let (_, token) =
        customer_tokens::create(&t.db, "big", customer_tokens::Scope::Read, 3600, None).await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let mut runs = Vec::new();
    let mut size = 0;
    for _ in 0..5 {
        let t0 = Instant::now();
        let resp = http
            .get(format!("{}/v1/invoices/2026-11", t.base))
            .bearer_auth(&token)
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "invoice: {}", resp.status());
        size = resp.bytes().await?.len();
        runs.push(t0.elapsed());
    }
    runs.sort();
    println!(
        "| invoice of a 1,000-VM month ({lines} lines, seeded in {:.0} s) | median {} ms, slowest of 5 {} ms | {:.1} MiB answer |",
        seeded.as_secs_f64(),
        ms(percentile(&runs, 0.5)),
        ms(percentile(&runs, 1.0)),
        size as f64 / 1048576.0
    );
    Ok(())
}

async fn timelines(t: &Target) -> Result<()> {
    let now = u64::try_from(interference_controller::db::sql::now_ms())?;
    let tenants = seed_day(&t.db, now).await?;
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    for (customer, vms) in tenants {
        let (_, token) =
            customer_tokens::create(&t.db, &customer, customer_tokens::Scope::Read, 3600, None)
                .await?;
        let (http, base, latencies) = (http.clone(), t.base.clone(), latencies.clone());
        clients.push(tokio::spawn(async move {
            for i in 0..25 {
                let vm = &vms[i % vms.len()];
                let t0 = Instant::now();
                let resp = http
                    .get(format!("{base}/v1/vms/{vm}/scores"))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                anyhow::ensure!(resp.status().is_success(), "scores: {}", resp.status());
                let _ = resp.bytes().await?;
                if let Ok(mut l) = latencies.lock() {
                    l.push(t0.elapsed());
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for c in clients {
        c.await??;
    }
    let took = started.elapsed();
    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort();
    println!(
        "| score timelines, 200 concurrent customers x 25 reads | median {} ms, p99 {} ms | {:.0} reads/s |",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        lat.len() as f64 / took.as_secs_f64()
    );
    Ok(())
}

async fn run() -> Result<()> {
    let scenarios = std::env::var("CUSTOMER_BENCH").unwrap_or_else(|_| "invoice,timelines".into());
    let backends =
        std::env::var("CUSTOMER_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    for backend in backends.split(',') {
        for scenario in scenarios.split(',') {
            let t = target(backend).await?;
            print!("| {backend} ");
            match scenario {
                "invoice" => invoice(&t).await?,
                "timelines" => timelines(&t).await?,
                other => anyhow::bail!("unknown scenario {other}"),
            }
            t.server.stop().await;
            t.db.close().await;
            if let Some((pg, url)) = &t.pg {
                pg.drop_database(url);
            }
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}
