//! Billing as a whole: the formulas reconcile (property test), the ledger keeps each
//! line once through reopenings and torn tails, the meter bills what was applied and
//! only that, invoices sum and alias.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use proptest::prelude::*;

use super::alias::Aliases;
use super::explain::{check, explain};
use super::ledger::{self, period_path, Ledger};
use super::period::{self, segments, Period};
use super::price::{Billable, Pricer, VmUsage};
use super::record::{LedgerRecord, LineKind, Role};
use super::*;
use crate::clock::Step;
use crate::policy::{Action, ActionResult, Change, Effect, Outcome, Rung};

const NOV_1_2026: u64 = 1_793_491_200_000;

fn action(
    id: &str,
    vm: &str,
    protects: &str,
    victim: &str,
    aggressor: &str,
    change: Change,
) -> Action {
    let rung = match change {
        Change::CpuWeight { .. } => Rung::Weight,
        Change::Cpuset { .. } => Rung::Pin,
        Change::Balloon { .. } => Rung::Balloon,
        _ => Rung::Migrate,
    };
    Action {
        payer: Default::default(),
        not_donors: Vec::new(),
        id: id.into(),
        decided_ms: 0,
        rung,
        change,
        vm: vm.into(),
        protects: protects.into(),
        victim: victim.into(),
        aggressor: aggressor.into(),
        score: 60.0,
        vm_is_aggressor: vm == aggressor,
        unobservable: Vec::new(),
        simulated: false,
        reason: String::new(),
        cause: None,
        customers: [
            ("vm-web".to_string(), "acme".to_string()),
            ("vm-batch".to_string(), "globex".to_string()),
        ]
        .into_iter()
        .collect(),
        vcpus: Some(2),
        trigger: Default::default(),
    }
}

fn weight_cut(id: &str) -> Action {
    action(
        id,
        "vm-batch",
        "vm-web",
        "vm-web",
        "vm-batch",
        Change::CpuWeight { weight: 10 },
    )
}

fn applied(a: &Action, at_ms: u64, before: &str) -> Outcome {
    Outcome {
        action_id: a.id.clone(),
        result: ActionResult::Applied,
        at_ms,
        effects: vec![Effect::from_texts(
            PathBuf::from("/sys/fs/cgroup/cpu/machine/vm-batch/cpu.shares"),
            before,
            "102",
        )],
        error: None,
    }
}

fn config(dir: &std::path::Path, interval_s: u64) -> BillingConfig {
    BillingConfig {
        ledger_dir: dir.to_path_buf(),
        charge_interval: std::time::Duration::from_secs(interval_s),
        ..BillingConfig::default()
    }
}

fn lines_of(dir: &std::path::Path) -> Vec<LedgerRecord> {
    let c = ledger::read(dir, None).unwrap();
    assert!(c.bad.is_empty(), "{:?}", c.bad);
    c.records
}

// ---------------------------------------------------------------- the formulas

