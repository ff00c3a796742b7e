//! The rungs of the ladder: what one rung would change for one pair, given the VMs as
//! they are and the policy's changes in force. Whether it may change it now (cooldown,
//! the cap, other pairs this tick) is the engine's business.
//!
//! Each rung is one or two halves, one per VM it touches (weight: boost the protected
//! VM and cut the reduced one; pin: a cpuset for each; balloon and migrate: the reduced
//! VM only). A half either acts, shares a change already in force, has nothing to do,
//! conflicts with another pair's change (left alone, reported), or waits for a rollback
//! of the same knob. A rung with nothing to act on or share does not apply to the pair
//! and the ladder passes over it.
//!
//! Pinning: the protected VM gets the highest-numbered `protect_cpus` CPUs (default half,
//! rounded up), the reduced VM the rest, which includes CPU 0 where most host
//! housekeeping and unbound interrupts land. A VM already pinned by the policy for
//! another pair keeps its set and the other side is built around it. A VM restricted by
//! someone else (its cpuset is not the whole host and the policy did not set it) is not
//! re-pinned.

use interference_core::cpu_list::CpuList;

use super::action::{Change, Rung, CONTROLLER_PLACEMENT};
use super::config::PolicyConfig;
use super::input::{Placement, VmInput};
use super::state::{size_text, Holding, PolicyState};
use super::who::Roles;

const MIB: u64 = 1 << 20;

