//! The link itself: its own thread and runtime, so that a slow or absent controller can
//! never delay a tick. It registers the host, then every `upload_every` sends the
//! ledger lines after the cursor in batches, each acknowledged before the cursor moves,
//! and heartbeats with the host's capacity and backlog at the pace the controller asks
//! for. Every failure is retried with jittered exponential backoff (at least the
//! controller's `Retry-After`); the agent keeps mitigating and billing meanwhile
//! (fail-static), and the ledger holds what waits. At shutdown it tries, for a bounded
//! time, to send what is left; the next start sends the rest.
//!
//! The other items (action phases, score events, capacity, rollups) wait in the
//! outbox, a bounded file in the state directory the tick loop appends to
//! ([`FleetLink::push`]); they are sent after the ledger lines, acknowledged the same
//! way, and their mark is saved in the same cursor.
//!
//! Beside it, a long poll fetches the desired state (the fleet's layered policy); each
//! new one is saved (`desired.json`, so a restart without a controller runs on it) and
//! handed to the tick loop, which applies it between ticks and reports the version it
//! applied; the heartbeat carries that version back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use interference_fleet::client::{Backoff, ClientConfig, ClientError, FleetClient, RetryPolicy};
use interference_fleet::wire::{
    Capacity, Heartbeat, IngestBatch, Item, LedgerLine, Register, Registered,
};
use thiserror::Error;
use tokio::sync::watch;

use super::assign::Assigner;
use super::cursor::UploadCursor;
use super::desired::{self, Prepared, Slot};
use super::models::ModelStore;
use super::outbox::{Outbox, OutboxError};
use super::placement::Placer;
use super::tail::{PendingLine, Tail};
use crate::clock::now_ms;
use crate::config::FleetConfig;
use crate::inventory::Vm;

