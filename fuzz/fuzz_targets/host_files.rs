//! Files a tenant's processes and the host write that the inventory reads: a
//! mountinfo table and a process's /proc/PID/cgroup. Never a panic.
#![no_main]

use std::path::Path;

use interference::host::mounts::{parse_proc_cgroup, Mounts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(mounts) = Mounts::parse(text, Path::new("mountinfo")) {
        for line in text.lines().take(8) {
            let _ = mounts.classify(Path::new(line));
            let _ = mounts.locate(Path::new(line));
        }
    }
    let _ = parse_proc_cgroup(text);
});
