//! Mitigation inside the tick loop: after each scoring round, the policy decides and the
//! enforcer applies, and the next round's decision sees what became of this one's
//! actions. Between rounds only the managed cgroup roots are refreshed.
//!
//! Billing rides along: every tick it meters the VMs; an applied action starts being
//! metered, and an action is billed to its end *before* it is undone (rollback,
//! restore at exit or at start), so a crash between the two can neither lose its lines
//! nor double them (see `billing::meter`). The journal keeps owing an action until the
//! ledger has synced its last segment (`Enforcer::mark_billed`); at start, whatever it
//! still owes is billed first, in effect or not. While the ledger cannot take its
//! lines beyond `[billing] max_unbilled_lines`, no new mitigation starts.
//!
//! With a controller that places migrations, a migrate action naming
//! [`CONTROLLER_PLACEMENT`] gets its target here, from a reservation, before it is
//! journalled; a refusal fails the action and the static targets are used for a
//! minute. Each migration started is followed to its end (`super::migrations`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use interference_fleet::wire::{Influence, Limits, PlacementRequest, ReleaseOutcome, VmRef};

use super::migrations::{Ended, Migrations};
use super::refusals::Refusals;
use super::ScoreRound;
use crate::billing::{Billing, VmUsage};
use crate::clock::now_ms;
use crate::enforce::Enforcer;
use crate::export::prometheus::TextWriter;
use crate::fleet::limits::TenantCap;
use crate::fleet::placement::{PlaceError, Placer};
use crate::inventory::Vm;
use crate::policy::{
    Action, ActionResult, Change, ForecastResult, Outcome, Placement, Policy, PolicyConfig,
    PolicyInput, VmInput, CONTROLLER_PLACEMENT,
};
use crate::predict::ContentionScore;
use crate::telemetry::balloon::{BalloonProbe, GuestMemory};
use crate::telemetry::VmSample;

/// What one round of mitigation did.
#[derive(Debug, Clone, Default)]
pub struct MitigationReport {
    pub actions: Vec<(Action, Outcome)>,
    /// (pair, why) of what was due and did not happen.
    pub skipped: Vec<(String, String)>,
}

pub struct Mitigation {
    policy: Policy,
    enforcer: Enforcer,
    host_cpus: Vec<u32>,
    round: u64,
    last_outcomes: Vec<Outcome>,
    /// `interference_actions_total{vm,action,result}`.
    counts: BTreeMap<(String, String, &'static str), u64>,
    billing: Option<Billing>,
    /// Guest memory for the balloon rung (None: the ladder has no balloon rung).
    balloon: Option<BalloonProbe>,
    /// `interference_forecast_outcomes_total{result}`: rendered once forecasting is on.
    forecast_outcomes: BTreeMap<&'static str, u64>,
    /// The fleet's per-tenant action cap (`[fleet]`; no cap without a controller).
    tenant_cap: TenantCap,
    /// Customers' requests from the controller (the customer API).
    influence: Influence,
    /// Pairs the cap holds back now (logged once when it starts holding them).
    capped: BTreeSet<String>,
    /// Migrations in progress and which QEMUs run here (billing).
    migrations: Migrations,
    /// The controller's desired state asks for placement.
    placement: bool,
    /// After a refused placement, the static targets until then.
    placement_paused_until_ms: u64,
    /// The fleet's concurrent migrations are at their cap: no migration (placed or
    /// static: the cap is the fleet's) starts before then.
    migrations_busy_until_ms: u64,
    /// `interference_migrations_total{result}`: how followed migrations ended.
    migration_ends: BTreeMap<&'static str, u64>,
    /// `interference_clock_steps_total{direction}`: steps of the wall clock.
    clock_steps: [u64; 2],
    /// VMs whose balloon says they have more memory than they were started with
    /// (logged when it starts).
    overstated: BTreeSet<String>,
    /// VMs the cgroup guard refuses (logged when it starts, not every tick).
    refusals: Refusals,
}

/// QEMU cannot give a guest more than it was started with (`-m`): a balloon that
/// says so is bounded to that, so the balloon rung neither aims above it nor bills
/// memory that never was. True when `m` said more.
fn bound_to_allocation(m: &mut GuestMemory, started_with: u64) -> bool {
    if m.actual_bytes <= started_with {
        return false;
    }
    m.actual_bytes = started_with;
    true
}

/// How long the static targets stand in after the controller refused a placement.
const PLACEMENT_PAUSE_MS: u64 = 60_000;

/// How long to wait when the controller says the fleet's migrations are at their cap
/// without saying for how long (`Retry-After`).
const BUSY_WAIT_MS: u64 = 30_000;

impl Mitigation {
    pub fn new(policy: Policy, enforcer: Enforcer, host_cpus: Vec<u32>) -> Self {
        Self {
            policy,
            enforcer,
            host_cpus,
            round: 0,
            last_outcomes: Vec::new(),
            counts: BTreeMap::new(),
            billing: None,
            balloon: None,
            forecast_outcomes: BTreeMap::new(),
            tenant_cap: TenantCap::default(),
            influence: Influence::default(),
            capped: BTreeSet::new(),
            migrations: Migrations::default(),
            placement: false,
            placement_paused_until_ms: 0,
            migrations_busy_until_ms: 0,
            migration_ends: BTreeMap::new(),
            clock_steps: [0; 2],
            overstated: BTreeSet::new(),
            refusals: Refusals::default(),
        }
    }

