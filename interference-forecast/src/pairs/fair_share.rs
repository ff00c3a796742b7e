//! The fair-share model: how much of its demand each VM would get from the CPUs it
//! shares, under cpu.weight, and who would take the rest.
//!
//! Each VM's demand (cores) is spread evenly over the CPUs it may run on. CPUs with the
//! same set of VMs allowed on them form a **cell** (a piece of the host's CPU layout)
//! and are computed once. On each CPU of a cell, capacity one core is shared by
//! weighted max-min fairness (what CFS/EEVDF converge to with cpu.weight): a VM that
//! wants less than its weighted share gets all it wants, the rest is split among the
//! others by weight. A victim's **shortfall** on a CPU is what it could have used
//! there alone (at most one core) minus what it gets; the shortfall is attributed to
//! the other VMs in proportion to the CPU time they get there, because a runnable
//! victim waits exactly while the others run. The slowdown of victim v by aggressor a
//! is then the share of v's runnable time (its own queueing excluded, as the nowcast
//! excludes it) that a takes:
//!
//! ```text
//! slowdown(v, a) = 100 * sum over shared CPUs of shortfall_v * share_a / sum over v's CPUs of min(load_v, 1)
//! ```
//!
//! which is the nowcast's quantity (DESIGN.md, "Contention score"), predicted. Pure
//! functions: no clock, no I/O.
//!
//! Known simplification: the even spread ignores the load balancer moving a VM's
//! threads off contended CPUs when it also has free ones; with partly overlapping
//! cpusets the model overstates contention. The per-layout calibration
//! ([`super::calibration`]) learns the host's correction from the nowcast.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::VmPlacement;

/// How two VMs' CPU sets relate; the calibration keeps one correction per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Both may run on exactly the same CPUs.
    SameCpus,
    /// They share some CPUs, and at least one of them has others too.
    Overlapping,
}

/// The fair-share prediction for one ordered pair sharing CPUs, with what explains it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FairShare {
    /// Index of the victim and the aggressor in the placements given.
    pub victim: usize,
    pub aggressor: usize,
    /// Predicted share (0-100) of the victim's runnable time the aggressor takes.
    pub slowdown: f64,
    pub layout: Layout,
    /// CPUs both may run on, ascending.
    pub shared_cpus: Vec<u32>,
    /// The victim's demand that it could run alone (cores, its own queueing excluded).
    pub victim_runnable_cores: f64,
    /// Cores the victim gets under fair share, over all its CPUs.
    pub victim_expected_cores: f64,
    /// Cores of the victim's demand it does not get, over all its CPUs.
    pub victim_shortfall_cores: f64,
    /// The part of that shortfall attributed to this aggressor.
    pub attributed_cores: f64,
    /// Cores the aggressor gets on the shared CPUs.
    pub aggressor_cores_on_shared: f64,
}

/// The demand a computation uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemandOf {
    Now,
    Forecast,
}

fn demand(vm: &VmPlacement, which: DemandOf) -> f64 {
    let d = match which {
        DemandOf::Now => vm.demand_now_cores,
        DemandOf::Forecast => vm.demand_forecast_cores,
    };
    if d.is_finite() && d > 0.0 {
        d
    } else {
        0.0
    }
}

fn weight(vm: &VmPlacement) -> f64 {
    f64::from(vm.weight.max(1))
}

/// Weighted max-min fair allocation of one core among `loads` (cores wanted on this
/// CPU) with `weights`; returns each one's allocation.
pub fn water_fill(loads: &[f64], weights: &[f64]) -> Vec<f64> {
    let mut alloc = vec![0.0; loads.len()];
    let mut order: Vec<usize> = (0..loads.len()).collect();
    // The VMs whose wish is smallest relative to their weight are satisfied first.
    order.sort_by(|&i, &j| (loads[i] / weights[i]).total_cmp(&(loads[j] / weights[j])));
    let mut capacity = 1.0f64;
    let mut weight_left: f64 = weights.iter().sum();
    for (k, &i) in order.iter().enumerate() {
        let fair = capacity * weights[i] / weight_left;
        if loads[i] <= fair {
            alloc[i] = loads[i];
            capacity -= loads[i];
            weight_left -= weights[i];
        } else {
            // Everyone left wants more than their share: split what is left by weight.
            for &j in &order[k..] {
                alloc[j] = capacity * weights[j] / weight_left;
            }
            break;
        }
    }
    alloc
}

