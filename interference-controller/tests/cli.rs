//! The binary end to end, in a fresh temp directory on a SQLite file: tokens, a policy
//! refused with file:line:field, a model upload, status.

use std::path::Path;
use std::process::{Command, Output};

fn run(db: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_interference-controller"))
        .arg("--database")
        .arg(db)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run interference-controller")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn operator_commands_on_a_fresh_sqlite_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}/state/controller.db", dir.path().display());
    let out = run(
        &db,
        &[
            "hosts", "tokens", "create", "--host", "kvm-1", "--group", "web",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout);
    assert!(
        token.trim().starts_with("ifh_") && token.trim().len() == 68,
        "{token}"
    );

    let bad = dir.path().join("fleet.toml");
    std::fs::write(&bad, "[policy]\non_threshold = 30\n\noff_threshold = 35\n").expect("write");
    let out = run(
        &db,
        &["policy", "set", "fleet", bad.to_str().expect("utf-8")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:4: policy.off_threshold: 35 must be below on_threshold (30)",
            bad.display()
        )),
        "{err}"
    );
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[policy]\non_threshold = 50\n").expect("write");
    let out = run(
        &db,
        &["policy", "set", "fleet", good.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "fleet is at version 1");

    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/contention-lstm.onnx");
    let out = run(&db, &["models", "upload", models.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let sha = text(&out.stdout).trim().to_owned();
    assert_eq!(sha.len(), 64, "{sha}");
    let out = run(&db, &["models", "promote", &sha]);
    assert!(
        text(&out.stdout).contains("is in shadow"),
        "{}",
        text(&out.stdout)
    );

    let out = run(&db, &["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("kvm-1") && s.contains("web") && s.contains("never"),
        "{s}"
    );
    assert!(s.contains("in shadow (10% of hosts)"), "{s}");
    assert!(s.contains("policy       fleet@1"), "{s}");

    let out = run("mysql://x", &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("expected sqlite://PATH or postgres://"),
        "{}",
        text(&out.stderr)
    );
}
