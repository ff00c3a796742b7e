//! Model ticks and their features (docs/dataset.md, "Aggregating k samples" and
//! "Features, in order"): pure functions over [`SampleExtract`]s, written to compute
//! the same `f64` operations in the same order as scripts/model/features.py, so the
//! golden test can hold them to 1e-4.

use std::f64::consts::PI;
use std::sync::Arc;

use super::cpumask::CpuMask;
use super::extract::{Preempted, SampleExtract, VmId};
use super::names::{WorkloadClass, PAIR, PER_VM, TIME};

/// `k` consecutive samples of one VM summed into one model tick.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Aggregate {
    /// The VM these samples are of (pair features look it up in the other VM's `by`).
    pub id: VmId,
    pub dt: f64,
    pub cpu_s: f64,
    pub throttled_s: f64,
    pub waits: f64,
    pub wait_s: f64,
    pub max_wait_s: f64,
    pub preempts: f64,
    pub preempted_s: f64,
    /// Per aggressor, sorted by id; each sum in sample order.
    pub by: Vec<Preempted>,
    pub psi_cpu_s: f64,
    pub psi_memory_s: f64,
    pub psi_io_s: f64,
    pub io_ops: f64,
    pub io_bytes: f64,
    pub io_lat_s: f64,
    pub major_faults: f64,
    /// Of the last sample.
    pub memory_bytes: f64,
    pub cpus: Option<Arc<CpuMask>>,
    pub class: WorkloadClass,
    pub timestamp_ms: u64,
}

impl Aggregate {
    /// Preemptions by `aggressor` (zero when none).
    pub fn by(&self, aggressor: VmId) -> Preempted {
        self.by.binary_search_by_key(&aggressor, |p| p.by).map_or(
            Preempted {
                by: aggressor,
                ..Default::default()
            },
            |i| self.by[i],
        )
    }
}

/// The model tick of `samples` (oldest first) of the VM `id`, written into `out` so a
/// caller aggregating many ticks reuses one `by` vector.
pub fn aggregate_into<'a>(
    id: VmId,
    samples: impl IntoIterator<Item = &'a SampleExtract>,
    out: &mut Aggregate,
) {
    let mut by = std::mem::take(&mut out.by);
    by.clear();
    *out = Aggregate {
        id,
        ..Default::default()
    };
    let mut last = None;
    for s in samples {
        out.dt += s.interval_s;
        out.cpu_s += s.cpu_s;
        out.throttled_s += s.throttled_s;
        out.waits += s.waits;
        out.wait_s += s.wait_s;
        out.max_wait_s = out.max_wait_s.max(s.max_wait_s);
        out.preempts += s.preempts;
        out.preempted_s += s.preempted_s;
        by.extend_from_slice(&s.by);
        out.psi_cpu_s += s.psi_cpu_s;
        out.psi_memory_s += s.psi_memory_s;
        out.psi_io_s += s.psi_io_s;
        out.io_ops += s.io_ops;
        out.io_bytes += s.io_bytes;
        out.io_lat_s += s.io_lat_s;
        out.major_faults += s.major_faults;
        last = Some(s);
    }
    if let Some(last) = last {
        out.memory_bytes = last.memory_bytes;
        out.cpus = last.cpus.clone();
        out.class = last.class;
        out.timestamp_ms = last.timestamp_ms;
    }
    // A stable sort keeps each aggressor's entries in sample order, so the sums below
    // add up in the trainer's order.
    by.sort_by_key(|p| p.by);
    by.dedup_by(|later, kept| {
        if later.by != kept.by {
            return false;
        }
        kept.count += later.count;
        kept.seconds += later.seconds;
        true
    });
    out.by = by;
}

/// The model tick of `samples` (oldest first) of the VM `id`.
pub fn aggregate<'a>(id: VmId, samples: impl IntoIterator<Item = &'a SampleExtract>) -> Aggregate {
    let mut out = Aggregate::default();
    aggregate_into(id, samples, &mut out);
    out
}

/// `x / dt`, 0 when `dt` is not positive (a malformed sample, not a division by zero).
pub fn per_dt(x: f64, dt: f64) -> f64 {
    if dt > 0.0 {
        x / dt
    } else {
        0.0
    }
}

/// `ln1p(x / dt)`: rates spanning decades (wakeups, I/O) on a scale a model can use.
pub fn rate_log(x: f64, dt: f64) -> f64 {
    per_dt(x, dt).ln_1p()
}

