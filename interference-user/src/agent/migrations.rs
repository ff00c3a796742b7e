//! What happens around a live migration besides the `migrate` command: the agent
//! follows each migration it started until QEMU says how it ended, then quits the
//! source QEMU (left in "postmigrate", a husk holding the guest's memory) and gives the
//! controller's reservation back with the outcome. And it bills a VM only while it
//! runs here: a QEMU waiting for an incoming migration ("inmigrate") or left behind by
//! one ("postmigrate") is not billed, so a migrated VM is billed by its source up to
//! the tick before the migration is seen complete and by its destination from the
//! first tick it runs there, never by both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use interference_fleet::wire::ReleaseOutcome;

use crate::fleet::placement::Placer;
use crate::inventory::Vm;
use crate::qmp::QmpClient;

/// How long a status query may take: a tick looks at a few sockets at most.
const QMP_TIMEOUT: Duration = Duration::from_millis(500);

/// A QEMU whose run state cannot be read (its socket busy with another client) is
/// billed after this many ticks of trying: unknown is not a reason to bill nothing.
const UNKNOWN_TICKS: u32 = 10;

/// How a migration this agent started ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The destination runs the VM; the source was told to quit.
    Migrated {
        action_id: String,
        vm: String,
        total_ms: Option<u64>,
        downtime_ms: Option<u64>,
    },
    /// The VM still runs here.
    Failed {
        action_id: String,
        vm: String,
        why: String,
    },
}

#[derive(Debug)]
struct InFlight {
    action_id: String,
    vm: String,
    socket: PathBuf,
    /// The controller's reservation, given back when the migration ends.
    reservation: Option<String>,
}

/// What is known of a QEMU's run state, by (VM, pid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    /// Runs (or is paused) here: billed.
    Here,
    /// Waits for an incoming migration: looked at again each tick.
    Incoming,
    /// Migrated away: not billed until it is gone.
    Husk,
    /// Not read yet; after so many failed attempts counted as here.
    Unknown(u32),
}

#[derive(Default)]
pub struct Migrations {
    inflight: Vec<InFlight>,
    states: BTreeMap<(String, Option<u32>), RunState>,
    placer: Option<Placer>,
}

impl Migrations {
    /// Reservations are given back through the controller link.
    pub fn set_placer(&mut self, placer: Placer) {
        self.placer = Some(placer);
    }

    pub fn placer(&self) -> Option<&Placer> {
        self.placer.as_ref()
    }

    /// An applied migrate action: followed from the next tick on.
    pub fn started(&mut self, action_id: &str, vm: &Vm, reservation: Option<String>) {
        let Some(socket) = vm.qmp_socket.clone() else {
            return;
        };
        self.inflight.push(InFlight {
            action_id: action_id.to_owned(),
            vm: vm.name.clone(),
            socket,
            reservation,
        });
    }

    /// The VM's QEMU was last seen waiting for an incoming migration.
    pub fn is_arriving(&self, vm: &Vm) -> bool {
        self.states.get(&(vm.name.clone(), vm.pid)) == Some(&RunState::Incoming)
    }

    /// Migrations in progress.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Gives a reservation back (a migrate action that failed before it started).
    pub fn release(&self, reservation: &str, outcome: ReleaseOutcome) {
        if let Some(p) = &self.placer {
            p.release(reservation.to_owned(), outcome);
        }
    }

    /// Each tick: the migrations that ended since the last one.
    pub fn follow(&mut self, vms: &[Vm]) -> Vec<Ended> {
        let mut ended = Vec::new();
        let mut still = Vec::with_capacity(self.inflight.len());
        for m in std::mem::take(&mut self.inflight) {
            match self.look(&m, vms) {
                None => still.push(m),
                Some(e) => {
                    if let (Some(id), Some(p)) = (&m.reservation, &self.placer) {
                        let outcome = match e {
                            Ended::Migrated { .. } => ReleaseOutcome::Migrated,
                            Ended::Failed { .. } => ReleaseOutcome::Failed,
                        };
                        p.release(id.clone(), outcome);
                    }
                    ended.push(e);
                }
            }
        }
        self.inflight = still;
        ended
    }

