//! Who is tracked in the kernel: VM indexes, thread slots and the tid map.
//!
//! Each tick the inventory's VM list is reconciled with what the eBPF maps know. A new
//! VM gets an index (1..MAX_VMS), a new thread a slot (zeroed first, then published in
//! the tid map), and a vanished thread's tid entry is cleared before its slot goes to
//! the back of a FIFO free list, so a slot is reused as late as possible and an event
//! racing with the removal cannot be charged to the slot's next owner.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use interference_common::{tid_entry, TidChunk, MAX_SLOTS, MAX_VMS, TID_CHUNK};
use thiserror::Error;

use super::kernel::{KernelMaps, MapError};
use crate::inventory::Vm;

#[derive(Debug, Error)]
pub enum RegistryError {
    #[error(transparent)]
    Map(#[from] MapError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedThread {
    pub slot: u32,
    pub name: String,
    pub vcpu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedVm {
    pub index: u32,
    pub threads: BTreeMap<u32, TrackedThread>,
    pub cgroup_ids: BTreeSet<u64>,
}

/// What one reconciliation changed, so the collector can reset its baselines.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncChanges {
    pub added_vms: Vec<(String, u32)>,
    pub removed_vms: Vec<(String, u32)>,
    pub added_slots: Vec<u32>,
    pub removed_slots: Vec<u32>,
    /// Threads or VMs that could not be tracked because a table was full.
    pub dropped: Vec<String>,
}

pub struct Registry {
    vms: BTreeMap<String, TrackedVm>,
    free_vm_indexes: VecDeque<u32>,
    free_slots: VecDeque<u32>,
    chunks: HashMap<u32, Box<TidChunk>>,
    dirty_chunks: BTreeSet<u32>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self {
            vms: BTreeMap::new(),
            free_vm_indexes: (1..MAX_VMS).collect(),
            free_slots: (0..MAX_SLOTS).collect(),
            chunks: HashMap::new(),
            dirty_chunks: BTreeSet::new(),
        }
    }

    pub fn vms(&self) -> &BTreeMap<String, TrackedVm> {
        &self.vms
    }

    pub fn vm(&self, name: &str) -> Option<&TrackedVm> {
        self.vms.get(name)
    }

    /// Name of the VM holding `index`, if any.
    pub fn name_of_index(&self, index: u32) -> Option<&str> {
        self.vms
            .iter()
            .find(|(_, v)| v.index == index)
            .map(|(n, _)| n.as_str())
    }

    /// Number of tracked threads.
    pub fn thread_count(&self) -> usize {
        self.vms.values().map(|v| v.threads.len()).sum()
    }

