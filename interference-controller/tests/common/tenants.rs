//! Generated fleets for the customer API's tests: tenants that share VM names and
//! neighbour each other on several hosts, some VMs migrated, with ledger lines priced
//! by the agent's own pricer (so every identifier sits where a real agent puts it),
//! score events, rollups and action phases, as each host's agent would upload them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use interference_core::action::{Action, Change, Effect, Rung, Setting, Trigger};
use interference_core::billing::alias::Aliases;
use interference_core::billing::period::segments;
use interference_core::billing::{Billable, BillingConfig, LedgerRecord, Pricer, VmUsage};
use interference_fleet::wire::{
    ActionPhase, IngestBatch, Item, LedgerLine, Phase, Rollup, ScoreEvent,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// VM names every tenant uses (never two on one host, as on a real host).
pub const SHARED_NAMES: &[&str] = &["web", "db", "batch"];
const CUSTOMERS: &[&str] = &["acme", "globex", "initech", "umbrella"];
const HOUR_MS: u64 = 3_600_000;

#[derive(Debug, Clone)]
pub struct GenVm {
    pub customer: String,
    pub name: String,
    pub uuid: String,
    /// Hosts in order: a migrated VM has two.
    pub hosts: Vec<String>,
}

#[derive(Debug, Default)]
pub struct GenFleet {
    pub customers: Vec<String>,
    pub hosts: Vec<String>,
    pub vms: Vec<GenVm>,
    pub batches: Vec<(String, IngestBatch)>,
    /// Every ledger line as priced (raw ids, host aliases).
    pub lines: Vec<LedgerRecord>,
    /// Raw action ids.
    pub action_ids: BTreeSet<String>,
    pub from_ms: u64,
    pub to_ms: u64,
}

impl GenFleet {
    /// Strings that must never reach `viewer`: other customers' ids, their VMs' unique
    /// names and uuids, every host name, every raw record and action id, every host
    /// alias and migration address.
    pub fn secrets_for(&self, viewer: &str) -> Vec<String> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        for c in &self.customers {
            if c != viewer {
                out.insert(c.clone());
            }
        }
        for vm in &self.vms {
            if vm.customer != viewer {
                out.insert(vm.uuid.clone());
                if !SHARED_NAMES.contains(&vm.name.as_str()) {
                    out.insert(vm.name.clone());
                }
            }
        }
        out.extend(self.hosts.iter().cloned());
        out.extend(self.action_ids.iter().cloned());
        for l in &self.lines {
            out.insert(l.record_id.clone());
            for alias in [&l.neighbor, &l.changed_vm].into_iter().flatten() {
                if alias.starts_with('#') {
                    out.insert(alias.clone());
                }
            }
        }
        out.insert("10.77.".to_owned());
        out.into_iter().collect()
    }

    pub fn vms_of(&self, customer: &str) -> Vec<&GenVm> {
        self.vms.iter().filter(|v| v.customer == customer).collect()
    }
}

