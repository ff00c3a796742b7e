//! `interference bill` and `interference explain` on a ledger written by the agent's
//! billing code: the invoice sums the ledger, the CSV and JSON forms agree with it, a
//! neighbour of another customer is never named, and bad input (unknown customer, a
//! period with no data, a corrupt line in the middle, an unknown record) gets a message
//! naming the file and line or what there is, while the rest is still read.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use interference::billing::ledger::period_path;
use interference::billing::{ledger, Billing, BillingConfig, LineKind, Money, Period};
use interference::policy::{Action, ActionResult, Change, Effect, Outcome, Rung};
use interference_tests::interference_bin;

/// 2026-11-20T10:00:00Z
const T0: u64 = 1_795_168_800_000;

fn cut_batch(id: &str) -> Action {
    Action {
        payer: Default::default(),
        not_donors: Vec::new(),
        id: id.into(),
        decided_ms: T0,
        rung: Rung::Weight,
        change: Change::CpuWeight { weight: 10 },
        vm: "batch-7".into(),
        protects: "web-1".into(),
        victim: "web-1".into(),
        aggressor: "batch-7".into(),
        score: 72.0,
        vm_is_aggressor: true,
        unobservable: Vec::new(),
        simulated: false,
        reason: "test".into(),
        customers: [
            ("web-1".to_string(), "acme".to_string()),
            ("batch-7".to_string(), "globex".to_string()),
        ]
        .into_iter()
        .collect(),
        vcpus: Some(2),
        cause: None,
        trigger: Default::default(),
    }
}

/// A ledger with two actions (one across an hour boundary) and base usage.
fn write_ledger(dir: &Path) {
    let cfg = BillingConfig {
        ledger_dir: dir.to_path_buf(),
        aggressor_credit_ratio: 0.5,
        charge_interval: Duration::from_secs(3600),
        ..BillingConfig::default()
    };
    let mut b = Billing::open(cfg, "host-a", false).unwrap();
    for (id, start, minutes) in [("host-a-3-0", T0, 14), ("host-a-9-0", T0 + 3_000_000, 40)] {
        let a = cut_batch(id);
        b.outcome(
            &a,
            &Outcome {
                action_id: id.into(),
                result: ActionResult::Applied,
                at_ms: start,
                effects: vec![Effect::from_texts(
                    "/sys/fs/cgroup/cpu/machine/batch-7/cpu.shares".into(),
                    "1024",
                    "102",
                )],
                error: None,
            },
        );
        b.end(id, start + minutes * 60_000);
    }
    let vms = [interference::billing::VmUsage {
        vm: "web-1".into(),
        customer: Some("acme".into()),
        vcpus: Some(4),
        memory_bytes: Some(8 << 30),
    }];
    for k in 0..=12 {
        b.tick(T0 + k * 300_000, &vms);
    }
    b.close(T0 + 3_600_000);
}

fn run(args: &[&str], ledger: &Path) -> Output {
    Command::new(interference_bin())
        .args(args)
        .arg("--ledger")
        .arg(ledger)
        .output()
        .expect("interference runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn invoices_sum_the_ledger_and_hide_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    write_ledger(dir.path());
    let records = ledger::read(dir.path(), None).unwrap().records;
    let acme: Money = records
        .iter()
        .filter(|r| r.billing_account_id == "acme")
        .map(|r| r.billed_cost)
        .sum();

    let out = run(&["bill", "--customer", "acme"], dir.path());
    let table = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        table.contains("Invoice for customer acme, period 2026-11"),
        "{table}"
    );
    let total_line = table
        .lines()
        .find(|l| l.starts_with("Total "))
        .unwrap_or_else(|| panic!("no total:\n{table}"));
    assert!(total_line.contains(&format!("{acme:.6} USD")), "{table}");
    assert!(
        table.contains("Your VM web-1 was protected from neighbour #")
            && table.contains("for 14 min by cutting neighbour #"),
        "{table}"
    );
    assert!(
        table.contains("for 40 min"),
        "one line per action, segments summed:\n{table}"
    );
    assert!(!table.contains("batch-7"), "{table}");

    let out = run(
        &["bill", "--customer", "acme", "--format", "json"],
        dir.path(),
    );
    let inv: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total = inv["total"].as_f64().unwrap();
    assert_eq!(Money::from_units(total).unwrap(), acme);
    let sum: f64 = inv["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["amount"].as_f64().unwrap())
        .sum();
    assert!((sum - total).abs() < 1e-9);

    let out = run(
        &["bill", "--customer", "globex", "--format", "csv"],
        dir.path(),
    );
    let csv = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("customer,period,kind,vm,"), "{csv}");
    assert!(rows.iter().any(|r| r.contains(",credit,batch-7,")), "{csv}");
    assert!(
        !csv.contains("web-1"),
        "globex sees acme's VM only as an alias:\n{csv}"
    );
    let credits: Money = records
        .iter()
        .filter(|r| r.billing_account_id == "globex" && r.kind == LineKind::Credit)
        .map(|r| r.billed_cost)
        .sum();
    assert!(credits < Money::ZERO);
    assert!(
        rows.iter()
            .any(|r| r.contains(&format!(",total_credits,,,,,,{credits},USD"))),
        "{csv}"
    );

    // Every line explains itself and reconciles; the other side is not named.
    for r in records.iter().filter(|r| r.kind != LineKind::Base) {
        let out = run(&["explain", &r.record_id], dir.path());
        let t = text(&out.stdout);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(t.contains("reconciles") && !t.contains("DOES NOT"), "{t}");
        assert!(t.contains("Other side"), "{t}");
        assert!(t.contains(&r.formula), "{t}");
        let hidden = if r.billing_account_id == "acme" {
            "batch-7"
        } else {
            "web-1"
        };
        assert!(!t.contains(hidden), "{t}");
    }
}

#[test]
fn bad_input_is_named_and_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    write_ledger(dir.path());

    let out = run(&["bill", "--customer", "initech"], dir.path());
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no customer \"initech\"")
            && err.contains(&dir.path().display().to_string())
            && err.contains("acme, globex"),
        "{err}"
    );

    let out = run(
        &["bill", "--customer", "acme", "--period", "2026-10"],
        dir.path(),
    );
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no records for period 2026-10") && err.contains("2026-11"),
        "{err}"
    );

    let out = run(
        &["bill", "--customer", "acme", "--period", "2026-13"],
        dir.path(),
    );
    assert!(text(&out.stderr).contains("\"2026-13\" is not a billing period; expected YYYY-MM"));

    // A corrupt line in the middle of the month's file.
    let path = period_path(dir.path(), "2026-11".parse::<Period>().unwrap());
    let good = fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    let total_before = ledger::read(dir.path(), None).unwrap().records.len();
    lines.insert(3, "{\"x_RecordId\": \"half a record");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = run(&["bill", "--customer", "acme"], dir.path());
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("{}:4: not a ledger record", path.display())),
        "{err}"
    );
    assert!(text(&out.stdout).contains("Invoice for customer acme"));
    let c = ledger::read(dir.path(), None).unwrap();
    assert_eq!(c.records.len(), total_before, "every other line still read");

    let out = run(&["explain", "nope/1/charge"], dir.path());
    let err = text(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("no record \"nope/1/charge\"")
            && err.contains("2026-11"),
        "{err}"
    );

    let missing = dir.path().join("none");
    let out = run(&["bill", "--customer", "acme"], &missing);
    assert!(
        text(&out.stderr).contains(&format!("no ledger at {}", missing.display())),
        "{}",
        text(&out.stderr)
    );
}
