//! The order in which a tree of cpusets can be rewritten without the kernel refusing a
//! step (the CPU lists themselves are `interference_core::cpu_list`).
//!
//! cgroup v1 insists that a child's `cpuset.cpus` is a subset of its parent's at every
//! moment: writing a child outside its parent fails with EINVAL, shrinking a parent
//! below a child fails with EBUSY. Moving a VM's subtree from one set to another (or
//! back to journalled originals) is therefore done in two passes ([`plan_tree`]):
//! parents first, each cgroup grows to `current ∪ target`; then children first, each
//! shrinks to `target`. Every intermediate state is valid as long as the targets form a
//! valid tree themselves, which [`pin_targets`] guarantees for a pin and the journal's
//! originals guarantee for a restore. cgroup v2 accepts any order (a child's effective
//! set is clipped to its parent's), so the same plan serves both.
//!
//! Everything here is pure; the files are read and written by `enforce::cgroup`.

use std::path::{Path, PathBuf};

pub use interference_core::cpu_list::{CpuList, CpuListError};

/// One cgroup of a tree: its directory, what `cpuset.cpus` holds now, what it should
/// hold at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeNode {
    pub dir: PathBuf,
    pub current: CpuList,
    pub target: CpuList,
}

/// The writes that move every node from `current` to `target`, in an order the v1
/// subset rule accepts at every step (see the module doc), provided the currents and
/// the targets each form a valid tree. A node already at its target is not written; any
/// other is written once or twice. Ancestry is by path, so the nodes may span several
/// hierarchies.
pub fn plan_tree(nodes: &[TreeNode]) -> Vec<(PathBuf, CpuList)> {
    let mut order: Vec<&TreeNode> = nodes.iter().collect();
    order.sort_by_key(|n| (depth(&n.dir), n.dir.clone()));
    let mut writes = Vec::new();
    for n in &order {
        let grown = n.current.union(&n.target);
        if grown != n.current {
            writes.push((n.dir.clone(), grown));
        }
    }
    for n in order.iter().rev() {
        if n.target != n.current.union(&n.target) {
            writes.push((n.dir.clone(), n.target.clone()));
        }
    }
    writes
}

/// Targets for confining a subtree to `wanted`: the root gets `wanted`; each other node
/// keeps what it has inside its parent's target (a libvirt vCPU pinned to CPU 3 stays
/// there when the VM is confined to 2-3) or, when nothing of it would remain, its
/// parent's target. `nodes` holds (dir, current) with the root first; children are
/// recognised by path.
pub fn pin_targets(nodes: &[(PathBuf, CpuList)], wanted: &CpuList) -> Vec<TreeNode> {
    let mut order: Vec<&(PathBuf, CpuList)> = nodes.iter().collect();
    order.sort_by_key(|(dir, _)| (depth(dir), dir.clone()));
    let mut out: Vec<TreeNode> = Vec::with_capacity(nodes.len());
    for (dir, current) in order {
        let parent_target = out
            .iter()
            .filter(|p| dir.starts_with(&p.dir) && dir != &p.dir)
            .max_by_key(|p| depth(&p.dir))
            .map(|p| p.target.clone());
        let target = match parent_target {
            None => wanted.clone(),
            Some(up) => {
                let kept = current.intersection(&up);
                if kept.is_empty() {
                    up
                } else {
                    kept
                }
            }
        };
        out.push(TreeNode {
            dir: dir.clone(),
            current: current.clone(),
            target,
        });
    }
    out
}