fn arb_change() -> impl Strategy<Value = (Change, String)> {
    prop_oneof![
        (1u64..=10_000, 2u64..=262_144)
            .prop_map(|(w, shares)| (Change::CpuWeight { weight: w }, shares.to_string())),
        (
            prop::collection::btree_set(0u32..8, 1..4),
            prop::collection::btree_set(0u32..8, 1..8)
        )
            .prop_map(|(after, before)| (
                Change::Cpuset {
                    cpus: after.into_iter().collect()
                },
                interference_core::cpu_list::CpuList::new(before).to_string()
            )),
        (1u64..=64, 0u64..=64).prop_map(|(before_gib, cut)| (
            Change::Balloon {
                target_bytes: (before_gib.saturating_sub(cut).max(1)) << 30
            },
            (before_gib << 30).to_string()
        )),
        Just((
            Change::Migrate {
                uri: "tcp:10.0.0.2:4444".into(),
                vcpus: None,
                memory_mib: None
            },
            String::new()
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Per period, the charges and credits of an action add up to what the formula
    /// says for its time in that period; every line reconciles on its own; invoices
    /// are exact sums; nobody sees another customer's VM name.
    #[test]
    fn charges_and_credits_reconcile_with_the_formula(
        (change, before) in arb_change(),
        start_offset_s in 0u64..(40 * 86_400),
        duration_s in 1u64..(3 * 86_400),
        interval in prop::sample::select(vec![60u64, 900, 3600, 86_400]),
        score in 0f32..100.0,
        boost in any::<bool>(),
        victim_is_web in any::<bool>(),
        same_customer in any::<bool>(),
        credit_ratio in 0f64..=1.0,
        aggressor_ratio in 0f64..=1.0,
        impact in 0f64..2.0,
    ) {
        // Who: web is protected; the action changes web itself (a boost) or batch.
        let (victim, aggressor) = if victim_is_web { ("vm-web", "vm-batch") } else { ("vm-batch", "vm-web") };
        let vm = if boost { "vm-web" } else { "vm-batch" };
        let mut a = action("h-1-0", vm, "vm-web", victim, aggressor, change.clone());
        a.score = score;
        if same_customer {
            a.customers.insert("vm-batch".into(), "acme".into());
        }
        let b = Billable {
            applied_ms: NOV_1_2026 + start_offset_s * 1000 + 123,
            effects: vec![Effect::from_texts(
                PathBuf::from(match change {
                    Change::CpuWeight { .. } => "/x/cpu.shares",
                    Change::Cpuset { .. } => "/x/cpuset.cpus",
                    _ => "qmp:/x#balloon",
                }),
                &before,
                "",
            )],
            action: a.clone(),
        };
        let cfg = BillingConfig {
            charge_interval: std::time::Duration::from_secs(interval),
            credit_ratio,
            aggressor_credit_ratio: aggressor_ratio,
            performance_impact_factor: impact,
            ..BillingConfig::default()
        };
        let aliases = Aliases::from_key([3; 32]);
        let p = Pricer { config: &cfg, host: "h", aliases: &aliases };
        let end = b.applied_ms + duration_s * 1000;
        let segs = if b.one_off() {
            vec![Segment { slot_ms: b.applied_ms - b.applied_ms % (interval * 1000), start_ms: b.applied_ms, end_ms: b.applied_ms, skipped_ms: 0 }]
        } else {
            segments(b.applied_ms, end, interval * 1000)
        };
        let lines: Vec<LedgerRecord> = segs.iter().flat_map(|s| p.action_lines(&b, *s)).collect();

        // Ids are unique; segments tile the use.
        let ids: BTreeSet<&str> = lines.iter().map(|l| l.record_id.as_str()).collect();
        prop_assert_eq!(ids.len(), lines.len());
        if !b.one_off() {
            prop_assert_eq!(segs.first().unwrap().start_ms, b.applied_ms);
            prop_assert_eq!(segs.last().unwrap().end_ms, end);
        }

        let delta = price::resource_delta(&a, &b.effects);
        let unit_price = match change {
            Change::CpuWeight { .. } => cfg.prices.cpu_weight_vcpu_hour,
            Change::Cpuset { .. } => cfg.prices.pinned_cpu_hour,
            Change::Balloon { .. } => cfg.prices.balloon_gib_hour,
            _ => cfg.prices.migration,
        };
        let multiplier = 1.0 + impact * f64::from(score) / 100.0;
        let credited = if vm != "vm-web" { vm } else if victim == "vm-web" { aggressor } else { victim };
        let ratio = if credited == aggressor { aggressor_ratio } else { credit_ratio };

        // Per period: the sum of the lines against the formula over the period's time.
        let mut periods: BTreeMap<Period, (u64, Money, Money, usize)> = BTreeMap::new();
        for (s, pair) in segs.iter().zip(lines.chunks(2)) {
            let e = periods.entry(s.period()).or_default();
            e.0 += s.end_ms - s.start_ms;
            e.1 += pair[0].billed_cost;
            e.2 += pair[1].billed_cost;
            e.3 += 1;
            // Each segment: the credit is exactly −round(charge × ratio), to the right side.
            prop_assert_eq!(pair[0].kind, LineKind::Charge);
            prop_assert_eq!(pair[1].kind, LineKind::Credit);
            prop_assert_eq!(pair[1].billed_cost, -pair[0].billed_cost.scale(ratio));
            prop_assert_eq!(&pair[0].billing_account_id, "acme");
            let credited_customer = if credited == "vm-web" || same_customer { "acme" } else { "globex" };
            prop_assert_eq!(&pair[1].billing_account_id, credited_customer);
            prop_assert_eq!(pair[1].role, Some(if credited == aggressor { Role::Aggressor } else { Role::GoodNeighbour }));
        }
        for (period, (ms, charges, credits, n)) in &periods {
            let hours = *ms as f64 / 3_600_000.0;
            let quantity = if b.one_off() { delta.per_hour } else { delta.per_hour * hours };
            let formula = quantity * unit_price * multiplier;
            // One rounding per line (half a nano each) plus float noise.
            let tolerance = (*n as f64 + 1.0) * 1e-9 + formula.abs() * 1e-12;
            prop_assert!((charges.units() - formula).abs() <= tolerance,
                "{period}: charges {charges} vs formula {formula}");
            let credit_formula = -formula * ratio;
            prop_assert!((credits.units() - credit_formula).abs() <= tolerance * 2.0,
                "{period}: credits {credits} vs {credit_formula}");
        }

        for l in &lines {
            prop_assert!(check(l).reconciles, "{:?} does not reconcile: {:?}", l.record_id, check(l));
            // A customer sees only its own VMs by name.
            let own: &[&str] = if l.billing_account_id == "acme" {
                if same_customer { &["vm-web", "vm-batch"] } else { &["vm-web"] }
            } else { &["vm-batch"] };
            for name in ["vm-web", "vm-batch"] {
                if own.contains(&name) { continue; }
                let text = serde_json::to_string(l).unwrap();
                prop_assert!(!text.contains(name), "{} leaks {name}: {text}", l.record_id);
            }
        }

        // Invoices: per customer and period, the total is the exact sum of the lines.
        for customer in ["acme", "globex"] {
            for period in periods.keys() {
                let mine: Money = lines.iter()
                    .filter(|l| l.billing_account_id == customer && l.period == *period)
                    .map(|l| l.billed_cost).sum();
                match invoice(std::path::Path::new("/l"), &lines, customer, Some(*period)) {
                    Ok(inv) => {
                        prop_assert_eq!(inv.total, mine);
                        prop_assert_eq!(inv.total, inv.base + inv.interference_charges + inv.credits);
                        prop_assert_eq!(inv.lines.iter().map(|l| l.amount).sum::<Money>(), mine);
                    }
                    Err(_) => prop_assert!(!lines.iter().any(|l| l.billing_account_id == customer && l.period == *period)),
                }
            }
        }
    }
}

// ---------------------------------------------------------------- the ledger

#[test]
fn a_vm_opted_out_of_donating_earns_no_credit_and_its_line_says_why() {
    // The priority VM vm-batch (the aggressor) is boosted; the victim vm-web, opted
    // out, is the one whose resources were used.
    let mut a = action(
        "h-1-0",
        "vm-batch",
        "vm-batch",
        "vm-web",
        "vm-batch",
        Change::CpuWeight { weight: 1000 },
    );
    a.not_donors = vec!["vm-web".into()];
    let b = Billable {
        action: a,
        applied_ms: NOV_1_2026,
        effects: vec![Effect::from_texts(
            PathBuf::from("/sys/fs/cgroup/machine/vm-batch/cpu.weight"),
            "100",
            "1000",
        )],
    };
    let cfg = BillingConfig::default();
    let aliases = Aliases::from_key([3; 32]);
    let p = Pricer {
        config: &cfg,
        host: "h",
        aliases: &aliases,
    };
    let seg = segments(NOV_1_2026, NOV_1_2026 + 600_000, 3_600_000)[0];
    let [charge, credit] = p.action_lines(&b, seg);
    assert!(charge.billed_cost.nanos() > 0);
    assert_eq!(credit.billing_account_id, "acme");
    assert_eq!(credit.billed_cost, Money::ZERO);
    assert_eq!(credit.credit_ratio, Some(0.0));
    assert!(
        credit
            .charge_description
            .contains("opted this VM out of being a donor"),
        "{}",
        credit.charge_description
    );
    assert!(interference_core::billing::explain::check(&credit).reconciles);
}

#[test]
fn under_the_reduced_pays_rule_the_reduced_vms_customer_pays_and_every_line_says_so() {
    // vm-web (acme) protected from vm-batch (globex), whose weight is cut.
    // The rule is the action's, decided with it by the policy.
    let billable = |payer| Billable {
        action: Action {
            payer,
            ..weight_cut("h-1-0")
        },
        applied_ms: NOV_1_2026,
        effects: vec![Effect::from_texts(
            PathBuf::from("/sys/fs/cgroup/machine/vm-batch/cpu.weight"),
            "100",
            "10",
        )],
    };
    let aliases = Aliases::from_key([3; 32]);
    let seg = segments(NOV_1_2026, NOV_1_2026 + 600_000, 3_600_000)[0];
    let config = BillingConfig::default();
    let p = Pricer {
        config: &config,
        host: "h",
        aliases: &aliases,
    };
    let [c0, _] = p.action_lines(&billable(interference_core::billing::Payer::Protected), seg);
    let [charge, free] = p.action_lines(&billable(interference_core::billing::Payer::Reduced), seg);
    // The same amount, charged to the other side; same ids.
    assert_eq!(charge.record_id, c0.record_id);
    assert_eq!(charge.billed_cost, c0.billed_cost);
    assert_eq!(
        (
            c0.billing_account_id.as_str(),
            charge.billing_account_id.as_str()
        ),
        ("acme", "globex")
    );
    assert_eq!(charge.resource_name, "vm-batch");
    assert!(
        charge
            .charge_description
            .contains("the VM that was reduced pays"),
        "{}",
        charge.charge_description
    );
    assert_eq!(free.billing_account_id, "acme");
    assert_eq!(free.billed_cost, Money::ZERO);
    assert!(
        free.charge_description.contains("at no charge"),
        "{}",
        free.charge_description
    );
    for l in [&charge, &free] {
        let text = serde_json::to_string(l).unwrap();
        assert!(text.contains("\"x_Payer\":\"reduced\""), "{text}");
        assert!(
            interference_core::billing::explain::check(l).reconciles,
            "{l:?}"
        );
        assert!(
            interference_core::billing::explain::explain(l, None).contains("Rule        reduced")
        );
    }
    // The default rule writes lines as before: no x_Payer.
    assert!(!serde_json::to_string(&c0).unwrap().contains("x_Payer"));
    // The invoice says which rule applied, in its words and its lines.
    let inv = interference_core::billing::invoice(
        std::path::Path::new("l"),
        &[charge, free],
        "globex",
        None,
    )
    .unwrap();
    assert_eq!(
        inv.lines[0].payer,
        interference_core::billing::Payer::Reduced
    );
    assert!(inv.lines[0]
        .description
        .contains("the VM that was reduced pays"));
    let table = interference_core::billing::invoice::render_table(&inv);
    assert!(table.contains("Billing rule (reduced)"), "{table}");
}

#[test]
fn the_ledger_writes_each_id_once_across_reopenings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3600);
    let aliases = Aliases::from_key([1; 32]);
    let p = Pricer {
        config: &cfg,
        host: "h",
        aliases: &aliases,
    };
    let a = weight_cut("h-1-0");
    let b = Billable {
        action: a.clone(),
        applied_ms: NOV_1_2026 + 10,
        effects: applied(&a, 0, "1024").effects,
    };
    let lines: Vec<LedgerRecord> = segments(b.applied_ms, b.applied_ms + 7_200_000, 3_600_000)
        .into_iter()
        .flat_map(|s| p.action_lines(&b, s))
        .collect();
    assert_eq!(lines.len(), 6);
    {
        let mut l = Ledger::open(dir.path()).unwrap();
        assert_eq!(l.append(&lines[..4]).unwrap().len(), 4);
        assert!(matches!(
            Ledger::open(dir.path()),
            Err(LedgerError::Locked { .. })
        ));
        assert_eq!(l.append(&lines[..4]).unwrap().len(), 0, "same ids again");
    }
    let mut l = Ledger::open(dir.path()).unwrap();
    assert_eq!(
        l.append(&lines).unwrap().len(),
        2,
        "only the two new ones after reopening"
    );
    assert_eq!(lines_of(dir.path()), lines);
}

#[test]
fn a_ledger_open_for_months_keeps_three_periods_open_and_still_knows_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3600);
    let aliases = Aliases::from_key([1; 32]);
    let p = Pricer {
        config: &cfg,
        host: "h",
        aliases: &aliases,
    };
    // One action's first segment in each of six months.
    let mut l = Ledger::open(dir.path()).unwrap();
    let mut month = Period::containing(NOV_1_2026);
    let mut firsts = Vec::new();
    for i in 0..6 {
        let b = Billable {
            action: weight_cut(&format!("h-1-{i}")),
            applied_ms: month.start_ms(),
            effects: vec![],
        };
        let mut lines = p.action_lines(
            &b,
            segments(b.applied_ms, b.applied_ms + 60_000, 3_600_000)[0],
        );
        for line in &mut lines {
            line.last_segment = true;
        }
        assert_eq!(l.append(&lines).unwrap().len(), lines.len());
        assert!(l.open_periods() <= ledger::OPEN_PERIODS);
        firsts.push((month, lines));
        month = month.next();
    }
    assert_eq!(l.open_periods(), 3);
    // A closed month is read back when needed: its ids are known, nothing is posted
    // twice, and the last segments in it are found.
    let (nov, lines) = &firsts[0];
    assert!(l.contains(*nov, &lines[0].record_id).unwrap());
    assert_eq!(l.append(lines).unwrap().len(), 0, "already in November");
    assert!(l.ended("h-1-0", *nov, nov.next()).unwrap());
    assert_eq!(l.open_periods(), 3);
}

