//! The pricing formulas: from an applied action (or a VM's allocation) and one
//! segment of time to ledger lines. Pure functions of their inputs: the same action
//! and segment always give the same lines with the same ids, which is what lets a
//! restarted agent post what a crashed one may or may not have posted.
//!
//! For an action, with q the pricing quantity of the segment (units per hour while in
//! effect × hours; 1 for a migration), p the list unit price of its rung, f the
//! performance-impact factor and s the pair's Contention Score:
//!
//! - IMC = q × p × (1 + f × s / 100), charged to the protected VM's customer;
//! - credit = −IMC × r to the customer whose resources were used, r the credit ratio,
//!   or the aggressor credit ratio when that VM was the aggressor of the pair.
//!
//! Each amount is rounded once, to the nano.

use super::alias::Aliases;
use super::config::{BillingConfig, Payer};
use super::describe::{self, Subject};
use super::money::Money;
use super::period::{rfc3339, Segment};
use super::record::{ChargeCategory, LedgerRecord, LineKind, ResourceDelta, Role};
use crate::action::{Action, Change, Effect};
use crate::cpu_list::CpuList;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const PROVIDER: &str = "interference";

/// An action that was applied, as billing sees it: plain data from the policy's
/// action and the enforcer's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Billable {
    pub action: Action,
    /// When it took effect (the outcome's time).
    pub applied_ms: u64,
    /// What it changed (values before and after).
    pub effects: Vec<Effect>,
}

impl Billable {
    /// A migration is billed once, when applied; everything else by time in effect.
    pub fn one_off(&self) -> bool {
        matches!(self.action.change, Change::Migrate { .. })
    }
}

/// One VM's allocation, for the base price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmUsage {
    pub vm: String,
    pub customer: Option<String>,
    pub vcpus: Option<u32>,
    pub memory_bytes: Option<u64>,
}

/// Prices lines for one host.
#[derive(Debug, Clone, Copy)]
pub struct Pricer<'a> {
    pub config: &'a BillingConfig,
    pub host: &'a str,
    pub aliases: &'a Aliases,
}

/// The VMs of an action and their customers.
struct Parties<'a> {
    protected: &'a str,
    /// The pair's other VM.
    other: &'a str,
    changed: &'a str,
    /// Whose resources were used: the changed VM, or the other one when the change
    /// raised the protected VM itself.
    credited: &'a str,
}

impl<'a> Parties<'a> {
    fn of(a: &'a Action) -> Self {
        let other = if a.protects == a.victim {
            &a.aggressor
        } else {
            &a.victim
        };
        let credited = if a.vm != a.protects { &a.vm } else { other };
        Self {
            protected: &a.protects,
            other,
            changed: &a.vm,
            credited,
        }
    }
}

