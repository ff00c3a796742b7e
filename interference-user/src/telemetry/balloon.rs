//! Guest memory through each VM's virtio-balloon: how much the guest has now (the
//! balloon's `actual`) and how much it needs (its floor), for the policy's balloon
//! rung.
//!
//! The floor comes from the guest's own statistics, which its balloon driver reports
//! every few seconds once polling is on: what the guest uses (total less available,
//! or less free and page cache when the driver does not report `available`), plus
//! [`FLOOR_HEADROOM`], rounded up to a MiB. A guest that never reported, or whose
//! last report is older than [`STALE_AFTER_POLLS`] polling intervals, has no floor:
//! its needs are unknown, and the policy's configured floor alone applies.
//!
//! Cheap enough for every tick: a VM is asked at most once per `min_interval` (the
//! reading is reused in between), the connection to its monitor stays open (a query
//! is one pipelined round-trip, not a connect and handshake), and the VMs that are
//! due are asked in parallel, so a hung monitor costs the tick one `timeout` at most,
//! whatever the number of VMs.
//!
//! QEMU serves one client per QMP socket: while the probe holds a VM's monitor,
//! anything else that connects to it (the enforcer, `interference restore`, an
//! operator's socat) waits until [`BalloonProbe::release`] closes the probe's
//! connection. Libvirt-managed VMs, whose monitor libvirt holds, time out here
//! and are left out.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::debug;

use crate::qmp::{BalloonStats, QmpClient, QmpError};

/// How often a VM is asked by default; the reading is reused in between.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// The guest statistics polling interval the probe sets on a balloon whose polling
/// is off (one already polling keeps its own interval).
pub const DEFAULT_STATS_POLL_SECS: u32 = 2;

/// Guest statistics older than this many polling intervals are stale: the driver
/// stopped reporting (guest hung, driver unloaded), so they give no floor.
pub const STALE_AFTER_POLLS: u32 = 3;

/// The floor is what the guest uses times this.
pub const FLOOR_HEADROOM: f64 = 1.25;

const MIB: u64 = 1 << 20;

/// One VM's memory as its balloon reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestMemory {
    /// The guest's memory now (`query-balloon` actual), bytes.
    pub actual_bytes: u64,
    /// What the guest needs, bytes (a multiple of 1 MiB); None without fresh guest
    /// statistics.
    pub floor_bytes: Option<u64>,
    /// How old the guest statistics are (as of the `now` given to `read`); None
    /// when the guest never reported any.
    pub stats_age: Option<Duration>,
}

/// Reads each VM's [`GuestMemory`] over QMP, keeping one connection per VM.
#[derive(Debug)]
pub struct BalloonProbe {
    config: Config,
    slots: BTreeMap<String, Slot>,
}

#[derive(Debug, Clone, Copy)]
struct Config {
    timeout: Duration,
    min_interval: Duration,
    stats_poll_secs: u32,
}

impl BalloonProbe {
    /// `timeout` bounds each VM's query (connecting included); a VM is asked at
    /// most once per `min_interval`.
    pub fn new(timeout: Duration, min_interval: Duration) -> Self {
        Self {
            config: Config {
                timeout,
                min_interval,
                stats_poll_secs: DEFAULT_STATS_POLL_SECS,
            },
            slots: BTreeMap::new(),
        }
    }

    /// The guest statistics polling interval to set where polling is off (default
    /// [`DEFAULT_STATS_POLL_SECS`]); 0 leaves polling alone.
    pub fn with_stats_polling(mut self, seconds: u32) -> Self {
        self.config.stats_poll_secs = seconds;
        self
    }

    /// The memory of each VM in `vms` (name, QMP socket) that answered: asked now
    /// if its last query is `min_interval` old, else as last read. A VM whose
    /// monitor fails, times out or has no balloon is left out; VMs no longer listed
    /// are forgotten and their connections closed.
    pub fn read(
        &mut self,
        vms: &[(String, PathBuf)],
        now: Instant,
    ) -> BTreeMap<String, GuestMemory> {
        self.slots.retain(|name, slot| {
            vms.iter()
                .any(|(vm, socket)| vm == name && *socket == slot.socket)
        });
        for (vm, socket) in vms {
            self.slots
                .entry(vm.clone())
                .or_insert_with(|| Slot::new(socket.clone()));
        }
        let config = self.config;
        let mut due: Vec<(&String, &mut Slot)> = self
            .slots
            .iter_mut()
            .filter(|(_, slot)| slot.due(now, config.min_interval))
            .collect();
        if due.len() == 1 {
            if let Some((vm, slot)) = due.pop() {
                slot.refresh(vm, &config, now);
            }
        } else if !due.is_empty() {
            std::thread::scope(|scope| {
                for (vm, slot) in due {
                    let spawned = std::thread::Builder::new()
                        .name("balloon-probe".into())
                        .spawn_scoped(scope, move || slot.refresh(vm, &config, now));
                    // Not asked this time; still due, so asked on the next read.
                    if let Err(e) = spawned {
                        debug!("balloon probe: cannot start a thread to ask {vm}: {e}");
                    }
                }
            });
        }
        self.slots
            .iter()
            .filter_map(|(vm, slot)| Some((vm.clone(), slot.reading.as_ref()?.at(now))))
            .collect()
    }

    /// Close the connection to `vm`'s monitor, so that another client can use it;
    /// its last reading stays, and the next due `read` connects again. False when
    /// no connection was open.
    pub fn release(&mut self, vm: &str) -> bool {
        self.slots
            .get_mut(vm)
            .is_some_and(|slot| slot.disconnect())
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.slots.values().filter(|s| s.client.is_some()).count()
    }
}

