//! The customer dashboard in a real browser (Debian's Chromium, headless): the page
//! loads with a customer's token, draws the VM's score timeline with its mitigations
//! marked, the neighbour heatmap by alias and the period's charges with their reasons,
//! and shows nothing of another tenant. The screenshot is kept in
//! `target/test-output/customer-dashboard.png`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::tenants::generate;
use common::{seeded, url, Kind};
use interference_controller::store::customer_tokens::{self, Scope};
use interference_fleet_lab::workspace_root;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium, headless, on a closed network: no background connections, no sandbox
/// (root), a fresh profile.
fn chromium(profile: &Path) -> Command {
    let mut c = Command::new(CHROMIUM);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--virtual-time-budget=15000",
        "--window-size=1280,1900",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

fn output_dir() -> PathBuf {
    let dir = workspace_root().join("target/test-output");
    std::fs::create_dir_all(&dir).expect("target/test-output");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium (scripts/setup.sh installs it)"]
async fn the_dashboard_draws_scores_actions_neighbours_and_charges_of_one_tenant_only() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run scripts/setup.sh"
    );
    let now = interference_controller::db::sql::now_ms() as u64;
    // A seed whose first customer has mitigations and neighbours of other customers.
    let fleet = generate(3, now);
    let (_db, server, _) = seeded(Kind::Sqlite, &fleet).await;
    let base = url(server.addr);
    let customer = fleet.customers[0].clone();
    let (_, token) = customer_tokens::create(&server.db, &customer, Scope::Read, 3600, None)
        .await
        .expect("token");
    // What the API says, to compare the page with.
    let http = reqwest::Client::new();
    let get = |path: String| http.get(format!("{base}{path}")).bearer_auth(&token).send();
    let week = interference_core::billing::period::rfc3339(now - 7 * 86_400_000);
    let actions: serde_json::Value = get(format!("/v1/actions?from={week}"))
        .await
        .expect("actions")
        .json()
        .await
        .expect("json");
    let actions = actions["actions"].as_array().expect("actions").clone();
    assert!(!actions.is_empty(), "the seed gives {customer} mitigations");
    let page = format!("{base}/dashboard#token={token}");
    let profile = tempfile::tempdir().expect("profile");
    let shot = output_dir().join("customer-dashboard.png");
    let (dom, screenshot) = {
        let page = page.clone();
        let profile = profile.path().to_owned();
        let shot = shot.clone();
        tokio::task::spawn_blocking(move || {
            let dom = chromium(&profile.join("a"))
                .arg("--dump-dom")
                .arg(&page)
                .output()
                .expect("chromium runs");
            let screenshot = chromium(&profile.join("b"))
                .arg(format!("--screenshot={}", shot.display()))
                .arg(&page)
                .output()
                .expect("chromium runs");
            (dom, screenshot)
        })
        .await
        .expect("join")
    };
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(
        html.contains("data-loaded=\"true\""),
        "the page did not finish loading: {html}"
    );
    // Every VM of the customer's is a button; the busiest one's timeline is drawn with
    // one band per mitigation of it; the heatmap names neighbours by alias.
    for vm in fleet.vms_of(&customer) {
        assert!(
            html.contains(&format!(">{}</button>", vm.name)),
            "VM {} missing",
            vm.name
        );
    }
    assert!(html.contains("id=\"timeline-svg\""), "no timeline");
    // The page opens the VM with the most mitigations (the first listed on a tie).
    let vms: serde_json::Value = get("/v1/vms".into())
        .await
        .expect("vms")
        .json()
        .await
        .expect("json");
    let count = |name: &serde_json::Value| actions.iter().filter(|a| &a["vm"] == name).count();
    let bands = vms["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .map(|v| count(&v["name"]))
        .fold(0, usize::max);
    assert_eq!(
        html.matches("class=\"band action-mark\"").count(),
        bands,
        "one band per mitigation"
    );
    assert!(html.contains("class=\"line\""), "no score line");
    assert!(
        html.contains("id=\"heatmap-svg\"") || html.contains("No neighbour slowed"),
        "no heatmap"
    );
    // The actions table has every action; the invoice every charge and credit, each
    // with its reason.
    assert_eq!(html.matches("<tr class=\"action\">").count(), actions.len());
    let costs: serde_json::Value = get("/v1/costs".into())
        .await
        .expect("costs")
        .json()
        .await
        .expect("json");
    let period = costs["period"].as_str().expect("period");
    let inv: serde_json::Value = get(format!("/v1/invoices/{period}"))
        .await
        .expect("invoice")
        .json()
        .await
        .expect("json");
    let lines: Vec<&serde_json::Value> = inv["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter(|l| l["kind"] != "base")
        .collect();
    assert!(!lines.is_empty());
    for l in &lines {
        let words = l["description"].as_str().expect("description");
        let escaped = words
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(
            html.contains(&escaped),
            "the reason {words:?} is not on the page"
        );
    }
    assert!(
        html.contains(inv["total"].as_str().expect("total")),
        "no total"
    );
    for secret in fleet.secrets_for(&customer) {
        assert!(
            !html.contains(&secret),
            "{secret:?} is on {customer}'s page"
        );
    }
    assert!(
        screenshot.status.success(),
        "{}",
        String::from_utf8_lossy(&screenshot.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot ({} bytes)",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
    server.stop().await;
}