#[test]
fn a_torn_last_line_is_cut_off_and_posted_again() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3600);
    let aliases = Aliases::from_key([1; 32]);
    let p = Pricer {
        config: &cfg,
        host: "h",
        aliases: &aliases,
    };
    let a = weight_cut("h-1-0");
    let b = Billable {
        action: a.clone(),
        applied_ms: NOV_1_2026,
        effects: vec![],
    };
    let lines = p.action_lines(&b, segments(NOV_1_2026, NOV_1_2026 + 60_000, 3_600_000)[0]);
    Ledger::open(dir.path())
        .unwrap()
        .append(&lines[..1])
        .unwrap();
    let path = period_path(dir.path(), lines[0].period);
    let torn = serde_json::to_string(&lines[1]).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&torn.as_bytes()[..torn.len() / 2]);
    fs::write(&path, &bytes).unwrap();
    // A reader skips the torn tail silently; the writer cuts it and posts the line again.
    assert_eq!(lines_of(dir.path()).len(), 1);
    let mut l = Ledger::open(dir.path()).unwrap();
    assert_eq!(l.append(&lines).unwrap().len(), 1);
    assert_eq!(lines_of(dir.path()), lines.to_vec());
}

#[test]
fn a_corrupt_line_in_the_middle_is_named_and_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3600);
    let aliases = Aliases::from_key([1; 32]);
    let p = Pricer {
        config: &cfg,
        host: "h",
        aliases: &aliases,
    };
    let a = weight_cut("h-1-0");
    let b = Billable {
        action: a,
        applied_ms: NOV_1_2026,
        effects: vec![],
    };
    let lines = p.action_lines(&b, segments(NOV_1_2026, NOV_1_2026 + 60_000, 3_600_000)[0]);
    let path = period_path(dir.path(), lines[0].period);
    fs::write(
        &path,
        format!(
            "{}\n{{\"x_RecordId\": \"broken\", oops\n{}\n",
            serde_json::to_string(&lines[0]).unwrap(),
            serde_json::to_string(&lines[1]).unwrap()
        ),
    )
    .unwrap();
    let c = ledger::read(dir.path(), None).unwrap();
    assert_eq!(c.records.len(), 2);
    assert_eq!(c.bad.len(), 1);
    let msg = c.bad[0].to_string();
    assert!(
        msg.starts_with(&format!("{}:2: not a ledger record", path.display())),
        "{msg}"
    );
    // The writer keeps the line as it is and still knows the good ids.
    let mut l = Ledger::open(dir.path()).unwrap();
    assert!(l.append(&lines).unwrap().is_empty());
}

