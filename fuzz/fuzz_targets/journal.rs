//! The write-ahead journal as a crash, a full disk or a hand edit may leave it: torn
//! lines, garbage, entries out of order. Reading it (what restore and the next start
//! do) never panics, and what it says is in effect names only recorded targets.
#![no_main]

use interference::enforce::Journal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join("journal.jsonl");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(journal) = Journal::read(&path) {
        for entry in journal.in_effect() {
            let _ = entry.intent.target.effect_target();
        }
        let _ = journal.owed();
        let _ = journal.history();
        let _ = journal.last_run();
    }
});