    /// Reconciles the kernel maps with `vms`. `cgroup_ids(vm)` gives the cgroup v2 ids
    /// whose I/O is attributed to the VM.
    pub fn sync(
        &mut self,
        vms: &[Vm],
        cgroup_ids: &dyn Fn(&Vm) -> BTreeSet<u64>,
        kernel: &mut dyn KernelMaps,
    ) -> Result<SyncChanges, RegistryError> {
        let mut changes = SyncChanges::default();
        let wanted: BTreeMap<&str, &Vm> = vms.iter().map(|v| (v.name.as_str(), v)).collect();

        // Removals first: a thread moving between VMs is removed, then added.
        let gone: Vec<String> = self
            .vms
            .keys()
            .filter(|n| !wanted.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(vm) = self.vms.remove(&name) {
                for (tid, t) in &vm.threads {
                    self.clear_tid(*tid);
                    changes.removed_slots.push(t.slot);
                }
                for id in &vm.cgroup_ids {
                    kernel.set_cgroup_vm(*id, None)?;
                }
                changes.removed_vms.push((name, vm.index));
            }
        }
        let mut claimed: BTreeMap<u32, &str> = BTreeMap::new();
        for vm in vms {
            for t in &vm.threads {
                claimed.entry(t.tid).or_insert(vm.name.as_str());
            }
        }
        let mut stale: Vec<(String, u32, u32)> = Vec::new();
        for (name, vm) in &self.vms {
            for (tid, t) in &vm.threads {
                if claimed.get(tid) != Some(&name.as_str()) {
                    stale.push((name.clone(), *tid, t.slot));
                }
            }
        }
        for (name, tid, slot) in stale {
            if let Some(vm) = self.vms.get_mut(&name) {
                vm.threads.remove(&tid);
            }
            self.clear_tid(tid);
            changes.removed_slots.push(slot);
        }

        // Additions.
        for vm in vms {
            if !self.vms.contains_key(&vm.name) {
                let Some(index) = self.free_vm_indexes.pop_front() else {
                    changes
                        .dropped
                        .push(format!("vm {} (more than {} VMs)", vm.name, MAX_VMS - 1));
                    continue;
                };
                self.vms.insert(
                    vm.name.clone(),
                    TrackedVm {
                        index,
                        threads: BTreeMap::new(),
                        cgroup_ids: BTreeSet::new(),
                    },
                );
                changes.added_vms.push((vm.name.clone(), index));
            }
            let index = self.vms[&vm.name].index;
            let slots_before = changes.added_slots.len();
            let is_new = changes.added_vms.last().is_some_and(|(n, _)| n == &vm.name);
            for t in &vm.threads {
                if claimed.get(&t.tid) != Some(&vm.name.as_str()) {
                    continue; // claimed by an earlier VM in the list
                }
                let slot = match self.vms[&vm.name].threads.get(&t.tid) {
                    Some(existing) if existing.vcpu == t.vcpu && existing.name == t.name => {
                        continue;
                    }
                    // Renamed (e.g. QEMU naming its vCPU threads): same slot, new label.
                    Some(existing) => existing.slot,
                    None => {
                        if t.tid / TID_CHUNK >= interference_common::MAX_TID_CHUNKS {
                            changes
                                .dropped
                                .push(format!("thread {} of {} (tid too large)", t.tid, vm.name));
                            continue;
                        }
                        let Some(slot) = self.free_slots.pop_front() else {
                            changes.dropped.push(format!(
                                "thread {} of {} (more than {MAX_SLOTS} threads)",
                                t.tid, vm.name
                            ));
                            continue;
                        };
                        kernel.reset_slot(slot)?;
                        self.set_tid(t.tid, tid_entry(index, slot));
                        changes.added_slots.push(slot);
                        slot
                    }
                };
                if let Some(v) = self.vms.get_mut(&vm.name) {
                    v.threads.insert(
                        t.tid,
                        TrackedThread {
                            slot,
                            name: t.name.clone(),
                            vcpu: t.vcpu,
                        },
                    );
                }
            }
            // Walking a VM's cgroup tree costs a directory read per cgroup: do it when
            // the VM appears or gains threads (libvirt creates vcpuN dirs after start).
            if !is_new && changes.added_slots.len() == slots_before {
                continue;
            }
            let ids = cgroup_ids(vm);
            if let Some(v) = self.vms.get_mut(&vm.name) {
                for old in v.cgroup_ids.difference(&ids) {
                    kernel.set_cgroup_vm(*old, None)?;
                }
                for new in ids.difference(&v.cgroup_ids) {
                    kernel.set_cgroup_vm(*new, Some(index))?;
                }
                v.cgroup_ids = ids;
            }
        }

        for chunk in std::mem::take(&mut self.dirty_chunks) {
            if let Some(entries) = self.chunks.get(&chunk) {
                kernel.set_tid_chunk(chunk, entries)?;
            }
        }
        // Free slots and indexes only once the kernel no longer maps to them.
        self.free_slots
            .extend(changes.removed_slots.iter().copied());
        self.free_vm_indexes
            .extend(changes.removed_vms.iter().map(|(_, i)| *i));
        Ok(changes)
    }

    fn set_tid(&mut self, tid: u32, entry: u32) {
        let chunk = tid / TID_CHUNK;
        let entries = self
            .chunks
            .entry(chunk)
            .or_insert_with(|| Box::new([0; TID_CHUNK as usize]));
        entries[(tid % TID_CHUNK) as usize] = entry;
        self.dirty_chunks.insert(chunk);
    }