/// `stats` decoded from the guest, `age` how old they are, the driver reporting
/// every `poll_secs`: what the guest needs (used memory plus [`FLOOR_HEADROOM`],
/// rounded up to a MiB), or None without fresh enough statistics.
pub fn guest_floor(stats: &BalloonStats, age: Option<Duration>, poll_secs: u32) -> Option<u64> {
    let age = age?;
    let stale_after = Duration::from_secs(u64::from(poll_secs.max(1)) * u64::from(STALE_AFTER_POLLS));
    if age > stale_after {
        return None;
    }
    let total = stats.total_memory?;
    let reclaimable = match stats.available_memory {
        Some(available) => available,
        None => stats.free_memory?.saturating_add(stats.disk_caches?),
    };
    let used = total.saturating_sub(reclaimable);
    let floor = (used as f64 * FLOOR_HEADROOM).ceil() as u64;
    Some(floor.div_ceil(MIB).saturating_mul(MIB))
}

/// How one VM answered last, for logging changes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    New,
    Answers,
    NoBalloon,
    Fails,
}

#[derive(Debug)]
struct Slot {
    socket: PathBuf,
    client: Option<QmpClient>,
    /// The balloon found on the current connection.
    device: Option<Device>,
    last_attempt: Option<Instant>,
    reading: Option<Reading>,
    health: Health,
}

#[derive(Debug)]
struct Device {
    path: String,
    /// The guest statistics polling interval in force, when known.
    poll_secs: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    memory: GuestMemory,
    read_at: Instant,
}

impl Reading {
    /// The reading as of `now`: its statistics have aged since.
    fn at(&self, now: Instant) -> GuestMemory {
        let since = now.saturating_duration_since(self.read_at);
        GuestMemory {
            stats_age: self.memory.stats_age.map(|age| age + since),
            ..self.memory
        }
    }
}

impl Slot {
    fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            client: None,
            device: None,
            last_attempt: None,
            reading: None,
            health: Health::New,
        }
    }

    fn due(&self, now: Instant, min_interval: Duration) -> bool {
        self.last_attempt
            .is_none_or(|last| now.saturating_duration_since(last) >= min_interval)
    }

    fn disconnect(&mut self) -> bool {
        self.device = None;
        self.client.take().is_some()
    }

    fn refresh(&mut self, vm: &str, config: &Config, now: Instant) {
        self.last_attempt = Some(now);
        let reused = self.client.is_some();
        let mut result = self.query(config);
        // QEMU closed a connection we kept (it exited, or restarted on the same
        // socket): connect again at once rather than miss this reading.
        if reused && matches!(&result, Err(e) if e.vanished()) {
            result = self.query(config);
        }
        let health = match result {
            Ok(Some(memory)) => {
                self.reading = Some(Reading {
                    memory,
                    read_at: now,
                });
                Health::Answers
            }
            Ok(None) => {
                self.reading = None;
                Health::NoBalloon
            }
            Err(e) => {
                self.reading = None;
                self.device = None;
                if !matches!(e, QmpError::Command { .. }) {
                    self.client = None;
                }
                if self.health != Health::Fails {
                    debug!(vm, "balloon probe: leaving {vm} out: {}", chain(&e));
                }
                Health::Fails
            }
        };
        if health != self.health {
            match health {
                Health::Answers => debug!(vm, "balloon probe: {vm} answers"),
                Health::NoBalloon => debug!(vm, "balloon probe: {vm} has no virtio-balloon"),
                Health::New | Health::Fails => {}
            }
            self.health = health;
        }
    }

    /// One query, connecting first when no connection is open: None when the VM
    /// has no balloon.
    fn query(&mut self, config: &Config) -> Result<Option<GuestMemory>, QmpError> {
        let client = match &mut self.client {
            Some(client) => client,
            None => {
                let client = QmpClient::connect(&self.socket, config.timeout)?;
                self.device = None;
                self.client.insert(client)
            }
        };
        let device = match &mut self.device {
            Some(device) => device,
            None => {
                let Some(path) = client.find_balloon()? else {
                    return Ok(None);
                };
                let poll_secs = enable_polling(client, &path, config.stats_poll_secs)?;
                self.device.insert(Device { path, poll_secs })
            }
        };
        let (actual_bytes, stats) = client.balloon_with_stats(&device.path)?;
        let stats_age = stats.last_update.map(|t| {
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            wall.saturating_sub(Duration::from_secs(t))
        });
        let poll_secs = device.poll_secs.unwrap_or(config.stats_poll_secs);
        Ok(Some(GuestMemory {
            actual_bytes,
            floor_bytes: guest_floor(&stats, stats_age, poll_secs),
            stats_age,
        }))
    }
}

/// The balloon's statistics polling interval, turned on (to `want` seconds) if it
/// was off and `want` is not 0. None when QEMU refused to say or to set it; only
/// a failed connection is an error.
fn enable_polling(
    client: &mut QmpClient,
    device: &str,
    want: u32,
) -> Result<Option<u32>, QmpError> {
    let refused = |e: QmpError| match e {
        QmpError::Command { .. } => {
            debug!("balloon probe: {}", chain(&e));
            Ok(None)
        }
        e => Err(e),
    };
    match client.balloon_stats_polling(device) {
        Ok(0) if want > 0 => match client.set_balloon_stats_polling(device, want) {
            Ok(()) => Ok(Some(want)),
            Err(e) => refused(e),
        },
        Ok(0) => Ok(None),
        Ok(secs) => Ok(Some(secs)),
        Err(e) => refused(e),
    }
}

/// An error and its causes, for the log.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text += &format!(": {cause}");
        source = cause.source();
    }
    text
}

