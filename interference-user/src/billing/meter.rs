//! Billing inside the agent: meters each VM's allocation and each applied action's
//! time in effect, cuts both into charge segments, and posts their lines.
//!
//! When lines are posted:
//! - an action's completed segments at each tick while it is in effect, and the rest
//!   when it ends, *before* it is undone (rollback, clean exit, restore at start), its
//!   last segment's lines marked `x_LastSegment`. Billing first means a crash between
//!   the two leaves the action in effect in the journal; the restarted agent ends it
//!   again, finds the marked lines and bills nothing more. A crash before the end
//!   was billed leaves no mark: the restart bills from where the ledger stops (same
//!   segment ids, so what was posted is skipped) to the restore. So an applied
//!   action always ends up with its lines, each once, tiling its time in effect;
//! - a migration once, when applied (it cannot be undone);
//! - a VM's base price for each completed segment, and the partial one when the VM
//!   leaves or the agent exits. A crash loses at most one charge interval of base
//!   usage per VM (never bills it twice: base ids carry the run's first observation).
//!
//! Simulated actions (dry run) are priced the same way and logged, and counted under
//! `simulated_*` kinds in the metric, but never written. Failed actions are not priced.
//!
//! A line the ledger could not take (disk full, read-only) is kept in the backlog and
//! retried with backoff (one tick, then doubling up to 8 ticks and at most a minute),
//! said every tick in the
//! log and in `interference_ledger_write_errors_total` and
//! `interference_ledger_backlog_lines`. What it owes is not lost when the agent dies:
//! an action is owed in the journal until [`Billing::take_settled`] says its last
//! segment is in the ledger, and the next start bills it again from there (a one-off
//! migration's lines count as its last segment). Only base lines live in memory
//! alone: a crash during an outage loses the backlogged base usage, never bills it
//! twice.

use std::collections::{BTreeMap, BTreeSet};

use tracing::{info, warn};

use super::alias::Aliases;
use super::config::BillingConfig;
use super::ledger::{Ledger, LedgerError};
use super::money::Money;
use super::period::{segments, segments_except, Period, Segment};
use super::price::{Billable, Pricer, VmUsage};
use super::record::{LedgerRecord, LineKind};
use crate::clock::Step;
use crate::policy::{Action, ActionResult, Change, Outcome};

/// An action in effect (or simulated as if it were).
#[derive(Debug)]
struct Open {
    billable: Billable,
    simulated: bool,
    /// Billed up to here.
    posted_until_ms: u64,
    /// Spans after `posted_until_ms` the wall clock stepped over: not billed.
    holes: Vec<(u64, u64)>,
    /// The latest tick's clock while it was open: after a step back, the time it was
    /// in effect goes to here, not only to the earlier clock it ends at.
    seen_until_ms: u64,
}

/// A VM's allocation observed without a break since `observed_from_ms`.
#[derive(Debug)]
struct Meter {
    usage: VmUsage,
    observed_from_ms: u64,
    /// Billed up to here.
    posted_until_ms: u64,
    last_seen_ms: u64,
}

#[derive(Debug)]
pub struct Billing {
    config: BillingConfig,
    host: String,
    /// None in a dry run: nothing is written.
    ledger: Option<Ledger>,
    aliases: Aliases,
    open: BTreeMap<String, Open>,
    meters: BTreeMap<String, Meter>,
    unposted: Vec<LedgerRecord>,
    /// `interference_imc_currency_total{customer,kind}`.
    totals: BTreeMap<(String, &'static str), Money>,
    /// A gap between ticks longer than this is not billed as observed time.
    max_gap_ms: u64,
    /// Actions whose last segment the ledger now holds (see [`Billing::take_settled`]).
    settled: BTreeSet<String>,
    /// The latest tick's clock, for the retry backoff.
    now_ms: u64,
    /// Consecutive failed writes, and when the next attempt is due.
    failures: u32,
    retry_at_ms: u64,
    /// `interference_ledger_write_errors_total`.
    write_errors: u64,
    /// The latest write error, for the per-tick warning.
    last_error: Option<String>,
}

/// The longest wait between two attempts to write a backlog: 8 ticks, at most this.
const MAX_BACKOFF_MS: u64 = 60_000;
const MAX_BACKOFF_TICKS: u64 = 8;

impl Billing {
    /// Open the ledger in `config.ledger_dir` (none when `dry_run`).
    pub fn open(config: BillingConfig, host: &str, dry_run: bool) -> Result<Self, LedgerError> {
        let (ledger, aliases) = if dry_run {
            (None, Aliases::ephemeral())
        } else {
            let l = Ledger::open(&config.ledger_dir)?;
            let a = l.aliases().clone();
            (Some(l), a)
        };
        Ok(Self {
            host: host.to_owned(),
            ledger,
            aliases,
            open: BTreeMap::new(),
            meters: BTreeMap::new(),
            unposted: Vec::new(),
            totals: BTreeMap::new(),
            max_gap_ms: 60_000,
            settled: BTreeSet::new(),
            now_ms: 0,
            failures: 0,
            retry_at_ms: 0,
            write_errors: 0,
            last_error: None,
            config,
        })
    }

