//! Loads and attaches the eBPF programs, and implements [`KernelMaps`] over their maps.
//!
//! Dropping [`EbpfProbes`] detaches every program (aya closes the links), which is how
//! `interference collect` leaves the kernel clean on SIGINT/SIGTERM.

use std::path::Path;

use aya::maps::{Array, HashMap, MapData};
use aya::programs::BtfTracePoint;
use aya::{Btf, Ebpf, EbpfLoader};
use interference_common::{
    names, PreemptRow, ThreadStats, TidChunk, VmIoStats, MAX_TID_CHUNKS, MAX_VMS, TID_CHUNK,
};
use thiserror::Error;

use super::btf::{BtfError, KernelOffsets, VMLINUX_BTF};
use super::kernel::{KernelMaps, MapError};

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(
        "this binary was built without its eBPF programs: run `cargo xtask build-ebpf` (or ./scripts/setup.sh) and rebuild"
    )]
    NotEmbedded,
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error("reading /proc/sys/kernel/pid_max")]
    PidMax(#[source] std::io::Error),
    #[error("loading the eBPF object")]
    Load(#[source] aya::EbpfError),
    #[error("eBPF program `{name}`: {what}")]
    Program {
        name: &'static str,
        what: &'static str,
        #[source]
        source: Option<aya::programs::ProgramError>,
    },
    #[error("eBPF map `{name}` missing or of the wrong type")]
    Map {
        name: &'static str,
        #[source]
        source: Option<aya::maps::MapError>,
    },
}

/// The object built by `cargo xtask build-ebpf`, embedded at compile time.
#[cfg(ebpf_object)]
fn embedded_object() -> Option<&'static [u8]> {
    Some(aya::include_bytes_aligned!(env!(
        "INTERFERENCE_EBPF_OBJECT_PATH"
    )))
}

#[cfg(not(ebpf_object))]
fn embedded_object() -> Option<&'static [u8]> {
    None
}

/// Which programs to attach.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSet {
    pub sched: bool,
    pub block_io: bool,
}

impl Default for ProbeSet {
    fn default() -> Self {
        Self {
            sched: true,
            block_io: true,
        }
    }
}

/// Loaded and attached programs with their maps.
pub struct EbpfProbes {
    ebpf: Ebpf,
    tid_map: Array<MapData, TidChunk>,
    thread_stats: Array<MapData, ThreadStats>,
    preempt: Array<MapData, PreemptRow>,
    vm_io: Array<MapData, VmIoStats>,
    cgroup_vm: HashMap<MapData, u64, u32>,
    epoch: Array<MapData, u32>,
    pub offsets: KernelOffsets,
    pub attached: ProbeSet,
}

impl EbpfProbes {
    /// Loads the embedded object with the running kernel's offsets and attaches `set`.
    pub fn load(set: ProbeSet) -> Result<Self, LoadError> {
        let object = embedded_object().ok_or(LoadError::NotEmbedded)?;
        Self::load_object(object, Path::new(VMLINUX_BTF), set)
    }