// ---------------------------------------------------------------- the meter

#[test]
fn an_applied_action_is_billed_as_it_goes_and_to_its_end_once() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = NOV_1_2026 + 3_600_000 * 5 + 1500;
    let a = weight_cut("h-7-0");
    {
        let mut b = Billing::open(config(dir.path(), 60), "h", false).unwrap();
        b.outcome(&a, &applied(&a, t0, "1024"));
        b.tick(t0 + 30_000, &[]);
        assert!(lines_of(dir.path()).is_empty(), "no segment complete yet");
        b.tick(t0 + 150_000, &[]);
        // Two complete minutes: [t0, :01:00) and [:01:00, :02:00).
        assert_eq!(lines_of(dir.path()).len(), 4);
        // Killed here: the journal still has the action in effect.
    }
    let mut b = Billing::open(config(dir.path(), 60), "h", false).unwrap();
    b.adopt(&a, &applied(&a, t0, "1024"));
    b.end(&a.id, t0 + 200_000);
    drop(b);
    let lines = lines_of(dir.path());
    assert_eq!(
        lines.len(),
        8,
        "{:#?}",
        lines.iter().map(|l| &l.record_id).collect::<Vec<_>>()
    );
    let charged: f64 = lines
        .iter()
        .filter(|l| l.kind == LineKind::Charge)
        .map(|l| l.duration_seconds)
        .sum();
    assert!((charged - 200.0).abs() < 1e-6, "{charged}");
    assert_eq!(
        lines.iter().filter(|l| l.last_segment).count(),
        2,
        "the last segment's charge and credit are marked"
    );
    // Killed again between billing its end and undoing it: the next start finds it
    // in effect, and bills nothing more.
    let mut b = Billing::open(config(dir.path(), 60), "h", false).unwrap();
    b.adopt(&a, &applied(&a, t0, "1024"));
    b.end(&a.id, t0 + 900_000);
    assert_eq!(lines_of(dir.path()), lines);
}

