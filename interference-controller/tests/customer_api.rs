//! The customer API against a real controller and database, fed by generated fleets
//! through the agents' ingest route: tenants never see each other (every route of the
//! OpenAPI document, every token), foreign ids answer like missing ones, invoices and
//! explanations carry the numbers of `interference bill` and `interference explain`,
//! tokens fail closed, expire, are revoked and are rate limited.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::tenants::generate;
use common::{fast_config, seeded, url, Kind, TestDb};
use interference_controller::db::Db;
use interference_controller::server::{start, RunningServer};
use interference_controller::store::customer_tokens::{self, Scope};
use interference_core::billing::Period;
use proptest::prelude::*;
use reqwest::StatusCode;

/// A write token: the isolation test calls every route, the writes too.
async fn customer_token(db: &Db, customer: &str) -> String {
    customer_tokens::create(db, customer, Scope::Write, 3600, None)
        .await
        .expect("token")
        .1
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(server: &RunningServer) -> Self {
        Self {
            base: url(server.addr),
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, token: Option<&str>, path: &str) -> (StatusCode, String) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    }

    async fn send(
        &self,
        token: &str,
        method: reqwest::Method,
        path: String,
        body: Option<serde_json::Value>,
    ) -> (StatusCode, String) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    }

    async fn json(&self, token: &str, path: &str) -> serde_json::Value {
        let (status, body) = self.get(Some(token), path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        serde_json::from_str(&body).expect("json")
    }
}

/// What one customer can name: its VM ids, line ids and periods.
#[derive(Debug, Default, Clone)]
struct Known {
    vms: Vec<String>,
    lines: Vec<String>,
    periods: Vec<String>,
}

