//! A QEMU command line as /proc/PID/cmdline holds it (NUL-separated), which any user
//! can craft: name, uuid, QMP socket, -smp, -m. Never a panic.
#![no_main]

use interference::inventory::qemu_cmdline::{parse_cmdline, parse_mem, parse_smp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let args: Vec<String> = data
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let _ = parse_cmdline(&args);
    for a in args.iter().take(4) {
        let _ = parse_smp(a);
        let _ = parse_mem(a);
    }
});