#[derive(Debug, Error)]
pub enum LinkError {
    #[error("[fleet] token_file {path}: cannot read the host token")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("[fleet] token_file {path} is empty")]
    EmptyToken { path: PathBuf },
    #[error("[fleet] controller")]
    Client(#[from] ClientError),
    #[error("[fleet] state_dir: opening the controller outbox")]
    Outbox(#[from] OutboxError),
    #[error("starting the controller link's thread or runtime")]
    Thread(#[source] std::io::Error),
}

/// What the tick loop tells the link about the host, every tick.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostFacts {
    pub capacity: Capacity,
    /// The highest pair Contention Score of the last round.
    pub contention: f32,
}

/// What the link has done (the metrics, `interference_fleet_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    pub registered: bool,
    pub uploaded_lines: u64,
    /// Whole ledger lines not acknowledged yet (at the last look).
    pub backlog_lines: u64,
    /// Outbox items (action phases, score events, capacity, rollups) acknowledged.
    pub uploaded_items: u64,
    /// Outbox items waiting for an acknowledgement.
    pub outbox_items: u64,
    /// Outbox items dropped because the outbox was full.
    pub outbox_dropped: u64,
    pub acked_seq: u64,
    /// Calls that failed (each is retried).
    pub failures: u64,
    pub heartbeats: u64,
    /// The fleet policy version the tick loop applied (None: the host's own).
    pub policy_version: Option<String>,
    /// The model bundles acting and in shadow (None: the host's own scorer; none).
    pub model_sha: Option<String>,
    pub shadow_model_sha: Option<String>,
}

/// The running link: dropped or [`FleetLink::shutdown`], it sends what it can and stops.
pub struct FleetLink {
    placer: Placer,
    /// Each VM's uuid by name, as the inventory saw it this run.
    uuids: Uuids,
    status: Arc<Mutex<LinkStatus>>,
    /// A desired state received and not applied yet.
    desired: Slot,
    outbox: Arc<Mutex<Outbox>>,
    facts: watch::Sender<HostFacts>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

/// VM name -> uuid: ledger lines name the VM, the controller joins hosts by uuid (a
/// migrated VM's lines from two hosts). Names stay for the run: a backlog may hold
/// lines of VMs that left.
type Uuids = Arc<Mutex<BTreeMap<String, String>>>;

/// Everything the link's thread needs.
struct Link {
    uuids: Uuids,
    desired: Slot,
    /// Prepares the models of the desired states (moves to the poll task).
    assigner: Option<Assigner>,
    client: FleetClient,
    config: FleetConfig,
    ledger_dir: Option<PathBuf>,
    status: Arc<Mutex<LinkStatus>>,
    facts: watch::Receiver<HostFacts>,
    stop: watch::Receiver<bool>,
    cursor: UploadCursor,
    /// Reads the ledger after the cursor and keeps the backlog's count.
    tail: Tail,
    outbox: Arc<Mutex<Outbox>>,
    batch_lines: usize,
}

impl FleetLink {
    /// Reads the token and starts the link. `ledger_dir`: the ledger to upload (None:
    /// billing is off, the link only registers and heartbeats).
    pub fn start(config: &FleetConfig, ledger_dir: Option<PathBuf>) -> Result<Self, LinkError> {
        let url = config.controller.clone().unwrap_or_default();
        let token =
            std::fs::read_to_string(&config.token_file).map_err(|source| LinkError::Token {
                path: config.token_file.clone(),
                source,
            })?;
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err(LinkError::EmptyToken {
                path: config.token_file.clone(),
            });
        }
        let client = FleetClient::new(ClientConfig::new(url, token))?;
        let cursor = UploadCursor::load(&config.state_dir).unwrap_or_else(|e| {
            tracing::warn!("{e:#}; uploading the ledger from its start (the controller ignores lines it holds)");
            UploadCursor::default()
        });
        let outbox = Outbox::open(
            &config.state_dir,
            config.buffer_mib.saturating_mul(1 << 20),
            cursor.outbox,
        )?;
        let status = Arc::new(Mutex::new(LinkStatus {
            acked_seq: cursor.seq,
            outbox_items: outbox.pending(),
            ..LinkStatus::default()
        }));
        let outbox = Arc::new(Mutex::new(outbox));
        // The last desired state, until the controller says otherwise (fail-static).
        let mut assigner = Assigner::new(ModelStore::new(&config.state_dir));
        let desired = Arc::new(Mutex::new(desired::saved(&config.state_dir, &mut assigner)));
        let (facts_tx, facts_rx) = watch::channel(HostFacts::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let uuids = Uuids::default();
        let link = Link {
            uuids: uuids.clone(),
            desired: desired.clone(),
            assigner: Some(assigner),
            client,
            config: config.clone(),
            ledger_dir,
            status: status.clone(),
            facts: facts_rx,
            stop: stop_rx,
            cursor,
            tail: Tail::default(),
            outbox: outbox.clone(),
            batch_lines: config.batch_lines as usize,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(LinkError::Thread)?;
        // Placement requests from the tick run on this runtime while the link runs.
        let placer = Placer::new(link.client.clone(), runtime.handle().clone());
        let thread = std::thread::Builder::new()
            .name("fleet-link".into())
            .spawn(move || runtime.block_on(link.run()))
            .map_err(LinkError::Thread)?;
        Ok(Self {
            placer,
            uuids,
            status,
            desired,
            outbox,
            facts: facts_tx,
            stop: stop_tx,
            thread: Some(thread),
        })
    }

    pub fn update(&self, facts: HostFacts) {
        self.facts.send_replace(facts);
    }

    /// Items for the controller, kept in the outbox until it acknowledges them (an
    /// outbox that cannot be written loses them, reported: they are summaries and
    /// audit copies, the ledger and the journal stay whole).
    pub fn push(&self, items: &[Item]) {
        if items.is_empty() {
            return;
        }
        let Ok(mut outbox) = self.outbox.lock() else {
            return;
        };
        if let Err(e) = outbox.push(items) {
            tracing::warn!("{} items for the controller lost: {e:#}", items.len());
        }
        let (pending, dropped) = (outbox.pending(), outbox.dropped());
        drop(outbox);
        if let Ok(mut s) = self.status.lock() {
            s.outbox_items = pending;
            s.outbox_dropped = dropped;
        }
    }

    /// The VMs' uuids, for the ledger lines sent from now on.
    pub fn learn_uuids(&self, vms: &[Vm]) {
        let Ok(mut known) = self.uuids.lock() else {
            return;
        };
        for vm in vms {
            if let Some(uuid) = &vm.uuid {
                if known.get(&vm.name) != Some(uuid) {
                    known.insert(vm.name.clone(), uuid.clone());
                }
            }
        }
    }

    /// Asks this link's controller for migration targets (`fleet::placement`).
    pub fn placer(&self) -> Placer {
        self.placer.clone()
    }

    /// A desired state to apply between ticks, once.
    pub fn take_desired(&self) -> Option<Prepared> {
        self.desired.lock().ok().and_then(|mut d| d.take())
    }

    /// The tick loop applied this fleet policy version: the next heartbeat says so.
    pub fn applied(&self, policy_version: &str) {
        if let Ok(mut s) = self.status.lock() {
            s.policy_version = Some(policy_version.to_owned());
        }
    }

    /// The tick loop switched models: the next heartbeat says which are in force.
    pub fn models_applied(&self, active: Option<&str>, shadow: Option<&str>) {
        if let Ok(mut s) = self.status.lock() {
            s.model_sha = active.map(str::to_owned);
            s.shadow_model_sha = shadow.map(str::to_owned);
        }
    }

    pub fn status(&self) -> LinkStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Asks the link to send what is left (for at most its final-flush time) and waits
    /// for it to stop.
    pub fn shutdown(&mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::warn!("controller link: its thread panicked");
            }
        }
    }
}

impl Drop for FleetLink {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The longest registration waits for the first tick's facts.
const FIRST_FACTS: Duration = Duration::from_secs(10);

/// How long a stopping agent keeps trying to send its last lines.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

impl Link {
    async fn run(mut self) {
        // Register with the host's capacity as the first tick measured it (placement
        // reads it), not the empty one from before any tick.
        let _ = tokio::time::timeout(FIRST_FACTS, self.facts.changed()).await;
        let Some(registered) = self.register().await else {
            return;
        };
        self.batch_lines = self
            .batch_lines
            .min(registered.max_batch_items.max(1) as usize);
        let heartbeat_every = Duration::from_millis(registered.heartbeat_every_ms.max(1000));
        let assigner = self
            .assigner
            .take()
            .unwrap_or_else(|| Assigner::new(ModelStore::new(&self.config.state_dir)));
        let poll = tokio::spawn(desired::poll(
            self.client.clone(),
            self.desired.clone(),
            self.config.state_dir.clone(),
            assigner,
        ));
        let mut next_heartbeat = Instant::now();
        let mut backoff = Backoff::new(RetryPolicy::default());
        // A stop interrupts whatever is in flight (the final flush sends it again).
        let mut stop = self.stop.clone();
        loop {
            let mut wait = self.config.upload_every;
            let sent = tokio::select! {
                r = self.send_pending() => Some(r),
                _ = stop.changed() => None,
            };
            match sent {
                Some(Ok(())) => backoff.reset(),
                Some(Err(e)) => {
                    self.failed(&e);
                    wait = backoff.next_delay(e.retry_after());
                }
                None => wait = Duration::ZERO,
            }
            if Instant::now() >= next_heartbeat && !*stop.borrow() {
                let beat = tokio::select! {
                    r = self.heartbeat() => Some(r),
                    _ = stop.changed() => None,
                };
                match beat {
                    Some(Ok(())) => next_heartbeat = Instant::now() + heartbeat_every,
                    Some(Err(e)) => {
                        self.failed(&e);
                        next_heartbeat = Instant::now() + wait.min(heartbeat_every);
                    }
                    None => {}
                }
            }
            let stopping = *stop.borrow()
                || tokio::select! {
                    _ = tokio::time::sleep(wait) => false,
                    _ = stop.changed() => true,
                };
            if stopping {
                poll.abort();
                self.final_flush().await;
                return;
            }
        }
    }