    fn clear_tid(&mut self, tid: u32) {
        if self.chunks.contains_key(&(tid / TID_CHUNK)) {
            self.set_tid(tid, 0);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::inventory::{VmSource, VmThread};
    use crate::telemetry::kernel::KernelMaps;
    use interference_common::{
        entry_slot, entry_vm, PreemptCell, PreemptRow, ThreadStats, VmIoStats,
    };

    /// In-memory stand-in for the eBPF maps.
    #[derive(Default)]
    pub struct FakeKernel {
        pub chunks: HashMap<u32, Box<TidChunk>>,
        pub cgroups: HashMap<u64, u32>,
        pub slots: HashMap<u32, ThreadStats>,
        pub rows: HashMap<u32, Box<PreemptRow>>,
        pub io: HashMap<u32, VmIoStats>,
        pub epoch: u32,
        pub resets: Vec<u32>,
    }

    impl FakeKernel {
        pub fn entry(&self, tid: u32) -> u32 {
            self.chunks
                .get(&(tid / TID_CHUNK))
                .map(|c| c[(tid % TID_CHUNK) as usize])
                .unwrap_or(0)
        }
    }

    impl KernelMaps for FakeKernel {
        fn set_tid_chunk(&mut self, chunk: u32, entries: &TidChunk) -> Result<(), MapError> {
            self.chunks.insert(chunk, Box::new(*entries));
            Ok(())
        }
        fn set_cgroup_vm(&mut self, id: u64, vm: Option<u32>) -> Result<(), MapError> {
            match vm {
                Some(v) => self.cgroups.insert(id, v),
                None => self.cgroups.remove(&id),
            };
            Ok(())
        }
        fn reset_slot(&mut self, slot: u32) -> Result<(), MapError> {
            self.resets.push(slot);
            self.slots.insert(slot, ThreadStats::ZERO);
            Ok(())
        }
        fn thread_stats(&self, slot: u32) -> Result<ThreadStats, MapError> {
            Ok(self.slots.get(&slot).copied().unwrap_or(ThreadStats::ZERO))
        }
        fn preempt_row(&self, vm: u32) -> Result<Box<PreemptRow>, MapError> {
            Ok(self
                .rows
                .get(&vm)
                .cloned()
                .unwrap_or_else(|| Box::new([PreemptCell::default(); MAX_VMS as usize])))
        }
        fn vm_io(&self, vm: u32) -> Result<VmIoStats, MapError> {
            Ok(self.io.get(&vm).copied().unwrap_or(VmIoStats::ZERO))
        }
        fn set_epoch(&mut self, epoch: u32) -> Result<(), MapError> {
            self.epoch = epoch;
            Ok(())
        }
    }

    pub fn vm(name: &str, tids: &[u32]) -> Vm {
        Vm {
            threads: tids
                .iter()
                .enumerate()
                .map(|(i, t)| VmThread {
                    tid: *t,
                    name: format!("CPU {i}/KVM"),
                    vcpu: Some(i as u32),
                })
                .collect(),
            ..Vm::new(name, VmSource::Static)
        }
    }

    fn no_cgroups(_: &Vm) -> BTreeSet<u64> {
        BTreeSet::new()
    }

    #[test]
    fn registers_threads_in_the_tid_map() {
        let mut k = FakeKernel::default();
        let mut r = Registry::new();
        let c = r
            .sync(
                &[vm("a", &[100, 40000]), vm("b", &[101])],
                &no_cgroups,
                &mut k,
            )
            .unwrap();
        assert_eq!(c.added_vms.len(), 2);
        assert_eq!(c.added_slots.len(), 3);
        let a = r.vm("a").unwrap().index;
        let b = r.vm("b").unwrap().index;
        assert_ne!(a, b);
        assert_eq!(entry_vm(k.entry(100)), a);
        assert_eq!(entry_vm(k.entry(40000)), a, "second chunk written");
        assert_eq!(entry_vm(k.entry(101)), b);
        assert_eq!(k.entry(102), 0);
        assert_eq!(k.resets.len(), 3, "slots zeroed before use");
    }

    #[test]
    fn vanished_vm_and_threads_are_cleared_and_slots_reused_last() {
        let mut k = FakeKernel::default();
        let mut r = Registry::new();
        r.sync(
            &[vm("a", &[100, 101]), vm("b", &[200])],
            &no_cgroups,
            &mut k,
        )
        .unwrap();
        let slot_101 = entry_slot(k.entry(101));
        let c = r.sync(&[vm("a", &[100])], &no_cgroups, &mut k).unwrap();
        assert_eq!(c.removed_vms.len(), 1);
        assert_eq!(c.removed_slots.len(), 2);
        assert_eq!(k.entry(101), 0);
        assert_eq!(k.entry(200), 0);
        assert!(r.vm("b").is_none());
        // A new thread does not get the slot just freed.
        r.sync(&[vm("a", &[100, 102])], &no_cgroups, &mut k)
            .unwrap();
        assert_ne!(entry_slot(k.entry(102)), slot_101);
        assert_eq!(r.thread_count(), 2);
    }

    #[test]
    fn a_thread_claimed_twice_goes_to_the_first_vm() {
        let mut k = FakeKernel::default();
        let mut r = Registry::new();
        r.sync(
            &[vm("a", &[100]), vm("b", &[100, 101])],
            &no_cgroups,
            &mut k,
        )
        .unwrap();
        assert_eq!(entry_vm(k.entry(100)), r.vm("a").unwrap().index);
        assert_eq!(r.vm("b").unwrap().threads.len(), 1);
    }

    #[test]
    fn cgroup_ids_follow_the_vm() {
        let mut k = FakeKernel::default();
        let mut r = Registry::new();
        let ids = |v: &Vm| -> BTreeSet<u64> {
            if v.name == "a" {
                [7, 8].into()
            } else {
                BTreeSet::new()
            }
        };
        r.sync(&[vm("a", &[1])], &ids, &mut k).unwrap();
        assert_eq!(k.cgroups.len(), 2);
        r.sync(&[], &ids, &mut k).unwrap();
        assert!(k.cgroups.is_empty());
    }
}