fn depth(p: &Path) -> usize {
    p.components().count()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn set(s: &str) -> CpuList {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_kernel_lists() {
        assert_eq!(set("0-3,8").to_string(), "0-3,8");
        assert_eq!(set("0,1,2,5,6\n").to_string(), "0-2,5-6");
        assert_eq!(set("").to_string(), "");
        assert!(set("\n").is_empty());
        assert_eq!(set("3,1").iter().collect::<Vec<_>>(), vec![1, 3]);
        for bad in ["a", "3-1", "1-", "0-99999999"] {
            let e = bad.parse::<CpuList>().unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    /// A v1 cpuset hierarchy in memory: refuses exactly what the kernel refuses.
    struct V1Sim(BTreeMap<PathBuf, CpuList>);

    impl V1Sim {
        fn write(&mut self, dir: &Path, cpus: &CpuList) -> Result<(), String> {
            if let Some(parent) = dir.parent().and_then(|p| self.0.get(p)) {
                if !cpus.is_subset(parent) {
                    return Err(format!(
                        "EINVAL: {} = {cpus} outside parent {parent}",
                        dir.display()
                    ));
                }
            }
            for (d, c) in &self.0 {
                if d.parent() == Some(dir) && !c.is_subset(cpus) {
                    return Err(format!(
                        "EBUSY: {} = {cpus} below child {}",
                        dir.display(),
                        d.display()
                    ));
                }
            }
            self.0.insert(dir.to_path_buf(), cpus.clone());
            Ok(())
        }
    }

    fn tree(spec: &[(&str, &str)]) -> V1Sim {
        V1Sim(
            spec.iter()
                .map(|(d, c)| (PathBuf::from(d), set(c)))
                .collect(),
        )
    }

    fn run(sim: &mut V1Sim, nodes: &[TreeNode]) {
        for (dir, cpus) in plan_tree(nodes) {
            sim.write(&dir, &cpus).unwrap();
        }
        for n in nodes {
            assert_eq!(sim.0[&n.dir], n.target, "{}", n.dir.display());
        }
    }

    fn libvirt_vm() -> V1Sim {
        tree(&[
            ("/cs", "0-3"),
            ("/cs/vm", "0-3"),
            ("/cs/vm/libvirt", "0-3"),
            ("/cs/vm/libvirt/vcpu0", "1"),
            ("/cs/vm/libvirt/vcpu1", "2-3"),
            ("/cs/vm/libvirt/emulator", "0"),
        ])
    }

    fn nodes_of(sim: &V1Sim) -> Vec<(PathBuf, CpuList)> {
        sim.0
            .iter()
            .filter(|(d, _)| d.starts_with("/cs/vm"))
            .map(|(d, c)| (d.clone(), c.clone()))
            .collect()
    }

    #[test]
    fn pin_keeps_what_fits_and_every_step_is_valid() {
        let mut sim = libvirt_vm();
        let original = sim.0.clone();
        let nodes = pin_targets(&nodes_of(&sim), &set("2-3"));
        let target = |d: &str| {
            nodes
                .iter()
                .find(|n| n.dir == Path::new(d))
                .unwrap()
                .target
                .to_string()
        };
        assert_eq!(target("/cs/vm"), "2-3");
        assert_eq!(target("/cs/vm/libvirt"), "2-3");
        assert_eq!(
            target("/cs/vm/libvirt/vcpu0"),
            "2-3",
            "nothing of 1 remains"
        );
        assert_eq!(target("/cs/vm/libvirt/vcpu1"), "2-3");
        assert_eq!(target("/cs/vm/libvirt/emulator"), "2-3");
        run(&mut sim, &nodes);

        // Back to the originals, from the pinned state.
        let back: Vec<TreeNode> = nodes
            .iter()
            .map(|n| TreeNode {
                dir: n.dir.clone(),
                current: n.target.clone(),
                target: original[&n.dir].clone(),
            })
            .collect();
        run(&mut sim, &back);
        assert_eq!(sim.0, original);
    }

    #[test]
    fn moving_between_disjoint_sets_is_valid() {
        let mut sim = tree(&[("/cs", "0-3"), ("/cs/vm", "0-1"), ("/cs/vm/vcpu0", "1")]);
        let nodes = pin_targets(&nodes_of(&sim), &set("2-3"));
        run(&mut sim, &nodes);
        assert_eq!(sim.0[Path::new("/cs/vm/vcpu0")], set("2-3"));
        // A narrower pin keeps the child inside it.
        let nodes = pin_targets(&nodes_of(&sim), &set("3"));
        run(&mut sim, &nodes);
        assert_eq!(sim.0[Path::new("/cs/vm")], set("3"));
    }

    #[test]
    fn restoring_from_a_half_written_plan_is_valid() {
        // A crash after the grow pass of 0-3 -> 2-3: every node holds current ∪ target.
        let mut sim = libvirt_vm();
        let original = sim.0.clone();
        let nodes = pin_targets(&nodes_of(&sim), &set("2-3"));
        let plan = plan_tree(&nodes);
        for (dir, cpus) in &plan[..plan.len() / 2 + 1] {
            sim.write(dir, cpus).unwrap();
        }
        let back: Vec<TreeNode> = nodes
            .iter()
            .map(|n| TreeNode {
                dir: n.dir.clone(),
                current: sim.0[&n.dir].clone(),
                target: original[&n.dir].clone(),
            })
            .collect();
        run(&mut sim, &back);
        assert_eq!(sim.0, original);
    }

    #[test]
    fn no_writes_when_already_there() {
        let sim = libvirt_vm();
        let nodes: Vec<TreeNode> = nodes_of(&sim)
            .into_iter()
            .map(|(dir, c)| TreeNode {
                dir,
                current: c.clone(),
                target: c,
            })
            .collect();
        assert!(plan_tree(&nodes).is_empty());
    }
}