impl Pricer<'_> {
    fn customer<'c>(&'c self, a: &'c Action, vm: &str) -> &'c str {
        a.customers
            .get(vm)
            .map_or(self.config.default_customer.as_str(), String::as_str)
    }

    /// The charge and the credit of `b` over `seg` (ids `<action>/<slot>/charge|credit`).
    pub fn action_lines(&self, b: &Billable, seg: Segment) -> [LedgerRecord; 2] {
        let a = &b.action;
        let p = Parties::of(a);
        let kind = a.change.name();
        let (unit, unit_price, sku) = self.rung_price(&a.change);
        let delta = resource_delta(a, &b.effects);
        let hours = seg.hours();
        let quantity = if b.one_off() {
            delta.per_hour
        } else {
            delta.per_hour * hours
        };
        let score = a.score.clamp(0.0, 100.0);
        let multiplier = 1.0 + self.config.performance_impact_factor * f64::from(score) / 100.0;
        let list_cost = money(quantity * unit_price);
        let imc = money(quantity * unit_price * multiplier);
        let credited_is_aggressor = p.credited == a.aggressor;
        // A VM its customer opted out of being a donor is never credited.
        let opted_out = a.not_donors.iter().any(|v| v == p.credited);
        let (role, ratio) = match (credited_is_aggressor, opted_out) {
            (_, true) => (
                if credited_is_aggressor {
                    Role::Aggressor
                } else {
                    Role::GoodNeighbour
                },
                0.0,
            ),
            (true, false) => (Role::Aggressor, self.config.aggressor_credit_ratio),
            (false, false) => (Role::GoodNeighbour, self.config.credit_ratio),
        };
        let credit = -imc.scale(ratio);
        let cur = &self.config.currency;
        let seconds = seg.seconds();
        let quantity_text = if b.one_off() {
            format!("{quantity} {unit}")
        } else {
            format!(
                "{quantity:.6} {unit} ({} per hour × {hours:.6} h)",
                trim(delta.per_hour)
            )
        };
        let charge_formula = format!(
            "IMC = quantity × unit price × (1 + impact factor × score / 100) = {quantity_text} × {} {cur} × (1 + {} × {score:.1} / 100) = {imc} {cur}",
            money(unit_price),
            self.config.performance_impact_factor,
        );
        let credit_formula =
            format!("credit = −IMC × credit ratio = −{imc} {cur} × {ratio} = {credit} {cur}");

        let payer = self.customer(a, p.protected);
        let creditor = self.customer(a, p.credited);
        let shown =
            |viewer: &str, vm: &str| self.aliases.shown_to(viewer, vm, self.customer(a, vm));
        let direction = |viewer: &str| {
            format!(
                "{} slowed by {}",
                shown(viewer, &a.victim),
                shown(viewer, &a.aggressor)
            )
        };

        let charge_neighbour = shown(payer, p.other);
        let charge_subject = if p.changed == p.protected {
            Subject::Own
        } else {
            Subject::Neighbour(&charge_neighbour)
        };
        let charge_text = describe::charge(
            p.protected,
            &charge_neighbour,
            charge_subject,
            kind,
            Some(&delta),
            seconds,
            score,
        );
        let credit_neighbour = shown(creditor, p.protected);
        let credit_subject = if p.changed == p.credited {
            Subject::Own
        } else {
            Subject::Neighbour(&credit_neighbour)
        };
        let mut credit_text = describe::credit(
            p.credited,
            &credit_neighbour,
            credit_subject,
            kind,
            Some(&delta),
            seconds,
            role,
            ratio,
        );
        if opted_out {
            credit_text.push_str(" You opted this VM out of being a donor, so it earns no credit.");
        }

        let base = |customer: &str, vm: &str, side: LineKind| LedgerRecord {
            payer: Default::default(),
            record_id: format!("{}/{}/{}", a.id, seg.slot_ms, side.as_str()),
            billing_account_id: customer.to_owned(),
            billing_currency: cur.clone(),
            billing_period_start: rfc3339(seg.period().start_ms()),
            billing_period_end: rfc3339(seg.period().end_ms()),
            charge_period_start: rfc3339(seg.start_ms),
            charge_period_end: rfc3339(seg.end_ms),
            charge_category: ChargeCategory::Usage,
            charge_frequency: if b.one_off() {
                "One-Time"
            } else {
                "Usage-Based"
            }
            .into(),
            charge_description: String::new(),
            service_name: "Interference Mitigation".into(),
            service_category: "Compute".into(),
            provider_name: PROVIDER.into(),
            resource_id: format!("{}/{vm}", self.host),
            resource_name: vm.to_owned(),
            resource_type: "Virtual Machine".into(),
            sku_id: sku.into(),
            pricing_unit: unit.into(),
            pricing_quantity: quantity,
            consumed_unit: unit.into(),
            consumed_quantity: quantity,
            list_unit_price: money(unit_price),
            list_cost,
            billed_cost: imc,
            effective_cost: imc,
            contracted_cost: imc,
            host: self.host.to_owned(),
            period: seg.period(),
            kind: side,
            action_id: Some(a.id.clone()),
            action: Some(kind.into()),
            role: None,
            neighbor: None,
            changed_vm: Some(shown(customer, p.changed)),
            direction: Some(direction(customer)),
            contention_score: Some(score),
            trigger: Some(a.trigger),
            unobservable: a.unobservable.clone(),
            resource_delta: Some(delta.clone()),
            duration_seconds: seconds,
            clock_skipped_seconds: skipped_seconds(&seg),
            impact_multiplier: Some(multiplier),
            imc: Some(imc),
            credit_ratio: None,
            formula: String::new(),
            last_segment: false,
        };
        if a.payer == Payer::Reduced {
            // The reduced VM's customer pays the IMC; the protected side's line is
            // kept (same ids), at nothing, so that both sides read what happened.
            let mut charge = base(creditor, p.credited, LineKind::Charge);
            charge.role = Some(role);
            charge.neighbor = Some(credit_neighbour.clone());
            charge.charge_description = describe::charge_reduced(
                p.credited,
                &credit_neighbour,
                if p.changed == p.credited {
                    Subject::Own
                } else {
                    Subject::Neighbour(&credit_neighbour)
                },
                kind,
                Some(&delta),
                seconds,
                score,
            );
            charge.formula = charge_formula;
            charge.payer = Payer::Reduced;
            let mut free = base(payer, p.protected, LineKind::Credit);
            free.charge_category = ChargeCategory::Credit;
            free.role = Some(Role::Protected);
            free.neighbor = Some(charge_neighbour.clone());
            free.list_cost = Money::ZERO;
            free.billed_cost = Money::ZERO;
            free.effective_cost = Money::ZERO;
            free.contracted_cost = Money::ZERO;
            free.credit_ratio = Some(0.0);
            free.charge_description = describe::protected_free(
                p.protected,
                &charge_neighbour,
                if p.changed == p.protected {
                    Subject::Own
                } else {
                    Subject::Neighbour(&charge_neighbour)
                },
                kind,
                Some(&delta),
                seconds,
            );
            free.formula = format!(
                "the reduced VM pays: no charge here = −IMC × 0 = −{imc} {cur} × 0 = 0 {cur}"
            );
            free.payer = Payer::Reduced;
            if let Some(note) = clock_note(&seg) {
                charge.charge_description.push_str(&note);
                free.charge_description.push_str(&note);
            }
            return [charge, free];
        }
        let mut charge = base(payer, p.protected, LineKind::Charge);
        charge.role = Some(Role::Protected);
        charge.neighbor = Some(charge_neighbour.clone());
        charge.charge_description = charge_text;
        charge.formula = charge_formula;

        let mut cr = base(creditor, p.credited, LineKind::Credit);
        cr.charge_category = ChargeCategory::Credit;
        cr.role = Some(role);
        cr.neighbor = Some(credit_neighbour.clone());
        cr.list_cost = Money::ZERO;
        cr.billed_cost = credit;
        cr.effective_cost = credit;
        cr.contracted_cost = credit;
        cr.credit_ratio = Some(ratio);
        cr.charge_description = credit_text;
        cr.formula = credit_formula;
        if let Some(note) = clock_note(&seg) {
            charge.charge_description.push_str(&note);
            cr.charge_description.push_str(&note);
        }
        [charge, cr]
    }

    /// Base price of `u` over `seg`, observed from `observed_from_ms` in this run:
    /// a vCPU line and, when the memory size is known, a memory line.
    pub fn base_lines(
        &self,
        u: &VmUsage,
        seg: Segment,
        observed_from_ms: u64,
    ) -> Vec<LedgerRecord> {
        let customer = u
            .customer
            .clone()
            .unwrap_or_else(|| self.config.default_customer.clone());
        let hours = seg.hours();
        let seconds = seg.seconds();
        let mut out = Vec::with_capacity(2);
        let mut line = |what: &str,
                        sku: &str,
                        unit: &str,
                        per_hour: f64,
                        price: f64,
                        amount: String| {
            let quantity = per_hour * hours;
            let cost = money(quantity * price);
            let cur = &self.config.currency;
            out.push(LedgerRecord {
                payer: Default::default(),
                record_id: format!(
                    "base/{}/{}/{}/{observed_from_ms}/{what}",
                    self.host, u.vm, seg.slot_ms
                ),
                billing_account_id: customer.clone(),
                billing_currency: cur.clone(),
                billing_period_start: rfc3339(seg.period().start_ms()),
                billing_period_end: rfc3339(seg.period().end_ms()),
                charge_period_start: rfc3339(seg.start_ms),
                charge_period_end: rfc3339(seg.end_ms),
                charge_category: ChargeCategory::Usage,
                charge_frequency: "Usage-Based".into(),
                charge_description: format!(
                    "Your VM {} ran with {amount} for {}.{}",
                    u.vm,
                    describe::duration(seconds),
                    clock_note(&seg).unwrap_or_default()
                ),
                service_name: "Virtual Machines".into(),
                service_category: "Compute".into(),
                provider_name: PROVIDER.into(),
                resource_id: format!("{}/{}", self.host, u.vm),
                resource_name: u.vm.clone(),
                resource_type: "Virtual Machine".into(),
                sku_id: sku.into(),
                pricing_unit: unit.into(),
                pricing_quantity: quantity,
                consumed_unit: unit.into(),
                consumed_quantity: quantity,
                list_unit_price: money(price),
                list_cost: cost,
                billed_cost: cost,
                effective_cost: cost,
                contracted_cost: cost,
                host: self.host.to_owned(),
                period: seg.period(),
                kind: LineKind::Base,
                action_id: None,
                action: None,
                role: None,
                neighbor: None,
                changed_vm: None,
                direction: None,
                contention_score: None,
                trigger: None,
                unobservable: Vec::new(),
                resource_delta: None,
                duration_seconds: seconds,
                clock_skipped_seconds: skipped_seconds(&seg),
                impact_multiplier: None,
                imc: None,
                credit_ratio: None,
                formula: format!(
                    "cost = {} {unit_short} × {hours:.6} h × {} {cur} = {quantity:.6} {unit} × {} {cur} = {cost} {cur}",
                    trim(per_hour),
                    money(price),
                    money(price),
                    unit_short = unit.trim_end_matches("-Hours"),
                ),
                last_segment: false,
            });
        };
        let vcpus = u.vcpus.unwrap_or(1);
        let note = if u.vcpus.is_some() {
            ""
        } else {
            " (count unknown, 1 assumed)"
        };
        line(
            "vcpu",
            "vm-vcpu",
            "vCPU-Hours",
            f64::from(vcpus),
            self.config.prices.vcpu_hour,
            format!("{vcpus} vCPU{}{note}", if vcpus == 1 { "" } else { "s" }),
        );
        if let Some(bytes) = u.memory_bytes {
            let gib = bytes as f64 / GIB;
            line(
                "memory",
                "vm-memory",
                "GiB-Hours",
                gib,
                self.config.prices.gib_hour,
                format!("{} GiB of memory", trim(gib)),
            );
        }
        out
    }

    /// (pricing unit, list price per unit, SKU) of an action's rung.
    fn rung_price(&self, c: &Change) -> (&'static str, f64, &'static str) {
        let p = &self.config.prices;
        match c {
            Change::CpuWeight { .. } => ("vCPU-Hours", p.cpu_weight_vcpu_hour, "imc-cpu-weight"),
            Change::Cpuset { .. } => ("CPU-Hours", p.pinned_cpu_hour, "imc-cpu-pinning"),
            Change::Balloon { .. } => ("GiB-Hours", p.balloon_gib_hour, "imc-balloon"),
            Change::Migrate { .. } => ("Migrations", p.migration, "imc-live-migration"),
            Change::Rollback { .. } => ("None", 0.0, "none"),
        }
    }
}