#[test]
fn a_ledger_that_cannot_be_written_keeps_what_is_owed_and_holds_new_charges() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = NOV_1_2026 + 3_600_000 * 5 + 1500;
    let a = weight_cut("h-9-7-0");
    let mut cfg = config(dir.path(), 60);
    cfg.max_unbilled_lines = 3;
    let mut b = Billing::open(cfg, "h", false).unwrap();
    b.set_tick_ms(1000);
    b.outcome(&a, &applied(&a, t0, "1024"));
    b.ledger_mut().unwrap().fail_appends(true);
    b.tick(t0 + 150_000, &[]);
    assert_eq!(b.backlog_lines(), 4, "two complete minutes wait");
    let why = b.holds_new_charges().expect("4 lines > 3");
    assert!(why.contains("max_unbilled_lines = 3"), "{why}");
    assert!(why.contains("No space left"), "{why}");
    // Within the backoff (1 s after the first failure) no new attempt is made.
    b.tick(t0 + 150_500, &[]);
    let metrics = |b: &Billing| {
        let mut w = crate::export::prometheus::TextWriter::new();
        crate::export::prometheus::render_billing(&mut w, &b.metrics());
        w.finish()
    };
    let text = metrics(&b);
    assert!(
        text.contains("interference_ledger_write_errors_total 1\n"),
        "{text}"
    );
    assert!(
        text.contains("interference_ledger_backlog_lines 4\n"),
        "{text}"
    );
    // The next attempt doubles the wait: 2 s.
    b.tick(t0 + 151_600, &[]);
    assert!(metrics(&b).contains("interference_ledger_write_errors_total 2\n"));
    b.tick(t0 + 152_600, &[]);
    assert!(metrics(&b).contains("interference_ledger_write_errors_total 2\n"));
    assert!(lines_of(dir.path()).is_empty());
    assert!(b.take_settled().is_empty());
    // The disk comes back: the backlog goes in at the next attempt, in order, once.
    b.ledger_mut().unwrap().fail_appends(false);
    b.tick(t0 + 154_000, &[]);
    assert_eq!(b.backlog_lines(), 0);
    assert!(b.holds_new_charges().is_none());
    assert_eq!(lines_of(dir.path()).len(), 4);
    assert!(b.take_settled().is_empty(), "not ended yet");
    b.end(&a.id, t0 + 170_000);
    assert_eq!(b.take_settled(), vec![a.id.clone()]);
    assert_eq!(lines_of(dir.path()).len(), 6);
    // Billing the same action again (a restart that finds it owed) settles it again
    // and writes nothing.
    drop(b);
    let mut b = Billing::open(config(dir.path(), 60), "h", false).unwrap();
    b.adopt(&a, &applied(&a, t0, "1024"));
    b.end(&a.id, t0 + 170_000);
    assert_eq!(b.take_settled(), vec![a.id.clone()]);
    assert_eq!(lines_of(dir.path()).len(), 6);
}

#[test]
fn a_failed_append_leaves_no_partial_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Billing::open(config(dir.path(), 60), "h", false).unwrap();
    let a = weight_cut("h-9-1-0");
    b.outcome(&a, &applied(&a, NOV_1_2026, "1024"));
    b.end(&a.id, NOV_1_2026 + 30_000);
    let before = fs::read(period_path(dir.path(), Period::containing(NOV_1_2026))).unwrap();
    b.ledger_mut().unwrap().fail_appends(true);
    let c = weight_cut("h-9-2-0");
    b.outcome(&c, &applied(&c, NOV_1_2026 + 40_000, "1024"));
    b.end(&c.id, NOV_1_2026 + 50_000);
    let after = fs::read(period_path(dir.path(), Period::containing(NOV_1_2026))).unwrap();
    assert_eq!(before, after);
    assert_eq!(b.backlog_lines(), 2);
}

#[test]
fn the_highest_run_in_the_ledger_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Billing::open(config(dir.path(), 60), "h-1", false).unwrap();
    for id in [
        "h-1-1764000000-3-0",
        "h-1-1764000042-1-1",
        "other-1764999999-1-0",
    ] {
        let a = weight_cut(id);
        b.outcome(&a, &applied(&a, NOV_1_2026, "1024"));
        b.end(&a.id, NOV_1_2026 + 30_000);
    }
    assert_eq!(b.max_run(NOV_1_2026 + 40_000).unwrap(), 1_764_000_042);
    // The next month still sees the previous one.
    assert_eq!(
        b.max_run(Period::containing(NOV_1_2026).next().start_ms() + 5)
            .unwrap(),
        1_764_000_042
    );
}

