//! Load benchmarks of the controller, on SQLite and PostgreSQL side by side
//! (docs/benchmarks.md, "Controller"). The controller runs as its own process (the
//! release binary) on loopback; simulated agents (interference-fleet-lab) run in this
//! process with the real client. Scenarios, chosen with `FLEET_BENCH` (comma list,
//! default all) and backends with `FLEET_BENCH_BACKENDS` (default sqlite,postgres):
//!
//! - `ingest`: 500 agents, each a batch of 20 items every 2 s (5,000 items/s offered),
//!   for `FLEET_INGEST_SECS` (30); throughput and batch latency (median, p99).
//! - `saturate`: the same 500 agents sending back to back for 15 s: the ceiling.
//! - `backlog`: 1,000 hosts each replaying a one-hour backlog (1,000 items in a host
//!   hour's mix, batches of 500), starting within 10 s of each other: time to drain,
//!   5xx answers.
//! - `polls`: 5,000 idle long polls: the controller's RSS, then one policy change and
//!   the time until every poll has its answer.
//!
//! `cargo bench -p interference-controller --bench fleet_load` (PostgreSQL through
//! scripts/postgres.sh, which needs root).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sqlx::Row;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use interference_controller::db::{Db, DbOptions};
use interference_controller::ops;
use interference_fleet::wire::sha256_hex;
use interference_fleet::RetryPolicy;
use interference_fleet_lab::postgres::Postgres;
use interference_fleet_lab::process::{ControllerProcess, ControllerSpec};
use interference_fleet_lab::sim::{Mix, Report, SimAgent};

struct Target {
    db: Db,
    pg: Option<Postgres>,
    url: String,
    process: ControllerProcess,
    base: String,
    _dir: Option<tempfile::TempDir>,
}

async fn target(backend: &'static str) -> Result<Target> {
    let (url, dir, pg) = match backend {
        "sqlite" => {
            let dir = tempfile::Builder::new()
                .prefix("ifbench")
                .tempdir_in("/var/tmp")?;
            let url = format!("sqlite://{}/controller.db", dir.path().display());
            (url, Some(dir), None)
        }
        _ => {
            let pg = Postgres::ensure()?;
            (pg.fresh_database("bench")?, None, Some(pg))
        }
    };
    let db = Db::connect_and_migrate(&url, &DbOptions::default()).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let process = ControllerProcess::start(ControllerSpec {
        binary: PathBuf::from(env!("CARGO_BIN_EXE_interference-controller")),
        database: url.clone(),
        listen: listen.clone(),
        netns: None,
        log: dir.as_ref().map(|d| d.path().join("controller.log")),
    })
    .await?;
    Ok(Target {
        db,
        pg,
        url,
        process,
        base: format!("http://{listen}"),
        _dir: dir,
    })
}

/// `n` hosts with known tokens (`ifh_bench_<i>`), inserted in one transaction.
async fn tokens(db: &Db, n: usize) -> Result<Vec<(String, String)>> {
    let mut tx = db.pool().begin().await?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let host = format!("bench-{i}");
        let token = format!("ifh_bench_{i}");
        sqlx::query("INSERT INTO hosts (id, grp) VALUES ($1, 'default') ON CONFLICT DO NOTHING")
            .bind(&host)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO host_tokens (token_sha256, host_id, created_ms) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING")
            .bind(sha256_hex(token.as_bytes()))
            .bind(&host)
            .execute(&mut *tx)
            .await?;
        out.push((host, token));
    }
    tx.commit().await?;
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

fn retry() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(5),
        max_attempts: None,
        max_elapsed: Some(Duration::from_secs(600)),
    }
}