    /// Scores carry forecasts: count what became of them, from zero.
    pub fn with_forecast_outcomes(mut self) -> Self {
        for r in [
            ForecastResult::Confirmed,
            ForecastResult::Missed,
            ForecastResult::Withdrawn,
        ] {
            self.forecast_outcomes.insert(r.as_str(), 0);
        }
        self
    }

    /// Read the guest memory of VMs in hot pairs through QMP (the balloon rung needs
    /// their current size and their own floor).
    pub fn with_balloon_probe(mut self, probe: BalloonProbe) -> Self {
        self.balloon = Some(probe);
        self
    }

    /// Bill what is applied (see the module doc).
    pub fn with_billing(mut self, billing: Billing) -> Self {
        self.billing = Some(billing);
        self
    }

    pub fn billing(&self) -> Option<&Billing> {
        self.billing.as_ref()
    }

    /// A fleet policy from the controller, from the next round on; the agent's own
    /// dry-run setting stays (a fleet document cannot make a dry run act).
    pub fn reconfigure_policy(
        &mut self,
        mut config: PolicyConfig,
    ) -> Result<(), crate::policy::PolicyError> {
        config.dry_run |= self.policy.config().dry_run;
        self.policy.reconfigure(config)
    }

    /// Customers' requests from the controller's desired state, from the next round on.
    pub fn set_influence(&mut self, influence: &Influence) {
        if *influence != self.influence {
            tracing::info!(
                no_donor_customers = influence.no_donor_customers.len(),
                no_donor_vms = influence.no_donor_vms.len(),
                capped_customers = ?influence.capped_customers,
                priority_requests = influence.priority.len(),
                "customers' requests from the controller"
            );
        }
        self.influence = influence.clone();
        self.influence.capped_customers.sort();
    }

    /// The fleet's limits from the controller's desired state, from the next round on.
    pub fn set_limits(&mut self, limits: &Limits) {
        self.tenant_cap.set(limits);
    }

    /// Migration targets come from this controller when its desired state says
    /// `placement`; its reservations are given back through it.
    pub fn set_placer(&mut self, placer: Placer) {
        self.migrations.set_placer(placer);
    }

    /// The controller's desired state: place migrations there (else the static targets).
    pub fn set_placement(&mut self, on: bool) {
        if on != self.placement {
            tracing::info!(
                "migration targets: {}",
                if on {
                    "placed by the controller"
                } else {
                    "the static targets"
                }
            );
        }
        self.placement = on;
    }

    /// The VM's QEMU waits for an incoming migration (not billed, not counted in the
    /// host's allocations).
    pub fn is_arriving(&self, vm: &Vm) -> bool {
        self.migrations.is_arriving(vm)
    }

    /// Pair scores at or above it are the ones that matter beyond this host.
    pub fn off_threshold(&self) -> f32 {
        self.policy.config().off_threshold
    }