    /// Where one migration stands: None while it goes on.
    fn look(&mut self, m: &InFlight, vms: &[Vm]) -> Option<Ended> {
        let migrated = |total_ms, downtime_ms| Ended::Migrated {
            action_id: m.action_id.clone(),
            vm: m.vm.clone(),
            total_ms,
            downtime_ms,
        };
        let vm = vms
            .iter()
            .find(|v| v.qmp_socket.as_ref() == Some(&m.socket));
        let Some(vm) = vm else {
            // The source QEMU is gone: whoever quit it, the VM left this host.
            tracing::info!(
                "migration {} of {}: the source QEMU is gone; counted as migrated",
                m.action_id,
                m.vm
            );
            return Some(migrated(None, None));
        };
        let mut qmp = match QmpClient::connect(&m.socket, QMP_TIMEOUT) {
            Ok(q) => q,
            Err(e) => {
                tracing::debug!("migration {} of {}: {e}", m.action_id, m.vm);
                return None;
            }
        };
        let status = match qmp.query_migrate() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("migration {} of {}: {e}", m.action_id, m.vm);
                return None;
            }
        };
        match status.status.as_str() {
            "completed" => {
                self.states
                    .insert((vm.name.clone(), vm.pid), RunState::Husk);
                if let Err(e) = qmp.quit() {
                    tracing::warn!(
                        "{} migrated ({}); its source QEMU did not quit: {e}",
                        m.vm,
                        m.action_id
                    );
                }
                tracing::info!(
                    "{} migrated ({}) in {} ms, {} ms down; its source QEMU told to quit",
                    m.vm,
                    m.action_id,
                    status.total_time_ms.unwrap_or(0),
                    status.downtime_ms.unwrap_or(0)
                );
                Some(migrated(status.total_time_ms, status.downtime_ms))
            }
            "failed" | "cancelled" => Some(Ended::Failed {
                action_id: m.action_id.clone(),
                vm: m.vm.clone(),
                why: format!(
                    "migration {}: {}",
                    status.status,
                    status
                        .error_desc
                        .as_deref()
                        .unwrap_or("QEMU gave no reason")
                ),
            }),
            _ => None,
        }
    }

    /// The VMs to bill this tick: those running here. A QEMU's run state is read once
    /// when it is first seen, and again each tick while it waits for an incoming
    /// migration.
    pub fn billable<'a>(&mut self, vms: &'a [Vm]) -> Vec<&'a Vm> {
        let present: BTreeSet<(String, Option<u32>)> =
            vms.iter().map(|v| (v.name.clone(), v.pid)).collect();
        self.states.retain(|k, _| present.contains(k));
        let mut out = Vec::with_capacity(vms.len());
        for vm in vms {
            let key = (vm.name.clone(), vm.pid);
            let state = match (self.states.get(&key).copied(), &vm.qmp_socket) {
                (_, None) | (Some(RunState::Here), _) => RunState::Here,
                (Some(RunState::Husk), _) => RunState::Husk,
                (Some(RunState::Incoming), Some(s)) => read_state(s, 0),
                (Some(RunState::Unknown(n)), Some(s)) => read_state(s, n),
                (None, Some(s)) => read_state(s, 0),
            };
            if state != RunState::Here && !matches!(state, RunState::Unknown(_)) {
                tracing::debug!("{} not billed: {state:?}", vm.name);
            }
            if state == RunState::Here {
                out.push(vm);
            }
            self.states.insert(key, state);
        }
        out
    }
}