    /// The collector's tick: a longer gap than a few ticks is a stall, not use.
    pub fn set_tick_ms(&mut self, tick_ms: u64) {
        self.max_gap_ms = (tick_ms * 3).max(1000);
    }

    pub fn config(&self) -> &BillingConfig {
        &self.config
    }

    /// Writes nothing (dry run).
    pub fn is_dry_run(&self) -> bool {
        self.ledger.is_none()
    }

    #[cfg(test)]
    pub(crate) fn ledger_mut(&mut self) -> Option<&mut Ledger> {
        self.ledger.as_mut()
    }

    /// Lines waiting for the ledger (its disk full or read-only).
    pub fn backlog_lines(&self) -> usize {
        self.unposted.len()
    }

    /// Why no new charged mitigation may start now, if it may not: more lines wait for
    /// the ledger than `[billing] max_unbilled_lines`.
    pub fn holds_new_charges(&self) -> Option<String> {
        let n = self.unposted.len();
        (n > self.config.max_unbilled_lines).then(|| {
            format!(
                "{n} ledger lines wait to be written (more than [billing] max_unbilled_lines = {}): no new charged mitigation until the ledger takes them{}",
                self.config.max_unbilled_lines,
                self.last_error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )
        })
    }

    /// The actions whose last segment (or one-off lines) the ledger has synced since
    /// the last call: the journal may stop owing them.
    pub fn take_settled(&mut self) -> Vec<String> {
        std::mem::take(&mut self.settled).into_iter().collect()
    }

    /// The highest run number this host's action ids carry in the ledger's files of the
    /// current and previous periods (0 in a dry run): a new run must be above it.
    pub fn max_run(&mut self, now_ms: u64) -> Result<u64, LedgerError> {
        let Some(l) = self.ledger.as_mut() else {
            return Ok(0);
        };
        let now = Period::containing(now_ms);
        l.max_run(&self.host, &[now.previous(), now])
    }

    fn pricer(&self) -> Pricer<'_> {
        Pricer {
            config: &self.config,
            host: &self.host,
            aliases: &self.aliases,
        }
    }

    /// What became of an action the enforcer was given. An applied (or simulated)
    /// change starts to be metered; a migration is billed at once; a failed action and
    /// a rollback are not priced (the rollback's original was ended by [`Billing::end`]
    /// before it was undone).
    pub fn outcome(&mut self, action: &Action, outcome: &Outcome) {
        let simulated = match outcome.result {
            ActionResult::Failed => return,
            ActionResult::Simulated => true,
            ActionResult::Applied => action.simulated,
        };
        if let Change::Rollback { action_id } = &action.change {
            if simulated {
                self.end(action_id, outcome.at_ms);
            }
            return;
        }
        self.start(action.clone(), outcome, simulated);
    }

    /// A change found in effect in the journal at start (a crashed or killed run's):
    /// metered from when it was applied, so ending it bills all its time.
    pub fn adopt(&mut self, action: &Action, applied: &Outcome) {
        if applied.result == ActionResult::Applied && !action.simulated {
            self.start(action.clone(), applied, false);
        }
    }

