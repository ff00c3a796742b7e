//! Guest memory through each VM's virtio-balloon: how much the guest has now (the
//! balloon's `actual`) and how much it needs (its floor), for the policy's balloon
//! rung.
//!
//! The floor comes from the guest's own statistics, which its balloon driver reports
//! every few seconds once polling is on: what the guest uses (total less available,
//! or less free and page cache when the driver does not report `available`), plus
//! [`FLOOR_HEADROOM`], rounded up to a MiB. A guest that never reported, or whose
//! last report is older than [`STALE_AFTER_POLLS`] polling intervals, has no floor:
//! its needs are unknown, and the policy's configured floor alone applies. So does a
//! guest whose statistics cannot be true ([`implausible`]: more available than it
//! has, a report from the future): the guest writes them, and a guest that lies to
//! look idle must not talk the agent below the operator's floor (logged when it
//! starts, not every reading).
//!
//! Cheap enough for every tick: a VM is asked at most once per `min_interval` (the
//! reading is reused in between), the connection to its monitor stays open (a query
//! is one pipelined round-trip, not a connect and handshake), VMs that answered last
//! time are asked one after the other (tens of microseconds each), and VMs being
//! connected to, or the rest once a monitor is slow, in parallel: a hung monitor
//! costs the read about one `timeout`, whatever the number of VMs. A VM that keeps
//! failing is asked less and less often, up to every [`MAX_BACKOFF`].
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

use tracing::{debug, warn};

use crate::qmp::{BalloonStats, QmpClient, QmpError};

/// How often a VM is asked by default; the reading is reused in between.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(5);

/// The guest statistics polling interval the probe sets on a balloon whose polling
/// is off (one already polling keeps its own interval).
pub const DEFAULT_STATS_POLL_SECS: u32 = 2;

/// Guest statistics older than this many polling intervals are stale: the driver
/// stopped reporting (guest hung, driver unloaded), so they give no floor.
pub const STALE_AFTER_POLLS: u32 = 3;

/// A VM that keeps failing is asked less often: after n failures in a row, every
/// `min_interval` x 2^(n-1), up to this (or `min_interval` if longer). Its monitor
/// may be held by libvirt for good, and each try costs a timeout.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

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
    /// monitor fails, times out or has no balloon is left out (and, failing again,
    /// asked less often: [`MAX_BACKOFF`]); VMs no longer listed are forgotten and
    /// their connections closed.
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
        let (kept, fresh): (Vec<_>, Vec<_>) = self
            .slots
            .iter_mut()
            .filter(|(_, slot)| slot.due(now, config.min_interval))
            .partition(|(_, slot)| slot.client.is_some() && slot.health == Health::Answers);
        if fresh.is_empty() || (kept.is_empty() && fresh.len() == 1) {
            // The usual tick: every VM answered last time. One after the other is
            // cheapest; if that gets slow (a monitor hangs), the rest go in parallel.
            ask(kept.into_iter().chain(fresh), &config, now);
        } else {
            std::thread::scope(|scope| {
                for (vm, slot) in fresh {
                    spawn(scope, vm, slot, &config, now);
                }
                ask(kept.into_iter(), &config, now);
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
        self.slots.get_mut(vm).is_some_and(|slot| slot.disconnect())
    }

    /// [`release`](Self::release) every VM (before `interference restore` or
    /// anything else that needs all monitors); returns how many were open.
    pub fn release_all(&mut self) -> usize {
        self.slots
            .values_mut()
            .map(Slot::disconnect)
            .filter(|was_open| *was_open)
            .count()
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.slots.values().filter(|s| s.client.is_some()).count()
    }
}

/// Ask each VM in turn on this thread until that has taken half a timeout, then
/// each of the rest on its own thread: healthy monitors answer in well under a
/// millisecond, so a thread each would only cost time, but one that hangs must not
/// hold up the others for more than about a timeout.
fn ask<'a>(slots: impl Iterator<Item = (&'a String, &'a mut Slot)>, config: &Config, now: Instant) {
    let started = Instant::now();
    let mut slots = slots.peekable();
    while started.elapsed() < config.timeout / 2 {
        let Some((vm, slot)) = slots.next() else {
            return;
        };
        slot.refresh(vm, config, now);
    }
    if slots.peek().is_some() {
        std::thread::scope(|scope| {
            for (vm, slot) in slots {
                spawn(scope, vm, slot, config, now);
            }
        });
    }
}