/// A change one half would make.
#[derive(Debug, Clone, PartialEq)]
pub struct Act {
    pub vm: String,
    pub change: Change,
    /// "cut batch-2 cpu.weight 100 -> 10".
    pub what: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Half {
    Act(Act),
    /// The change is in force already (another pair's, this pair's from a partly failed
    /// attempt, or an orphan awaiting rollback): rely on it.
    Share {
        vm: String,
    },
    /// Nothing to change (e.g. the weight is already there).
    Noop(String),
    /// Another pair holds this knob with a different value; this half is left out.
    Conflict(String),
    /// The knob is being rolled back (or is due to be): try next tick.
    Wait(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The rung cannot apply to this pair; why.
    NotApplicable(String),
    Halves(Vec<Half>),
}

/// Everything a rung's plan depends on besides the pair's roles.
pub struct Ctx<'a> {
    pub config: &'a PolicyConfig,
    /// Sorted, without duplicates.
    pub host_cpus: &'a [u32],
    pub state: &'a PolicyState,
    /// Where the migration targets come from (`PolicyInput::placement`).
    pub placement: Placement,
}

pub fn plan(ctx: &Ctx<'_>, rung: Rung, roles: &Roles<'_>) -> Plan {
    match rung {
        Rung::Weight => weight(ctx, roles),
        Rung::Pin => pin(ctx, roles),
        Rung::Balloon => balloon(ctx, roles),
        Rung::Migrate => migrate(ctx, roles),
    }
}

/// How an existing holding answers a half that wants `wanted`: share it when the value
/// agrees, else conflict (another pair's) or wait (an orphan that must be undone first).
fn against_holding(vm: &str, h: &Holding, agrees: bool, knob: &str) -> Half {
    if let Some(id) = &h.rollback {
        return Half::Wait(format!("{vm}'s {knob} is being rolled back ({id})"));
    }
    if agrees {
        return Half::Share { vm: vm.to_owned() };
    }
    if h.is_orphan() {
        return Half::Wait(format!(
            "{vm}'s {knob} set by {} must be rolled back first",
            h.action.id
        ));
    }
    let others: Vec<&str> = h.holders.iter().map(String::as_str).collect();
    Half::Conflict(format!(
        "{vm}'s {knob} is held by pair {} ({}); left alone",
        others.join(", "),
        h.action.id
    ))
}

fn weight(ctx: &Ctx<'_>, r: &Roles<'_>) -> Plan {
    let c = ctx.config;
    let half = |vm: &VmInput, target: u64, verb: &str, done: fn(u64, u64) -> bool| {
        let wanted = Change::CpuWeight { weight: target };
        if let Some(h) = ctx.state.holding(&vm.name, Rung::Weight) {
            return against_holding(&vm.name, h, h.action.change == wanted, "cpu.weight");
        }
        match vm.cpu_weight {
            Some(now) if done(now, target) => {
                Half::Noop(format!("{}'s cpu.weight is {now} already", vm.name))
            }
            Some(now) => Half::Act(Act {
                vm: vm.name.clone(),
                change: wanted,
                what: format!("{verb} {} cpu.weight {now} -> {target}", vm.name),
            }),
            None => Half::Act(Act {
                vm: vm.name.clone(),
                change: wanted,
                what: format!("{verb} {} cpu.weight to {target}", vm.name),
            }),
        }
    };
    Plan::Halves(vec![
        half(r.protected, c.boost_weight, "boost", |now, t| now >= t),
        half(r.reduced, c.cut_weight, "cut", |now, t| now <= t),
    ])
}

fn held_cpus(h: Option<&Holding>) -> Option<&CpuList> {
    match h.map(|h| &h.action.change) {
        Some(Change::Cpuset { cpus }) => Some(cpus),
        _ => None,
    }
}

fn pin(ctx: &Ctx<'_>, r: &Roles<'_>) -> Plan {
    let host = ctx.host_cpus;
    if host.len() < 2 {
        return Plan::NotApplicable(format!(
            "pin: the host has {} CPU{}; there is nothing to split",
            host.len(),
            if host.len() == 1 { "" } else { "s" }
        ));
    }
    let (p, rd) = (r.protected, r.reduced);
    let ph = ctx.state.holding(&p.name, Rung::Pin);
    let rh = ctx.state.holding(&rd.name, Rung::Pin);
    for (vm, h) in [(p, ph), (rd, rh)] {
        if let Some(id) = h.and_then(|h| h.rollback.as_ref()) {
            return Plan::Halves(vec![Half::Wait(format!(
                "{}'s cpuset is being rolled back ({id})",
                vm.name
            ))]);
        }
        if h.is_none() {
            if let Some(set) = &vm.cpuset {
                if !host.iter().all(|c| set.contains(c)) {
                    return Plan::NotApplicable(format!(
                        "pin: {} is restricted to CPUs {} by someone else; not overriding that",
                        vm.name,
                        CpuList::from(&set[..])
                    ));
                }
            }
        }
    }
    let host_list = CpuList::from(host);
    let minus = |set: &CpuList| -> CpuList { host_list.difference(set) };
    let p_set: CpuList = match (held_cpus(ph), held_cpus(rh)) {
        (Some(set), _) => set.clone(),
        (None, Some(other)) => minus(other),
        (None, None) => {
            let n = host.len();
            let k = (ctx
                .config
                .protect_cpus
                .map_or(n.div_ceil(2), |k| k as usize))
            .clamp(1, n - 1);
            CpuList::from(&host[n - k..])
        }
    };
    let r_set: CpuList = match held_cpus(rh) {
        Some(set) => set.clone(),
        None => minus(&p_set),
    };
    if p_set.is_empty() || r_set.is_empty() || !p_set.intersection(&r_set).is_empty() {
        return Plan::NotApplicable(format!(
            "pin: {} (CPUs {p_set}) and {} (CPUs {r_set}) cannot be given disjoint CPUs",
            p.name, rd.name,
        ));
    }
    let half = |vm: &VmInput, h: Option<&Holding>, set: CpuList| match h {
        Some(_) => Half::Share {
            vm: vm.name.clone(),
        },
        None => {
            let was = vm
                .cpuset
                .as_deref()
                .map(|c| format!(" (was {})", CpuList::from(c)))
                .unwrap_or_default();
            Half::Act(Act {
                vm: vm.name.clone(),
                what: format!("pin {} to CPUs {set}{was}", vm.name),
                change: Change::Cpuset { cpus: set },
            })
        }
    };
    Plan::Halves(vec![half(p, ph, p_set), half(rd, rh, r_set)])
}

fn balloon(ctx: &Ctx<'_>, r: &Roles<'_>) -> Plan {
    let vm = r.reduced;
    if !vm.has_qmp {
        return Plan::NotApplicable(format!("balloon: {} has no QMP socket", vm.name));
    }
    if let Some(h) = ctx.state.holding(&vm.name, Rung::Balloon) {
        return Plan::Halves(vec![against_holding(&vm.name, h, true, "balloon")]);
    }
    let Some(now) = vm.memory_bytes else {
        return Plan::NotApplicable(format!(
            "balloon: {}'s current memory size is unknown",
            vm.name
        ));
    };
    let floor = (ctx.config.balloon_floor_mib * MIB).max(vm.memory_floor_bytes.unwrap_or(0));
    let step = (now as f64 * ctx.config.balloon_step) as u64;
    let target = (now.saturating_sub(step) / MIB * MIB).max(floor);
    if target >= now {
        return Plan::NotApplicable(format!(
            "balloon: {} has {} MiB, at or below its floor of {} MiB",
            vm.name,
            now / MIB,
            floor / MIB
        ));
    }
    Plan::Halves(vec![Half::Act(Act {
        vm: vm.name.clone(),
        change: Change::Balloon {
            target_bytes: target,
        },
        what: format!(
            "balloon {} {} MiB -> {} MiB (floor {} MiB)",
            vm.name,
            now / MIB,
            target / MIB,
            floor / MIB
        ),
    })])
}

/// The size a migration target must have room for: (vCPUs, memory in MiB rounded up),
/// or why the VM cannot be placed.
pub fn migration_size(vm: &VmInput) -> Result<(u32, u64), String> {
    let Some(vcpus) = vm.vcpus else {
        return Err(format!(
            "migrate: {}'s vCPU count is unknown, so no target can be checked for room",
            vm.name
        ));
    };
    // The configured size: what the destination must hold, whatever the balloon says.
    let Some(bytes) = vm.memory_allocated_bytes.or(vm.memory_bytes) else {
        return Err(format!(
            "migrate: {}'s memory size is unknown, so no target can be checked for room",
            vm.name
        ));
    };
    Ok((vcpus, bytes.div_ceil(MIB)))
}

/// Moves the reduced VM to a host the controller places it on when placement is on
/// (the controller knows every host's room); else to the first static target (config
/// order) with room for it: the declared free capacity minus what this agent has
/// migrated there (or is migrating, this tick included).
fn migrate(ctx: &Ctx<'_>, r: &Roles<'_>) -> Plan {
    let vm = r.reduced;
    let targets = ctx.config.migration_targets();
    if targets.is_empty() {
        return Plan::NotApplicable("migrate: migration is not enabled".into());
    }
    if !vm.has_qmp {
        return Plan::NotApplicable(format!("migrate: {} has no QMP socket", vm.name));
    }
    if let Some(h) = ctx.state.holding(&vm.name, Rung::Migrate) {
        return Plan::Halves(vec![against_holding(&vm.name, h, true, "migration")]);
    }
    let (vcpus, mib) = match migration_size(vm) {
        Ok(size) => size,
        Err(why) => return Plan::NotApplicable(why),
    };
    let size = size_text(u64::from(vcpus), mib);
    if ctx.placement == Placement::Busy {
        return Plan::Halves(vec![Half::Wait(format!(
            "migrate {} ({size}): the fleet's concurrent migrations are at their cap; waiting for the controller",
            vm.name
        ))]);
    }
    if ctx.placement == Placement::Controller {
        return Plan::Halves(vec![Half::Act(Act {
            vm: vm.name.clone(),
            change: Change::Migrate {
                uri: CONTROLLER_PLACEMENT.to_owned(),
                vcpus: Some(vcpus),
                memory_mib: Some(mib),
            },
            what: format!(
                "migrate {} ({size}) to the host the controller places it on",
                vm.name
            ),
        })]);
    }
    let mut room = Vec::with_capacity(targets.len());
    for t in targets {
        let (used_vcpus, used_mib) = ctx.state.migrated_to(&t.uri);
        let free_vcpus = u64::from(t.free_vcpus.unwrap_or(0)).saturating_sub(used_vcpus);
        let free_mib = t.free_memory_mib.unwrap_or(0).saturating_sub(used_mib);
        if u64::from(vcpus) <= free_vcpus && mib <= free_mib {
            return Plan::Halves(vec![Half::Act(Act {
                vm: vm.name.clone(),
                change: Change::Migrate {
                    uri: t.uri.clone(),
                    vcpus: Some(vcpus),
                    memory_mib: Some(mib),
                },
                what: format!(
                    "migrate {} ({size}) to {}, leaving {} free there",
                    vm.name,
                    t.label(),
                    size_text(free_vcpus - u64::from(vcpus), free_mib - mib)
                ),
            })]);
        }
        room.push(format!(
            "{} has {} free",
            t.label(),
            size_text(free_vcpus, free_mib)
        ));
    }
    let full = format!(
        "migrate: no target has room for {} ({size}): {}",
        vm.name,
        room.join("; ")
    );
    if ctx.placement == Placement::ControllerPaused {
        // The controller may have room again in a minute: wait for it.
        return Plan::Halves(vec![Half::Wait(format!(
            "{full}; the controller is asked again once its refusal is a minute old"
        ))]);
    }
    Plan::NotApplicable(full)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::policy::action::Action;
    use crate::policy::config::MigrationTarget;
    use crate::policy::state::Migrated;
    use crate::policy::who::roles;

    fn vm(name: &str) -> VmInput {
        VmInput {
            name: name.into(),
            cpu_weight: Some(100),
            has_qmp: true,
            vcpus: None,
            memory_bytes: Some(4096 * MIB),
            ..VmInput::default()
        }
    }

    fn plan_for(
        config: &PolicyConfig,
        state: &PolicyState,
        host: &[u32],
        rung: Rung,
        p: &VmInput,
        r: &VmInput,
    ) -> Plan {
        let ctx = Ctx {
            config,
            host_cpus: host,
            state,
            placement: Placement::Static,
        };
        plan(&ctx, rung, &roles(config, p, r))
    }

    fn acts(plan: &Plan) -> Vec<(String, Change)> {
        match plan {
            Plan::Halves(h) => h
                .iter()
                .filter_map(|h| match h {
                    Half::Act(a) => Some((a.vm.clone(), a.change.clone())),
                    _ => None,
                })
                .collect(),
            Plan::NotApplicable(_) => vec![],
        }
    }

    fn hold(state: &mut PolicyState, vm: &str, rung: Rung, change: Change, holders: &[&str]) {
        state.vms.entry(vm.into()).or_default().holdings.insert(
            rung,
            Holding {
                action: Action {
                    payer: Default::default(),
                    not_donors: Vec::new(),
                    id: format!("h-1-{vm}"),
                    decided_ms: 0,
                    rung,
                    change,
                    vm: vm.into(),
                    protects: "x".into(),
                    victim: "x".into(),
                    aggressor: vm.into(),
                    score: 50.0,
                    vm_is_aggressor: true,
                    unobservable: Vec::new(),
                    cause: None,
                    customers: Default::default(),
                    vcpus: None,
                    simulated: false,
                    reason: String::new(),
                    trigger: Default::default(),
                },
                tick: 1,
                seq: 0,
                holders: holders
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<BTreeSet<_>>(),
                rollback: None,
            },
        );
    }

    #[test]
    fn weight_boosts_and_cuts_with_the_old_value_in_the_text() {
        let c = PolicyConfig::default();
        let s = PolicyState::default();
        let plan = plan_for(&c, &s, &[0, 1], Rung::Weight, &vm("web"), &vm("batch"));
        let Plan::Halves(h) = &plan else {
            panic!("{plan:?}")
        };
        let Half::Act(cut) = &h[1] else {
            panic!("{h:?}")
        };
        assert_eq!(cut.what, "cut batch cpu.weight 100 -> 10");
        assert_eq!(
            acts(&plan),
            vec![
                ("web".into(), Change::CpuWeight { weight: 1000 }),
                ("batch".into(), Change::CpuWeight { weight: 10 })
            ]
        );
    }

    #[test]
    fn weight_never_raises_the_reduced_vm_or_lowers_the_protected_one() {
        let c = PolicyConfig::default();
        let s = PolicyState::default();
        let mut web = vm("web");
        web.cpu_weight = Some(5000);
        let mut batch = vm("batch");
        batch.cpu_weight = Some(5);
        let plan = plan_for(&c, &s, &[0, 1], Rung::Weight, &web, &batch);
        assert!(acts(&plan).is_empty(), "{plan:?}");
    }

    #[test]
    fn weight_shares_agreeing_holdings_and_reports_conflicts() {
        let c = PolicyConfig::default();
        let mut s = PolicyState::default();
        // web already boosted for another pair; batch boosted as someone's protected VM.
        hold(
            &mut s,
            "web",
            Rung::Weight,
            Change::CpuWeight { weight: 1000 },
            &["db/web"],
        );
        hold(
            &mut s,
            "batch",
            Rung::Weight,
            Change::CpuWeight { weight: 1000 },
            &["batch/x"],
        );
        let Plan::Halves(h) = plan_for(&c, &s, &[0, 1], Rung::Weight, &vm("web"), &vm("batch"))
        else {
            panic!()
        };
        assert_eq!(h[0], Half::Share { vm: "web".into() });
        assert!(
            matches!(&h[1], Half::Conflict(m) if m.contains("batch/x")),
            "{h:?}"
        );
        // An orphan with another value must be undone first.
        hold(
            &mut s,
            "batch",
            Rung::Weight,
            Change::CpuWeight { weight: 1000 },
            &[],
        );
        let Plan::Halves(h) = plan_for(&c, &s, &[0, 1], Rung::Weight, &vm("web"), &vm("batch"))
        else {
            panic!()
        };
        assert!(matches!(&h[1], Half::Wait(_)), "{h:?}");
    }

    #[test]
    fn pin_splits_the_host() {
        let c = PolicyConfig::default();
        let s = PolicyState::default();
        let host = [0, 1, 2, 3, 4];
        let plan = plan_for(&c, &s, &host, Rung::Pin, &vm("web"), &vm("batch"));
        assert_eq!(
            acts(&plan),
            vec![
                (
                    "web".into(),
                    Change::Cpuset {
                        cpus: CpuList::new([2, 3, 4])
                    }
                ),
                (
                    "batch".into(),
                    Change::Cpuset {
                        cpus: CpuList::new([0, 1])
                    }
                )
            ]
        );
        let c = PolicyConfig {
            protect_cpus: Some(9),
            ..Default::default()
        };
        let plan = plan_for(&c, &s, &host, Rung::Pin, &vm("web"), &vm("batch"));
        assert_eq!(
            acts(&plan)[1].1,
            Change::Cpuset {
                cpus: CpuList::new([0])
            }
        );
        let plan = plan_for(&c, &s, &[0, 1], Rung::Pin, &vm("web"), &vm("batch"));
        assert_eq!(
            acts(&plan)[0].1,
            Change::Cpuset {
                cpus: CpuList::new([1])
            }
        );
    }

    #[test]
    fn pin_needs_two_cpus() {
        let c = PolicyConfig::default();
        let s = PolicyState::default();
        let plan = plan_for(&c, &s, &[0], Rung::Pin, &vm("web"), &vm("batch"));
        assert!(
            matches!(&plan, Plan::NotApplicable(m) if m.contains("1 CPU;")),
            "{plan:?}"
        );
    }

    #[test]
    fn pin_respects_foreign_cpusets_and_builds_around_its_own() {
        let c = PolicyConfig::default();
        let mut s = PolicyState::default();
        let mut batch = vm("batch");
        batch.cpuset = Some(vec![0]);
        let plan = plan_for(&c, &s, &[0, 1, 2, 3], Rung::Pin, &vm("web"), &batch);
        assert!(
            matches!(&plan, Plan::NotApplicable(m) if m.contains("someone else")),
            "{plan:?}"
        );
        // The policy pinned batch to 0 for another pair: web gets the rest.
        hold(
            &mut s,
            "batch",
            Rung::Pin,
            Change::Cpuset {
                cpus: CpuList::new([0]),
            },
            &["batch/x"],
        );
        let Plan::Halves(h) = plan_for(&c, &s, &[0, 1, 2, 3], Rung::Pin, &vm("web"), &batch) else {
            panic!()
        };
        assert!(
            matches!(&h[0], Half::Act(a) if a.change == Change::Cpuset { cpus: CpuList::new([1, 2, 3]) })
        );
        assert_eq!(h[1], Half::Share { vm: "batch".into() });
        // Both pinned elsewhere to overlapping sets: no split possible.
        hold(
            &mut s,
            "web",
            Rung::Pin,
            Change::Cpuset {
                cpus: CpuList::new([0, 1]),
            },
            &["web/y"],
        );
        let plan = plan_for(&c, &s, &[0, 1, 2, 3], Rung::Pin, &vm("web"), &batch);
        assert!(
            matches!(&plan, Plan::NotApplicable(m) if m.contains("disjoint")),
            "{plan:?}"
        );
    }

    #[test]
    fn balloon_steps_towards_the_floor_and_never_below() {
        let c = PolicyConfig::default();
        let s = PolicyState::default();
        let plan = plan_for(&c, &s, &[0, 1], Rung::Balloon, &vm("web"), &vm("batch"));
        assert_eq!(
            acts(&plan),
            vec![(
                "batch".into(),
                Change::Balloon {
                    target_bytes: 3072 * MIB
                }
            )]
        );
        let mut batch = vm("batch");
        batch.memory_bytes = Some(600 * MIB);
        let plan = plan_for(&c, &s, &[0, 1], Rung::Balloon, &vm("web"), &batch);
        assert_eq!(
            acts(&plan),
            vec![(
                "batch".into(),
                Change::Balloon {
                    target_bytes: 512 * MIB
                }
            )]
        );
        // The VM's own floor wins when higher.
        batch.memory_floor_bytes = Some(2048 * MIB);
        batch.memory_bytes = Some(2100 * MIB);
        let plan = plan_for(&c, &s, &[0, 1], Rung::Balloon, &vm("web"), &batch);
        assert_eq!(
            acts(&plan),
            vec![(
                "batch".into(),
                Change::Balloon {
                    target_bytes: 2048 * MIB
                }
            )]
        );
        batch.memory_bytes = Some(2048 * MIB);
        let plan = plan_for(&c, &s, &[0, 1], Rung::Balloon, &vm("web"), &batch);
        assert!(
            matches!(&plan, Plan::NotApplicable(m) if m.contains("floor")),
            "{plan:?}"
        );
        batch.has_qmp = false;
        let plan = plan_for(&c, &s, &[0, 1], Rung::Balloon, &vm("web"), &batch);
        assert!(
            matches!(&plan, Plan::NotApplicable(m) if m.contains("QMP")),
            "{plan:?}"
        );
    }

    fn target(uri: &str, vcpus: u32, mib: u64) -> MigrationTarget {
        MigrationTarget {
            name: None,
            uri: uri.into(),
            free_vcpus: Some(vcpus),
            free_memory_mib: Some(mib),
        }
    }

    fn migration(targets: Vec<MigrationTarget>) -> PolicyConfig {
        let mut c = PolicyConfig::default();
        c.migration.enabled = true;
        c.migration.targets = targets;
        c
    }

    /// A VM of 2 vCPUs and 4096 MiB.
    fn sized(name: &str) -> VmInput {
        VmInput {
            vcpus: Some(2),
            ..vm(name)
        }
    }

    fn migrated(uri: &str, id: &str, vcpus: u32, memory_mib: u64) -> Migrated {
        Migrated {
            uri: uri.into(),
            action_id: id.into(),
            vm: "other".into(),
            vcpus,
            memory_mib,
            simulated: false,
        }
    }

    fn migrate_to(plan: &Plan) -> Option<String> {
        match acts(plan).as_slice() {
            [(_, Change::Migrate { uri, .. })] => Some(uri.clone()),
            _ => None,
        }
    }

    fn not_applicable(plan: &Plan) -> &str {
        match plan {
            Plan::NotApplicable(why) => why,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn migrate_needs_migration_enabled_with_a_target() {
        let mut c = PolicyConfig::default();
        let s = PolicyState::default();
        let plan = plan_for(&c, &s, &[0, 1], Rung::Migrate, &vm("web"), &sized("batch"));
        assert_eq!(not_applicable(&plan), "migrate: migration is not enabled");
        c.migration.targets = vec![target("tcp:10.0.0.7:4444", 8, 16384)];
        let plan = plan_for(&c, &s, &[0, 1], Rung::Migrate, &vm("web"), &sized("batch"));
        assert!(matches!(plan, Plan::NotApplicable(_)), "disabled: {plan:?}");
        c.migration.enabled = true;
        let plan = plan_for(&c, &s, &[0, 1], Rung::Migrate, &vm("web"), &sized("batch"));
        assert_eq!(
            acts(&plan),
            vec![(
                "batch".into(),
                Change::Migrate {
                    uri: "tcp:10.0.0.7:4444".into(),
                    vcpus: Some(2),
                    memory_mib: Some(4096)
                }
            )]
        );
        let Plan::Halves(h) = &plan else {
            panic!("{plan:?}")
        };
        let Half::Act(a) = &h[0] else { panic!("{h:?}") };
        assert_eq!(
            a.what,
            "migrate batch (2 vCPUs, 4096 MiB) to tcp:10.0.0.7:4444, leaving 6 vCPUs, 12288 MiB free there"
        );
    }

    #[test]
    fn migrate_fits_exactly_and_not_one_over() {
        let s = PolicyState::default();
        let c = migration(vec![target("tcp:a:1", 2, 4096)]);
        let plan = plan_for(&c, &s, &[0, 1], Rung::Migrate, &vm("web"), &sized("batch"));
        assert_eq!(migrate_to(&plan).as_deref(), Some("tcp:a:1"));
        // One vCPU short.
        let c = migration(vec![target("tcp:a:1", 1, 8192)]);
        let plan = plan_for(&c, &s, &[0, 1], Rung::Migrate, &vm("web"), &sized("batch"));
        assert_eq!(
            not_applicable(&plan),
            "migrate: no target has room for batch (2 vCPUs, 4096 MiB): tcp:a:1 has 1 vCPU, 8192 MiB free"
        );
        // One MiB short (memory is rounded up to whole MiB).
        let c = migration(vec![target("tcp:a:1", 4, 4096)]);
        let mut batch = sized("batch");
        batch.memory_bytes = Some(4096 * MIB + 1);
        let plan = plan_for(&c, &s, &[0, 1], Rung::Migrate, &vm("web"), &batch);
        assert!(
            not_applicable(&plan).contains("room for batch (2 vCPUs, 4097 MiB)"),
            "{plan:?}"
        );
    }

    #[test]
    fn migrate_picks_the_first_target_with_room_in_config_order() {
        let s = PolicyState::default();
        let mut c = migration(vec![
            target("tcp:a:1", 1, 8192),
            target("tcp:b:1", 4, 2048),
            target("tcp:c:1", 2, 4096),
            target("tcp:d:1", 64, 65536),
        ]);
        c.migration.targets[0].name = Some("host-a".into());
        let plan = plan_for(&c, &s, &[0, 1], Rung::Migrate, &vm("web"), &sized("batch"));
        assert_eq!(migrate_to(&plan).as_deref(), Some("tcp:c:1"));
        c.migration.targets.truncate(2);
        let plan = plan_for(&c, &s, &[0, 1], Rung::Migrate, &vm("web"), &sized("batch"));
        assert_eq!(
            not_applicable(&plan),
            "migrate: no target has room for batch (2 vCPUs, 4096 MiB): \
             host-a (tcp:a:1) has 1 vCPU, 8192 MiB free; tcp:b:1 has 4 vCPUs, 2048 MiB free"
        );
    }

    #[test]
    fn migrate_counts_what_was_migrated_there_already() {
        let c = migration(vec![
            target("tcp:a:1", 4, 10240),
            target("tcp:b:1", 2, 4096),
        ]);
        let mut s = PolicyState::default();
        // Another VM (2 vCPUs, 4096 MiB) went to a: room for one more of the same size.
        s.migrated.push(migrated("tcp:a:1", "h-1-0", 2, 4096));
        let plan = plan_for(&c, &s, &[0, 1], Rung::Migrate, &vm("web"), &sized("batch"));
        assert_eq!(migrate_to(&plan).as_deref(), Some("tcp:a:1"));
        // A second one: a has 0 vCPUs left, b is next.
        s.migrated.push(migrated("tcp:a:1", "h-2-0", 2, 4096));
        let plan = plan_for(&c, &s, &[0, 1], Rung::Migrate, &vm("web"), &sized("batch"));
        assert_eq!(migrate_to(&plan).as_deref(), Some("tcp:b:1"));
        s.migrated.push(migrated("tcp:b:1", "h-3-0", 1, 100));
        let plan = plan_for(&c, &s, &[0, 1], Rung::Migrate, &vm("web"), &sized("batch"));
        assert_eq!(
            not_applicable(&plan),
            "migrate: no target has room for batch (2 vCPUs, 4096 MiB): \
             tcp:a:1 has 0 vCPUs, 2048 MiB free; tcp:b:1 has 1 vCPU, 3996 MiB free"
        );
    }

    #[test]
    fn migrate_needs_the_vms_size() {
        let c = migration(vec![target("tcp:a:1", 64, 65536)]);
        let s = PolicyState::default();
        let plan = plan_for(&c, &s, &[0, 1], Rung::Migrate, &vm("web"), &vm("batch"));
        assert_eq!(
            not_applicable(&plan),
            "migrate: batch's vCPU count is unknown, so no target can be checked for room"
        );
        let mut batch = sized("batch");
        batch.memory_bytes = None;
        let plan = plan_for(&c, &s, &[0, 1], Rung::Migrate, &vm("web"), &batch);
        assert_eq!(
            not_applicable(&plan),
            "migrate: batch's memory size is unknown, so no target can be checked for room"
        );
    }
}
