use interference_fleet::wire::{ActionPhase, Capacity, CapacitySample, Item, Phase};

use super::*;

fn capacity(at_ms: u64) -> Item {
    Item::Capacity(CapacitySample {
        at_ms,
        capacity: Capacity::default(),
    })
}

fn phase(n: u64) -> Item {
    Item::ActionPhase(ActionPhase {
        id: format!("a-{n}/done"),
        action_id: format!("a-{n}"),
        phase: Phase::Done,
        at_ms: n,
        rung: Some("weight".into()),
        vm: Some("web".into()),
        vm_uuid: None,
        customer: Some("acme".into()),
        model_sha: None,
        victim_wait_after_ms: None,
        detail: serde_json::Value::Null,
    })
}

fn ids(batch: &OutboxBatch) -> Vec<String> {
    batch.items.iter().filter_map(Item::id).collect()
}

#[test]
fn items_are_read_after_the_mark_and_a_reopen_resumes_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Outbox::open(dir.path(), 1 << 20, OutboxMark::default()).unwrap();
    o.push(&[capacity(1), phase(2), capacity(3)]).unwrap();
    assert_eq!(o.pending(), 3);
    let b = o.read(2).unwrap();
    assert_eq!(ids(&b), ["1", "a-2/done"]);
    let mark = o.ack(&b).unwrap().expect("same generation");
    assert_eq!(o.pending(), 1);
    o.push(&[capacity(4)]).unwrap();
    drop(o);

    let mut o = Outbox::open(dir.path(), 1 << 20, mark).unwrap();
    assert_eq!(o.pending(), 2);
    assert_eq!(ids(&o.read(10).unwrap()), ["3", "4"]);
    // A mark of another generation (or none) means nothing was acknowledged.
    let mut o2 = Outbox::open(dir.path(), 1 << 20, OutboxMark::default()).unwrap();
    assert_eq!(o2.pending(), 4);
    assert_eq!(o2.read(10).unwrap().items.len(), 4);
    // A mark inside a line is not trusted either.
    let inside = OutboxMark {
        offset: mark.offset - 1,
        ..mark
    };
    drop(o);
    let o3 = Outbox::open(dir.path(), 1 << 20, inside).unwrap();
    assert_eq!(o3.pending(), 4);
}

#[test]
fn a_torn_last_line_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Outbox::open(dir.path(), 1 << 20, OutboxMark::default()).unwrap();
    o.push(&[capacity(1)]).unwrap();
    drop(o);
    let path = dir.path().join("outbox-1.jsonl");
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"capacity\":{\"at_").unwrap();
    let mut o = Outbox::open(dir.path(), 1 << 20, OutboxMark::default()).unwrap();
    assert_eq!(o.pending(), 1);
    assert_eq!(ids(&o.read(10).unwrap()), ["1"]);
    o.push(&[capacity(2)]).unwrap();
    assert_eq!(ids(&o.read(10).unwrap()), ["1", "2"]);
}

#[test]
fn a_full_buffer_drops_the_oldest_summaries_and_never_an_action_phase() {
    let dir = tempfile::tempdir().unwrap();
    let one = serde_json::to_vec(&capacity(1_000_000)).unwrap().len() as u64 + 1;
    // Room for about 20 capacity lines.
    let max = one * 20;
    let mut o = Outbox::open(dir.path(), max, OutboxMark::default()).unwrap();
    let before = o.mark();
    o.push(&[phase(0)]).unwrap();
    for t in 1..=40u64 {
        o.push(&[capacity(1_000_000 + t)]).unwrap();
    }
    assert!(o.dropped() > 0, "nothing dropped");
    assert!(o.mark().generation > before.generation);
    let b = o.read(100).unwrap();
    let got = ids(&b);
    assert_eq!(got[0], "a-0/done", "the action phase is kept: {got:?}");
    // The newest are kept, in order, and everything kept or dropped adds up.
    assert_eq!(got.last().map(String::as_str), Some("1000040"));
    let kept: Vec<u64> = got[1..].iter().map(|s| s.parse().unwrap()).collect();
    assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "{kept:?}");
    assert_eq!(kept.len() as u64 + o.dropped(), 40);
    assert_eq!(o.pending(), got.len() as u64);
    // The unacknowledged bytes stay within the limit.
    let file = dir
        .path()
        .join(format!("outbox-{}.jsonl", o.mark().generation));
    assert!(std::fs::metadata(&file).unwrap().len() <= max);
    // A batch read before the rewrite is not acknowledged into the new generation.
    let stale = OutboxBatch {
        end: OutboxMark {
            generation: before.generation,
            offset: 10,
        },
        ..OutboxBatch::default()
    };
    assert_eq!(o.ack(&stale).unwrap(), None);
    // Only older generation files are removed.
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1);
}

#[test]
fn action_phases_alone_outgrow_the_limit_rather_than_being_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Outbox::open(dir.path(), 200, OutboxMark::default()).unwrap();
    for n in 0..10 {
        o.push(&[phase(n)]).unwrap();
    }
    assert_eq!(o.dropped(), 0);
    assert_eq!(o.read(100).unwrap().items.len(), 10);
}

#[test]
fn a_wholly_acknowledged_long_generation_is_replaced_by_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Outbox::open(dir.path(), 64 << 20, OutboxMark::default()).unwrap();
    let items: Vec<Item> = (0..20_000).map(capacity).collect();
    o.push(&items).unwrap();
    let mut mark = o.mark();
    loop {
        let b = o.read(500).unwrap();
        if b.lines == 0 {
            break;
        }
        mark = o.ack(&b).unwrap().expect("ack");
    }
    assert_eq!(
        mark,
        OutboxMark {
            generation: 2,
            offset: 0
        }
    );
    assert_eq!(o.pending(), 0);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["outbox-2.jsonl"]);
    assert_eq!(
        std::fs::metadata(dir.path().join("outbox-2.jsonl"))
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn after_a_crash_between_generations_the_newest_is_kept_and_sent_whole() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("outbox-3.jsonl"), b"").unwrap();
    let line = serde_json::to_string(&capacity(9)).unwrap();
    std::fs::write(dir.path().join("outbox-4.jsonl"), format!("{line}\n")).unwrap();
    // The cursor still holds a mark of generation 3.
    let mut o = Outbox::open(
        dir.path(),
        1 << 20,
        OutboxMark {
            generation: 3,
            offset: 0,
        },
    )
    .unwrap();
    assert!(!dir.path().join("outbox-3.jsonl").exists());
    assert_eq!(ids(&o.read(10).unwrap()), ["9"]);
}
