//! schemathesis (PyPI; `scripts/setup.sh` installs it pinned under
//! `target/tools/schemathesis`) against `/v1/openapi.json` of a controller seeded with
//! a generated fleet: no 5xx, and every response (status, content type, body) is one
//! the document declares. Fails, never skips, when schemathesis is missing.

mod common;

use std::process::Command;

use common::tenants::generate;
use common::{seeded, url, Kind};
use interference_controller::store::customer_tokens::{self, Scope};
use interference_fleet_lab::workspace_root;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs schemathesis (scripts/setup.sh installs it)"]
async fn schemathesis_finds_no_server_error_and_no_undeclared_response() {
    let st = workspace_root().join("target/tools/schemathesis/bin/st");
    assert!(
        st.exists(),
        "{} is missing: run scripts/setup.sh",
        st.display()
    );
    // schemathesis sends hundreds of requests a second with one token: `seeded` raises
    // the rate limit (tested on its own in customer_api.rs).
    let fleet = generate(5, interference_controller::db::sql::now_ms() as u64);
    let (_db, server, _) = seeded(Kind::Sqlite, &fleet).await;
    let base = url(server.addr);
    let (_, token) =
        customer_tokens::create(&server.db, &fleet.customers[0], Scope::Write, 3600, None)
            .await
            .expect("token");
    // Real ids for the path parameters most of the time (random ones the rest), so
    // that the cases reach past the 404s into the handlers.
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).bearer_auth(&token).send();
    let vms: serde_json::Value = get("/v1/vms")
        .await
        .expect("vms")
        .json()
        .await
        .expect("json");
    let page: serde_json::Value = get("/v1/charges?limit=50")
        .await
        .expect("charges")
        .json()
        .await
        .expect("json");
    let quoted = |v: Vec<String>| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let vm_ids: Vec<String> = vms["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_owned())
        .collect();
    let lines = page["lines"].as_array().expect("lines");
    let line_ids: Vec<String> = lines
        .iter()
        .map(|l| l["x_RecordId"].as_str().expect("id").to_owned())
        .collect();
    let mut periods: Vec<String> = lines
        .iter()
        .map(|l| l["x_Period"].as_str().expect("period").to_owned())
        .collect();
    periods.dedup();
    assert!(
        !vm_ids.is_empty() && !line_ids.is_empty(),
        "the seeded fleet gave the customer data"
    );
    let base_config = std::fs::read_to_string(
        workspace_root().join("interference-controller/tests/schemathesis.toml"),
    )
    .expect("schemathesis.toml");
    let scratch = tempfile::tempdir().expect("temp dir");
    let config_file = scratch.path().join("schemathesis.toml");
    std::fs::write(
        &config_file,
        format!(
            "{base_config}\n[dictionaries.vms]\nvalues = [{}]\n[dictionaries.lines]\nvalues = [{}]\n[dictionaries.periods]\nvalues = [{}]\n\n\
             [parameters]\n\"path.vm\" = {{ dictionary = \"vms\", probability = 0.8 }}\n\
             \"query.vm\" = {{ dictionary = \"vms\", probability = 0.5 }}\n\
             \"path.id\" = {{ dictionary = \"lines\", probability = 0.8 }}\n\
             \"path.period\" = {{ dictionary = \"periods\", probability = 0.8 }}\n",
            quoted(vm_ids),
            quoted(line_ids),
            quoted(periods)
        ),
    )
    .expect("config");
    let doc = format!("{base}/v1/openapi.json");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .current_dir(scratch.path())
            .env("HYPOTHESIS_STORAGE_DIRECTORY", scratch.path().join("hypothesis"))
            .args(["--config-file"])
            .arg(&config_file)
            .args(["run", &doc, "-H", &format!("Authorization: Bearer {token}")])
            // One worker: schemathesis 4.32 raced in hypothesis's lambda-source cache with two.
            .args(["--seed", "42", "--max-examples", "100", "--workers", "1", "--no-color"])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
            ])
            .args(["--request-timeout", "10"])
            .output()
    })
    .await
    .expect("join")
    .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {:?}); its report is above",
        output.status.code()
    );
    assert!(stdout.contains("passed"), "no summary: {stdout}");
    server.stop().await;
}