/// `ln1p` of a mean duration in µs: `seconds / max(n, 1)`.
fn mean_us_log(seconds: f64, n: f64) -> f64 {
    (1e6 * seconds / n.max(1.0)).ln_1p()
}

/// Features 1-20 of one VM's model tick (`v_*` or `a_*`, without the prefix).
pub fn vm_features(a: &Aggregate) -> [f64; PER_VM] {
    let dt = a.dt;
    let [c0, c1, c2, c3] = a.class.one_hot();
    [
        per_dt(a.cpu_s, dt),
        per_dt(a.throttled_s, dt),
        per_dt(a.wait_s, dt),
        mean_us_log(a.wait_s, a.waits),
        (1e6 * a.max_wait_s).ln_1p(),
        rate_log(a.preempts, dt),
        per_dt(a.preempted_s, dt),
        rate_log(a.waits, dt),
        per_dt(a.psi_cpu_s, dt),
        per_dt(a.psi_memory_s, dt),
        per_dt(a.psi_io_s, dt),
        rate_log(a.io_ops, dt),
        rate_log(a.io_bytes, dt),
        mean_us_log(a.io_lat_s, a.io_ops),
        rate_log(a.major_faults, dt),
        (a.memory_bytes / 2f64.powi(30)).ln_1p(),
        c0,
        c1,
        c2,
        c3,
    ]
}

/// `|cpus_v ∩ cpus_a| / |cpus_v|`: how much of the victim's CPUs the aggressor can
/// reach. 1 when either is unknown or the victim's set is empty: without a cpuset, any
/// VM may run anywhere.
pub fn shared_cpus(victim: Option<&CpuMask>, aggressor: Option<&CpuMask>) -> f64 {
    match (victim, aggressor) {
        (Some(v), Some(a)) if !v.is_empty() => v.intersection_len(a) as f64 / v.len() as f64,
        _ => 1.0,
    }
}

/// Features 41-45 of the ordered pair (victim `v`, aggressor `a`) in one model tick.
pub fn pair_features(v: &Aggregate, a: &Aggregate) -> [f64; PAIR] {
    let v_by_a = v.by(a.id);
    [
        per_dt(v_by_a.seconds, v.dt),
        rate_log(v_by_a.count, v.dt),
        per_dt(a.by(v.id).seconds, a.dt),
        per_dt(v.by(VmId::HOST).seconds, v.dt),
        shared_cpus(v.cpus.as_deref(), a.cpus.as_deref()),
    ]
}

const MS_PER_DAY: u64 = 86_400_000;
/// 1970-01-01 was a Thursday: days since the epoch + 3 = days since a Monday.
const EPOCH_WEEKDAY: f64 = 3.0;