/// The fair-share slowdown of every ordered pair that shares at least one CPU, from
/// the demand `which`. Pairs absent from the result share no CPU: their slowdown is 0.
/// Ordered by victim, then aggressor (indices into `vms`).
pub fn fair_share(vms: &[VmPlacement], which: DemandOf) -> Vec<FairShare> {
    // Every VM's CPUs, deduplicated, and its load per CPU.
    let cpus: Vec<Vec<u32>> = vms
        .iter()
        .map(|vm| {
            let mut c = vm.cpus.clone();
            c.sort_unstable();
            c.dedup();
            c
        })
        .collect();
    let load: Vec<f64> = vms
        .iter()
        .zip(&cpus)
        .map(|(vm, c)| {
            if c.is_empty() {
                0.0
            } else {
                demand(vm, which) / c.len() as f64
            }
        })
        .collect();
    // Cells: CPUs with the same VMs on them.
    let mut on_cpu: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, c) in cpus.iter().enumerate() {
        for &cpu in c {
            on_cpu.entry(cpu).or_default().push(i);
        }
    }
    let mut cells: BTreeMap<Vec<usize>, Vec<u32>> = BTreeMap::new();
    for (cpu, members) in on_cpu {
        cells.entry(members).or_default().push(cpu);
    }

    #[derive(Default)]
    struct Acc {
        attributed: f64,
        aggressor_cores: f64,
        shared: Vec<u32>,
    }
    let mut expected = vec![0.0f64; vms.len()];
    let mut shortfall = vec![0.0f64; vms.len()];
    let mut pairs: BTreeMap<(usize, usize), Acc> = BTreeMap::new();
    for (members, cell_cpus) in &cells {
        let n = cell_cpus.len() as f64;
        let loads: Vec<f64> = members.iter().map(|&i| load[i]).collect();
        let weights: Vec<f64> = members.iter().map(|&i| weight(&vms[i])).collect();
        let alloc = water_fill(&loads, &weights);
        let total: f64 = alloc.iter().sum();
        for (vi, &v) in members.iter().enumerate() {
            expected[v] += n * alloc[vi];
            let short = (loads[vi].min(1.0) - alloc[vi]).max(0.0);
            shortfall[v] += n * short;
            let others = total - alloc[vi];
            for (ai, &a) in members.iter().enumerate() {
                if ai == vi {
                    continue;
                }
                let acc = pairs.entry((v, a)).or_default();
                acc.shared.extend_from_slice(cell_cpus);
                acc.aggressor_cores += n * alloc[ai];
                if short > 0.0 && others > 0.0 {
                    acc.attributed += n * short * alloc[ai] / others;
                }
            }
        }
    }
    let runnable: Vec<f64> = cpus
        .iter()
        .zip(&load)
        .map(|(c, l)| c.len() as f64 * l.min(1.0))
        .collect();
    let mut out: Vec<FairShare> = pairs
        .into_iter()
        .map(|((v, a), mut acc)| {
            acc.shared.sort_unstable();
            let slowdown = if runnable[v] > 0.0 {
                (100.0 * acc.attributed / runnable[v]).clamp(0.0, 100.0)
            } else {
                0.0
            };
            let layout = if cpus[v] == cpus[a] {
                Layout::SameCpus
            } else {
                Layout::Overlapping
            };
            FairShare {
                victim: v,
                aggressor: a,
                slowdown,
                layout,
                shared_cpus: acc.shared,
                victim_runnable_cores: runnable[v],
                victim_expected_cores: expected[v],
                victim_shortfall_cores: shortfall[v],
                attributed_cores: acc.attributed,
                aggressor_cores_on_shared: acc.aggressor_cores,
            }
        })
        .collect();
    out.sort_by_key(|p| (p.victim, p.aggressor));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, cpus: &[u32], weight: u32, cores: f64) -> VmPlacement {
        VmPlacement {
            name: name.to_string(),
            cpus: cpus.to_vec(),
            weight,
            demand_now_cores: cores,
            demand_forecast_cores: cores,
        }
    }

    fn slowdown(vms: &[VmPlacement], v: usize, a: usize) -> f64 {
        fair_share(vms, DemandOf::Forecast)
            .into_iter()
            .find(|p| p.victim == v && p.aggressor == a)
            .map_or(0.0, |p| p.slowdown)
    }

    #[test]
    fn water_fill_by_hand() {
        assert_eq!(water_fill(&[1.0, 1.0], &[1.0, 1.0]), vec![0.5, 0.5]);
        assert_eq!(water_fill(&[0.2, 1.0], &[1.0, 1.0]), vec![0.2, 0.8]);
        let a = water_fill(&[1.0, 1.0], &[1000.0, 10.0]);
        assert!((a[0] - 1000.0 / 1010.0).abs() < 1e-12 && (a[1] - 10.0 / 1010.0).abs() < 1e-12);
        assert_eq!(water_fill(&[0.3, 0.2], &[1.0, 1.0]), vec![0.3, 0.2]);
    }

    #[test]
    fn two_single_vcpu_vms_at_full_demand_on_one_cpu_slow_each_other_by_half() {
        let vms = [vm("v", &[3], 100, 1.0), vm("a", &[3], 100, 1.0)];
        let p = fair_share(&vms, DemandOf::Forecast);
        assert_eq!(p.len(), 2);
        assert!((p[0].slowdown - 50.0).abs() < 1e-12);
        assert_eq!(p[0].layout, Layout::SameCpus);
        assert_eq!(p[0].shared_cpus, vec![3]);
        assert!((p[0].victim_expected_cores - 0.5).abs() < 1e-12);
        assert!((p[0].attributed_cores - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_heavy_weight_keeps_the_victim_at_99_percent() {
        let vms = [vm("v", &[0], 1000, 1.0), vm("a", &[0], 10, 1.0)];
        let p = fair_share(&vms, DemandOf::Forecast);
        assert!((p[0].victim_expected_cores - 1000.0 / 1010.0).abs() < 1e-12);
        assert!((p[0].slowdown - 100.0 * 10.0 / 1010.0).abs() < 1e-9);
        assert!((p[1].slowdown - 100.0 * 1000.0 / 1010.0).abs() < 1e-9);
    }

    #[test]
    fn disjoint_cpusets_do_not_interfere() {
        let vms = [vm("v", &[0, 1], 100, 2.0), vm("a", &[2, 3], 100, 2.0)];
        assert!(fair_share(&vms, DemandOf::Forecast).is_empty());
    }

    #[test]
    fn a_victim_that_wants_less_than_its_share_is_not_slowed() {
        let vms = [vm("v", &[0], 100, 0.3), vm("a", &[0], 100, 1.0)];
        assert_eq!(slowdown(&vms, 0, 1), 0.0);
        // The aggressor gets 0.7 of its 1.0: slowed by 30 %, all of it the victim's.
        assert!((slowdown(&vms, 1, 0) - 30.0).abs() < 1e-12);
    }

    #[test]
    fn a_pinned_aggressor_on_one_of_two_cpus_takes_a_quarter() {
        // v: 2 vCPUs on CPUs 0-1, full; a: 1 vCPU pinned to CPU 0, full.
        let vms = [vm("v", &[0, 1], 100, 2.0), vm("a", &[0], 100, 1.0)];
        assert!((slowdown(&vms, 0, 1) - 25.0).abs() < 1e-12);
        assert!((slowdown(&vms, 1, 0) - 50.0).abs() < 1e-12);
        let p = fair_share(&vms, DemandOf::Forecast);
        assert_eq!(p[0].layout, Layout::Overlapping);
        assert_eq!(p[0].shared_cpus, vec![0]);
    }

    #[test]
    fn shortfall_is_attributed_by_the_cpu_time_each_aggressor_gets() {
        // Three on one CPU: v and a1 full, a2 wants 0.1. a2 gets 0.1, v and a1 0.45.
        let vms = [
            vm("v", &[0], 100, 1.0),
            vm("a1", &[0], 100, 1.0),
            vm("a2", &[0], 100, 0.1),
        ];
        assert!((slowdown(&vms, 0, 1) - 45.0).abs() < 1e-9);
        assert!((slowdown(&vms, 0, 2) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn own_queueing_is_not_contention() {
        // A 4-vCPU VM squeezed on one CPU alone: short of CPU, but by nobody.
        let alone = [vm("v", &[0], 100, 4.0)];
        assert!(fair_share(&alone, DemandOf::Forecast).is_empty());
        // With a neighbour at full demand: v could run 1 core alone, gets 0.5.
        let vms = [vm("v", &[0], 100, 4.0), vm("a", &[0], 100, 1.0)];
        assert!((slowdown(&vms, 0, 1) - 50.0).abs() < 1e-12);
    }
}
