//! A ledger month file as a crash or a hand edit may leave it. Reading it (bill,
//! explain, the agent's start, the fleet upload) never panics.
#![no_main]

use interference_core::billing::ledger;
use interference_core::billing::period::Period;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let Ok(period) = "2026-11".parse::<Period>() else {
        return;
    };
    if std::fs::write(ledger::period_path(dir.path(), period), data).is_err() {
        return;
    }
    let _ = ledger::read(dir.path(), None);
    let _ = ledger::read(dir.path(), Some(period));
});