#[test]
fn failed_and_simulated_actions_are_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Billing::open(config(dir.path(), 60), "h", false).unwrap();
    let a = weight_cut("h-1-0");
    let mut failed = applied(&a, NOV_1_2026, "1024");
    failed.result = ActionResult::Failed;
    b.outcome(&a, &failed);
    let mut sim = weight_cut("h-1-1");
    sim.simulated = true;
    let mut o = applied(&sim, NOV_1_2026, "1024");
    o.result = ActionResult::Simulated;
    b.outcome(&sim, &o);
    b.tick(NOV_1_2026 + 300_000, &[]);
    b.end(&sim.id, NOV_1_2026 + 310_000);
    assert!(lines_of(dir.path()).is_empty());
    let mut w = crate::export::prometheus::TextWriter::new();
    crate::export::prometheus::render_billing(&mut w, &b.metrics());
    let text = w.finish();
    assert!(
        text.contains(
            "interference_imc_currency_total{customer=\"acme\",kind=\"simulated_charge\"}"
        ),
        "{text}"
    );
    assert!(!text.contains("kind=\"charge\""), "{text}");
}

#[test]
fn a_migration_is_billed_once_when_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Billing::open(config(dir.path(), 3600), "h", false).unwrap();
    let a = action(
        "h-2-0",
        "vm-batch",
        "vm-web",
        "vm-web",
        "vm-batch",
        Change::Migrate {
            uri: "tcp:x:1".into(),
            vcpus: None,
            memory_mib: None,
        },
    );
    let o = Outcome {
        action_id: a.id.clone(),
        result: ActionResult::Applied,
        at_ms: NOV_1_2026 + 5,
        effects: vec![],
        error: None,
    };
    b.outcome(&a, &o);
    b.adopt(&a, &o);
    b.end(&a.id, NOV_1_2026 + 90_000_000);
    let lines = lines_of(dir.path());
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].pricing_quantity, 1.0);
    assert_eq!(lines[0].charge_frequency, "One-Time");
    // migration 0.05 × (1 + 0.25 × 0.6)
    assert_eq!(lines[0].billed_cost, Money::from_units(0.0575).unwrap());
    assert_eq!(
        lines[1].billed_cost,
        Money::ZERO,
        "batch was the aggressor: ratio 0"
    );
}

#[test]
fn base_usage_is_billed_per_segment_and_on_exit() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Billing::open(config(dir.path(), 60), "h", false).unwrap();
    b.set_tick_ms(10_000);
    let web = VmUsage {
        vm: "vm-web".into(),
        customer: Some("acme".into()),
        vcpus: Some(2),
        memory_bytes: Some(4 << 30),
    };
    let t0 = NOV_1_2026 + 30_000;
    for k in 0..=9 {
        b.tick(t0 + k * 10_000, std::slice::from_ref(&web));
    }
    // Two minutes complete by the last tick (t0 is half a minute in): [t0, 1:00) and
    // [1:00, 2:00), a vCPU and a memory line each; the rest waits for its minute.
    assert_eq!(lines_of(dir.path()).len(), 4);
    b.close(t0 + 95_000);
    let lines = lines_of(dir.path());
    assert_eq!(lines.len(), 6);
    let vcpu_hours: f64 = lines
        .iter()
        .filter(|l| l.sku_id == "vm-vcpu")
        .map(|l| l.pricing_quantity)
        .sum();
    assert!(
        (vcpu_hours - 2.0 * 95.0 / 3600.0).abs() < 1e-9,
        "{vcpu_hours}"
    );
    let inv = invoice(dir.path(), &lines, "acme", None).unwrap();
    assert_eq!(inv.lines.len(), 2, "one line per VM and resource");
    assert_eq!(inv.base, inv.total);
    // vcpu 2 × 0.04 + 4 GiB × 0.005 per hour, for 95 s.
    let expect = (2.0 * 0.04 + 4.0 * 0.005) * 95.0 / 3600.0;
    assert!(
        (inv.total.units() - expect).abs() < 1e-8,
        "{} vs {expect}",
        inv.total
    );
}

#[test]
fn invoices_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Billing::open(config(dir.path(), 3600), "h", false).unwrap();
    let a = weight_cut("h-1-0");
    b.outcome(&a, &applied(&a, NOV_1_2026, "1024"));
    b.end(&a.id, NOV_1_2026 + 840_000);
    let lines = lines_of(dir.path());
    let e = invoice(dir.path(), &lines, "initech", None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no customer \"initech\"") && e.contains("acme, globex"),
        "{e}"
    );
    let e = invoice(dir.path(), &lines, "acme", Some("2026-10".parse().unwrap()))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no records for period 2026-10") && e.contains("2026-11"),
        "{e}"
    );
    let inv = invoice(dir.path(), &lines, "acme", None).unwrap();
    assert_eq!(inv.lines.len(), 1);
    let d = &inv.lines[0].description;
    assert!(
        d.starts_with("Your VM vm-web was protected from neighbour #"),
        "{d}"
    );
    assert!(
        d.contains("for 14 min by cutting neighbour #") && d.contains("CPU weight 100 → 10"),
        "{d}"
    );
    assert!(!d.contains("vm-batch"));
    let g = invoice(dir.path(), &lines, "globex", None).unwrap();
    assert_eq!(
        g.credits,
        Money::ZERO,
        "batch was the aggressor: ratio 0 by default"
    );
    assert!(!serde_json::to_string(&g).unwrap().contains("vm-web"));
}

// ---------------------------------------------------------------- clock steps

const DEC_1_2026: u64 = NOV_1_2026 + 30 * 86_400_000;

/// Charge lines of `dir`, every period, sorted by start.
fn charges(dir: &std::path::Path) -> Vec<LedgerRecord> {
    let mut c: Vec<LedgerRecord> = lines_of(dir)
        .into_iter()
        .filter(|l| l.kind == LineKind::Charge)
        .collect();
    c.sort_by(|a, b| a.charge_period_start.cmp(&b.charge_period_start));
    c
}

