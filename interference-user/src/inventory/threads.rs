//! A VM's threads, from `/proc/<pid>/task` or from its cgroups' thread lists, named by
//! `/proc/<tid>/comm`. A thread that exits between being listed and being named is
//! dropped: thread sets change every tick and the next discovery sees the new one.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::cgroupfs::threads_file;
use super::error::{is_vanished, InventoryError};
use super::types::{VmCgroup, VmThread};
use crate::host::kernel_file::read_file;

/// How deep below a VM cgroup thread lists are read: libvirt's deepest layout is
/// scope/libvirt/vcpuN; the limit keeps a mistaken static entry (a whole slice) cheap.
const MAX_DEPTH: usize = 4;

/// vCPU index of a thread named by QEMU with debug-threads=on: "CPU 3/KVM",
/// "CPU 0/TCG" (any accelerator suffix). Other names are not vCPUs.
pub fn parse_vcpu(comm: &str) -> Option<u32> {
    let rest = comm.strip_prefix("CPU ")?;
    let (index, accel) = rest.split_once('/')?;
    if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) || accel.is_empty() {
        return None;
    }
    index.parse().ok()
}

/// `vcpuN` (libvirt's per-vCPU cgroup directory) -> N.
pub fn parse_vcpu_dir(name: &str) -> Option<u32> {
    let n = name.strip_prefix("vcpu")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The thread `tid` with its comm, or None when it has exited. `vcpu` is an index
/// known from elsewhere (libvirt's vcpuN cgroup); otherwise it comes from the name.
pub fn read_thread(
    proc_root: &Path,
    tid: u32,
    vcpu: Option<u32>,
    cache: &mut Cache,
) -> Result<Option<VmThread>, InventoryError> {
    if let Some(name) = cache.name(tid) {
        let vcpu = vcpu.or_else(|| parse_vcpu(&name));
        return Ok(Some(VmThread { tid, name, vcpu }));
    }
    let path = proc_root.join(tid.to_string()).join("comm");
    match std::fs::read_to_string(&path) {
        Ok(comm) => {
            let name = comm.trim_end_matches('\n').to_owned();
            cache.remember_name(tid, &name);
            let vcpu = vcpu.or_else(|| parse_vcpu(&name));
            Ok(Some(VmThread { tid, name, vcpu }))
        }
        Err(e) if is_vanished(&e) => Ok(None),
        Err(source) => Err(InventoryError::Proc {
            pid: tid,
            path,
            source,
        }),
    }
}

/// Threads of process `pid` from `/proc/<pid>/task`, sorted by tid.
pub fn process_threads(
    proc_root: &Path,
    pid: u32,
    cache: &mut Cache,
) -> Result<Vec<VmThread>, InventoryError> {
    let dir = proc_root.join(pid.to_string()).join("task");
    let entries = std::fs::read_dir(&dir).map_err(|source| InventoryError::Proc {
        pid,
        path: dir.clone(),
        source,
    })?;
    let mut tids: Vec<u32> = entries
        .filter_map(|e| {
            e.ok()
                .and_then(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        })
        .collect();
    tids.sort_unstable();
    let mut out = Vec::with_capacity(tids.len());
    for tid in tids {
        if let Some(t) = read_thread(proc_root, tid, None, cache)? {
            out.push(t);
        }
    }
    Ok(out)
}

/// Thread ids listed by the cgroup directory `dir` itself (not its children).
pub fn read_tids(dir: &Path, file: &str) -> Result<Vec<u32>, InventoryError> {
    let path = dir.join(file);
    let mut buf = Vec::with_capacity(4096);
    let text = read_file(&path, &mut buf).map_err(|source| InventoryError::Cgroup {
        path: path.clone(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            l.trim().parse().map_err(|_| InventoryError::BadTid {
                path: path.clone(),
                line: i + 1,
                text: l.to_owned(),
            })
        })
        .collect()
}

/// Every thread in the given cgroups and their descendants, de-duplicated (the same
/// thread shows up once per hierarchy on v1 and hybrid hosts) and sorted by tid. A vCPU
/// index comes from a `vcpuN` directory, else from the thread's name. Fails with a
/// "vanished" error only when none of the cgroups exists any more.
///
/// Listing a cgroup's threads is the costliest read of discovery (the kernel walks
/// the cgroup's tasks for every read), and on a v1 or hybrid host a VM has the same
/// threads in four or five hierarchies. So when, at the last listing of all of them,
/// one hierarchy alone held every thread (with the same vCPU directories), only that
/// one is listed until [`Cache::FULL_LIST_TTL_TICKS`] have passed; a VM whose
/// hierarchies disagree is listed in full every tick.
pub fn cgroup_threads(
    proc_root: &Path,
    cgroups: &[VmCgroup],
    cache: &mut Cache,
) -> Result<Vec<VmThread>, InventoryError> {
    let mut tids: BTreeMap<u32, Option<u32>> = BTreeMap::new();
    let single = cache.single_list(cgroups).and_then(|i| cgroups.get(i));
    let listed_one = match single {
        Some(one) => walk(
            &one.path,
            threads_file(&one.hierarchy),
            None,
            0,
            &mut tids,
            cache,
        )
        .is_ok(),
        None => false,
    };
    if !listed_one {
        tids = list_all(cgroups, cache)?;
    }
    let mut out = Vec::with_capacity(tids.len());
    for (tid, vcpu) in tids {
        if let Some(t) = read_thread(proc_root, tid, vcpu, cache)? {
            out.push(t);
        }
    }
    Ok(out)
}

/// The threads of every one of `cgroups`, merged; remembers whether one of them held
/// them all (see [`cgroup_threads`]).
fn list_all(
    cgroups: &[VmCgroup],
    cache: &mut Cache,
) -> Result<BTreeMap<u32, Option<u32>>, InventoryError> {
    let mut all: BTreeMap<u32, Option<u32>> = BTreeMap::new();
    let mut each = Vec::with_capacity(cgroups.len());
    let mut last_vanished = None;
    for cgroup in cgroups {
        let mut tids = BTreeMap::new();
        match walk(
            &cgroup.path,
            threads_file(&cgroup.hierarchy),
            None,
            0,
            &mut tids,
            cache,
        ) {
            Ok(()) => {
                for (tid, vcpu) in &tids {
                    let slot = all.entry(*tid).or_insert(None);
                    *slot = slot.or(*vcpu);
                }
                each.push(Some(tids));
            }
            Err(e) if e.vanished() => {
                last_vanished = Some(e);
                each.push(None);
            }
            Err(e) => return Err(e),
        }
    }
    if let (true, Some(e)) = (each.iter().all(Option::is_none), last_vanished) {
        return Err(e);
    }
    let single = each.iter().position(|t| t.as_ref() == Some(&all));
    cache.remember_list(cgroups, single);
    Ok(all)
}

fn walk(
    dir: &Path,
    file: &str,
    vcpu: Option<u32>,
    depth: usize,
    tids: &mut BTreeMap<u32, Option<u32>>,
    cache: &mut Cache,
) -> Result<(), InventoryError> {
    for tid in read_tids(dir, file)? {
        let slot = tids.entry(tid).or_insert(None);
        *slot = slot.or(vcpu);
    }
    if depth >= MAX_DEPTH {
        return Ok(());
    }
    let children = match cache.children(dir) {
        Some(c) => c,
        None => {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if is_vanished(&e) => return Ok(()),
                Err(source) => {
                    return Err(InventoryError::ListDir {
                        path: dir.to_path_buf(),
                        source,
                    })
                }
            };
            let mut children: Vec<_> = entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            children.sort();
            cache.remember_children(dir, &children);
            children
        }
    };
    for child in children {
        let child_vcpu = child
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_vcpu_dir)
            .or(vcpu);
        match walk(&child, file, child_vcpu, depth + 1, tids, cache) {
            Err(e) if e.vanished() => {}
            other => other?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::types::Hierarchy;
    use crate::testing::proc_fs::FakeHost;

    #[test]
    fn cache_keeps_names_and_child_lists_for_their_ttl() {
        let host = FakeHost::pure_v2();
        host.thread(100, "CPU 0/KVM");
        let dir = host.cgroup("lab/a", &[100]);
        let cgroups = [VmCgroup {
            path: dir.clone(),
            hierarchy: Hierarchy::V2,
        }];
        let mut cache = Cache::default();
        let tids = |c: &mut Cache| -> Vec<u32> {
            cgroup_threads(&host.proc(), &cgroups, c)
                .unwrap()
                .iter()
                .map(|t| t.tid)
                .collect()
        };
        assert_eq!(tids(&mut cache), vec![100]);
        // A sub-cgroup made later is found once the child list expires.
        host.thread(101, "CPU 1/KVM");
        host.cgroup("lab/a/vcpu1", &[101]);
        cache.next_tick();
        assert_eq!(tids(&mut cache), vec![100], "child list still cached");
        for _ in 0..Cache::CHILDREN_TTL_TICKS {
            cache.next_tick();
        }
        assert_eq!(tids(&mut cache), vec![100, 101]);
        // Names are read once; an unused name is forgotten after its TTL.
        host.thread(100, "renamed");
        cache.next_tick();
        let name = |c: &mut Cache| {
            read_thread(&host.proc(), 100, None, c)
                .unwrap()
                .unwrap()
                .name
        };
        assert_eq!(name(&mut cache), "CPU 0/KVM");
        for _ in 0..=Cache::NAME_TTL_TICKS {
            cache.next_tick();
        }
        assert_eq!(name(&mut cache), "renamed");
    }

    #[test]
    fn vcpu_names() {
        assert_eq!(parse_vcpu("CPU 0/KVM"), Some(0));
        assert_eq!(parse_vcpu("CPU 12/TCG"), Some(12));
        assert_eq!(parse_vcpu("CPU 1/"), None);
        assert_eq!(parse_vcpu("CPU x/KVM"), None);
        assert_eq!(parse_vcpu("CPU -1/KVM"), None);
        assert_eq!(parse_vcpu("qemu-system-x86"), None);
        assert_eq!(parse_vcpu("IO iothread1"), None);
        assert_eq!(parse_vcpu_dir("vcpu7"), Some(7));
        assert_eq!(parse_vcpu_dir("vcpu"), None);
        assert_eq!(parse_vcpu_dir("emulator"), None);
    }

    #[test]
    fn cgroup_threads_walk_dedup_and_skip_vanished() {
        let host = FakeHost::hybrid();
        host.thread(100, "qemu-system-x86");
        host.thread(101, "CPU 0/TCG");
        host.thread(102, "worker");
        // 103 is listed but has no /proc entry: it exited in between.
        let v2 = host.cgroup("unified/lab/a", &[100]);
        host.cgroup("unified/lab/a/vcpu1", &[102]);
        host.cgroup("unified/lab/a/emu", &[101, 103]);
        let v1 = host.cgroup("cpu/lab/a", &[100, 101]);
        let cgroups = [
            VmCgroup {
                path: v2,
                hierarchy: Hierarchy::V2,
            },
            VmCgroup {
                path: v1,
                hierarchy: Hierarchy::V1 {
                    controllers: vec!["cpu".into()],
                },
            },
        ];
        let threads = cgroup_threads(&host.proc(), &cgroups, &mut Cache::default()).unwrap();
        let got: Vec<_> = threads
            .iter()
            .map(|t| (t.tid, t.name.as_str(), t.vcpu))
            .collect();
        assert_eq!(
            got,
            vec![
                (100, "qemu-system-x86", None),
                (101, "CPU 0/TCG", Some(0)),
                (102, "worker", Some(1))
            ]
        );

        let gone = [VmCgroup {
            path: host.root().join("unified/gone"),
            hierarchy: Hierarchy::V2,
        }];
        assert!(cgroup_threads(&host.proc(), &gone, &mut Cache::default())
            .unwrap_err()
            .vanished());
    }

    #[test]
    fn hierarchies_that_agree_are_listed_once_a_tick_and_all_of_them_every_minute() {
        let host = FakeHost::hybrid();
        for (tid, name) in [(100, "qemu"), (101, "CPU 0/TCG"), (102, "CPU 1/TCG")] {
            host.thread(tid, name);
        }
        let v2 = host.cgroup("unified/lab/a", &[100, 101]);
        let cpu = host.cgroup("cpu/lab/a", &[100, 101]);
        let cgroups = [
            VmCgroup {
                path: v2.clone(),
                hierarchy: Hierarchy::V2,
            },
            VmCgroup {
                path: cpu.clone(),
                hierarchy: Hierarchy::V1 {
                    controllers: vec!["cpu".into()],
                },
            },
        ];
        let mut cache = Cache::default();
        let tids = |c: &mut Cache| -> Vec<(u32, Option<u32>)> {
            cgroup_threads(&host.proc(), &cgroups, c)
                .unwrap()
                .iter()
                .map(|t| (t.tid, t.vcpu))
                .collect()
        };
        assert_eq!(tids(&mut cache), [(100, None), (101, Some(0))]);
        // A new thread (as threads are born: in every hierarchy) is seen at once.
        host.cgroup("unified/lab/a", &[100, 101, 102]);
        host.cgroup("cpu/lab/a", &[100, 101, 102]);
        cache.next_tick();
        assert_eq!(tids(&mut cache).len(), 3);
        // A thread moved into the VM in the v1 hierarchy only is seen by the next
        // listing of all of them, and from then on they are all listed every tick.
        host.thread(103, "io");
        host.cgroup("cpu/lab/a", &[100, 101, 102, 103]);
        // All were listed at tick 0: ticks 2 to 11 read the one list.
        for _ in 2..Cache::FULL_LIST_TTL_TICKS {
            cache.next_tick();
            assert_eq!(tids(&mut cache).len(), 3, "only the agreeing list is read");
        }
        cache.next_tick();
        assert_eq!(tids(&mut cache).len(), 4);
        host.thread(104, "io2");
        host.cgroup("cpu/lab/a", &[100, 101, 102, 103, 104]);
        cache.next_tick();
        assert_eq!(tids(&mut cache).len(), 5, "disagreeing lists are all read");
        // The single list vanishing (or failing) falls back to all of them at once.
        host.cgroup("unified/lab/a", &[100, 101, 102, 103, 104]);
        cache.next_tick();
        assert_eq!(tids(&mut cache).len(), 5);
        std::fs::remove_file(v2.join("cgroup.threads")).unwrap();
        cache.next_tick();
        assert_eq!(tids(&mut cache).len(), 5);
    }

    #[test]
    fn process_threads_from_task_dir() {
        let host = FakeHost::hybrid();
        host.process(
            200,
            "qemu-system-x86",
            &["qemu-system-x86_64"],
            &[(201, "CPU 1/KVM"), (202, "IO mon_iothread")],
        );
        let got: Vec<_> = process_threads(&host.proc(), 200, &mut Cache::default())
            .unwrap()
            .into_iter()
            .map(|t| (t.tid, t.vcpu))
            .collect();
        assert_eq!(got, vec![(200, None), (201, Some(1)), (202, None)]);
        assert!(process_threads(&host.proc(), 999, &mut Cache::default())
            .unwrap_err()
            .vanished());
    }
}

/// What discovery remembers across ticks, because it runs every tick over every VM:
/// thread names (read once per thread instead of once per tick; forgotten after
/// [`Cache::NAME_TTL_TICKS`] discoveries without a lookup, so a recycled thread id gets
/// a fresh read) and the child directories of cgroups (listed again every
/// [`Cache::CHILDREN_TTL_TICKS`] discoveries: a VM's sub-cgroups are made when it
/// starts, and a new VM is a cache miss). One cache per [`super::Inventory`].
#[derive(Debug, Default)]
pub struct Cache {
    tick: u64,
    names: HashMap<u32, (String, u64)>,
    children: HashMap<PathBuf, (Vec<PathBuf>, u64)>,
    /// Per VM, keyed by its first cgroup: its cgroups when all were last listed, at
    /// which tick, and which one alone held every thread then (see
    /// [`cgroup_threads`]).
    lists: HashMap<PathBuf, (Vec<VmCgroup>, u64, Option<usize>)>,
}

impl Cache {
    pub const NAME_TTL_TICKS: u64 = 2;
    pub const CHILDREN_TTL_TICKS: u64 = 12;
    pub const FULL_LIST_TTL_TICKS: u64 = 12;

    /// Called once per discovery: ages the entries.
    pub fn next_tick(&mut self) {
        self.tick += 1;
        let tick = self.tick;
        self.names
            .retain(|_, (_, seen)| tick - *seen <= Self::NAME_TTL_TICKS);
        self.children
            .retain(|_, (_, listed)| tick - *listed < Self::CHILDREN_TTL_TICKS);
        self.lists
            .retain(|_, (_, listed, _)| tick - *listed < Self::FULL_LIST_TTL_TICKS);
    }

    /// Which of `cgroups` alone held all their threads at their last full listing,
    /// if that listing is still fresh and was of the same cgroups.
    fn single_list(&self, cgroups: &[VmCgroup]) -> Option<usize> {
        let (listed, _, single) = self.lists.get(&cgroups.first()?.path)?;
        (listed.as_slice() == cgroups).then_some(*single)?
    }

    fn remember_list(&mut self, cgroups: &[VmCgroup], single: Option<usize>) {
        if let Some(first) = cgroups.first() {
            self.lists.insert(
                first.path.clone(),
                (
                    cgroups.to_vec(),
                    self.tick,
                    single.filter(|_| cgroups.len() > 1),
                ),
            );
        }
    }

    fn name(&mut self, tid: u32) -> Option<String> {
        let tick = self.tick;
        let entry = self.names.get_mut(&tid)?;
        entry.1 = tick;
        Some(entry.0.clone())
    }

    fn remember_name(&mut self, tid: u32, name: &str) {
        self.names.insert(tid, (name.to_owned(), self.tick));
    }

    fn children(&self, dir: &Path) -> Option<Vec<PathBuf>> {
        self.children.get(dir).map(|(c, _)| c.clone())
    }

    fn remember_children(&mut self, dir: &Path, children: &[PathBuf]) {
        self.children
            .insert(dir.to_path_buf(), (children.to_vec(), self.tick));
    }
}
