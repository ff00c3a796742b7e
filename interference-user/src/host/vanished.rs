//! Errors that mean "it is gone", not "it is broken": VMs, processes and cgroups come
//! and go between two reads, and every stage treats that as news, not as a failure.

use std::io;

/// ENOENT (path gone), ESRCH (process gone while reading its files), ENODEV (cgroup
/// removed while its file was open).
pub fn is_vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || matches!(e.raw_os_error(), Some(libc::ESRCH | libc::ENODEV))
}
