//! Ingest is idempotent: the same batch twice, overlapping batches, batches out of
//! order and acknowledgements lost after the commit all leave every item stored once.

mod common;

use common::{agent, assert_holds_exactly, server, url, Kind, TestDb};
use interference_fleet::wire::{IngestBatch, Item, LedgerLine};
use interference_fleet_lab::proxy::FaultProxy;
use interference_fleet_lab::sim::{Report, SimAgent};
use sqlx::Row;

async fn same_batch_twice_is_stored_once(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let mut a = agent(&s.db, &url(s.addr), "h1").await;
    let batch = a.make_batch(50);
    let mut report = Report::default();
    let first = a.send(&batch, &mut report).await.expect("first");
    assert_eq!(
        (first.inserted, first.duplicates, first.replayed_batch),
        (50, 0, false)
    );
    let second = a.send(&batch, &mut report).await.expect("second");
    assert_eq!(
        (second.inserted, second.duplicates, second.replayed_batch),
        (0, 50, true)
    );
    assert_eq!(second.seq, batch.seq);
    assert_holds_exactly(&s.db, &a.sent).await;
    s.stop().await;
}
both!(same_batch_twice_is_stored_once);

async fn overlapping_and_out_of_order_batches(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let mut a = agent(&s.db, &url(s.addr), "h1").await;
    let batch = |a: &SimAgent, seq: u64, from: u64, to: u64| IngestBatch {
        seq,
        items: (from..to).map(|i| a.item(i)).collect(),
    };
    let b1 = batch(&a, 1, 0, 40);
    let b2 = batch(&a, 2, 20, 60); // overlaps b1 by 20 items
    let b3 = batch(&a, 3, 60, 90);
    let mut report = Report::default();
    // Out of order: 3, 1, 2.
    let ack3 = a.send(&b3, &mut report).await.expect("b3");
    let ack1 = a.send(&b1, &mut report).await.expect("b1");
    let ack2 = a.send(&b2, &mut report).await.expect("b2");
    assert_eq!((ack3.inserted, ack1.inserted), (30, 40));
    assert_eq!((ack2.inserted, ack2.duplicates), (20, 20), "{ack2:?}");
    assert_holds_exactly(&s.db, &a.sent).await;
    let last: i64 = sqlx::query("SELECT last_seq FROM hosts WHERE id = 'h1'")
        .fetch_one(s.db.pool())
        .await
        .expect("host")
        .get(0);
    assert_eq!(
        last, 3,
        "the highest sequence committed, whatever the order"
    );
    s.stop().await;
}
both!(overlapping_and_out_of_order_batches);

/// The proxy loses about a third of the answers after the controller committed: the
/// agent resends those batches, and nothing doubles.
async fn lost_acknowledgements_are_resent_and_nothing_doubles(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let proxy = FaultProxy::start(s.addr).await.expect("proxy");
    proxy.set_drop(0.35);
    let mut agents = Vec::new();
    for h in ["h1", "h2", "h3"] {
        agents.push(agent(&s.db, &format!("http://{}", proxy.addr), h).await);
    }
    let mut tasks = Vec::new();
    for mut a in agents {
        tasks.push(tokio::spawn(async move {
            let r = a.run(30, 20, std::time::Duration::ZERO).await.expect("run");
            (a.sent, r)
        }));
    }
    let mut union = interference_fleet_lab::sim::Sent::default();
    let mut retried = 0;
    for t in tasks {
        let (sent, report) = t.await.expect("agent task");
        union.merge(&sent);
        retried += report.retried;
    }
    assert!(
        proxy.dropped() >= 10,
        "answers dropped: {}",
        proxy.dropped()
    );
    assert!(retried >= 10, "batches resent: {retried}");
    assert_holds_exactly(&s.db, &union).await;
    let replayed: i64 = sqlx::query("SELECT COUNT(*) FROM ingest_batches")
        .fetch_one(s.db.pool())
        .await
        .expect("batches")
        .get(0);
    assert_eq!(replayed, 90, "one bookkeeping row per batch");
    let m = s.metrics.render();
    assert!(
        m.lines().any(
            |l| l.starts_with("interference_controller_ingest_batches_replayed_total ")
                && !l.ends_with(" 0")
        ),
        "{m}"
    );
    s.stop().await;
}
both!(lost_acknowledgements_are_resent_and_nothing_doubles);