    fn start(&mut self, action: Action, outcome: &Outcome, simulated: bool) {
        if self.open.contains_key(&action.id) {
            return;
        }
        let billable = Billable {
            applied_ms: outcome.at_ms,
            effects: outcome.effects.clone(),
            action,
        };
        let id = billable.action.id.clone();
        if billable.one_off() {
            let seg = Segment {
                slot_ms: slot(outcome.at_ms, self.config.charge_interval_ms()),
                start_ms: outcome.at_ms,
                end_ms: outcome.at_ms,
                skipped_ms: 0,
            };
            let mut lines = self.pricer().action_lines(&billable, seg).to_vec();
            for l in &mut lines {
                l.last_segment = true;
            }
            self.post(lines, simulated);
            return;
        }
        self.open.insert(
            id,
            Open {
                posted_until_ms: billable.applied_ms,
                billable,
                simulated,
                holes: Vec::new(),
                seen_until_ms: 0,
            },
        );
    }

    /// The action `action_id` ends at `at_ms`: bill what is left of it, its last
    /// segment marked as such (zero-length if nothing is left). Call before undoing
    /// it. An action whose last segment is already in the ledger is not billed again.
    pub fn end(&mut self, action_id: &str, at_ms: u64) {
        let Some(open) = self.open.remove(action_id) else {
            return;
        };
        if !open.simulated {
            if let Some(l) = self.ledger.as_mut() {
                let from = Period::containing(open.billable.applied_ms);
                let to = Period::containing(at_ms.max(open.billable.applied_ms));
                match l.ended(action_id, from, to) {
                    Ok(true) => {
                        self.settled.insert(action_id.to_owned());
                        return;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        warn!(error = %e, "cannot check whether {action_id} was billed to its end")
                    }
                }
            }
        }
        let interval = self.config.charge_interval_ms();
        let end = at_ms.max(open.posted_until_ms).max(open.seen_until_ms);
        let mut segs = segments_except(open.posted_until_ms, end, interval, &open.holes);
        if segs.is_empty() {
            segs.push(Segment {
                slot_ms: slot(end, interval),
                start_ms: end,
                end_ms: end,
                skipped_ms: 0,
            });
        }
        let mut lines = self.action_segments(&open.billable, &segs);
        let n = lines.len();
        for l in &mut lines[n.saturating_sub(2)..] {
            l.last_segment = true;
        }
        self.post(lines, open.simulated);
    }

    /// Every tick: meter the VMs present, bill completed segments, retry what the
    /// ledger could not take.
    pub fn tick(&mut self, now_ms: u64, vms: &[VmUsage]) {
        self.now_ms = now_ms;
        let interval = self.config.charge_interval_ms();
        let due = now_ms - now_ms % interval;
        let mut lines = Vec::new();
        // Actions: completed segments.
        for open in self.open.values_mut() {
            open.seen_until_ms = open.seen_until_ms.max(now_ms);
            if due > open.posted_until_ms {
                let segs = segments_except(open.posted_until_ms, due, interval, &open.holes);
                open.posted_until_ms = due;
                open.holes.retain(|&(_, to)| to > due);
                let p = Pricer {
                    config: &self.config,
                    host: &self.host,
                    aliases: &self.aliases,
                };
                for s in segs {
                    let [c, r] = p.action_lines(&open.billable, s);
                    if open.simulated {
                        log_simulated(&c);
                        log_simulated(&r);
                        add_total(&mut self.totals, &c, true);
                        add_total(&mut self.totals, &r, true);
                    } else {
                        lines.push(c);
                        lines.push(r);
                    }
                }
            }
        }
        // VMs: observed time.
        let mut seen = Vec::with_capacity(vms.len());
        for u in vms {
            seen.push(u.vm.as_str());
            match self.meters.get_mut(&u.vm) {
                Some(m) if now_ms.saturating_sub(m.last_seen_ms) <= self.max_gap_ms => {
                    m.usage = u.clone();
                    // Never back: after a step back of the clock, the VM ran until
                    // the latest clock seen (see `Billing::clock_stepped`).
                    m.last_seen_ms = m.last_seen_ms.max(now_ms);
                }
                _ => {
                    if let Some(old) = self.meters.remove(&u.vm) {
                        lines.extend(self.base_until(&old, old.last_seen_ms));
                    }
                    self.meters.insert(
                        u.vm.clone(),
                        Meter {
                            usage: u.clone(),
                            observed_from_ms: now_ms,
                            posted_until_ms: now_ms,
                            last_seen_ms: now_ms,
                        },
                    );
                }
            }
        }
        let gone: Vec<String> = self
            .meters
            .keys()
            .filter(|k| !seen.contains(&k.as_str()))
            .cloned()
            .collect();
        for vm in gone {
            if let Some(m) = self.meters.remove(&vm) {
                lines.extend(self.base_until(&m, m.last_seen_ms));
            }
        }
        let mut completed = Vec::new();
        for m in self.meters.values_mut() {
            let upto = due.min(m.last_seen_ms);
            if upto > m.posted_until_ms {
                completed.push((m.usage.clone(), m.observed_from_ms, m.posted_until_ms, upto));
                m.posted_until_ms = upto;
            }
        }
        for (usage, from, start, end) in completed {
            for s in segments(start, end, interval) {
                lines.extend(self.pricer().base_lines(&usage, s, from));
            }
        }
        self.post(lines, false);
        if !self.unposted.is_empty() {
            warn!(
                backlog = self.unposted.len(),
                "ledger: {} lines wait to be written, next attempt in {}s: {}",
                self.unposted.len(),
                self.retry_at_ms.saturating_sub(now_ms).div_ceil(1000),
                self.last_error.as_deref().unwrap_or("not tried yet")
            );
        }
    }