    pub fn load_object(object: &[u8], btf_path: &Path, set: ProbeSet) -> Result<Self, LoadError> {
        let offsets = KernelOffsets::from_btf_file(btf_path)?;
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .map_err(LoadError::PidMax)?
            .trim()
            .parse::<u32>()
            .unwrap_or(4_194_304);
        let chunks = pid_max.div_ceil(TID_CHUNK).clamp(1, MAX_TID_CHUNKS);
        let btf = Btf::from_sys_fs().map_err(|_| {
            LoadError::Btf(BtfError::Missing {
                path: btf_path.to_path_buf(),
            })
        })?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .map_max_entries(names::TID_MAP, chunks)
            .override_global(names::GLOBAL_TASK_PID_OFF, &offsets.task_pid, true)
            .override_global(names::GLOBAL_TASK_STATE_OFF, &offsets.task_state, true)
            .override_global(names::GLOBAL_RQ_DATA_LEN_OFF, &offsets.rq_data_len, true)
            .override_global(names::GLOBAL_RQ_CMD_FLAGS_OFF, &offsets.rq_cmd_flags, true)
            .load(object)
            .map_err(LoadError::Load)?;
        let mut attach = |name: &'static str| -> Result<(), LoadError> {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(name)
                .ok_or(LoadError::Program {
                    name,
                    what: "not in the object",
                    source: None,
                })?
                .try_into()
                .map_err(|e| LoadError::Program {
                    name,
                    what: "is not a tp_btf program",
                    source: Some(e),
                })?;
            prog.load(name, &btf).map_err(|e| LoadError::Program {
                name,
                what: "rejected by the kernel (verifier log in the source)",
                source: Some(e),
            })?;
            prog.attach().map_err(|e| LoadError::Program {
                name,
                what: "could not be attached",
                source: Some(e),
            })?;
            Ok(())
        };
        if set.sched {
            attach(names::PROG_SCHED_SWITCH)?;
            attach(names::PROG_SCHED_WAKEUP)?;
        }
        if set.block_io {
            attach(names::PROG_BLOCK_INSERT)?;
            attach(names::PROG_BLOCK_ISSUE)?;
            attach(names::PROG_BLOCK_COMPLETE)?;
        }
        Ok(Self {
            tid_map: take_map(&mut ebpf, names::TID_MAP)?,
            thread_stats: take_map(&mut ebpf, names::THREAD_STATS)?,
            preempt: take_map(&mut ebpf, names::PREEMPT)?,
            vm_io: take_map(&mut ebpf, names::VM_IO)?,
            cgroup_vm: take_map(&mut ebpf, names::CGROUP_VM)?,
            epoch: take_map(&mut ebpf, names::EPOCH)?,
            ebpf,
            offsets,
            attached: set,
        })
    }

    /// Kernel ids of the attached programs (for `bpf_stats`-based benchmarks).
    pub fn program_ids(&self) -> Vec<(String, u32)> {
        self.ebpf
            .programs()
            .filter_map(|(name, p)| Some((name.to_string(), p.info().ok()?.id())))
            .collect()
    }
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(LoadError::Map { name, source: None })?;
    T::try_from(map).map_err(|e| LoadError::Map {
        name,
        source: Some(e),
    })
}

fn map_err(map: &'static str, op: &'static str) -> impl FnOnce(aya::maps::MapError) -> MapError {
    move |e| MapError {
        map,
        op,
        source: Box::new(e),
    }
}

impl KernelMaps for EbpfProbes {
    fn set_tid_chunk(&mut self, chunk: u32, entries: &TidChunk) -> Result<(), MapError> {
        if chunk >= self.tid_map.len() {
            return Err(MapError {
                map: names::TID_MAP,
                op: "update (thread id above pid_max)",
                source: format!("chunk {chunk} >= {}", self.tid_map.len()).into(),
            });
        }
        self.tid_map
            .set(chunk, entries, 0)
            .map_err(map_err(names::TID_MAP, "update"))
    }

    fn set_cgroup_vm(&mut self, cgroup_id: u64, vm_index: Option<u32>) -> Result<(), MapError> {
        match vm_index {
            Some(vm) => self
                .cgroup_vm
                .insert(cgroup_id, vm, 0)
                .map_err(map_err(names::CGROUP_VM, "insert")),
            None => match self.cgroup_vm.remove(&cgroup_id) {
                Err(aya::maps::MapError::KeyNotFound) | Ok(()) => Ok(()),
                Err(e) => Err(map_err(names::CGROUP_VM, "delete")(e)),
            },
        }
    }

    fn reset_slot(&mut self, slot: u32) -> Result<(), MapError> {
        self.thread_stats
            .set(slot, ThreadStats::ZERO, 0)
            .map_err(map_err(names::THREAD_STATS, "update"))
    }

    fn thread_stats(&self, slot: u32) -> Result<ThreadStats, MapError> {
        self.thread_stats
            .get(&slot, 0)
            .map_err(map_err(names::THREAD_STATS, "lookup"))
    }

    fn preempt_row(&self, victim_vm: u32) -> Result<Box<PreemptRow>, MapError> {
        debug_assert!(victim_vm < MAX_VMS);
        self.preempt
            .get(&victim_vm, 0)
            .map(Box::new)
            .map_err(map_err(names::PREEMPT, "lookup"))
    }

    fn vm_io(&self, vm_index: u32) -> Result<VmIoStats, MapError> {
        self.vm_io
            .get(&vm_index, 0)
            .map_err(map_err(names::VM_IO, "lookup"))
    }

    fn set_epoch(&mut self, epoch: u32) -> Result<(), MapError> {
        self.epoch
            .set(0, epoch, 0)
            .map_err(map_err(names::EPOCH, "update"))
    }
}