fn uuid(rng: &mut StdRng) -> String {
    let h: String = (0..16)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn host_name(rng: &mut StdRng) -> String {
    let letters: String = (0..6)
        .map(|_| char::from(b'q' + rng.random_range(0..8u8)))
        .collect();
    format!("hv-{letters}")
}

/// A fleet of 2-4 customers on 2-3 hosts, the last `hours` hours before `now_ms`.
pub fn generate(seed: u64, now_ms: u64) -> GenFleet {
    let mut rng = StdRng::seed_from_u64(seed);
    let n_customers = rng.random_range(2..=CUSTOMERS.len());
    let customers: Vec<String> = CUSTOMERS[..n_customers]
        .iter()
        .map(|c| c.to_string())
        .collect();
    let mut hosts: Vec<String> = Vec::new();
    while hosts.len() < rng.random_range(2..=3usize).max(2) {
        let h = host_name(&mut rng);
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    // Place each customer's VMs: the shared names and one of its own.
    let mut on_host: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut vms = Vec::new();
    for c in &customers {
        let mut names: Vec<String> = SHARED_NAMES.iter().map(|n| n.to_string()).collect();
        names.push(format!("vault-{c}-{}", rng.random_range(100..999)));
        for name in names {
            let mut free: Vec<&String> = hosts
                .iter()
                .filter(|h| !on_host.get(*h).is_some_and(|s| s.contains(&name)))
                .collect();
            if free.is_empty() {
                continue;
            }
            let first = free.remove(rng.random_range(0..free.len())).clone();
            let mut placed = vec![first];
            if !free.is_empty() && rng.random_bool(0.3) {
                placed.push(free[rng.random_range(0..free.len())].clone());
            }
            for h in &placed {
                on_host.entry(h.clone()).or_default().insert(name.clone());
            }
            vms.push(GenVm {
                customer: c.clone(),
                name,
                uuid: uuid(&mut rng),
                hosts: placed,
            });
        }
    }
    let from_ms = (now_ms - 2 * HOUR_MS) / 300_000 * 300_000;
    let to_ms = from_ms + 2 * HOUR_MS;
    let mid = from_ms + HOUR_MS;
    let config = BillingConfig {
        charge_interval: Duration::from_secs(900),
        ..BillingConfig::default()
    };
    let mut fleet = GenFleet {
        customers,
        hosts: hosts.clone(),
        from_ms,
        to_ms,
        ..GenFleet::default()
    };
    for host in &hosts {
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        let aliases = Aliases::from_key(key);
        let pricer = Pricer {
            config: &config,
            host,
            aliases: &aliases,
        };
        // A VM on two hosts ran on the first for the first hour, then on the second.
        let here: Vec<(GenVm, u64, u64)> = vms
            .iter()
            .filter_map(|v| {
                let i = v.hosts.iter().position(|h| h == host)?;
                let (a, b) = match (v.hosts.len(), i) {
                    (1, _) => (from_ms, to_ms),
                    (_, 0) => (from_ms, mid),
                    _ => (mid, to_ms),
                };
                Some((v.clone(), a, b))
            })
            .collect();
        let mut items = Vec::new();
        let mut lines: Vec<(LedgerRecord, String)> = Vec::new();
        for (v, a, b) in &here {
            let usage = VmUsage {
                vm: v.name.clone(),
                customer: Some(v.customer.clone()),
                vcpus: Some(2),
                memory_bytes: Some(2 << 30),
            };
            for seg in segments(*a, *b, 900_000) {
                for l in pricer.base_lines(&usage, seg, *a) {
                    lines.push((l, v.uuid.clone()));
                }
            }
            for w in (*a..*b).step_by(300_000) {
                items.push(Item::Rollup(Rollup {
                    vm: v.name.clone(),
                    vm_uuid: Some(v.uuid.clone()),
                    customer: Some(v.customer.clone()),
                    window_start_ms: w,
                    window_ms: 300_000,
                    cpu_usage_cores: rng.random_range(0.1..2.0),
                    run_queue_wait_ms: rng.random_range(0.0..300.0),
                    preempted_ms: rng.random_range(0.0..200.0),
                    io_ops: 10,
                    io_bytes: 4096,
                    memory_mib: 2048,
                    max_score: rng.random_range(0.0..90.0),
                    actions: 0,
                    model_sha: None,
                    forecast_abs_error: None,
                }));
            }
        }
        // Actions between neighbours (other customers' and the same customer's).
        let mut seq = 0;
        for _ in 0..(here.len() * 2) {
            if here.len() < 2 {
                break;
            }
            let vi = rng.random_range(0..here.len());
            let mut ai = rng.random_range(0..here.len());
            if ai == vi {
                ai = (ai + 1) % here.len();
            }
            let (victim, va, vb) = &here[vi];
            let (aggressor, aa, ab) = &here[ai];
            let (start, end) = ((*va).max(*aa), (*vb).min(*ab));
            if end <= start + 600_000 {
                continue;
            }
            seq += 1;
            let applied = start + rng.random_range(0..(end - start) / 2);
            let until = (applied + rng.random_range(300_000..1_800_000)).min(end);
            let migrate = rng.random_bool(0.2);
            let id = format!("{host}-{}-{seq}", applied / 1000);
            let change = if migrate {
                Change::Migrate {
                    uri: format!("tcp:10.77.{}.{}:4444", rng.random_range(1..200), seq),
                    vcpus: Some(2),
                    memory_mib: Some(2048),
                }
            } else {
                Change::CpuWeight { weight: 50 }
            };
            let action = Action {
                payer: Default::default(),
                not_donors: Vec::new(),
                id: id.clone(),
                decided_ms: applied - 1000,
                rung: if migrate { Rung::Migrate } else { Rung::Weight },
                change,
                vm: aggressor.name.clone(),
                protects: victim.name.clone(),
                victim: victim.name.clone(),
                aggressor: aggressor.name.clone(),
                score: rng.random_range(40.0..95.0),
                unobservable: vec!["llc".into(), "membw".into()],
                vm_is_aggressor: true,
                simulated: false,
                reason: format!("{} slowed by {}", victim.name, aggressor.name),
                customers: [
                    (victim.name.clone(), victim.customer.clone()),
                    (aggressor.name.clone(), aggressor.customer.clone()),
                ]
                .into_iter()
                .collect(),
                vcpus: Some(2),
                cause: None,
                trigger: Trigger::Now,
            };
            let effects = vec![Effect {
                target: PathBuf::from(format!(
                    "/sys/fs/cgroup/machine.slice/{}/cpu.weight",
                    aggressor.name
                )),
                before: Setting::CpuWeight { weight: 100 },
                after: Setting::CpuWeight { weight: 50 },
            }];
            let billable = Billable {
                action,
                applied_ms: applied,
                effects,
            };
            let segs = if migrate {
                segments(applied, applied + 1, 900_000)
            } else {
                segments(applied, until, 900_000)
            };
            for seg in segs {
                let [charge, credit] = pricer.action_lines(&billable, seg);
                lines.push((charge, victim.uuid.clone()));
                lines.push((credit, aggressor.uuid.clone()));
            }
            for (phase, at) in [(Phase::Intent, applied - 500), (Phase::Done, applied)] {
                items.push(Item::ActionPhase(ActionPhase {
                    id: format!("{id}/{}/{at}", phase.as_str()),
                    action_id: id.clone(),
                    phase,
                    at_ms: at,
                    rung: Some(billable.action.change.name().to_owned()),
                    vm: Some(aggressor.name.clone()),
                    vm_uuid: Some(aggressor.uuid.clone()),
                    customer: Some(aggressor.customer.clone()),
                    model_sha: None,
                    victim_wait_after_ms: None,
                    detail: serde_json::json!({"host": host, "cgroup": format!("/sys/fs/cgroup/{}", aggressor.name)}),
                }));
            }
            for k in 0..5u64 {
                items.push(Item::Score(ScoreEvent {
                    victim: victim.name.clone(),
                    aggressor: aggressor.name.clone(),
                    at_ms: applied - 5000 + k * 1000,
                    score: rng.random_range(30.0..95.0),
                    model_sha: None,
                    shadow: false,
                }));
            }
            fleet.action_ids.insert(id);
        }
        for (l, uuid) in lines {
            let text = serde_json::to_string(&l).expect("a line serialises");
            items.push(Item::Ledger {
                line: LedgerLine::from_json_line(&text).expect("a ledger line"),
                vm_uuid: Some(uuid),
            });
            fleet.lines.push(l);
        }
        for (i, chunk) in items.chunks(2000).enumerate() {
            fleet.batches.push((
                host.clone(),
                IngestBatch {
                    seq: i as u64 + 1,
                    items: chunk.to_vec(),
                },
            ));
        }
    }
    fleet.vms = vms;
    fleet
}
