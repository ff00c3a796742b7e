//! A JSONL samples file (`collect --samples`, the dataset recorder) as `score
//! --replay` reads it. Never a panic.
#![no_main]

use interference::agent::replay::read_ticks;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join("samples.jsonl");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = read_ticks(&path);
});