async fn unreadable_items_are_quarantined_and_the_rest_stored(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let mut a = agent(&s.db, &url(s.addr), "h1").await;
    let mut batch = a.make_batch(10);
    let bad = LedgerLine::from_json_line(r#"{"x_RecordId":"h1-bad/1/charge","BilledCost":1}"#)
        .expect("json");
    batch.items.insert(
        3,
        Item::Ledger {
            line: bad,
            vm_uuid: None,
        },
    );
    let ack = a.client.ingest(&batch).await.expect("ack");
    assert_eq!(ack.rejected.len(), 1);
    assert_eq!(ack.rejected[0].index, 3);
    assert_eq!(
        ack.rejected[0].reason,
        "the ledger line has no ChargePeriodStart"
    );
    assert_eq!(ack.inserted, 10);
    let q: i64 =
        sqlx::query("SELECT COUNT(*) FROM quarantine WHERE host_id = 'h1' AND seq = 1 AND idx = 3")
            .fetch_one(s.db.pool())
            .await
            .expect("quarantine")
            .get(0);
    assert_eq!(q, 1);
    s.stop().await;
}
both!(unreadable_items_are_quarantined_and_the_rest_stored);

async fn a_record_id_with_other_content_is_reported_not_overwritten(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let mut a = agent(&s.db, &url(s.addr), "h1").await;
    let mut b = agent(&s.db, &url(s.addr), "h2").await;
    let batch = IngestBatch {
        seq: 1,
        items: vec![a.item(0)],
    };
    let mut report = Report::default();
    a.send(&batch, &mut report).await.expect("first");
    let Item::Ledger { line, .. } = &batch.items[0] else {
        panic!("item 0 is a ledger line")
    };
    let other = line.as_str().replace("\"cust-0\"", "\"cust-9\"");
    let clash = IngestBatch {
        seq: 1,
        items: vec![Item::Ledger {
            line: LedgerLine::from_json_line(&other).expect("json"),
            vm_uuid: None,
        }],
    };
    let ack = b.send(&clash, &mut report).await.expect("second host");
    assert_eq!(
        ack.conflicts,
        vec!["h1-1-0/1795651200000/charge".to_owned()]
    );
    assert_eq!(ack.inserted, 0);
    assert_holds_exactly(&s.db, &a.sent).await;
    s.stop().await;
}
both!(a_record_id_with_other_content_is_reported_not_overwritten);

async fn an_oversized_batch_or_a_bad_token_is_refused(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let mut a = agent(&s.db, &url(s.addr), "h1").await;
    let big = a.make_batch(5001);
    let e = a.client.ingest(&big).await.expect_err("too big");
    assert_eq!((e.status(), e.code()), (Some(400), Some("bad_request")));
    assert!(!e.is_retryable());
    let stranger = SimAgent::new("hx", &url(s.addr), "ifh_not-a-token", common::quick_retry())
        .expect("client");
    let e = stranger
        .client
        .ingest(&a.make_batch(1))
        .await
        .expect_err("bad token");
    assert_eq!(e.status(), Some(401));
    s.stop().await;
}
both!(an_oversized_batch_or_a_bad_token_is_refused);

/// The migration proof's oracle: base lines of one VM uuid from two hosts must not
/// overlap in time.
async fn a_vm_billed_on_two_hosts_at_once_is_found(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let line = |host: &str, start: &str, end: &str, slot: u64| {
        let text = format!(
            r#"{{"x_RecordId":"base/{host}/web-1/{slot}/1/vcpu","BillingAccountId":"acme","ResourceId":"{host}/web-1","BilledCost":0.01,"ChargePeriodStart":"{start}","ChargePeriodEnd":"{end}","x_Host":"{host}","x_Period":"2026-11","x_Kind":"base"}}"#
        );
        Item::Ledger {
            line: LedgerLine::from_json_line(&text).expect("json"),
            vm_uuid: Some("u-web-1".into()),
        }
    };
    let mut report = Report::default();
    let mut src = agent(&s.db, &url(s.addr), "src").await;
    let mut dst = agent(&s.db, &url(s.addr), "dst").await;
    // Migrated at 10:20:00: the source bills up to it, the target from it.
    src.send(
        &IngestBatch {
            seq: 1,
            items: vec![line(
                "src",
                "2026-11-26T10:00:00.000Z",
                "2026-11-26T10:20:00.000Z",
                1,
            )],
        },
        &mut report,
    )
    .await
    .expect("src");
    dst.send(
        &IngestBatch {
            seq: 1,
            items: vec![line(
                "dst",
                "2026-11-26T10:20:00.000Z",
                "2026-11-26T11:00:00.000Z",
                1,
            )],
        },
        &mut report,
    )
    .await
    .expect("dst");
    assert!(
        interference_controller::store::ingest::double_billed_vms(&s.db)
            .await
            .expect("query")
            .is_empty()
    );
    // A target that bills from 10:19:30 overlaps the source by 30 s.
    dst.send(
        &IngestBatch {
            seq: 2,
            items: vec![line(
                "dst",
                "2026-11-26T10:19:30.000Z",
                "2026-11-26T10:20:00.000Z",
                2,
            )],
        },
        &mut report,
    )
    .await
    .expect("dst");
    assert_eq!(
        interference_controller::store::ingest::double_billed_vms(&s.db)
            .await
            .expect("query"),
        vec![("u-web-1".to_owned(), 30)]
    );
    s.stop().await;
}
both!(a_vm_billed_on_two_hosts_at_once_is_found);