/// A QEMU's run state from its QMP socket; `tries` failed reads before this one.
fn read_state(socket: &std::path::Path, tries: u32) -> RunState {
    let status = QmpClient::connect(socket, QMP_TIMEOUT).and_then(|mut q| q.query_status());
    match status {
        Ok(s) => match s.status.as_str() {
            "inmigrate" => RunState::Incoming,
            "postmigrate" => RunState::Husk,
            _ => RunState::Here,
        },
        Err(e) if tries + 1 >= UNKNOWN_TICKS => {
            tracing::warn!(
                "{}: run state unreadable for {UNKNOWN_TICKS} ticks ({e}); billed as running",
                socket.display()
            );
            RunState::Here
        }
        Err(_) => RunState::Unknown(tries + 1),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::inventory::VmSource;
    use crate::testing::qmp::RealQemu;

    fn vm(name: &str, q: &RealQemu) -> Vm {
        Vm {
            pid: Some(q.pid()),
            qmp_socket: Some(q.qmp.clone()),
            ..Vm::new(name, VmSource::Qemu)
        }
    }

    /// A QMP connection to a QEMU just started (its socket may exist a moment before
    /// it accepts).
    fn connect(q: &RealQemu) -> QmpClient {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            match QmpClient::connect(&q.qmp, QMP_TIMEOUT) {
                Ok(c) => return c,
                Err(e) if Instant::now() < until => {
                    eprintln!("QMP not ready yet: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("no QMP connection: {e}: {}", q.log()),
            }
        }
    }

    fn names(vms: &[&Vm]) -> Vec<u32> {
        vms.iter().filter_map(|v| v.pid).collect()
    }

    /// Two real QEMUs, the second waiting for the first's migration: the waiting one
    /// is not billed; the agent follows the migration it started to "completed",
    /// quits the source (the QEMU exits), and from then only the destination is billed.
    #[test]
    #[ignore = "needs root/QEMU"]
    fn a_followed_migration_quits_its_source_and_bills_only_where_the_vm_runs() {
        let mut source = RealQemu::start("followed_migration", &[]);
        let incoming = source.path("migrate.sock");
        let uri = format!("unix:{}", incoming.display());
        let dest = RealQemu::start("followed_migration", &["-incoming", &uri]);
        let until = Instant::now() + Duration::from_secs(20);
        while !incoming.exists() {
            assert!(Instant::now() < until, "no incoming socket: {}", dest.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        let (src_vm, dst_vm) = (vm("web", &source), vm("web", &dest));
        let both = vec![src_vm.clone(), dst_vm.clone()];
        let mut m = Migrations::default();
        assert_eq!(
            names(&m.billable(&both)),
            vec![source.pid()],
            "the QEMU in inmigrate is billed"
        );

        connect(&source).migrate(&uri).expect("migrate");
        m.started("h-1-1-0", &src_vm, None);
        let ended = loop {
            let ended = m.follow(&both);
            if !ended.is_empty() {
                break ended;
            }
            assert!(Instant::now() < until, "migration not followed to its end");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            matches!(&ended[..], [Ended::Migrated { action_id, vm, total_ms: Some(_), .. }]
                if action_id == "h-1-1-0" && vm == "web"),
            "{ended:?}"
        );
        assert_eq!(m.in_flight(), 0);
        let status = source.wait_exit();
        eprintln!("source QEMU exited: {status}");
        // The destination now holds the VM (paused, as the source was: -S): billed; the
        // source's husk is not, while it is still listed.
        assert_eq!(names(&m.billable(&both)), vec![dest.pid()]);
        assert_eq!(names(&m.billable(&[dst_vm])), vec![dest.pid()]);
    }

    /// A migration QEMU refuses ends as failed at once; nothing is quit.
    #[test]
    #[ignore = "needs root/QEMU"]
    fn a_failed_migration_ends_as_failed_and_the_vm_stays() {
        let source = RealQemu::start("failed_migration", &[]);
        let src_vm = vm("web", &source);
        let nowhere = format!("unix:{}", source.path("nobody-listens.sock").display());
        let started = connect(&source).migrate(&nowhere);
        let mut m = Migrations::default();
        m.started("h-1-2-0", &src_vm, None);
        let until = Instant::now() + Duration::from_secs(20);
        let ended = loop {
            let ended = m.follow(std::slice::from_ref(&src_vm));
            if !ended.is_empty() {
                break ended;
            }
            assert!(
                Instant::now() < until,
                "migration not followed to its end ({started:?})"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            matches!(&ended[..], [Ended::Failed { why, .. }] if why.starts_with("migration failed")),
            "{ended:?} ({started:?})"
        );
        assert_eq!(names(&m.billable(&[src_vm])), vec![source.pid()]);
    }
}