    /// Registers, retrying until it works; None when asked to stop first.
    async fn register(&mut self) -> Option<Registered> {
        let body = Register {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            cpu_model: super::facts::cpu_model(),
            qemu_version: super::facts::qemu_version(),
            capacity: self.facts.borrow().capacity,
            migration_uri: self.config.migration_uri.clone(),
        };
        let mut backoff = Backoff::new(RetryPolicy::default());
        loop {
            match self.client.register(&body).await {
                Ok(r) => {
                    tracing::info!(
                        "registered with the controller as {} (group {}); it has this host's batches up to seq {}",
                        r.host,
                        r.group,
                        r.last_seq
                    );
                    if let Ok(mut s) = self.status.lock() {
                        s.registered = true;
                    }
                    return Some(r);
                }
                Err(e) => {
                    self.failed(&e);
                    let delay = backoff.next_delay(e.retry_after());
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.stop.changed() => return None,
                    }
                }
            }
        }
    }

    /// Sends batches until nothing waits, the ledger's first; the first failure
    /// returns (the cursor stays where the last acknowledgement put it).
    async fn send_pending(&mut self) -> Result<(), ClientError> {
        self.send_ledger().await?;
        self.send_outbox().await
    }

    async fn send_outbox(&mut self) -> Result<(), ClientError> {
        loop {
            let read = self.outbox.lock().map(|mut o| o.read(self.batch_lines));
            let batch = match read {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    tracing::warn!("controller link: {e:#}");
                    return Ok(());
                }
                Err(_) => return Ok(()),
            };
            if batch.lines == 0 {
                return Ok(());
            }
            if !batch.items.is_empty() {
                let sent = IngestBatch {
                    seq: self.cursor.seq + 1,
                    items: batch.items.clone(),
                };
                self.client.ingest(&sent).await?;
                self.cursor.seq = sent.seq;
            }
            let acked = self.outbox.lock().map(|mut o| {
                let mark = o.ack(&batch);
                (mark, o.pending())
            });
            let (mark, pending) = match acked {
                Ok((Ok(mark), pending)) => (mark, pending),
                Ok((Err(e), _)) => {
                    tracing::warn!("controller link: {e:#}");
                    return Ok(());
                }
                Err(_) => return Ok(()),
            };
            if let Some(mark) = mark {
                self.cursor.outbox = mark;
            }
            if let Err(e) = self.cursor.save(&self.config.state_dir) {
                tracing::warn!("controller link: {e:#}");
            }
            if let Ok(mut s) = self.status.lock() {
                s.uploaded_items += batch.items.len() as u64;
                s.acked_seq = self.cursor.seq;
                s.outbox_items = pending;
            }
        }
    }