async fn known(api: &Api, token: &str) -> Known {
    let mut k = Known::default();
    let vms = api.json(token, "/v1/vms").await;
    for v in vms["vms"].as_array().expect("vms") {
        k.vms.push(v["id"].as_str().expect("id").to_owned());
    }
    let mut cursor = String::new();
    loop {
        let page = api
            .json(token, &format!("/v1/charges?limit=1000{cursor}"))
            .await;
        for l in page["lines"].as_array().expect("lines") {
            k.lines
                .push(l["x_RecordId"].as_str().expect("id").to_owned());
            let p = l["x_Period"].as_str().expect("period").to_owned();
            if !k.periods.contains(&p) {
                k.periods.push(p);
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    k
}

/// One request: method, path and query, body.
type Request = (reqwest::Method, String, Option<serde_json::Value>);

/// A body every write route accepts from a customer with no tier (each answered, some
/// refused with a reason: all must leak nothing).
fn body_for(method: &reqwest::Method, path: &str) -> Option<serde_json::Value> {
    match (method.as_str(), path) {
        ("PUT", p) if p.ends_with("/preferences") && p.starts_with("/v1/vms/") => {
            Some(serde_json::json!({"no_donor": false}))
        }
        ("PUT", _) => Some(serde_json::json!({"no_donor": false})),
        ("POST", p) if p.ends_with("/priority") => Some(serde_json::json!({"hours": 1})),
        _ => None,
    }
}

/// Every concrete request the document's routes allow with these ids, every method.
fn requests(doc: &serde_json::Value, mine: &Known, range: &str) -> Vec<Request> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let variants: Vec<String> = if path.contains("{vm}") {
            mine.vms.iter().map(|v| path.replace("{vm}", v)).collect()
        } else if path.contains("{period}") {
            mine.periods
                .iter()
                .map(|p| path.replace("{period}", p))
                .collect()
        } else if path.contains("{id}") {
            mine.lines
                .iter()
                .take(40)
                .map(|id| path.replace("{id}", id))
                .collect()
        } else {
            vec![path.clone()]
        };
        for method in item.as_object().expect("operations").keys() {
            let method =
                reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            for v in &variants {
                let body = body_for(&method, v);
                let mut add = |p: String| out.push((method.clone(), p, body.clone()));
                if method != reqwest::Method::GET {
                    add(v.clone());
                    continue;
                }
                add(format!("{v}?{range}"));
                if v.ends_with("/charges") {
                    for vm in &mine.vms {
                        add(format!("{v}?vm={vm}&limit=1000"));
                        add(format!("{v}?vm={vm}&format=csv&limit=1000"));
                    }
                    for kind in ["base", "charge", "credit"] {
                        add(format!("{v}?kind={kind}&limit=1000"));
                    }
                }
                if v.ends_with("/costs") {
                    for by in ["day", "vm", "kind"] {
                        add(format!("{v}?by={by}"));
                    }
                }
                if v.contains("/invoices/") {
                    add(format!("{v}?format=csv"));
                }
            }
        }
    }
    out
}

/// `path` with its id replaced by `foreign` (an id of another customer's) and by an id
/// that exists nowhere: both must answer the same.
fn with_id(path: &str, own: &str, other: &str) -> String {
    path.replacen(own, other, 1)
}

async fn isolation(kind: Kind, seed: u64) {
    let now = interference_controller::db::sql::now_ms() as u64;
    let fleet = generate(seed, now);
    let (db, server, _) = seeded(kind, &fleet).await;
    let api = Api::new(&server);
    let doc: serde_json::Value =
        serde_json::from_str(&api.get(None, "/v1/openapi.json").await.1).expect("doc");
    let mut tokens = BTreeMap::new();
    let mut ids = BTreeMap::new();
    for c in &fleet.customers {
        let t = customer_token(&server.db, c).await;
        ids.insert(c.clone(), known(&api, &t).await);
        tokens.insert(c.clone(), t);
    }
    let range = format!(
        "from={}&to={}",
        interference_core::billing::period::rfc3339(fleet.from_ms - 600_000),
        interference_core::billing::period::rfc3339(fleet.to_ms + 600_000)
    );
    let mut checked = 0;
    for c in &fleet.customers {
        let token = &tokens[c];
        let mine = &ids[c];
        assert_eq!(
            mine.vms.len(),
            fleet.vms_of(c).len(),
            "{c} sees its own VMs, once each (a migrated VM once)"
        );
        let secrets = fleet.secrets_for(c);
        for (method, path, payload) in requests(&doc, mine, &range) {
            let send = |path: String| api.send(token, method.clone(), path, payload.clone());
            let (status, body) = send(path.clone()).await;
            // Writes may be refused (no tier, no grant to cancel): answered all the same.
            assert!(
                status.is_success() || status == StatusCode::CONFLICT,
                "{c} {method} {path}: {status} {body}"
            );
            for s in &secrets {
                assert!(
                    !body.contains(s.as_str()),
                    "{c} {path}: {s:?} leaked in {body}"
                );
            }
            checked += 1;
            // Every other customer's id in this position answers as a missing one.
            let own = [&mine.vms, &mine.lines]
                .into_iter()
                .flatten()
                .find(|id| path.contains(id.as_str()));
            if let Some(own) = own {
                let missing = send(with_id(&path, own, "does-not-exist")).await;
                assert_eq!(missing.0, StatusCode::NOT_FOUND, "{path}");
                for (other, theirs) in &ids {
                    if other == c {
                        continue;
                    }
                    for foreign in theirs.vms.iter().chain(theirs.lines.iter().take(5)) {
                        let got = send(with_id(&path, own, foreign)).await;
                        assert_eq!(
                            got, missing,
                            "{c} asking for {other}'s {foreign} via {path}"
                        );
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} requests checked");
    eprintln!(
        "seed {seed}: {} customers, {} hosts, {} lines, {checked} requests checked",
        fleet.customers.len(),
        fleet.hosts.len(),
        fleet.lines.len()
    );
    server.stop().await;
    drop(db);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    /// For generated fleets, every route and every token: nothing of another tenant.
    #[test]
    fn tenants_never_see_each_other_on_any_route(seed in any::<u64>()) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(isolation(Kind::Sqlite, seed));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root/PostgreSQL"]
async fn tenants_never_see_each_other_on_postgres() {
    isolation(Kind::Postgres, 7).await;
}

/// The API's invoice of a period has the numbers `interference bill` computes from the
/// same lines, and every line's explanation reconciles with its amount.
async fn invoices_match_bill(kind: Kind) {
    let now = interference_controller::db::sql::now_ms() as u64;
    let fleet = generate(11, now);
    let (db, server, _) = seeded(kind, &fleet).await;
    let api = Api::new(&server);
    for c in &fleet.customers {
        let token = customer_token(&server.db, c).await;
        let mine: Vec<_> = fleet
            .lines
            .iter()
            .filter(|l| &l.billing_account_id == c)
            .cloned()
            .collect();
        let mut periods: Vec<Period> = mine.iter().map(|l| l.period).collect();
        periods.dedup();
        for p in periods {
            let bill =
                interference_core::billing::invoice(Path::new("ledger"), &fleet.lines, c, Some(p))
                    .expect("bill");
            let inv = api.json(&token, &format!("/v1/invoices/{p}")).await;
            assert_eq!(inv["total"], bill.total.to_string(), "{c} {p}");
            assert_eq!(inv["base"], bill.base.to_string());
            assert_eq!(
                inv["interference_charges"],
                bill.interference_charges.to_string()
            );
            assert_eq!(inv["credits"], bill.credits.to_string());
            let lines = inv["lines"].as_array().expect("lines");
            assert_eq!(lines.len(), bill.lines.len());
            let mut api_amounts: Vec<String> = lines
                .iter()
                .map(|l| l["amount"].as_str().expect("amount").to_owned())
                .collect();
            let mut bill_amounts: Vec<String> =
                bill.lines.iter().map(|l| l.amount.to_string()).collect();
            api_amounts.sort();
            bill_amounts.sort();
            assert_eq!(api_amounts, bill_amounts, "{c} {p}");
            // Each invoice line's records explain, and reconcile.
            for l in lines.iter().take(10) {
                for id in l["records"].as_array().expect("records").iter().take(2) {
                    let id = id.as_str().expect("id");
                    let e = api.json(&token, &format!("/v1/lines/{id}/explain")).await;
                    assert_eq!(e["reconciles"], true, "{e}");
                    assert!(e["text"].as_str().expect("text").contains("Formula"), "{e}");
                }
            }
        }
    }
    server.stop().await;
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_carry_the_numbers_of_interference_bill() {
    invoices_match_bill(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root/PostgreSQL"]
async fn invoices_carry_the_numbers_of_interference_bill_on_postgres() {
    invoices_match_bill(Kind::Postgres).await;
}

/// No token, a wrong one, an expired one and a revoked one all answer 401 alike;
/// a token past its rate answers 429 with Retry-After (the default limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_fail_closed_expire_are_revoked_and_rate_limited() {
    let db = TestDb::new(Kind::Sqlite);
    let server = start(fast_config(&db.url)).await.expect("starts");
    let api = Api::new(&server);
    let unauthorized = api.get(None, "/v1/vms").await;
    assert_eq!(unauthorized.0, StatusCode::UNAUTHORIZED);
    assert_eq!(api.get(Some("ifc_nope"), "/v1/vms").await, unauthorized);
    let (id, token) = customer_tokens::create(&server.db, "acme", Scope::Read, 60, None)
        .await
        .expect("token");
    assert_eq!(api.get(Some(&token), "/v1/vms").await.0, StatusCode::OK);
    // Expired: move its expiry into the past.
    sqlx::query("UPDATE customer_tokens SET expires_ms = 1 WHERE id = $1")
        .bind(&id)
        .execute(server.db.pool())
        .await
        .expect("update");
    assert_eq!(api.get(Some(&token), "/v1/vms").await, unauthorized);
    let (id2, token2) = customer_tokens::create(&server.db, "acme", Scope::Read, 60, None)
        .await
        .expect("token");
    customer_tokens::revoke(&server.db, &id2)
        .await
        .expect("revoke");
    assert_eq!(api.get(Some(&token2), "/v1/vms").await, unauthorized);
    assert!(
        customer_tokens::revoke(&server.db, &id2).await.is_err(),
        "revoked twice"
    );
    // Rate: the default burst passes, then 429 with Retry-After, per token.
    let (_, t3) = customer_tokens::create(&server.db, "acme", Scope::Read, 60, None)
        .await
        .expect("token");
    let (_, t4) = customer_tokens::create(&server.db, "globex", Scope::Read, 60, None)
        .await
        .expect("token");
    let burst = server_burst();
    let mut limited = None;
    for i in 0..(burst as usize + 20) {
        let resp = reqwest::Client::new()
            .get(format!("{}/v1/vms", api.base))
            .bearer_auth(&t3)
            .send()
            .await
            .expect("request");
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry = resp
                .headers()
                .get("retry-after")
                .expect("Retry-After")
                .to_str()
                .expect("ascii")
                .to_owned();
            limited = Some((i, retry));
            break;
        }
    }
    let (at, retry) = limited.expect("the rate limit answers 429");
    assert!(
        at as f64 >= burst - 1.0,
        "limited after {at} requests (burst {burst})"
    );
    assert!(retry.parse::<u64>().expect("seconds") >= 1);
    assert_eq!(
        api.get(Some(&t4), "/v1/vms").await.0,
        StatusCode::OK,
        "another token is not limited"
    );
    // Bad input names the parameter.
    let (status, body) = api.get(Some(&t4), "/v1/charges?period=2026-13").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("period") && body.contains("2026-13"),
        "{body}"
    );
    server.stop().await;
}

fn server_burst() -> f64 {
    interference_controller::state::ServeSettings::default()
        .customer_rate
        .burst
}