fn charged_seconds(lines: &[LedgerRecord]) -> f64 {
    lines.iter().map(|l| l.duration_seconds).sum()
}

/// No two lines of one action cover the same stretch of UTC, no id twice, nothing
/// negative.
fn assert_never_twice(dir: &std::path::Path) {
    let all = lines_of(dir);
    let ids: BTreeSet<&str> = all.iter().map(|l| l.record_id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "an id twice");
    let c = charges(dir);
    for w in c.windows(2) {
        let end = period::parse_rfc3339(&w[0].charge_period_end).unwrap();
        let start = period::parse_rfc3339(&w[1].charge_period_start).unwrap();
        assert!(
            end <= start,
            "{} overlaps {}",
            w[0].record_id,
            w[1].record_id
        );
    }
    for l in &all {
        assert!(
            l.duration_seconds >= 0.0,
            "{}: {}",
            l.record_id,
            l.duration_seconds
        );
        assert!(l.pricing_quantity >= 0.0, "{}", l.record_id);
    }
}

#[test]
fn a_forward_step_of_the_clock_during_an_action_is_not_billed() {
    let dir = tempfile::tempdir().unwrap();
    let a = weight_cut("h-7-0");
    let mut b = Billing::open(config(dir.path(), 60), "h", false).unwrap();
    let t0 = NOV_1_2026 + 3_600_000 * 5 + 1500;
    b.outcome(&a, &applied(&a, t0, "1024"));
    // `real` is the time that passed; the wall clock is set 20 s ahead at 95 s.
    let ahead = 20_000;
    let wall = |real: u64| {
        if real < 95_000 {
            t0 + real
        } else {
            t0 + real + ahead
        }
    };
    for real in (10_000..=90_000).step_by(10_000) {
        b.tick(wall(real), &[]);
    }
    let step = Step {
        expected_ms: t0 + 95_000,
        wall_ms: t0 + 95_000 + ahead,
    };
    assert_eq!(b.clock_stepped(&step), (1, 0));
    for real in (100_000..=190_000).step_by(10_000) {
        b.tick(wall(real), &[]);
    }
    b.end(&a.id, wall(200_000));
    drop(b);
    let c = charges(dir.path());
    assert!(
        (charged_seconds(&c) - 200.0).abs() < 1e-6,
        "billed {} s of 200 s in effect: {:#?}",
        charged_seconds(&c),
        c.iter()
            .map(|l| (&l.record_id, l.duration_seconds))
            .collect::<Vec<_>>()
    );
    // One line per minute still; the minute holding the step says what it left out,
    // in words too.
    assert_eq!(c.len(), 4);
    let stepped: Vec<&LedgerRecord> = c
        .iter()
        .filter(|l| l.clock_skipped_seconds.is_some())
        .collect();
    assert_eq!(stepped.len(), 1);
    assert_eq!(stepped[0].clock_skipped_seconds, Some(20.0));
    assert!((stepped[0].duration_seconds - 40.0).abs() < 1e-6);
    assert!(
        stepped[0]
            .charge_description
            .contains("set forward by 20 s"),
        "{}",
        stepped[0].charge_description
    );
    let text = explain(stepped[0], None);
    assert!(text.contains("Clock       set forward by 20 s"), "{text}");
    assert_never_twice(dir.path());
}

#[test]
fn a_step_back_of_the_clock_during_an_action_never_bills_a_stretch_twice() {
    let dir = tempfile::tempdir().unwrap();
    let a = weight_cut("h-7-1");
    let mut b = Billing::open(config(dir.path(), 60), "h", false).unwrap();
    let t0 = NOV_1_2026 + 3_600_000 * 5;
    b.outcome(&a, &applied(&a, t0, "1024"));
    let back = 30 * 60_000;
    let wall = |real: u64| {
        if real < 130_000 {
            t0 + real
        } else {
            t0 + real - back
        }
    };
    for real in (10_000..=120_000).step_by(10_000) {
        b.tick(wall(real), &[]);
    }
    let step = Step {
        expected_ms: t0 + 130_000,
        wall_ms: t0 + 130_000 - back,
    };
    b.clock_stepped(&step);
    let end_real = 130_000 + back + 300_000;
    for real in (130_000..end_real).step_by(10_000) {
        b.tick(wall(real), &[]);
    }
    b.end(&a.id, wall(end_real));
    drop(b);
    let c = charges(dir.path());
    let billed = charged_seconds(&c);
    let real = end_real as f64 / 1000.0;
    // Everything but the re-lived half hour (less what was billed of it before the
    // step: the two minutes up to 2:00).
    assert!(billed <= real, "{billed} > {real}");
    assert!(
        (billed - (real - back as f64 / 1000.0)).abs() <= 10.0 + 1e-6,
        "billed {billed} s of {real} s"
    );
    assert_never_twice(dir.path());
}

