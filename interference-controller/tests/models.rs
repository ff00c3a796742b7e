//! The model registry: content-addressed bundles verified on the way in, and rollouts
//! through shadow, canary and fleet, promoted and rolled back by hand and by outcomes.

mod common;

use std::time::Duration;

use common::{client, host_token, server, url, Admin, Kind, TestDb};
use interference_controller::domain::rollout::{in_share, Decision};
use interference_controller::jobs::evaluate_rollout_once;
use interference_fleet::wire::{
    sha256_hex, ActionPhase, BundleFile, BundleManifest, FileRole, IngestBatch, Item, Phase,
    Rollup, ROLLUP_WINDOW_MS,
};

fn model_file(name: &str) -> Vec<u8> {
    let path = interference_fleet_lab::workspace_root()
        .join("models")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Uploads the shipped model's three files and a manifest named `version`; returns the
/// bundle's sha256.
async fn upload_bundle(admin: &Admin, version: &str) -> String {
    let mut files = Vec::new();
    for (role, name) in [
        (FileRole::Onnx, "contention-lstm.onnx"),
        (FileRole::Sidecar, "contention-lstm.json"),
        (FileRole::Golden, "contention-lstm.golden.json"),
    ] {
        let bytes = model_file(name);
        let sha = sha256_hex(&bytes);
        let (status, b) = admin
            .put(&format!("/admin/v1/blobs/{sha}"), bytes.clone())
            .await;
        assert_eq!(status, 200, "{b}");
        files.push(BundleFile {
            role,
            name: name.into(),
            sha256: sha,
            size: bytes.len() as u64,
        });
    }
    let manifest = BundleManifest {
        format: 1,
        name: "contention-lstm".into(),
        version: version.into(),
        files,
    };
    let bytes = manifest.to_bytes();
    let sha = sha256_hex(&bytes);
    let (status, b) = admin.put(&format!("/admin/v1/models/{sha}"), bytes).await;
    assert_eq!(status, 200, "{b}");
    sha
}

async fn a_bundle_with_a_bad_sha_or_bad_contents_is_refused(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let admin = Admin::new(&s.db, s.addr).await;
    // A file under another file's address.
    let wrong = sha256_hex(b"something else");
    let (status, b) = admin
        .put(&format!("/admin/v1/blobs/{wrong}"), b"the bytes".to_vec())
        .await;
    assert_eq!(
        (status, b["code"].as_str()),
        (422, Some("sha_mismatch")),
        "{b}"
    );
    let good = upload_bundle(&admin, "1").await;
    // A manifest whose bytes do not hash to its address.
    let (status, manifest) = {
        let token = host_token(&s.db, "h1").await;
        let c = client(&url(s.addr), &token, Duration::ZERO);
        (
            200,
            c.model_manifest(&good)
                .await
                .expect("agent fetches and verifies"),
        )
    };
    assert_eq!(status, 200);
    let tampered = BundleManifest {
        version: "2".into(),
        ..manifest.clone()
    };
    let (status, b) = admin
        .put(&format!("/admin/v1/models/{good}"), tampered.to_bytes())
        .await;
    assert_eq!(
        (status, b["code"].as_str()),
        (422, Some("sha_mismatch")),
        "{b}"
    );
    // A file that was never uploaded.
    let mut missing = manifest.clone();
    missing.files[2].sha256 = wrong.clone();
    let bytes = missing.to_bytes();
    let (status, b) = admin
        .put(&format!("/admin/v1/models/{}", sha256_hex(&bytes)), bytes)
        .await;
    assert_eq!(
        (status, b["code"].as_str()),
        (409, Some("missing_file")),
        "{b}"
    );
    // A sidecar that vouches for another ONNX file: the "golden" file as the ONNX.
    let mut swapped = manifest.clone();
    swapped.files[0].sha256 = manifest.files[2].sha256.clone();
    swapped.files[0].size = manifest.files[2].size;
    let bytes = swapped.to_bytes();
    let (status, b) = admin
        .put(&format!("/admin/v1/models/{}", sha256_hex(&bytes)), bytes)
        .await;
    assert_eq!(
        (status, b["code"].as_str()),
        (422, Some("invalid_bundle")),
        "{b}"
    );
    assert!(
        b["message"]
            .as_str()
            .unwrap_or("")
            .contains("vouches for ONNX sha256"),
        "{b}"
    );
    // Golden vectors without outputs.
    let golden = br#"{"input": [1.0]}"#.to_vec();
    let gsha = sha256_hex(&golden);
    admin
        .put(&format!("/admin/v1/blobs/{gsha}"), golden.clone())
        .await;
    let mut no_out = manifest.clone();
    no_out.files[2] = BundleFile {
        role: FileRole::Golden,
        name: "g.json".into(),
        sha256: gsha,
        size: golden.len() as u64,
    };
    let bytes = no_out.to_bytes();
    let (status, b) = admin
        .put(&format!("/admin/v1/models/{}", sha256_hex(&bytes)), bytes)
        .await;
    assert_eq!(
        (status, b["code"].as_str()),
        (422, Some("invalid_bundle")),
        "{b}"
    );
    // Only the good bundle is registered.
    let (_, list) = admin.get("/admin/v1/models").await;
    assert_eq!(list["models"].as_array().map(Vec::len), Some(1), "{list}");
    s.stop().await;
}
both!(a_bundle_with_a_bad_sha_or_bad_contents_is_refused);

async fn a_rollout_goes_shadow_canary_fleet_and_back(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let admin = Admin::new(&s.db, s.addr).await;
    let (status, b) = admin
        .put(
            "/admin/v1/policy/fleet",
            "[fleet.rollout]\ncanary_share_pct = 50\nauto_promote = false\n",
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let sha = upload_bundle(&admin, "2").await;
    let mut tokens = Vec::new();
    for i in 0..8 {
        tokens.push((format!("h{i}"), host_token(&s.db, &format!("h{i}")).await));
    }
    let (status, r) = admin.post(&format!("/admin/v1/models/{sha}/promote")).await;
    assert_eq!((status, r["stage"].as_str()), (200, Some("shadow")), "{r}");
    let id = r["id"].as_str().expect("rollout id").to_owned();
    let desired = |stage_check: &'static str| {
        let tokens = tokens.clone();
        let base = url(s.addr);
        let sha = sha.clone();
        let id = id.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            for (host, token) in &tokens {
                let d = client(&base, token, Duration::ZERO)
                    .desired(None)
                    .await
                    .expect("desired")
                    .expect("state");
                let share = in_share(&id, host, 50);
                let (active, shadow) = (
                    d.model.active.map(|m| m.sha256),
                    d.model.shadow.map(|m| m.sha256),
                );
                match stage_check {
                    "shadow" => assert_eq!(
                        (active, shadow),
                        (None, share.then(|| sha.clone())),
                        "{host}"
                    ),
                    "canary" => assert_eq!(
                        (active, shadow),
                        (share.then(|| sha.clone()), None),
                        "{host}"
                    ),
                    "fleet" => assert_eq!((active, shadow), (Some(sha.clone()), None), "{host}"),
                    _ => assert_eq!((active, shadow), (None, None), "{host}"),
                }
            }
        }
    };
    desired("shadow").await;
    let (_, r) = admin.post(&format!("/admin/v1/models/{sha}/promote")).await;
    assert_eq!(r["stage"], "canary");
    desired("canary").await;
    let (_, r) = admin.post(&format!("/admin/v1/models/{sha}/promote")).await;
    assert_eq!(r["stage"], "fleet");
    desired("fleet").await;
    let (status, r) = admin.post("/admin/v1/models/rollback").await;
    assert_eq!(
        (status, r["stage"].as_str()),
        (200, Some("rolled_back")),
        "{r}"
    );
    desired("built-in").await;
    let (status, _) = admin.post("/admin/v1/models/rollback").await;
    assert_eq!(status, 409, "nothing left to roll back");
    s.stop().await;
}
both!(a_rollout_goes_shadow_canary_fleet_and_back);