    pub fn enforcer_mut(&mut self) -> &mut Enforcer {
        &mut self.enforcer
    }

    /// Every tick: the guard follows the inventory (a VM that left is no longer
    /// writable); a scoring round also decides and applies.
    pub fn tick(
        &mut self,
        vms: &[Vm],
        samples: &[VmSample],
        round: Option<&ScoreRound>,
    ) -> Option<MitigationReport> {
        let refused = self.enforcer.set_vms(vms).into_iter().map(|e| {
            let vm = e.vm().unwrap_or_default().to_owned();
            (vm, e.to_string())
        });
        let changes = self.refusals.update(refused);
        for (_, why) in changes.started {
            tracing::warn!("not managing a VM's cgroups: {why}");
        }
        for vm in changes.ended {
            tracing::info!(
                "VM {vm:?} is no longer refused (its cgroups were admitted, or it is gone)"
            );
        }
        let now_ms = now_ms();
        self.follow_clock_steps();
        for ended in self.migrations.follow(vms) {
            self.count_ended(&ended);
        }
        if let Some(b) = self.billing.as_mut() {
            b.tick(now_ms, &vm_usage(&self.migrations.billable(vms)));
        }
        let round = round?;
        self.round += 1;
        let memory = self.read_memory(vms, &round.contention);
        let inputs = vm_inputs(
            vms,
            samples,
            &memory,
            self.policy.config(),
            &self.influence,
            now_ms,
        );
        let hold = self.billing.as_ref().and_then(Billing::holds_new_charges);
        let blocked = self.tenant_cap.blocked(now_ms);
        let capped = self.influence.capped_customers.clone();
        let payer_tiers = self
            .billing
            .as_ref()
            .map(|b| b.config().payer_tiers.clone())
            .unwrap_or_default();
        let decision = self.policy.decide(&PolicyInput {
            tick: self.round,
            now_ms,
            host_cpus: &self.host_cpus,
            vms: &inputs,
            scores: &round.contention,
            directed: &round.directed,
            outcomes: &self.last_outcomes,
            hold_new: hold.as_deref(),
            blocked_customers: &blocked,
            capped_customers: &capped,
            payer: self
                .billing
                .as_ref()
                .map(|b| b.config().payer)
                .unwrap_or_default(),
            payer_tiers: &payer_tiers,
            placement: self.placement_now(now_ms),
        });
        for (pair, result) in &decision.forecast_outcomes {
            tracing::info!("forecast for {pair}: {}", result.as_str());
            *self.forecast_outcomes.entry(result.as_str()).or_default() += 1;
        }
        self.log_capped(&decision.skipped);
        let actions = self.apply(decision.actions, vms, now_ms);
        self.tenant_cap.count(now_ms, &actions);
        self.last_outcomes = actions.iter().map(|(_, o)| o.clone()).collect();
        Some(MitigationReport {
            actions,
            skipped: decision.skipped,
        })
    }

    fn placement_now(&self, now_ms: u64) -> Placement {
        if self.migrations.placer().is_none() {
            Placement::Static
        } else if now_ms < self.migrations_busy_until_ms {
            Placement::Busy
        } else if !self.placement {
            Placement::Static
        } else if now_ms < self.placement_paused_until_ms {
            Placement::ControllerPaused
        } else {
            Placement::Controller
        }
    }

    fn count_ended(&mut self, ended: &Ended) {
        let result = match ended {
            Ended::Migrated { .. } => "migrated",
            Ended::Failed {
                action_id, vm, why, ..
            } => {
                tracing::warn!("{action_id}: {vm} did not migrate and still runs here: {why}");
                "failed"
            }
        };
        *self.migration_ends.entry(result).or_default() += 1;
    }

    /// Says once, when it starts, that a cap holds a pair back: the fleet's actions per
    /// tenant, or a customer's monthly cap on interference charges.
    fn log_capped(&mut self, skipped: &[(String, String)]) {
        let now: BTreeSet<String> = skipped
            .iter()
            .filter(|(_, why)| why.contains("tenant cap: ") || why.contains("charge cap: "))
            .map(|(pair, why)| {
                if !self.capped.contains(pair) {
                    tracing::info!("{pair}: no new action: {why}");
                }
                pair.clone()
            })
            .collect();
        self.capped = now;
    }

