//! Field offsets of kernel structures, read from the running kernel's BTF.
//!
//! Rust eBPF programs get no CO-RE relocations, so the programs take the offsets they
//! need as globals. They differ between kernels (`task_struct.pid` is at byte 1264 on
//! 6.18 and elsewhere on 6.1) and must never be hard-coded.

use std::path::{Path, PathBuf};

use btf_rs::{Btf, BtfType, Type};
use thiserror::Error;

/// Where the kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, Error)]
pub enum BtfError {
    #[error(
        "{path}: no kernel BTF; interference needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    Missing { path: PathBuf },
    #[error("{path}: cannot parse kernel BTF: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("kernel BTF has no struct `{name}`")]
    NoStruct { name: &'static str },
    #[error("kernel BTF: struct `{strukt}` has none of the fields {fields:?}")]
    NoField {
        strukt: &'static str,
        fields: &'static [&'static str],
    },
}

/// Byte offsets the eBPF programs read through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.pid` (the thread id).
    pub task_pid: u32,
    /// `task_struct.__state` (5.14+) or `task_struct.state` (older, a `long` whose low
    /// 32 bits are read on little-endian machines).
    pub task_state: u32,
    /// `request.__data_len`: bytes of a block request.
    pub rq_data_len: u32,
    /// `request.cmd_flags`: operation in the low 8 bits.
    pub rq_cmd_flags: u32,
}

impl KernelOffsets {
    /// Reads the offsets from the BTF at `path` (normally [`VMLINUX_BTF`]).
    pub fn from_btf_file(path: &Path) -> Result<Self, BtfError> {
        if !path.exists() {
            return Err(BtfError::Missing {
                path: path.to_path_buf(),
            });
        }
        let btf = Btf::from_file(path).map_err(|e| BtfError::Parse {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        })?;
        Ok(Self {
            task_pid: field_offset(&btf, "task_struct", &["pid"])?,
            task_state: field_offset(&btf, "task_struct", &["__state", "state"])?,
            rq_data_len: field_offset(&btf, "request", &["__data_len"])?,
            rq_cmd_flags: field_offset(&btf, "request", &["cmd_flags"])?,
        })
    }
}

/// Byte offset of the first of `fields` found in struct `strukt`, looking through
/// anonymous struct and union members as C does.
fn field_offset(
    btf: &Btf,
    strukt: &'static str,
    fields: &'static [&'static str],
) -> Result<u32, BtfError> {
    let types = btf
        .resolve_types_by_name(strukt)
        .map_err(|_| BtfError::NoStruct { name: strukt })?;
    let st = types
        .iter()
        .find_map(|t| match t {
            Type::Struct(s) => Some(s),
            _ => None,
        })
        .ok_or(BtfError::NoStruct { name: strukt })?;
    for field in fields {
        if let Some(bits) = find_member(btf, st, field, 0) {
            return Ok(bits / 8);
        }
    }
    Err(BtfError::NoField { strukt, fields })
}

fn find_member(btf: &Btf, st: &btf_rs::Struct, field: &str, base_bits: u32) -> Option<u32> {
    for m in &st.members {
        let offset = base_bits + m.bit_offset();
        let name = btf.resolve_name(m).unwrap_or_default();
        if name == field {
            return Some(offset);
        }
        if name.is_empty() {
            let inner = btf.resolve_type_by_id(m.get_type_id().ok()?).ok()?;
            if let Type::Struct(s) | Type::Union(s) = &inner {
                if let Some(found) = find_member(btf, s, field, offset) {
                    return Some(found);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_btf_says_what_to_enable() {
        let err = KernelOffsets::from_btf_file(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF=y"), "{err}");
    }

    #[test]
    fn offsets_of_the_running_kernel() {
        let path = Path::new(VMLINUX_BTF);
        assert!(
            path.exists(),
            "{VMLINUX_BTF} is absent: the agent needs a kernel with BTF"
        );
        let off = KernelOffsets::from_btf_file(path).unwrap();
        // Sanity, not exact values: pid sits deep in task_struct, state near its start.
        assert!(off.task_pid > 256, "{off:?}");
        assert!(off.task_state < 64, "{off:?}");
        assert!(off.rq_data_len > 0 && off.rq_cmd_flags > 0, "{off:?}");
    }
}