/// Candidate hosts act four times as often per VM-hour as the baseline: the rollout job
/// rolls the canary back; a well-behaved candidate is promoted.
async fn outcomes_roll_a_canary_back_or_promote_it(kind: Kind) {
    let t = TestDb::new(kind);
    let s = server(&t).await;
    let admin = Admin::new(&s.db, s.addr).await;
    let (status, b) = admin
        .put("/admin/v1/policy/fleet", "[fleet.rollout]\ncanary_share_pct = 50\nmin_stage_duration = \"0s\"\nmin_vm_hours = 1.0\n")
        .await;
    assert_eq!(status, 200, "{b}");
    for (version, candidate_actions, expect_rollback) in [("bad", 8u32, true), ("good", 2, false)] {
        let sha = upload_bundle(&admin, version).await;
        let (_, r) = admin.post(&format!("/admin/v1/models/{sha}/promote")).await;
        let (_, r) = if r["stage"] == "shadow" {
            admin.post(&format!("/admin/v1/models/{sha}/promote")).await
        } else {
            (200, r)
        };
        assert_eq!(r["stage"], "canary", "{r}");
        let since = r["stage_since_ms"].as_i64().expect("since") as u64;
        // Two hosts, 12 rollups each (1 VM-hour); the candidate host acts more.
        for (host, model, actions) in [
            (
                format!("cand-{version}"),
                Some(sha.clone()),
                candidate_actions,
            ),
            (format!("base-{version}"), None, 2),
        ] {
            let token = host_token(&s.db, &host).await;
            let mut items = Vec::new();
            for w in 0..12u64 {
                items.push(Item::Rollup(Rollup {
                    vm: "vm-1".into(),
                    vm_uuid: None,
                    customer: None,
                    window_start_ms: since + w * ROLLUP_WINDOW_MS,
                    window_ms: ROLLUP_WINDOW_MS,
                    cpu_usage_cores: 1.0,
                    run_queue_wait_ms: 5.0,
                    preempted_ms: 1.0,
                    io_ops: 0,
                    io_bytes: 0,
                    memory_mib: 1024,
                    max_score: 50.0,
                    actions: 0,
                    model_sha: model.clone(),
                    forecast_abs_error: None,
                }));
            }
            for a in 0..actions {
                items.push(Item::ActionPhase(ActionPhase {
                    id: format!("{host}-{a}/done/{a}"),
                    action_id: format!("{host}-{a}"),
                    phase: Phase::Done,
                    at_ms: since + 1000 + u64::from(a),
                    rung: Some("cpu_weight".into()),
                    vm: Some("vm-1".into()),
                    vm_uuid: None,
                    customer: Some("acme".into()),
                    model_sha: model.clone(),
                    victim_wait_after_ms: None,
                    detail: serde_json::Value::Null,
                }));
            }
            client(&url(s.addr), &token, Duration::ZERO)
                .ingest(&IngestBatch { seq: 1, items })
                .await
                .expect("ingest");
        }
        let decision = evaluate_rollout_once(&s.db, &s.metrics)
            .await
            .expect("evaluate")
            .expect("a rollout");
        let (_, list) = admin.get("/admin/v1/models").await;
        let last = list["rollouts"]
            .as_array()
            .and_then(|v| v.last().cloned())
            .expect("rollouts");
        if expect_rollback {
            assert!(
                matches!(&decision, Decision::Rollback(m) if m.starts_with("actions per VM-hour 8.000")),
                "{decision:?}"
            );
            assert_eq!(last["stage"], "rolled_back", "{last}");
            assert!(
                last["reason"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("automatic: actions per VM-hour"),
                "{last}"
            );
        } else {
            assert_eq!(
                decision,
                Decision::Promote(interference_controller::domain::rollout::Stage::Fleet)
            );
            assert_eq!(last["stage"], "fleet", "{last}");
        }
    }
    s.stop().await;
}
both!(outcomes_roll_a_canary_back_or_promote_it);