/// Ask one VM on a thread of `scope`.
fn spawn<'scope, 'env>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    vm: &'env str,
    slot: &'env mut Slot,
    config: &'env Config,
    now: Instant,
) {
    let spawned = std::thread::Builder::new()
        .name("balloon-probe".into())
        .spawn_scoped(scope, move || slot.refresh(vm, config, now));
    // Not asked this time; still due, so asked on the next read.
    if let Err(e) = spawned {
        debug!("balloon probe: cannot start a thread to ask {vm}: {e}");
    }
}

/// `stats` decoded from the guest, `age` how old they are, the driver reporting
/// every `poll_secs`: what the guest needs (used memory plus [`FLOOR_HEADROOM`],
/// rounded up to a MiB), or None without fresh enough statistics.
pub fn guest_floor(stats: &BalloonStats, age: Option<Duration>, poll_secs: u32) -> Option<u64> {
    let age = age?;
    let stale_after =
        Duration::from_secs(u64::from(poll_secs.max(1)) * u64::from(STALE_AFTER_POLLS));
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

/// Why the guest's statistics cannot be true, if they cannot: memory available or
/// free beyond the total, or a report stamped later than `wall` (the host's clock,
/// seconds since the epoch) by more than a minute. The guest's driver writes them,
/// so a guest can say anything.
pub fn implausible(stats: &BalloonStats, wall_secs: u64) -> Option<String> {
    const MIB_F: f64 = MIB as f64;
    let total = stats.total_memory?;
    if let Some(available) = stats.available_memory.filter(|a| *a > total) {
        return Some(format!(
            "stat-available-memory {:.0} MiB is more than stat-total-memory {:.0} MiB",
            available as f64 / MIB_F,
            total as f64 / MIB_F
        ));
    }
    if let Some(free) = stats.free_memory.filter(|f| *f > total) {
        return Some(format!(
            "stat-free-memory {:.0} MiB is more than stat-total-memory {:.0} MiB",
            free as f64 / MIB_F,
            total as f64 / MIB_F
        ));
    }
    if let Some(t) = stats
        .last_update
        .filter(|t| *t > wall_secs.saturating_add(60))
    {
        return Some(format!(
            "last-update {t} is {} s ahead of this host's clock",
            t - wall_secs
        ));
    }
    None
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
    /// Failed queries in a row.
    failures: u32,
    reading: Option<Reading>,
    health: Health,
    /// Why the guest's last statistics were [`implausible`] (logged when it starts).
    implausible: Option<String>,
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
            failures: 0,
            reading: None,
            health: Health::New,
            implausible: None,
        }
    }

    fn due(&self, now: Instant, min_interval: Duration) -> bool {
        let wait = match self.failures {
            0 | 1 => min_interval,
            n => min_interval
                .saturating_mul(1 << (n - 1).min(16))
                .min(MAX_BACKOFF.max(min_interval)),
        };
        self.last_attempt
            .is_none_or(|last| now.saturating_duration_since(last) >= wait)
    }

    fn disconnect(&mut self) -> bool {
        self.device = None;
        self.client.take().is_some()
    }

    fn refresh(&mut self, vm: &str, config: &Config, now: Instant) {
        self.last_attempt = Some(now);
        let reused = self.client.is_some();
        let mut result = self.query(vm, config);
        // QEMU closed a connection we kept (it exited, or restarted on the same
        // socket): connect again at once rather than miss this reading.
        if reused && matches!(&result, Err(e) if e.vanished()) {
            result = self.query(vm, config);
        }
        let health = match result {
            Ok(Some(memory)) => {
                self.reading = Some(Reading {
                    memory,
                    read_at: now,
                });
                self.failures = 0;
                Health::Answers
            }
            Ok(None) => {
                self.reading = None;
                self.failures = 0;
                Health::NoBalloon
            }
            Err(e) => {
                self.reading = None;
                self.failures = self.failures.saturating_add(1);
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
    /// has no balloon. After an error the balloon is looked up again next time,
    /// and a connection that failed (anything but QEMU refusing a command) is
    /// dropped.
    fn query(&mut self, vm: &str, config: &Config) -> Result<Option<GuestMemory>, QmpError> {
        let result = self.query_on_connection(vm, config);
        if let Err(e) = &result {
            self.device = None;
            if !matches!(e, QmpError::Command { .. }) {
                self.client = None;
            }
        }
        result
    }

    fn query_on_connection(
        &mut self,
        vm: &str,
        config: &Config,
    ) -> Result<Option<GuestMemory>, QmpError> {
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
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let stats_age = stats
            .last_update
            .map(|t| wall.saturating_sub(Duration::from_secs(t)));
        let poll_secs = device.poll_secs.unwrap_or(config.stats_poll_secs);
        let why = implausible(&stats, wall.as_secs());
        if why.is_some() && self.implausible.is_none() {
            warn!(
                vm,
                "the guest statistics of {vm} cannot be true ({}): its own memory floor is \
                 ignored, the configured balloon floor applies",
                why.as_deref().unwrap_or_default()
            );
        }
        let floor_bytes = match why {
            Some(_) => None,
            None => guest_floor(&stats, stats_age, poll_secs),
        };
        self.implausible = why;
        Ok(Some(GuestMemory {
            actual_bytes,
            floor_bytes,
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

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use serde_json::{json, Value};

    use super::*;
    use crate::qmp::DEFAULT_BALLOON_PATH;
    use crate::testing::qmp::{FakeQmp, Peer, RealQemu};

    const LONG: Duration = Duration::from_secs(5);
    const SHORT: Duration = Duration::from_millis(300);
    const GIB: u64 = 1 << 30;

    fn vm(name: &str, socket: &std::path::Path) -> (String, PathBuf) {
        (name.to_owned(), socket.to_path_buf())
    }

    fn epoch_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// A guest's report `age` seconds old.
    fn stats(total: u64, available: u64, age: u64) -> Value {
        json!({"stats": {"stat-total-memory": total, "stat-available-memory": available,
            "stat-free-memory": available / 2, "stat-disk-caches": u64::MAX},
            "last-update": epoch_secs() - age})
    }

    /// What QEMU 7.2 reports before a guest driver ever did.
    fn no_stats() -> Value {
        let max = u64::MAX;
        json!({"stats": {"stat-total-memory": max, "stat-available-memory": max,
            "stat-free-memory": max, "stat-disk-caches": max}, "last-update": 0})
    }

    /// Handshake, then `find_balloon_and_poll`.
    fn first_contact(p: &mut Peer, polling: u64) {
        p.handshake();
        find_balloon_and_poll(p, polling);
    }

    /// The balloon found at its usual path, polling read as `polling` (and set to
    /// 2 s when 0).
    fn find_balloon_and_poll(p: &mut Peer, polling: u64) {
        let id = p.expect("qom-list", Some(json!({"path": "/machine/peripheral"})));
        p.reply(
            &id,
            json!([{"name": "type", "type": "string"},
                {"name": "balloon0", "type": "child<virtio-balloon-pci>"}]),
        );
        let args =
            json!({"path": DEFAULT_BALLOON_PATH, "property": "guest-stats-polling-interval"});
        let id = p.expect("qom-get", Some(args));
        p.reply(&id, json!(polling));
        if polling == 0 {
            let args = json!({"path": DEFAULT_BALLOON_PATH,
                "property": "guest-stats-polling-interval", "value": 2});
            let id = p.expect("qom-set", Some(args));
            p.reply(&id, json!({}));
        }
    }

    /// One probe query: the balloon's actual size and the guest's statistics.
    fn answer(p: &mut Peer, actual: u64, guest_stats: Value) {
        let id = p.expect("query-balloon", None);
        p.reply(&id, json!({"actual": actual}));
        let args = json!({"path": DEFAULT_BALLOON_PATH, "property": "guest-stats"});
        let id = p.expect("qom-get", Some(args));
        p.reply(&id, guest_stats);
    }

    /// The client sends nothing more and hangs up.
    fn expect_close(p: &mut Peer) {
        if let Some(msg) = p.recv() {
            panic!("expected no more commands, got {msg}");
        }
    }

    #[test]
    fn floor_is_what_the_guest_uses_plus_headroom() {
        let fresh = Some(Duration::from_secs(1));
        let mut s = BalloonStats {
            total_memory: Some(4 * GIB),
            available_memory: Some(GIB),
            free_memory: Some(10),
            disk_caches: Some(10),
            ..BalloonStats::default()
        };
        assert_eq!(guest_floor(&s, fresh, 2), Some(3840 * MIB), "3 GiB x 1.25");
        // Rounded up to a MiB.
        s.available_memory = Some(4 * GIB - 1);
        assert_eq!(guest_floor(&s, fresh, 2), Some(MIB));
        s.available_memory = Some(4 * GIB - 800 * MIB - 1);
        assert_eq!(guest_floor(&s, fresh, 2), Some(1001 * MIB));
        // Without `available`: free memory and page cache are what it could spare.
        s.available_memory = None;
        s.free_memory = Some(GIB);
        s.disk_caches = Some(GIB);
        assert_eq!(guest_floor(&s, fresh, 2), Some(2560 * MIB));
        s.disk_caches = None;
        assert_eq!(guest_floor(&s, fresh, 2), None);
        s.available_memory = Some(5 * GIB);
        assert_eq!(
            guest_floor(&s, fresh, 2),
            Some(0),
            "more available than total"
        );
        // Stale after three polling intervals; none without a report.
        assert_eq!(guest_floor(&s, Some(Duration::from_secs(6)), 2), Some(0));
        assert_eq!(guest_floor(&s, Some(Duration::from_secs(7)), 2), None);
        assert_eq!(guest_floor(&s, Some(Duration::from_secs(7)), 10), Some(0));
        assert_eq!(guest_floor(&s, None, 2), None);
        s.total_memory = None;
        assert_eq!(guest_floor(&s, fresh, 2), None);
    }

    #[test]
    fn reads_actual_and_floor_and_enables_polling() {
        let fake = FakeQmp::serve(|mut p| {
            first_contact(&mut p, 0);
            answer(&mut p, 4 * GIB, stats(4 * GIB, GIB, 1));
            expect_close(&mut p);
        });
        let mut probe = BalloonProbe::new(LONG, DEFAULT_MIN_INTERVAL);
        let got = probe.read(&[vm("web", &fake.path)], Instant::now());
        let web = got["web"];
        assert_eq!(web.actual_bytes, 4 * GIB);
        assert_eq!(web.floor_bytes, Some(3840 * MIB));
        let age = web.stats_age.unwrap();
        assert!(
            age >= Duration::from_secs(1) && age < Duration::from_secs(3),
            "{age:?}"
        );
        drop(probe);
        fake.join();
    }

    #[test]
    fn statistics_that_cannot_be_true_are_named() {
        let honest = BalloonStats {
            total_memory: Some(GIB),
            available_memory: Some(GIB / 2),
            free_memory: Some(GIB / 4),
            last_update: Some(1_000),
            ..BalloonStats::default()
        };
        assert_eq!(implausible(&honest, 1_000), None);
        assert_eq!(implausible(&honest, 941), None, "59 s ahead: clocks differ");
        let mut s = honest.clone();
        s.available_memory = Some(5 * GIB);
        assert_eq!(
            implausible(&s, 1_000).as_deref(),
            Some("stat-available-memory 5120 MiB is more than stat-total-memory 1024 MiB")
        );
        let mut s = honest.clone();
        s.free_memory = Some(GIB + 1);
        assert!(implausible(&s, 1_000).is_some_and(|w| w.starts_with("stat-free-memory")));
        let mut s = honest.clone();
        s.last_update = Some(1_000 + 3_600);
        assert_eq!(
            implausible(&s, 1_000).as_deref(),
            Some("last-update 4600 is 3600 s ahead of this host's clock")
        );
        // Without a total nothing can be checked (and no floor is computed).
        s.total_memory = None;
        assert_eq!(implausible(&s, 1_000), None);
    }

    #[test]
    fn a_guest_claiming_more_than_it_has_gets_no_floor_of_its_own() {
        // More available than total: the arithmetic alone would give a floor of 0.
        let lie = stats(GIB, 5 * GIB, 1);
        assert_eq!(
            guest_floor(
                &BalloonStats::from_guest_stats(&lie),
                Some(Duration::from_secs(1)),
                2
            ),
            Some(0)
        );
        let fake = FakeQmp::serve(move |mut p| {
            first_contact(&mut p, 2);
            answer(&mut p, GIB, lie);
            expect_close(&mut p);
        });
        let mut probe = BalloonProbe::new(LONG, DEFAULT_MIN_INTERVAL);
        let got = probe.read(&[vm("liar", &fake.path)], Instant::now());
        assert_eq!(got["liar"].actual_bytes, GIB);
        assert_eq!(got["liar"].floor_bytes, None);
        drop(probe);
        fake.join();
    }

    #[test]
    fn stale_or_missing_stats_give_no_floor() {
        let never = FakeQmp::serve(|mut p| {
            first_contact(&mut p, 0);
            answer(&mut p, GIB, no_stats());
            expect_close(&mut p);
        });
        let stale = FakeQmp::serve(|mut p| {
            first_contact(&mut p, 0);
            answer(&mut p, 2 * GIB, stats(2 * GIB, GIB, 60));
            expect_close(&mut p);
        });
        // Polling already on every 30 s (libvirt's memballoon period): left as is,
        // and a report 60 s old is still fresh.
        let slow = FakeQmp::serve(|mut p| {
            first_contact(&mut p, 30);
            answer(&mut p, 2 * GIB, stats(2 * GIB, GIB, 60));
            expect_close(&mut p);
        });
        let mut probe = BalloonProbe::new(LONG, DEFAULT_MIN_INTERVAL);
        let vms = [
            vm("never", &never.path),
            vm("stale", &stale.path),
            vm("slow", &slow.path),
        ];
        let got = probe.read(&vms, Instant::now());
        assert_eq!(
            got["never"],
            GuestMemory {
                actual_bytes: GIB,
                floor_bytes: None,
                stats_age: None
            }
        );
        assert_eq!(got["stale"].actual_bytes, 2 * GIB);
        assert_eq!(got["stale"].floor_bytes, None);
        assert!(got["stale"].stats_age.unwrap() >= Duration::from_secs(60));
        assert_eq!(got["slow"].floor_bytes, Some(1280 * MIB));
        drop(probe);
        never.join();
        stale.join();
        slow.join();
    }

    /// Monitors that never answer (a listener nobody accepts on, as while libvirt
    /// holds QEMU's monitor) and a socket that is gone: left out, asked in parallel,
    /// so the read costs one timeout, and the VM that answers is not held up.
    #[test]
    fn dead_sockets_are_left_out_within_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let hung: Vec<_> = (0..3)
            .map(|i| {
                let path = dir.path().join(format!("hung{i}.sock"));
                (UnixListener::bind(&path).unwrap(), path)
            })
            .collect();
        let good = FakeQmp::serve(|mut p| {
            first_contact(&mut p, 0);
            for _ in 0..3 {
                answer(&mut p, GIB, no_stats());
            }
            expect_close(&mut p);
        });
        let mut vms: Vec<_> = hung
            .iter()
            .enumerate()
            .map(|(i, (_, path))| vm(&format!("hung{i}"), path))
            .collect();
        vms.push(vm("gone", &dir.path().join("gone.sock")));
        vms.push(vm("good", &good.path));
        let mut probe = BalloonProbe::new(SHORT, DEFAULT_MIN_INTERVAL);
        let t0 = Instant::now();
        let started = Instant::now();
        let got = probe.read(&vms, t0);
        let took = started.elapsed();
        assert!(took < SHORT * 2, "{took:?}");
        assert_eq!(got.keys().collect::<Vec<_>>(), ["good"]);
        assert_eq!(probe.connections(), 1);
        // Not asked again before min_interval: no time lost on them.
        let at = |secs| t0 + Duration::from_secs(secs);
        let quick = |probe: &mut BalloonProbe, secs| {
            let started = Instant::now();
            let got = probe.read(&vms, at(secs));
            assert!(started.elapsed() < SHORT / 2, "{:?}", started.elapsed());
            assert_eq!(got.keys().collect::<Vec<_>>(), ["good"]);
        };
        quick(&mut probe, 4);
        // Then asked again (another timeout), failing again: next after 2 x 5 s.
        let started = Instant::now();
        assert_eq!(probe.read(&vms, at(5)).len(), 1);
        assert!(started.elapsed() >= SHORT, "{:?}", started.elapsed());
        quick(&mut probe, 14);
        drop(hung);
        let got = probe.read(&vms, at(15));
        assert_eq!(got.keys().collect::<Vec<_>>(), ["good"]);
        drop(probe);
        good.join();
    }

    /// Within min_interval the reading is reused (its statistics aging); after it,
    /// the VM is asked again on the same connection: no second handshake.
    #[test]
    fn cached_within_min_interval_then_asked_on_the_same_connection() {
        let fake = FakeQmp::serve(|mut p| {
            first_contact(&mut p, 0);
            answer(&mut p, 4 * GIB, stats(4 * GIB, GIB, 1));
            answer(&mut p, 3 * GIB, stats(3 * GIB, 2 * GIB, 1));
            expect_close(&mut p);
        });
        let vms = [vm("web", &fake.path)];
        let mut probe = BalloonProbe::new(LONG, Duration::from_secs(5));
        let t0 = Instant::now();
        let first = probe.read(&vms, t0)["web"];
        let cached = probe.read(&vms, t0 + Duration::from_secs(4))["web"];
        assert_eq!(
            (cached.actual_bytes, cached.floor_bytes),
            (first.actual_bytes, first.floor_bytes)
        );
        assert_eq!(
            cached.stats_age.unwrap(),
            first.stats_age.unwrap() + Duration::from_secs(4)
        );
        let second = probe.read(&vms, t0 + Duration::from_secs(5))["web"];
        assert_eq!(second.actual_bytes, 3 * GIB);
        assert_eq!(second.floor_bytes, Some(1280 * MIB));
        assert_eq!(probe.connections(), 1);
        assert_eq!(probe.release_all(), 1);
        assert_eq!(probe.connections(), 0);
        drop(probe);
        fake.join();
    }

    /// Kept connections are asked one after the other; once a monitor hangs, the
    /// rest are asked in parallel, so the hung ones cost the read about two
    /// timeouts, not one each, and the VM that answers is still read.
    #[test]
    fn a_hung_monitor_does_not_hold_up_the_others() {
        let hang = || {
            FakeQmp::serve(|mut p| {
                first_contact(&mut p, 0);
                answer(&mut p, GIB, no_stats());
                p.expect("query-balloon", None);
                p.wait_closed();
            })
        };
        let (a1, a2) = (hang(), hang());
        let b = FakeQmp::serve(|mut p| {
            first_contact(&mut p, 0);
            answer(&mut p, GIB, no_stats());
            answer(&mut p, 2 * GIB, no_stats());
            expect_close(&mut p);
        });
        let vms = [vm("a1", &a1.path), vm("a2", &a2.path), vm("b", &b.path)];
        let mut probe = BalloonProbe::new(SHORT, DEFAULT_MIN_INTERVAL);
        let t0 = Instant::now();
        assert_eq!(probe.read(&vms, t0).len(), 3);
        let started = Instant::now();
        let got = probe.read(&vms, t0 + DEFAULT_MIN_INTERVAL);
        let took = started.elapsed();
        assert!(took >= SHORT && took < SHORT * 5 / 2, "{took:?}");
        assert_eq!(got.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(got["b"].actual_bytes, 2 * GIB);
        assert_eq!(probe.connections(), 1);
        drop(probe);
        a1.join();
        a2.join();
        b.join();
    }

    /// A VM no longer listed is forgotten and its monitor freed; `release` frees a
    /// monitor but keeps the reading until the next query.
    #[test]
    fn vanished_vms_and_release_close_the_connection() {
        let a = FakeQmp::serve(|mut p| {
            first_contact(&mut p, 0);
            answer(&mut p, GIB, no_stats());
            expect_close(&mut p);
        });
        let b = FakeQmp::serve_each(vec![
            Box::new(|mut p: Peer| {
                first_contact(&mut p, 0);
                answer(&mut p, 2 * GIB, no_stats());
                expect_close(&mut p);
            }),
            Box::new(|mut p: Peer| {
                first_contact(&mut p, 2);
                answer(&mut p, 3 * GIB, no_stats());
                expect_close(&mut p);
            }),
        ]);
        let mut probe = BalloonProbe::new(LONG, DEFAULT_MIN_INTERVAL);
        let t0 = Instant::now();
        let got = probe.read(&[vm("a", &a.path), vm("b", &b.path)], t0);
        assert_eq!(got.len(), 2);
        assert_eq!(probe.connections(), 2);

        let got = probe.read(&[vm("b", &b.path)], t0);
        assert_eq!(got.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(probe.connections(), 1);
        a.join();

        assert!(probe.release("b"));
        assert!(!probe.release("b"));
        assert_eq!(probe.release_all(), 0);
        assert!(!probe.release("nobody"));
        assert_eq!(probe.connections(), 0);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            probe.read(&[vm("b", &b.path)], later)["b"].actual_bytes,
            2 * GIB
        );
        let due = t0 + DEFAULT_MIN_INTERVAL;
        assert_eq!(
            probe.read(&[vm("b", &b.path)], due)["b"].actual_bytes,
            3 * GIB
        );
        drop(probe);
        b.join();
    }

    /// QEMU closed the connection the probe kept (it restarted on the same socket):
    /// the probe connects again at once and learns the balloon anew.
    #[test]
    fn reconnects_when_qemu_closed_the_connection() {
        let fake = FakeQmp::serve_each(vec![
            Box::new(|mut p: Peer| {
                first_contact(&mut p, 0);
                answer(&mut p, GIB, no_stats());
            }),
            Box::new(|mut p: Peer| {
                first_contact(&mut p, 0);
                answer(&mut p, 2 * GIB, no_stats());
                expect_close(&mut p);
            }),
        ]);
        let vms = [vm("web", &fake.path)];
        let mut probe = BalloonProbe::new(LONG, DEFAULT_MIN_INTERVAL);
        let t0 = Instant::now();
        assert_eq!(probe.read(&vms, t0)["web"].actual_bytes, GIB);
        let got = probe.read(&vms, t0 + DEFAULT_MIN_INTERVAL);
        assert_eq!(got["web"].actual_bytes, 2 * GIB);
        drop(probe);
        fake.join();
    }

    /// No balloon device: left out, asked again later on the same connection (a
    /// balloon may be hot-plugged). QEMU refusing a query: left out, the connection
    /// kept, the balloon looked up again next time.
    #[test]
    fn no_balloon_and_refused_queries() {
        let fake = FakeQmp::serve(|mut p| {
            p.handshake();
            let id = p.expect("qom-list", Some(json!({"path": "/machine/peripheral"})));
            p.reply(&id, json!([{"name": "type", "type": "string"}]));
            let id = p.expect(
                "qom-list",
                Some(json!({"path": "/machine/peripheral-anon"})),
            );
            p.error(
                &id,
                "DeviceNotFound",
                "Device '/machine/peripheral-anon' not found",
            );

            let id = p.expect("qom-list", Some(json!({"path": "/machine/peripheral"})));
            p.reply(
                &id,
                json!([{"name": "balloon0", "type": "child<virtio-balloon-pci>"}]),
            );
            let args =
                json!({"path": DEFAULT_BALLOON_PATH, "property": "guest-stats-polling-interval"});
            let id = p.expect("qom-get", Some(args));
            p.error(&id, "GenericError", "nope");
            let id = p.expect("query-balloon", None);
            p.error(
                &id,
                "DeviceNotActive",
                "No balloon device has been activated",
            );
            let args = json!({"path": DEFAULT_BALLOON_PATH, "property": "guest-stats"});
            let id = p.expect("qom-get", Some(args));
            p.reply(&id, no_stats());

            find_balloon_and_poll(&mut p, 0);
            answer(&mut p, GIB, no_stats());
            expect_close(&mut p);
        });
        let vms = [vm("web", &fake.path)];
        let mut probe = BalloonProbe::new(LONG, DEFAULT_MIN_INTERVAL);
        let t0 = Instant::now();
        assert!(probe.read(&vms, t0).is_empty());
        assert_eq!(probe.connections(), 1);
        assert!(probe.read(&vms, t0 + DEFAULT_MIN_INTERVAL).is_empty());
        assert_eq!(probe.connections(), 1);
        let got = probe.read(&vms, t0 + DEFAULT_MIN_INTERVAL * 2);
        assert_eq!(got["web"].actual_bytes, GIB);
        drop(probe);
        fake.join();
    }

    /// QEMU 7.2 paused before the guest ran (-S, no driver): the balloon holds the
    /// whole -m size and the guest never reported, so there is no floor.
    #[test]
    #[ignore = "needs root/QEMU"]
    fn real_qemu_probe_without_a_guest() {
        let qemu = RealQemu::start("real_qemu_probe_without_a_guest", &[]);
        let vms = [vm("qmptest", &qemu.qmp)];
        let mut probe = BalloonProbe::new(LONG, DEFAULT_MIN_INTERVAL);
        let t0 = Instant::now();
        let got = probe.read(&vms, t0);
        assert_eq!(
            got.get("qmptest"),
            Some(&GuestMemory {
                actual_bytes: 64 << 20,
                floor_bytes: None,
                stats_age: None
            }),
            "{}",
            qemu.log()
        );
        // The monitor is ours until released; then another client gets it and
        // sees polling on.
        assert!(probe.release("qmptest"));
        let mut qmp = QmpClient::connect(&qemu.qmp, LONG).unwrap();
        assert_eq!(qmp.balloon_stats_polling(DEFAULT_BALLOON_PATH).unwrap(), 2);
        drop(qmp);
        let again = probe.read(&vms, t0 + DEFAULT_MIN_INTERVAL);
        assert_eq!(again, got);
        assert_eq!(probe.connections(), 1);
    }
}