    /// The wall clock stepped (`clock::take_steps`; call before [`Billing::tick`]).
    ///
    /// Forward: the span it stepped over did not pass. An action in effect keeps it as
    /// a hole (its interval's line bills the time on either side, and says what was
    /// skipped); a VM's base meter stops where it was last seen and starts again at the
    /// next tick, as after any gap. Back: nothing to change. The stretch of UTC the
    /// clock lives again was billed once already, and lines resume when the clock is
    /// past it, so a step back of `S` leaves up to `S` unbilled and never bills twice.
    /// Returns what the step leaves unbilled, for the log: (actions in effect, VMs).
    pub fn clock_stepped(&mut self, step: &Step) -> (usize, usize) {
        let affected = (self.open.len(), self.meters.len());
        if !step.is_forward() {
            return affected;
        }
        for open in self.open.values_mut() {
            let from = step.expected_ms.max(open.posted_until_ms);
            if step.wall_ms > from {
                open.holes.push((from, step.wall_ms));
            }
        }
        let meters = std::mem::take(&mut self.meters);
        let mut lines = Vec::new();
        for m in meters.values() {
            lines.extend(self.base_until(m, m.last_seen_ms.min(step.expected_ms)));
        }
        self.post(lines, false);
        affected
    }

    /// Clean exit: bill the VMs' partial segments (call after the actions were ended).
    pub fn close(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.retry_at_ms = 0;
        let meters = std::mem::take(&mut self.meters);
        let mut lines = Vec::new();
        for m in meters.values() {
            let end = if now_ms.saturating_sub(m.last_seen_ms) <= self.max_gap_ms {
                now_ms.max(m.last_seen_ms)
            } else {
                m.last_seen_ms
            };
            lines.extend(self.base_until(m, end));
        }
        self.post(lines, false);
        if !self.unposted.is_empty() {
            let (actions, base): (Vec<&LedgerRecord>, Vec<&LedgerRecord>) =
                self.unposted.iter().partition(|l| l.kind != LineKind::Base);
            let owed: BTreeSet<&str> = actions
                .iter()
                .filter_map(|l| l.action_id.as_deref())
                .collect();
            warn!(
                "{} ledger lines could not be written: the {} of {} actions stay owed in the journal and are billed at the next start; {} base lines are lost with this exit",
                self.unposted.len(),
                actions.len(),
                owed.len(),
                base.len()
            );
        }
    }

    /// Actions being metered (ids).
    pub fn open_actions(&self) -> impl Iterator<Item = &str> {
        self.open.keys().map(String::as_str)
    }

    fn base_until(&self, m: &Meter, end_ms: u64) -> Vec<LedgerRecord> {
        segments(m.posted_until_ms, end_ms, self.config.charge_interval_ms())
            .into_iter()
            .flat_map(|s| self.pricer().base_lines(&m.usage, s, m.observed_from_ms))
            .collect()
    }

    fn action_segments(&self, b: &Billable, segs: &[Segment]) -> Vec<LedgerRecord> {
        segs.iter()
            .flat_map(|s| self.pricer().action_lines(b, *s))
            .collect()
    }