    /// Guest memory of the VMs in pairs at or above the off threshold, read through
    /// QMP; nothing when the ladder has no balloon rung or no pair is that hot.
    fn read_memory(
        &mut self,
        vms: &[Vm],
        scores: &[ContentionScore],
    ) -> BTreeMap<String, GuestMemory> {
        let Some(probe) = self.balloon.as_mut() else {
            return BTreeMap::new();
        };
        let off = self.policy.config().off_threshold;
        let hot: BTreeSet<&str> = scores
            .iter()
            .filter(|s| s.score >= off)
            .flat_map(|s| [s.vm.as_str(), s.neighbor.as_str()])
            .collect();
        let targets: Vec<(String, PathBuf)> = vms
            .iter()
            .filter(|v| hot.contains(v.name.as_str()))
            .filter_map(|v| Some((v.name.clone(), v.qmp_socket.clone()?)))
            .collect();
        if targets.is_empty() {
            return BTreeMap::new();
        }
        let mut memory = probe.read(&targets, Instant::now());
        // QEMU serves one QMP client per socket: hand the sockets back before the
        // enforcer (or an operator, or libvirt) needs them.
        probe.release_all();
        for v in vms {
            let (Some(m), Some(started_with)) =
                (memory.get_mut(&v.name), v.allocation.memory_bytes)
            else {
                continue;
            };
            if bound_to_allocation(m, started_with) {
                if self.overstated.insert(v.name.clone()) {
                    tracing::warn!(
                        vm = v.name,
                        "{}'s balloon reports more memory than the {} MiB it was started \
                         with: the balloon rung counts {} MiB",
                        v.name,
                        started_with >> 20,
                        started_with >> 20
                    );
                }
            } else {
                self.overstated.remove(&v.name);
            }
        }
        memory
    }

    /// Apply `actions` (in order) to the VMs they name, billing each: a rollback's
    /// original is billed to `now_ms` before it is undone. Failures are outcomes.
    pub fn apply(
        &mut self,
        actions: Vec<Action>,
        vms: &[Vm],
        now_ms: u64,
    ) -> Vec<(Action, Outcome)> {
        let mut done = Vec::with_capacity(actions.len());
        for mut action in actions {
            if let (Change::Rollback { action_id }, false, Some(b)) =
                (&action.change, action.simulated, self.billing.as_mut())
            {
                b.end(action_id, now_ms);
            }
            let outcome = match vms.iter().find(|v| v.name == action.vm) {
                Some(vm) => match self.place(&mut action, vm, now_ms) {
                    Ok(reservation) => self.apply_placed(&action, vm, reservation),
                    Err(why) => Outcome {
                        action_id: action.id.clone(),
                        result: ActionResult::Failed,
                        at_ms: now_ms,
                        effects: Vec::new(),
                        error: Some(why),
                    },
                },
                None => Outcome {
                    action_id: action.id.clone(),
                    result: ActionResult::Failed,
                    at_ms: now_ms,
                    effects: Vec::new(),
                    error: Some(format!("VM {} is no longer on the host", action.vm)),
                },
            };
            log_decision(&action, &outcome);
            if let Some(b) = self.billing.as_mut() {
                b.outcome(&action, &outcome);
            }
            *self
                .counts
                .entry((
                    action.vm.clone(),
                    action.change.name().to_string(),
                    outcome.result.as_str(),
                ))
                .or_default() += 1;
            done.push((action, outcome));
        }
        self.settle();
        done
    }