/// What `a` changed, in pricing units per hour, from its effects' values before.
pub fn resource_delta(a: &Action, effects: &[Effect]) -> ResourceDelta {
    let own = a.vm == a.protects;
    match &a.change {
        Change::CpuWeight { weight } => {
            let before = effects
                .iter()
                .find_map(|e| e.before.weight())
                .unwrap_or(crate::cpu_weight::WEIGHT_DEFAULT);
            let (lo, hi) = (before.min(*weight), before.max(*weight));
            let moved = if hi == 0 {
                0.0
            } else {
                1.0 - lo as f64 / hi as f64
            };
            let vcpus = a.vcpus.unwrap_or(1);
            let known = if a.vcpus.is_some() {
                ""
            } else {
                ", vCPU count unknown so 1 assumed"
            };
            ResourceDelta {
                what: "CPU weight".into(),
                before: before.to_string(),
                after: weight.to_string(),
                per_hour: f64::from(vcpus) * moved,
                basis: format!(
                    "{vcpus} vCPU × {}% of the weight moved (1 − {lo}/{hi}){known}",
                    trim(moved * 100.0)
                ),
            }
        }
        Change::Cpuset { cpus } => {
            let before: CpuList = effects
                .iter()
                .filter_map(|e| e.before.cpus())
                .flat_map(CpuList::iter)
                .collect();
            let (n, basis) = if own {
                (
                    cpus.len(),
                    format!("{} CPU(s) reserved for the protected VM", cpus.len()),
                )
            } else {
                let lost = before.difference(cpus).len();
                (lost, format!("{lost} CPU(s) taken away"))
            };
            ResourceDelta {
                what: "CPUs".into(),
                before: before.to_string(),
                after: cpus.to_string(),
                per_hour: n as f64,
                basis,
            }
        }
        Change::Balloon { target_bytes } => {
            let before = effects
                .iter()
                .find_map(|e| e.before.bytes())
                .unwrap_or(*target_bytes);
            let gib = before.saturating_sub(*target_bytes) as f64 / GIB;
            ResourceDelta {
                what: "memory".into(),
                before: format!("{} MiB", before >> 20),
                after: format!("{} MiB", target_bytes >> 20),
                per_hour: gib,
                basis: format!("{} GiB ballooned away", trim(gib)),
            }
        }
        Change::Migrate { uri, .. } => ResourceDelta {
            what: "host".into(),
            before: "this host".into(),
            after: uri.clone(),
            per_hour: 1.0,
            basis: "one live migration".into(),
        },
        Change::Rollback { action_id } => ResourceDelta {
            what: "rollback".into(),
            before: action_id.clone(),
            after: String::new(),
            per_hour: 0.0,
            basis: "a rollback is not priced".into(),
        },
    }
}

/// `x_ClockSkippedSeconds`: present only when the clock stepped inside `seg`.
fn skipped_seconds(seg: &Segment) -> Option<f64> {
    (seg.skipped_ms > 0).then(|| seg.skipped_ms as f64 / 1000.0)
}

/// What a line says when the host's clock stepped forward inside its segment.
fn clock_note(seg: &Segment) -> Option<String> {
    skipped_seconds(seg).map(|s| {
        format!(
            " The host's clock was set forward by {} inside this period: that time did not pass and is not billed.",
            describe::duration(s)
        )
    })
}

/// An amount in money, zero when it cannot be one (not finite, out of range).
fn money(units: f64) -> Money {
    Money::from_units(units).unwrap_or(Money::ZERO)
}

/// A number with at most six decimals and no trailing zeros.
fn trim(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.to_owned()
    }
}
