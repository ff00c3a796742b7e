//! The rollup file on a real filesystem: a round trip through save and open, a file
//! torn mid-record, a corrupt record, garbage, a step geometry that changed, and a
//! leftover temporary file. Each problem is reported with the file's path; the VMs
//! concerned start afresh and the agent goes on.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use interference_forecast::rollup::{RollupStore, FILE_NAME};
use interference_forecast::Clock;

fn clock(step_secs: u64) -> Clock {
    Clock::new(
        Duration::from_secs(step_secs),
        Duration::from_secs(step_secs * 288),
        UNIX_EPOCH,
        288,
    )
    .expect("clock")
}

/// A store in `dir` with three VMs of different ages, saved.
fn saved_store(dir: &Path) -> RollupStore {
    let (mut s, problems) = RollupStore::open(dir, &clock(300));
    assert!(problems.is_empty(), "{problems:?}");
    for t in 0..2100i64 {
        s.record("old", t, (t % 97) as f64 * 0.5);
        if t >= 1000 {
            s.record("mid", t, 12.5);
        }
        if t == 2099 {
            s.record("new", t, 3.0);
        }
        s.close_step(t);
    }
    s.save().expect("save");
    s
}

#[test]
fn save_then_open_gives_the_same_rollups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = saved_store(dir.path());
    let (after, problems) = RollupStore::open(dir.path(), &clock(300));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(after.last_closed(), Some(2099));
    for vm in ["old", "mid", "new"] {
        assert_eq!(after.get(vm), before.get(vm), "{vm}");
    }
    assert_eq!(after.get("old").map(|r| r.age()), Some(2040));
    assert_eq!(after.get("mid").map(|r| r.age()), Some(1100));
    let size = std::fs::metadata(dir.path().join(FILE_NAME))
        .expect("file")
        .len();
    assert!(size < 3 * 8200 + 200, "{size} bytes for 3 VMs");
    assert!(!dir.path().join(format!("{FILE_NAME}.tmp")).exists());
}

#[test]
fn a_torn_file_keeps_whole_records_and_names_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    saved_store(dir.path());
    let path = dir.path().join(FILE_NAME);
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() - 10]).expect("tear");
    let (s, problems) = RollupStore::open(dir.path(), &clock(300));
    assert_eq!(problems.len(), 1, "{problems:?}");
    let text = problems[0].to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("torn"),
        "{text}"
    );
    // Records are by name: "mid", "new", "old"; the last one is torn.
    assert!(s.get("mid").is_some() && s.get("new").is_some());
    assert!(s.get("old").is_none(), "the torn VM starts afresh");
}

#[test]
fn a_corrupt_record_costs_its_vm_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    saved_store(dir.path());
    let path = dir.path().join(FILE_NAME);
    let mut bytes = std::fs::read(&path).expect("read");
    // The first record ("mid"): a byte in the middle of its values.
    bytes[48 + 4 + 2 + 3 + 20 + 1000] ^= 0xff;
    std::fs::write(&path, &bytes).expect("corrupt");
    let (mut s, problems) = RollupStore::open(dir.path(), &clock(300));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].vm.as_deref(), Some("mid"));
    assert!(s.get("mid").is_none() && s.get("old").is_some() && s.get("new").is_some());
    // The VM starts afresh at its next value; the store saves again.
    s.record("mid", 2100, 1.0);
    s.close_step(2100);
    assert_eq!(s.get("mid").map(|r| r.age()), Some(1));
    s.save().expect("save after a corrupt record");
}

#[test]
fn garbage_is_set_aside_and_every_vm_starts_afresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    std::fs::write(
        &path,
        b"not a rollup file at all, but long enough for a header....",
    )
    .expect("write");
    let (s, problems) = RollupStore::open(dir.path(), &clock(300));
    assert!(s.is_empty());
    let text = problems[0].to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("magic"),
        "{text}"
    );
    assert!(text.contains(".corrupt"), "{text}");
    assert!(dir.path().join(format!("{FILE_NAME}.corrupt")).exists());
    assert!(!path.exists());
}

#[test]
fn rollups_of_another_step_are_not_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    saved_store(dir.path());
    let (s, problems) = RollupStore::open(dir.path(), &clock(1));
    assert!(s.is_empty());
    assert!(problems[0].what.contains("steps of 300 s"), "{problems:?}");
}

#[test]
fn a_leftover_temporary_file_does_not_matter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = saved_store(dir.path());
    std::fs::write(dir.path().join(format!("{FILE_NAME}.tmp")), b"half a save").expect("write");
    let (after, problems) = RollupStore::open(dir.path(), &clock(300));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(after.get("old"), before.get("old"));
    after.save().expect("a save replaces the leftover");
}