    /// Write `lines` (or, simulated, log them), and count what was written.
    fn post(&mut self, lines: Vec<LedgerRecord>, simulated: bool) {
        if simulated || self.ledger.is_none() {
            for l in &lines {
                if l.kind != LineKind::Base {
                    log_simulated(l);
                    add_total(&mut self.totals, l, true);
                }
            }
            return;
        }
        let mut batch = std::mem::take(&mut self.unposted);
        batch.extend(lines);
        if batch.is_empty() {
            return;
        }
        if self.now_ms < self.retry_at_ms {
            // Backing off after a failure: the lines wait for the next attempt.
            self.unposted = batch;
            return;
        }
        let Some(ledger) = self.ledger.as_mut() else {
            return;
        };
        match ledger.append(&batch) {
            Ok(written) => {
                for l in &written {
                    if l.kind != LineKind::Base {
                        log_line(l, "billed");
                    }
                    add_total(&mut self.totals, l, false);
                }
                // Every line of the batch is in the ledger now (written, or there
                // already): the actions whose last segment it carries are settled.
                for l in batch.iter().filter(|l| l.last_segment) {
                    if let Some(a) = &l.action_id {
                        self.settled.insert(a.clone());
                    }
                }
                if self.failures > 0 {
                    info!(
                        "ledger: the backlog is written ({} lines) after {} failed attempts",
                        batch.len(),
                        self.failures
                    );
                }
                self.failures = 0;
                self.retry_at_ms = 0;
                self.last_error = None;
            }
            Err(e) => {
                self.write_errors += 1;
                self.failures += 1;
                let tick = self.max_gap_ms.div_ceil(3);
                let backoff = tick
                    .saturating_mul(1 << self.failures.min(16).saturating_sub(1))
                    .min(tick.saturating_mul(MAX_BACKOFF_TICKS))
                    .min(MAX_BACKOFF_MS);
                self.retry_at_ms = self.now_ms.saturating_add(backoff);
                warn!(
                    error = %e,
                    "ledger: {} lines not written (attempt {}); retried in {}s",
                    batch.len(),
                    self.failures,
                    backoff.div_ceil(1000)
                );
                self.last_error = Some(e.to_string());
                self.unposted = batch;
            }
        }
    }

    /// What the metrics file shows of billing (`export::prometheus::billing`).
    pub fn metrics(&self) -> BillingMetrics {
        BillingMetrics {
            currency: self.config.currency.clone(),
            imc: self
                .totals
                .iter()
                .map(|((customer, kind), m)| (customer.clone(), *kind, *m))
                .collect(),
            ledger: self.ledger.is_some().then_some(LedgerHealth {
                write_errors: self.write_errors,
                backlog_lines: self.unposted.len() as u64,
            }),
        }
    }
}

/// Billing as the metrics file shows it: plain data, rendered by the export stage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BillingMetrics {
    pub currency: String,
    /// IMC posted since start: (customer, kind, amount); kinds charge and credit, or
    /// simulated_charge and simulated_credit in a dry run.
    pub imc: Vec<(String, &'static str, Money)>,
    /// None in a dry run (no ledger).
    pub ledger: Option<LedgerHealth>,
}

/// Whether the ledger takes its lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerHealth {
    /// Appends that failed since start.
    pub write_errors: u64,
    /// Lines waiting to be written.
    pub backlog_lines: u64,
}

fn slot(ms: u64, interval: u64) -> u64 {
    ms - ms % interval.max(1)
}

fn add_total(
    totals: &mut BTreeMap<(String, &'static str), Money>,
    l: &LedgerRecord,
    simulated: bool,
) {
    let kind = match (l.kind, simulated) {
        (LineKind::Charge, false) => "charge",
        (LineKind::Credit, false) => "credit",
        (LineKind::Charge, true) => "simulated_charge",
        (LineKind::Credit, true) => "simulated_credit",
        (LineKind::Base, _) => return,
    };
    *totals
        .entry((l.billing_account_id.clone(), kind))
        .or_default() += l.billed_cost;
}

fn log_simulated(l: &LedgerRecord) {
    log_line(l, "dry run, would bill");
}

fn log_line(l: &LedgerRecord, what: &str) {
    info!(
        record = %l.record_id,
        customer = %l.billing_account_id,
        "{what} {} {}: {}",
        l.billed_cost,
        l.billing_currency,
        l.charge_description
    );
}