    /// A migrate action the controller places gets its reservation's target (None: no
    /// placement asked, or a dry run, which reserves nothing). A refusal fails it and
    /// pauses placement for a minute (the static targets stand in); the fleet's cap on
    /// concurrent migrations fails it and every migration until the controller's
    /// `Retry-After` has passed, static ones too: the cap is the fleet's.
    fn place(
        &mut self,
        action: &mut Action,
        vm: &Vm,
        now_ms: u64,
    ) -> Result<Option<String>, String> {
        let Change::Migrate {
            uri,
            vcpus,
            memory_mib,
        } = &mut action.change
        else {
            return Ok(None);
        };
        // The ladder waits while the cap holds; this guards a decision made before.
        if now_ms < self.migrations_busy_until_ms && !action.simulated {
            return Err(format!(
                "the fleet's concurrent migrations are at their cap; the next may start in {} s",
                (self.migrations_busy_until_ms - now_ms).div_ceil(1000)
            ));
        }
        if uri != CONTROLLER_PLACEMENT || action.simulated {
            return Ok(None);
        }
        let Some(placer) = self.migrations.placer() else {
            return Err("controller placement asked with no controller link".into());
        };
        let request = PlacementRequest {
            vm: action.vm.clone(),
            vm_uuid: vm.uuid.clone(),
            vcpus: vcpus.unwrap_or(0),
            memory_mib: memory_mib.unwrap_or(0),
            exclude: Vec::new(),
        };
        match placer.reserve(request) {
            Ok(r) => {
                *uri = r.migration_uri.clone();
                action.reason.push_str(&format!(
                    "; placed on {} ({}), reservation {}",
                    r.target_host, r.migration_uri, r.id
                ));
                Ok(Some(r.id))
            }
            Err(PlaceError::Refused(e)) if e.status() == Some(429) => {
                let wait = e
                    .retry_after()
                    .map_or(BUSY_WAIT_MS, |d| d.as_millis() as u64);
                self.migrations_busy_until_ms = now_ms + wait;
                Err(format!(
                    "the fleet's concurrent migrations are at their cap ({e}); the next may start in {} s",
                    wait.div_ceil(1000)
                ))
            }
            Err(e) => {
                self.placement_paused_until_ms = now_ms + PLACEMENT_PAUSE_MS;
                Err(format!(
                    "controller placement: {e}; the static targets stand in for {} s",
                    PLACEMENT_PAUSE_MS / 1000
                ))
            }
        }
    }

    /// Applies an action; a migration under a reservation is followed to its end, or
    /// its reservation given back at once when it did not start.
    fn apply_placed(&mut self, action: &Action, vm: &Vm, reservation: Option<String>) -> Outcome {
        let outcome = self.enforcer.apply(action, vm);
        let started = outcome.result == ActionResult::Applied;
        if started && matches!(action.change, Change::Migrate { .. }) {
            self.migrations.started(&action.id, vm, reservation);
        } else if let Some(id) = reservation {
            self.migrations.release(&id, ReleaseOutcome::Failed);
        }
        outcome
    }

    /// Tell the journal which actions the ledger now holds to their end.
    fn settle(&mut self) {
        if let Some(b) = self.billing.as_mut() {
            let settled = b.take_settled();
            self.enforcer
                .mark_billed(settled.iter().map(String::as_str));
        }
    }

    /// At start: bill what the journal still owes (a crashed run's changes in effect,
    /// and changes put back whose lines the ledger could not take), then put back what
    /// is in effect.
    pub fn recover(&mut self) -> Vec<Outcome> {
        if let Some(b) = self.billing.as_mut() {
            bill_owed(&self.enforcer, b, now_ms());
        }
        self.settle();
        self.enforcer.restore_all()
    }

    /// The actions the journal holds, with their outcomes (what the controller is told
    /// again at start and at exit).
    pub fn history(&self) -> Vec<(Action, Outcome)> {
        self.enforcer.history()
    }

    /// Puts back everything this agent changed (clean exit, SIGTERM).
    pub fn restore_all(&mut self) -> Vec<Outcome> {
        let now = now_ms();
        if let Some(b) = self.billing.as_mut() {
            bill_owed(&self.enforcer, b, now);
        }
        self.settle();
        let out = self.enforcer.restore_all();
        if let Some(b) = self.billing.as_mut() {
            b.close(now);
        }
        self.settle();
        out
    }