/// Features 46-49: the hour of the day and the day of the week (UTC) on circles, so
/// 23:59 is next to 00:00 and Sunday next to Monday.
pub fn time_features(timestamp_ms: u64) -> [f64; TIME] {
    let s = (timestamp_ms % MS_PER_DAY) as f64 / 1000.0;
    let d = (timestamp_ms as f64 / MS_PER_DAY as f64 + EPOCH_WEEKDAY) % 7.0;
    let day = 2.0 * PI * s / 86400.0;
    let week = 2.0 * PI * d / 7.0;
    [day.sin(), day.cos(), week.sin(), week.cos()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    fn assert_all_close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(close(*g, *w), "[{i}]: got {g}, want {w}");
        }
    }

    fn extract(interval: f64, f: impl FnOnce(&mut SampleExtract)) -> SampleExtract {
        let mut e = SampleExtract {
            interval_s: interval,
            ..Default::default()
        };
        f(&mut e);
        e
    }

    fn two_samples() -> [SampleExtract; 2] {
        let a = extract(1.0, |e| {
            e.timestamp_ms = 1000;
            e.cpu_s = 0.5;
            e.throttled_s = 0.1;
            e.waits = 10.0;
            e.wait_s = 0.02;
            e.max_wait_s = 0.008;
            e.preempts = 4.0;
            e.preempted_s = 0.01;
            e.by = vec![
                Preempted {
                    by: VmId(7),
                    count: 2.0,
                    seconds: 0.004,
                },
                Preempted {
                    by: VmId::HOST,
                    count: 1.0,
                    seconds: 0.001,
                },
                Preempted {
                    by: VmId(7),
                    count: 1.0,
                    seconds: 0.002,
                },
            ];
            e.psi_cpu_s = 0.1;
            e.psi_memory_s = 0.2;
            e.psi_io_s = 0.3;
            e.io_ops = 6.0;
            e.io_bytes = 4096.0;
            e.io_lat_s = 0.003;
            e.major_faults = 2.0;
            e.memory_bytes = 1e9;
            e.cpus = CpuMask::from_ids(&[0]).map(Arc::new);
            e.class = WorkloadClass::Io;
        });
        let b = extract(1.5, |e| {
            e.timestamp_ms = 2500;
            e.cpu_s = 1.0;
            e.waits = 30.0;
            e.wait_s = 0.06;
            e.max_wait_s = 0.005;
            e.preempts = 6.0;
            e.preempted_s = 0.03;
            e.by = vec![Preempted {
                by: VmId(7),
                count: 3.0,
                seconds: 0.01,
            }];
            e.io_ops = 4.0;
            e.io_bytes = 4096.0;
            e.io_lat_s = 0.002;
            e.memory_bytes = 2f64.powi(31);
            e.cpus = CpuMask::from_ids(&[0, 1, 2, 3]).map(Arc::new);
            e.class = WorkloadClass::Memory;
        });
        [a, b]
    }

    #[test]
    fn aggregation_sums_maxes_and_keeps_the_last_gauges() {
        let a = aggregate(VmId(1), &two_samples());
        assert_eq!(a.id, VmId(1));
        assert_all_close(
            &[
                a.dt,
                a.cpu_s,
                a.throttled_s,
                a.waits,
                a.wait_s,
                a.max_wait_s,
            ],
            &[2.5, 1.5, 0.1, 40.0, 0.08, 0.008],
        );
        assert_all_close(&[a.preempts, a.preempted_s], &[10.0, 0.04]);
        assert_all_close(&[a.psi_cpu_s, a.psi_memory_s, a.psi_io_s], &[0.1, 0.2, 0.3]);
        assert_all_close(
            &[a.io_ops, a.io_bytes, a.io_lat_s, a.major_faults],
            &[10.0, 8192.0, 0.005, 2.0],
        );
        // last sample: memory, cpus, class, timestamp
        assert_eq!(a.memory_bytes, 2f64.powi(31));
        assert_eq!(a.cpus.as_deref().map(CpuMask::len), Some(4));
        assert_eq!(a.class, WorkloadClass::Memory);
        assert_eq!(a.timestamp_ms, 2500);
        // by aggressor, sorted, summed over entries and samples
        assert_eq!(a.by.len(), 2);
        assert_eq!((a.by[0].by, a.by[0].count), (VmId::HOST, 1.0));
        assert_eq!((a.by[1].by, a.by[1].count), (VmId(7), 6.0));
        assert!(close(a.by[1].seconds, 0.016));
        assert_eq!(a.by(VmId(7)), a.by[1]);
        assert_eq!(
            a.by(VmId(9)),
            Preempted {
                by: VmId(9),
                count: 0.0,
                seconds: 0.0
            }
        );
    }

    #[test]
    fn aggregate_into_reuses_and_resets() {
        let s = two_samples();
        let mut out = aggregate(VmId(1), &s);
        aggregate_into(VmId(2), &s[1..], &mut out);
        assert_eq!(out, aggregate(VmId(2), &s[1..]));
        assert_eq!(out.by.len(), 1);
        assert_eq!(out.throttled_s, 0.0);
        // the last sample's unknown cpus stay unknown, whatever came before
        let mut t = two_samples();
        t[1].cpus = None;
        assert_eq!(aggregate(VmId(1), &t).cpus, None);
    }

    #[test]
    fn vm_features_follow_the_formulas() {
        let a = aggregate(VmId(1), &two_samples());
        let f = vm_features(&a);
        let dt: f64 = 2.5;
        let want = [
            1.5 / dt,
            0.1 / dt,
            0.08 / dt,
            (1e6 * 0.08 / 40.0f64).ln_1p(), // 2000 µs mean wait
            (8000.0f64).ln_1p(),            // 8 ms max wait
            (10.0 / dt).ln_1p(),
            0.04 / dt,
            (40.0 / dt).ln_1p(),
            0.1 / dt,
            0.2 / dt,
            0.3 / dt,
            (10.0 / dt).ln_1p(),
            (8192.0 / dt).ln_1p(),
            (500.0f64).ln_1p(), // 0.005 s over 10 ops = 500 µs
            (2.0 / dt).ln_1p(),
            (2.0f64).ln_1p(), // 2 GiB
            0.0,
            1.0,
            0.0,
            0.0,
        ];
        assert_all_close(&f, &want);
    }

    #[test]
    fn vm_features_of_an_idle_or_malformed_tick_are_finite() {
        // no waits, no I/O: the means divide by max(n, 1) = 1
        let idle = aggregate(VmId(1), &[extract(1.0, |_| {})]);
        let f = vm_features(&idle);
        assert_eq!(&f[..16], &[0.0; 16]);
        assert_eq!(&f[16..], &[0.0, 0.0, 0.0, 1.0]);
        // a zero dt is guarded, not divided by
        let zero = aggregate(VmId(1), &[extract(0.0, |e| e.cpu_s = 1.0)]);
        assert!(vm_features(&zero).iter().all(|x| x.is_finite()));
        assert_eq!(vm_features(&zero)[0], 0.0);
        // waits of less than one: mean over 1
        let one = aggregate(VmId(1), &[extract(1.0, |e| e.wait_s = 0.001)]);
        assert!(close(vm_features(&one)[3], 1000.0f64.ln_1p()));
    }

    #[test]
    fn shared_cpus_rule() {
        let set = |ids: &[u32]| CpuMask::from_ids(ids).expect("small ids");
        let (v, a) = (set(&[0, 1, 2, 3]), set(&[2, 3, 4]));
        assert_eq!(shared_cpus(Some(&v), Some(&a)), 0.5);
        assert_eq!(shared_cpus(Some(&a), Some(&v)), 2.0 / 3.0);
        assert_eq!(shared_cpus(Some(&v), Some(&set(&[8]))), 0.0);
        assert_eq!(shared_cpus(Some(&v), Some(&set(&[]))), 0.0);
        // unknown on either side, or an empty victim set: 1
        assert_eq!(shared_cpus(None, Some(&a)), 1.0);
        assert_eq!(shared_cpus(Some(&v), None), 1.0);
        assert_eq!(shared_cpus(None, None), 1.0);
        assert_eq!(shared_cpus(Some(&set(&[])), Some(&a)), 1.0);
    }

    #[test]
    fn pair_features_follow_the_formulas() {
        let v_id = VmId(1);
        let a_id = VmId(7);
        let v = aggregate(v_id, &two_samples()); // preempted by 7: 6 times, 0.016 s
        let a = aggregate(
            a_id,
            &[extract(2.0, |e| {
                e.by = vec![
                    Preempted {
                        by: v_id,
                        count: 1.0,
                        seconds: 0.5,
                    },
                    Preempted {
                        by: VmId(99),
                        count: 5.0,
                        seconds: 1.0,
                    },
                ];
                e.cpus = CpuMask::from_ids(&[3, 4]).map(Arc::new);
            })],
        );
        let p = pair_features(&v, &a);
        assert_all_close(
            &p,
            &[
                0.016 / 2.5,
                (6.0 / 2.5f64).ln_1p(),
                0.5 / 2.0,
                0.001 / 2.5,
                0.25,
            ],
        );
        // the other direction
        let q = pair_features(&a, &v);
        assert_all_close(
            &q,
            &[0.5 / 2.0, (1.0 / 2.0f64).ln_1p(), 0.016 / 2.5, 0.0, 0.5],
        );
    }

    #[test]
    fn time_features_at_known_instants() {
        // 2026-11-23 00:00 UTC, a Monday: midnight, start of the week
        let monday = 1_795_392_000_000;
        assert_all_close(&time_features(monday), &[0.0, 1.0, 0.0, 1.0]);
        // 06:00 the same day: a quarter of the day, 1/28 of the week
        let t = time_features(monday + 6 * 3_600_000);
        let w = 2.0 * PI * 0.25 / 7.0;
        assert_all_close(&t, &[1.0, 0.0, w.sin(), w.cos()]);
        // Thursday 1970-01-01 00:00: three days into the week
        let w = 2.0 * PI * 3.0 / 7.0;
        assert_all_close(&time_features(0), &[0.0, 1.0, w.sin(), w.cos()]);
        // Sunday 2026-11-29 12:00: 6.5 days in
        let t = time_features(monday + 6 * 86_400_000 + 12 * 3_600_000);
        let w = 2.0 * PI * 6.5 / 7.0;
        assert!(close(t[0], 0.0) && close(t[1], -1.0));
        assert!(close(t[2], w.sin()) && close(t[3], w.cos()));
        // a week later, the same values
        let later = time_features(monday + 7 * 86_400_000);
        for (x, y) in later.iter().zip([0.0, 1.0, 0.0, 1.0]) {
            assert!((x - y).abs() < 1e-9, "{later:?}");
        }
    }
}