#[test]
fn an_action_across_a_month_boundary_is_billed_to_each_month_for_its_part() {
    let dir = tempfile::tempdir().unwrap();
    let a = weight_cut("h-7-2");
    let mut b = Billing::open(config(dir.path(), 60), "h", false).unwrap();
    let t0 = DEC_1_2026 - 90_000;
    b.outcome(&a, &applied(&a, t0, "1024"));
    for k in 1..=17 {
        b.tick(t0 + k * 10_000, &[]);
    }
    b.end(&a.id, t0 + 180_000);
    drop(b);
    let nov = Period::containing(t0);
    let dec = nov.next();
    let in_month = |p: Period| -> f64 {
        let c = ledger::read(dir.path(), Some(p)).unwrap();
        assert!(c.bad.is_empty());
        for l in &c.records {
            assert_eq!(l.period, p, "{}", l.record_id);
            let start = period::parse_rfc3339(&l.charge_period_start).unwrap();
            let end = period::parse_rfc3339(&l.charge_period_end).unwrap();
            assert!(
                start >= p.start_ms() && end <= p.end_ms(),
                "{} outside {p}",
                l.record_id
            );
        }
        charged_seconds(
            &c.records
                .into_iter()
                .filter(|l| l.kind == LineKind::Charge)
                .collect::<Vec<_>>(),
        )
    };
    assert!((in_month(nov) - 90.0).abs() < 1e-6);
    assert!((in_month(dec) - 90.0).abs() < 1e-6);
    assert_never_twice(dir.path());
}

#[test]
fn a_forward_step_across_a_month_boundary_bills_each_month_only_what_passed() {
    let dir = tempfile::tempdir().unwrap();
    let a = weight_cut("h-7-3");
    let mut b = Billing::open(config(dir.path(), 3600), "h", false).unwrap();
    // In effect from 23:00 on 30 November; at 23:30 the clock is corrected to 01:00
    // on 1 December; ended at 01:10.
    let t0 = DEC_1_2026 - 3_600_000;
    b.outcome(&a, &applied(&a, t0, "1024"));
    for k in 1..=30 {
        b.tick(t0 + k * 60_000, &[]);
    }
    b.clock_stepped(&Step {
        expected_ms: DEC_1_2026 - 1_800_000,
        wall_ms: DEC_1_2026 + 3_600_000,
    });
    for k in 1..=10 {
        b.tick(DEC_1_2026 + 3_600_000 + k * 60_000, &[]);
    }
    b.end(&a.id, DEC_1_2026 + 3_600_000 + 600_000);
    drop(b);
    let c = charges(dir.path());
    let by_month = |p: &str| -> f64 {
        charged_seconds(
            &c.iter()
                .filter(|l| l.period.to_string() == p)
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    assert!(
        (by_month("2026-11") - 1800.0).abs() < 1e-6,
        "{}",
        by_month("2026-11")
    );
    assert!(
        (by_month("2026-12") - 600.0).abs() < 1e-6,
        "{}",
        by_month("2026-12")
    );
    assert_eq!(
        c.len(),
        2,
        "midnight to 01:00 passed in no one's time: no line"
    );
    assert_never_twice(dir.path());
}

#[test]
fn a_forward_step_is_not_billed_as_a_vms_base_usage() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Billing::open(config(dir.path(), 60), "h", false).unwrap();
    b.set_tick_ms(1000);
    let web = VmUsage {
        vm: "vm-web".into(),
        customer: Some("acme".into()),
        vcpus: Some(2),
        memory_bytes: None,
    };
    let t0 = NOV_1_2026;
    for k in 0..=30 {
        b.tick(t0 + k * 1000, std::slice::from_ref(&web));
    }
    // Two seconds ahead: small enough to pass for use without the step.
    let step = Step {
        expected_ms: t0 + 31_000,
        wall_ms: t0 + 33_000,
    };
    assert_eq!(b.clock_stepped(&step), (0, 1));
    for k in 33..=90 {
        b.tick(t0 + k * 1000, std::slice::from_ref(&web));
    }
    b.close(t0 + 90_000);
    drop(b);
    let base: f64 = lines_of(dir.path())
        .iter()
        .filter(|l| l.sku_id == "vm-vcpu")
        .map(|l| l.duration_seconds)
        .sum();
    // 90 s of wall clock, 88 s of it passed; base stops at the last tick before the
    // step (30 s) and starts again at the first after it (33 s).
    assert!((base - 87.0).abs() < 1e-6, "{base}");
    assert_never_twice(dir.path());
}

#[test]
fn time_in_effect_between_a_forward_step_and_a_step_back_is_billed_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = weight_cut("h-7-4");
    // The default hourly interval: nothing completes before the end but across the step.
    let mut b = Billing::open(config(dir.path(), 3600), "h", false).unwrap();
    let min = 60_000;
    let t0 = NOV_1_2026 + 13 * 3_600_000 + 45 * min;
    b.outcome(&a, &applied(&a, t0, "1024"));
    b.tick(t0 + 30_000, &[]);
    // At 13:46 the clock is set an hour ahead, at 13:56 (14:56 on it) back again; the
    // action ends at 13:57.
    b.clock_stepped(&Step {
        expected_ms: t0 + min,
        wall_ms: t0 + min + 3_600_000,
    });
    for k in 1..=10 {
        b.tick(t0 + min + 3_600_000 + k * min, &[]);
    }
    b.clock_stepped(&Step {
        expected_ms: t0 + 11 * min + 3_600_000,
        wall_ms: t0 + 11 * min,
    });
    b.tick(t0 + 11 * min + 30_000, &[]);
    b.end(&a.id, t0 + 12 * min);
    drop(b);
    let c = charges(dir.path());
    // 13:45-13:46 and, on the clock an hour ahead, 14:46-14:56; the minute after the
    // step back re-lives 13:56-13:57 of a clock already billed past it: not billed.
    assert!(
        (charged_seconds(&c) - 660.0).abs() < 1e-6,
        "{}: {:#?}",
        charged_seconds(&c),
        c.iter()
            .map(|l| (
                &l.charge_period_start,
                &l.charge_period_end,
                l.duration_seconds
            ))
            .collect::<Vec<_>>()
    );
    assert_never_twice(dir.path());
}