    async fn send_ledger(&mut self) -> Result<(), ClientError> {
        let Some(dir) = self.ledger_dir.clone() else {
            return Ok(());
        };
        loop {
            let pending = match self.tail.pending(&dir, &self.cursor, self.batch_lines) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("controller link: {e:#}");
                    return Ok(());
                }
            };
            if let Ok(mut s) = self.status.lock() {
                s.backlog_lines = pending.total;
            }
            if pending.lines.is_empty() {
                return Ok(());
            }
            let items = items(&pending.lines, &self.uuids);
            if items.is_empty() {
                // Only lines that cannot be sent: step over them.
                self.tail.advance(&mut self.cursor, &pending.lines);
                continue;
            }
            let batch = IngestBatch {
                seq: self.cursor.seq + 1,
                items,
            };
            let ack = self.client.ingest(&batch).await?;
            for c in &ack.conflicts {
                tracing::warn!(
                    "the controller holds ledger record {c} with other content (kept its own)"
                );
            }
            self.tail.advance(&mut self.cursor, &pending.lines);
            self.cursor.seq = batch.seq;
            if let Err(e) = self.cursor.save(&self.config.state_dir) {
                // Sent and acknowledged; a restart resends them, which is harmless.
                tracing::warn!("controller link: {e:#}");
            }
            if let Ok(mut s) = self.status.lock() {
                s.uploaded_lines += pending.lines.len() as u64;
                s.acked_seq = batch.seq;
                s.backlog_lines = pending.total - pending.lines.len() as u64;
            }
        }
    }

    async fn heartbeat(&mut self) -> Result<(), ClientError> {
        let facts = *self.facts.borrow();
        let (backlog, policy_version, model_sha, shadow_model_sha) = self
            .status
            .lock()
            .map(|s| {
                (
                    s.backlog_lines + s.outbox_items,
                    s.policy_version.clone(),
                    s.model_sha.clone(),
                    s.shadow_model_sha.clone(),
                )
            })
            .unwrap_or_default();
        self.client
            .heartbeat(&Heartbeat {
                at_ms: now_ms(),
                capacity: facts.capacity,
                contention: facts.contention,
                draining: self.config.draining,
                policy_version,
                model_sha,
                shadow_model_sha,
                backlog_items: backlog,
                oldest_unsent_ms: None,
            })
            .await?;
        if let Ok(mut s) = self.status.lock() {
            s.heartbeats += 1;
        }
        Ok(())
    }

    /// At shutdown: what the last ticks billed, for at most [`FINAL_FLUSH`].
    async fn final_flush(&mut self) {
        match tokio::time::timeout(FINAL_FLUSH, self.send_pending()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                "controller link: the last ledger lines wait for the next start: {e:#}"
            ),
            Err(_) => tracing::warn!(
                "controller link: the last ledger lines wait for the next start (no answer within {})",
                humantime::format_duration(FINAL_FLUSH)
            ),
        }
    }

    fn failed(&self, e: &ClientError) {
        let first = self
            .status
            .lock()
            .map(|mut s| {
                s.failures += 1;
                s.failures == 1
            })
            .unwrap_or(false);
        // Every failure at debug; the first, and every hundredth, where operators look.
        let n = self.status.lock().map(|s| s.failures).unwrap_or(0);
        if first || n.is_multiple_of(100) {
            tracing::warn!("controller link ({n} failures so far, retrying): {e:#}");
        } else {
            tracing::debug!("controller link: {e:#}");
        }
    }
}

/// The VM a ledger line is about (`ResourceName`).
fn resource_name(line: &LedgerLine) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        #[serde(rename = "ResourceName")]
        resource_name: String,
    }
    serde_json::from_str::<Named>(line.as_str())
        .ok()
        .map(|n| n.resource_name)
}

/// The batch's items; a line that is not a JSON object (a corrupt ledger line, which
/// `interference bill` reports too) cannot be sent and is passed over.
fn items(lines: &[PendingLine], uuids: &Uuids) -> Vec<Item> {
    let known = uuids.lock().map(|u| u.clone()).unwrap_or_default();
    lines
        .iter()
        .filter_map(|l| match LedgerLine::from_json_line(&l.text) {
            Ok(line) => Some(Item::Ledger {
                vm_uuid: resource_name(&line).and_then(|vm| known.get(&vm).cloned()),
                line,
            }),
            Err(e) => {
                tracing::warn!(
                    "ledger {} (ending at byte {}): not sent to the controller: {e}",
                    l.file,
                    l.end
                );
                None
            }
        })
        .collect()
}