    /// Steps of the wall clock since the last tick: billing leaves a forward step's
    /// span unbilled, and each is said in the log and counted.
    fn follow_clock_steps(&mut self) {
        for step in crate::clock::take_steps() {
            let (actions, vms) = self
                .billing
                .as_mut()
                .map_or((0, 0), |b| b.clock_stepped(&step));
            let by_s = step.by_ms() as f64 / 1000.0;
            if step.is_forward() {
                self.clock_steps[0] += 1;
                tracing::warn!(
                    by_s,
                    "the wall clock stepped forward by {by_s:.1} s: that time did not pass, so it is not billed ({actions} actions in effect, {vms} VMs metered)"
                );
            } else {
                self.clock_steps[1] += 1;
                tracing::warn!(
                    by_s,
                    "the wall clock stepped back by {:.1} s: the stretch it lives again was billed once already, so billing resumes when the clock is past it ({actions} actions in effect, {vms} VMs metered, up to that long unbilled)",
                    -by_s
                );
            }
        }
    }

    pub fn render_into(&self, w: &mut TextWriter) {
        {
            let mut f = w.counter(
                "interference_clock_steps_total",
                "Steps of the wall clock found against the monotonic clock, by direction (forward, back); billing never bills the span of a forward step.",
            );
            f.sample(&[("direction", "forward")], self.clock_steps[0]);
            f.sample(&[("direction", "back")], self.clock_steps[1]);
        }
        {
            let mut f = w.counter(
                "interference_actions_total",
                "Mitigation actions by VM changed, action and result (applied, simulated, failed).",
            );
            for ((vm, action, result), n) in &self.counts {
                f.sample(&[("vm", vm), ("action", action), ("result", result)], *n);
            }
        }
        if !self.forecast_outcomes.is_empty() {
            let mut f = w.counter(
                "interference_forecast_outcomes_total",
                "Forecasts that started a mitigation, by what became of them: confirmed (the contention came within the horizon), missed (it did not: rolled back), withdrawn (the pair calmed down first).",
            );
            for (result, n) in &self.forecast_outcomes {
                f.sample(&[("result", result)], *n);
            }
        }
        if !self.migration_ends.is_empty() || self.migrations.in_flight() > 0 {
            {
                let mut f = w.counter(
                    "interference_migrations_total",
                    "Live migrations this agent started and followed to their end, by result (migrated, failed).",
                );
                for (result, n) in &self.migration_ends {
                    f.sample(&[("result", result)], *n);
                }
            }
            let mut f = w.gauge(
                "interference_migrations_in_flight",
                "Live migrations started and not ended yet.",
            );
            f.sample(&[], self.migrations.in_flight() as u64);
        }
        if let Some(b) = &self.billing {
            crate::export::prometheus::render_billing(w, &b.metrics());
        }
    }
}

/// End, in billing, every applied action the journal still owes (adopted when this run
/// did not apply it): one that may be in effect ends at `now_ms`, one already put back
/// when it was put back; and every action being metered ends at `now_ms`. Call before
/// restoring them; the ledger's idempotent ids make a second call harmless.
pub fn bill_owed(enforcer: &Enforcer, billing: &mut Billing, now_ms: u64) {
    for owed in enforcer.owed() {
        billing.adopt(&owed.action, &owed.outcome);
        billing.end(&owed.action.id, owed.ended_ms.unwrap_or(now_ms).min(now_ms));
    }
    let open: Vec<String> = billing.open_actions().map(str::to_owned).collect();
    for id in open {
        billing.end(&id, now_ms);
    }
}

/// The policy's view of each VM: inventory facts (its SLA tier from its customer's),
/// the last tick's sample, its guest memory and its customer's requests.
fn vm_inputs(
    vms: &[Vm],
    samples: &[VmSample],
    memory: &BTreeMap<String, GuestMemory>,
    policy: &PolicyConfig,
    influence: &Influence,
    now_ms: u64,
) -> Vec<VmInput> {
    vms.iter()
        .map(|vm| {
            let s = samples.iter().find(|s| s.vm == vm.name);
            let m = memory.get(&vm.name);
            VmInput {
                name: vm.name.clone(),
                customer: vm.customer.clone(),
                priority: vm.priority,
                sla_tier: policy.tier_of(vm.customer.as_deref()).map(str::to_owned),
                cpu_cores: s
                    .and_then(|s| {
                        let cpu = s.cpu.as_ref()?;
                        (s.interval_seconds > 0.0).then(|| cpu.usage_seconds / s.interval_seconds)
                    })
                    .unwrap_or(0.0),
                // Usage plus run-queue wait: what the VM would use uncontended. `runqueue`
                // already sums every tracked thread (vCPUs and `other_threads` alike),
                // so `other_threads` is not added again. Without the usage the demand is
                // unknown (0): the waits alone would understate it.
                cpu_demand_cores: s
                    .and_then(|s| {
                        let cpu = s.cpu.as_ref()?;
                        (s.interval_seconds > 0.0).then(|| {
                            (cpu.usage_seconds + s.runqueue.wait_seconds) / s.interval_seconds
                        })
                    })
                    .unwrap_or(0.0),
                cpu_weight: None,
                cpuset: s.and_then(|s| s.cpus.clone()),
                memory_bytes: m.map(|m| m.actual_bytes),
                memory_allocated_bytes: vm.allocation.memory_bytes,
                memory_floor_bytes: m.and_then(|m| m.floor_bytes),
                has_qmp: vm.qmp_socket.is_some(),
                vcpus: vm.vcpus(),
                no_donor: no_donor(influence, vm),
                priority_until_ms: priority_until(influence, vm, now_ms),
            }
        })
        .collect()
}

fn names(r: &VmRef, vm: &Vm) -> bool {
    r.matches(vm.customer.as_deref(), &vm.name, vm.uuid.as_deref())
}

/// Whether the VM's customer opted it (or all its VMs) out of being a donor.
fn no_donor(influence: &Influence, vm: &Vm) -> bool {
    vm.customer
        .as_ref()
        .is_some_and(|c| influence.no_donor_customers.contains(c))
        || influence.no_donor_vms.iter().any(|r| names(r, vm))
}

/// The end of the VM's priority request in force at `now_ms`, if any.
fn priority_until(influence: &Influence, vm: &Vm, now_ms: u64) -> Option<u64> {
    influence
        .priority
        .iter()
        .filter(|g| g.start_ms <= now_ms && now_ms < g.until_ms && names(&g.vm, vm))
        .map(|g| g.until_ms)
        .max()
}

/// Each VM's allocation, for the base price.
fn vm_usage(vms: &[&Vm]) -> Vec<VmUsage> {
    vms.iter()
        .map(|vm| VmUsage {
            vm: vm.name.clone(),
            customer: vm.customer.clone(),
            vcpus: vm.vcpus(),
            memory_bytes: vm.allocation.memory_bytes,
        })
        .collect()
}

/// One line per decision, the same fields in text and JSON logs, so that an operator
/// can `grep ' applied: ' | grep pair=web-1/` or filter a log pipeline on `rung`:
/// `h1-12-0 applied: <reason> action=h1-12-0 pair=web-1/batch-3 score=62.1
/// rung=weight change=cpu_weight vm=web-1 result=applied`.
fn log_decision(action: &Action, outcome: &Outcome) {
    let pair = format!("{}/{}", action.victim, action.aggressor);
    let score = format!("{:.1}", action.score);
    let rung = format!("{:?}", action.rung).to_lowercase();
    macro_rules! decision {
        ($level:ident, $($message:tt)+) => {
            tracing::$level!(
                action = %action.id,
                pair = %pair,
                score = %score,
                rung = %rung,
                change = %action.change.name(),
                vm = %action.vm,
                result = %outcome.result.as_str(),
                $($message)+
            )
        };
    }
    match outcome.result {
        ActionResult::Failed => decision!(
            warn,
            "{} failed: {} ({})",
            action.id,
            action.reason,
            outcome.error.as_deref().unwrap_or("no reason given")
        ),
        r => decision!(info, "{} {}: {}", action.id, r.as_str(), action.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_balloon_saying_more_than_the_vm_was_started_with_is_bounded() {
        const GIB: u64 = 1 << 30;
        let mut m = GuestMemory {
            actual_bytes: 64 * GIB,
            floor_bytes: None,
            stats_age: None,
        };
        assert!(bound_to_allocation(&mut m, GIB));
        assert_eq!(m.actual_bytes, GIB);
        assert!(!bound_to_allocation(&mut m, GIB), "exactly -m is the truth");
        m.actual_bytes = GIB / 2;
        assert!(!bound_to_allocation(&mut m, GIB));
        assert_eq!(m.actual_bytes, GIB / 2);
    }
}