/// Agents sending `items` per batch every `period` (zero: back to back) for `secs`,
/// measured after a warm-up of `warmup` (connections made, tokens cached); returns
/// (items/s acknowledged in the window, sorted latencies of the batches that ended in
/// it, 5xx answers over the whole run).
async fn offered_load(
    t: &Target,
    agents: usize,
    items: usize,
    period: Duration,
    secs: u64,
    warmup: Duration,
) -> Result<(f64, Vec<Duration>, u64, u64)> {
    let hosts = tokens(&t.db, agents).await?;
    let started = Instant::now();
    let window_start = started + warmup;
    let end = window_start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (i, (host, token)) in hosts.into_iter().enumerate() {
        let base = t.base.clone();
        tasks.push(tokio::spawn(async move {
            let mut a = SimAgent::new(&host, &base, &token, retry())?;
            a.mix = Mix::HostHour;
            let mut report = Report::default();
            let mut in_window = Vec::new();
            let mut items_in_window = 0u64;
            // Spread the agents over the period.
            let phase = if period.is_zero() {
                Duration::ZERO
            } else {
                period * (i as u32) / (agents as u32)
            };
            tokio::time::sleep(phase).await;
            let mut next = Instant::now();
            while Instant::now() < end {
                let batch = a.make_batch(items);
                let sent = Instant::now();
                a.send(&batch, &mut report).await?;
                let done = Instant::now();
                if sent >= window_start && done <= end {
                    in_window.push(done - sent);
                    items_in_window += items as u64;
                }
                if !period.is_zero() {
                    next += period;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            Ok::<_, anyhow::Error>((
                in_window,
                items_in_window,
                report.server_errors,
                report.throttled,
            ))
        }));
    }
    let mut latencies = Vec::new();
    let (mut errors, mut acked, mut throttled) = (0, 0, 0);
    for task in tasks {
        let (l, n, e, th) = task.await??;
        latencies.extend(l);
        acked += n;
        errors += e;
        throttled += th;
    }
    latencies.sort();
    Ok((acked as f64 / secs as f64, latencies, errors, throttled))
}

async fn backlog(
    t: &Target,
    hosts: usize,
    items_per_host: usize,
    batch: usize,
) -> Result<(Duration, Vec<Duration>, u64, u64, u64)> {
    let creds = tokens(&t.db, hosts).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, (host, token)) in creds.into_iter().enumerate() {
        let base = t.base.clone();
        tasks.push(tokio::spawn(async move {
            let mut policy = retry();
            policy.cap = Duration::from_secs(10);
            let mut a = SimAgent::new(&host, &base, &token, policy)?;
            a.mix = Mix::HostHour;
            // The hosts come back from the outage within 10 s of each other.
            tokio::time::sleep(Duration::from_millis((i as u64 * 7919) % 10_000)).await;
            let mut report = Report::default();
            let mut left = items_per_host;
            while left > 0 {
                let n = left.min(batch);
                let b = a.make_batch(n);
                a.send(&b, &mut report).await?;
                left -= n;
            }
            Ok::<Report, anyhow::Error>(report)
        }));
    }
    let mut latencies = Vec::new();
    let (mut errors, mut retried, mut throttled) = (0, 0, 0);
    for task in tasks {
        let r = task.await??;
        latencies.extend(r.latencies);
        errors += r.server_errors;
        retried += r.retried;
        throttled += r.throttled;
    }
    latencies.sort();
    Ok((started.elapsed(), latencies, errors, retried, throttled))
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn long_polls(t: &Target, n: usize) -> Result<(u64, u64, u64, Duration)> {
    let creds = tokens(&t.db, n).await?;
    let pid = t.process.pid().context("controller pid")?;
    let (idle_rss, _) = rss_kib(pid);
    let first = {
        let c = interference_fleet::FleetClient::new(interference_fleet::ClientConfig::new(
            &t.base,
            &creds[0].1,
        ))?;
        c.desired(None).await?.context("a desired state")?
    };
    let addr = t.base.trim_start_matches("http://").to_owned();
    let mut conns = Vec::with_capacity(n);
    for chunk in creds.chunks(250) {
        for (_, token) in chunk {
            let mut s = TcpStream::connect(&addr).await?;
            s.write_all(format!("GET /agent/v1/desired?wait_ms=120000 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nIf-None-Match: \"{}\"\r\n\r\n", first.etag).as_bytes()).await?;
            conns.push(s);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Wait until the controller holds them all.
    let metrics_url = format!("{}/metrics", t.base);
    let http = reqwest::Client::new();
    for _ in 0..300 {
        let text = http.get(&metrics_url).send().await?.text().await?;
        let waiting = text
            .lines()
            .find(|l| l.starts_with("interference_controller_long_polls "))
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if waiting >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss, hwm) = rss_kib(pid);
    // One policy change; every poll should answer.
    let started = Instant::now();
    ops::set_policy(&t.db, "fleet", "[policy]\non_threshold = 45\n", "bench").await?;
    let mut readers = Vec::new();
    for mut s in conns {
        readers.push(tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
                .await
                .ok()?
                .ok()?;
            Some(buf[..n].starts_with(b"HTTP/1.1 200"))
        }));
    }
    let mut answered = 0;
    for r in readers {
        if r.await? == Some(true) {
            answered += 1;
        }
    }
    let woke = started.elapsed();
    anyhow::ensure!(
        answered == n,
        "only {answered} of {n} polls answered 200 after the change"
    );
    Ok((idle_rss, rss, hwm, woke))
}

async fn run() -> Result<()> {
    let scenarios =
        std::env::var("FLEET_BENCH").unwrap_or_else(|_| "ingest,saturate,backlog,polls".into());
    let backends =
        std::env::var("FLEET_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let ingest_secs: u64 = std::env::var("FLEET_INGEST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    for backend in backends.split(',') {
        let backend: &'static str = if backend == "postgres" {
            "postgres"
        } else {
            "sqlite"
        };
        for scenario in scenarios.split(',') {
            let mut t = target(backend).await?;
            match scenario {
                "ingest" => {
                    let (rate, lat, errors, throttled) = offered_load(
                        &t,
                        500,
                        20,
                        Duration::from_secs(2),
                        ingest_secs,
                        Duration::from_secs(4),
                    )
                    .await?;
                    println!("| {backend} | ingest, 500 agents x 20 items / 2 s, {ingest_secs} s after 4 s warm-up | {rate:.0} items/s | batch median {} ms, p99 {} ms | {errors} 5xx, {throttled} 429 |", ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99)));
                }
                "saturate" => {
                    let (rate, lat, errors, throttled) =
                        offered_load(&t, 500, 20, Duration::ZERO, 15, Duration::from_secs(3))
                            .await?;
                    println!("| {backend} | saturate, 500 agents x 20 items back to back | {rate:.0} items/s | batch median {} ms, p99 {} ms (waits for 429 included) | {errors} 5xx, {throttled} 429 |", ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99)));
                }
                "backlog" => {
                    let (took, lat, errors, retried, throttled) =
                        backlog(&t, 1000, 1000, 500).await?;
                    println!("| {backend} | backlog, 1,000 hosts x 1,000 items (batches of 500) | drained in {:.1} s ({:.0} items/s) | batch median {} ms, p99 {} ms (first send to ack, waits included) | {errors} 5xx, {throttled} 429, {retried} resent |", took.as_secs_f64(), 1_000_000.0 / took.as_secs_f64(), ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99)));
                }
                "polls" => {
                    let (idle, rss, hwm, woke) = long_polls(&t, 5000).await?;
                    println!("| {backend} | 5,000 idle long polls | RSS {:.1} MiB (idle {:.1} MiB, peak {:.1} MiB) | all 5,000 answered {} ms after a policy change | |", rss as f64 / 1024.0, idle as f64 / 1024.0, hwm as f64 / 1024.0, ms(woke));
                }
                other => anyhow::bail!("unknown scenario {other}"),
            }
            let rows: i64 = sqlx::query("SELECT COUNT(*) FROM rollups")
                .fetch_one(t.db.pool())
                .await?
                .get(0);
            eprintln!("({backend} {scenario}: {rows} rollup rows stored)");
            t.process.kill().await?;
            if let Some(pg) = &t.pg {
                t.db.close().await;
                pg.drop_database(&t.url);
            }
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    // Only the benchmark itself when run as `cargo bench`; `cargo test --benches` passes
    // --bench too, so check for an explicit filter of "none" to do nothing.
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}
