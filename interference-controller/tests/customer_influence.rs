//! Influence within limits, against a real controller and database: preferences,
//! charge caps and priority requests are answered with their reasons, recorded in the
//! audit log, refused past the tier's limits, and reach every host's desired state;
//! a closed period's charges over a cap are credited back once, in a line that
//! explains itself.

mod common;

use std::time::{Duration, Instant};

use common::tenants::generate;
use common::{client, seeded, url, Kind};
use interference_controller::store::customer_tokens::{self, Scope};
use interference_controller::store::{influence, secrets};
use interference_core::billing::Period;
use interference_fleet::wire::Influence;
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Customer {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Customer {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// The influence every host is told, once it satisfies `ok` (within 10 s).
async fn influence_until(
    c: &interference_fleet::FleetClient,
    what: &str,
    ok: impl Fn(&Influence) -> bool,
) -> Influence {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = c.desired(None).await.expect("desired").expect("state");
        if ok(&d.influence) {
            return d.influence;
        }
        assert!(Instant::now() < deadline, "{what}: {:?}", d.influence);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn influence_within_limits(kind: Kind) {
    let now = interference_controller::db::sql::now_ms() as u64;
    let fleet = generate(21, now);
    let (_db, server, host_tokens) = seeded(kind, &fleet).await;
    let base = url(server.addr);
    let (host, host_token) = host_tokens.iter().next().expect("a host");
    let agent = client(&base, host_token, Duration::from_secs(1));
    let customer = fleet.customers[0].clone();
    let new = |scope| {
        let db = server.db.clone();
        let customer = customer.clone();
        async move {
            customer_tokens::create(&db, &customer, scope, 3600, None)
                .await
                .expect("token")
        }
    };
    let (write_id, write) = new(Scope::Write).await;
    let (_, read) = new(Scope::Read).await;
    let me = Customer {
        base: base.clone(),
        token: write,
        http: reqwest::Client::new(),
    };
    let reader = Customer {
        token: read,
        ..Customer {
            base: base.clone(),
            token: String::new(),
            http: reqwest::Client::new(),
        }
    };
    let vms: Value = me.call(reqwest::Method::GET, "/v1/vms", None).await.1;
    let vm = |i: usize| vms["vms"][i]["id"].as_str().expect("vm id").to_owned();
    let name = |i: usize| vms["vms"][i]["name"].as_str().expect("vm name").to_owned();
    use reqwest::Method as M;

    // A read token changes nothing.
    let (status, body) = reader
        .call(M::PUT, "/v1/preferences", Some(json!({"no_donor": true})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // No tier yet: a priority request is refused, with the reason, and audited.
    let path = format!("/v1/vms/{}/priority", vm(0));
    let (status, body) = me.call(M::POST, &path, Some(json!({"hours": 2}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["accepted"], false);
    assert!(
        body["reason"]
            .as_str()
            .expect("reason")
            .contains("no SLA tier"),
        "{body}"
    );

    // The operator defines tiers and puts the customer in one.
    interference_controller::ops::set_policy(
        &server.db,
        "fleet",
        "[fleet.tiers.gold]\npriority_hours_per_month = 5\nmax_priority_share = 1.0\n",
        "test",
    )
    .await
    .expect("policy");
    let mut row = influence::customer(&server.db, &customer)
        .await
        .expect("row");
    row.tier = Some("gold".into());
    influence::set_customer(&server.db, &customer, &row)
        .await
        .expect("tier");
    tokio::time::sleep(Duration::from_millis(700)).await; // the snapshot reloads

    let (status, body) = me.call(M::POST, &path, Some(json!({"hours": 2}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .expect("reason")
            .contains("priority VM until"),
        "{body}"
    );
    let grant_end = body["grant"]["end"].as_str().expect("end").to_owned();
    // The host is told: the VM by uuid, until the grant's end.
    let uuid = fleet
        .vms_of(&customer)
        .iter()
        .find(|v| v.name == name(0))
        .map(|v| v.uuid.clone());
    let told = influence_until(&agent, "the priority grant reaches the host", |i| {
        i.priority
            .iter()
            .any(|g| g.vm.uuid == uuid && g.vm.customer == customer)
    })
    .await;
    let g = &told.priority[0];
    assert_eq!(
        interference_core::billing::period::rfc3339(g.until_ms),
        grant_end,
        "the host keeps it until the grant ends"
    );
    // Asked again: already; another VM for 4 more hours: over the tier's 5.
    let (status, body) = me.call(M::POST, &path, Some(json!({"hours": 1}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["reason"].as_str().expect("reason").contains("already"),
        "{body}"
    );
    let other = format!("/v1/vms/{}/priority", vm(1));
    let (status, body) = me.call(M::POST, &other, Some(json!({"hours": 4}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let reason = body["reason"].as_str().expect("reason");
    assert!(
        reason.contains("5 hours") && reason.contains("2.00"),
        "{body}"
    );
    // Bad input names what is wrong.
    let (status, body) = me
        .call(M::POST, &other, Some(json!({"hours": "soon"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().expect("message").contains("hours"),
        "{body}"
    );
    // Cancelled: the host stops treating it as a priority VM.
    let (status, body) = me.call(M::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    influence_until(&agent, "the cancelled grant leaves the host", |i| {
        i.priority.is_empty()
    })
    .await;

    // Donor opt-out, for the account and for one VM.
    let (status, body) = me
        .call(M::PUT, "/v1/preferences", Some(json!({"no_donor": true})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = me
        .call(
            M::PUT,
            &format!("/v1/vms/{}/preferences", vm(1)),
            Some(json!({"no_donor": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    influence_until(&agent, "the opt-outs reach the host", |i| {
        i.no_donor_customers == [customer.clone()]
            && i.no_donor_vms
                .iter()
                .any(|v| v.name.as_deref() == Some(name(1).as_str()))
    })
    .await;

    // A cap already exceeded by this period's charges: the customer is capped.
    let (status, body) = me
        .call(
            M::PUT,
            "/v1/preferences",
            Some(json!({"monthly_charge_cap": "0.000001"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    influence_until(&agent, "the cap reaches the host", |i| {
        i.capped_customers == [customer.clone()]
    })
    .await;
    let prefs = me.call(M::GET, "/v1/preferences", None).await.1;
    assert_eq!(prefs["capped"], true, "{prefs}");
    assert_eq!(prefs["tier"]["name"], "gold");
    assert!(
        (prefs["priority_hours_used_this_month"]
            .as_f64()
            .expect("hours")
            - 0.0)
            .abs()
            < 0.01,
        "a cancelled grant counts only its time: {prefs}"
    );
    let (status, body) = me
        .call(
            M::PUT,
            "/v1/preferences",
            Some(json!({"monthly_charge_cap": "-3"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // The period's overshoot is credited back once (the job does this for the period
    // that just closed; here, for the fleet's own period), and explains itself.
    let ids = secrets::public_ids(&server.db).await.expect("ids");
    let period = Period::containing(fleet.from_ms);
    assert_eq!(
        influence::credit_cap_overshoot(&server.db, &ids, period)
            .await
            .expect("credit"),
        1
    );
    assert_eq!(
        influence::credit_cap_overshoot(&server.db, &ids, period)
            .await
            .expect("again"),
        0
    );
    let inv = me
        .call(M::GET, &format!("/v1/invoices/{period}"), None)
        .await
        .1;
    let credit = inv["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| {
            l["description"]
                .as_str()
                .is_some_and(|d| d.contains("over your monthly cap"))
        })
        .unwrap_or_else(|| panic!("no cap credit in {inv}"))
        .clone();
    let charges = prefs["charges_this_month"]
        .as_str()
        .expect("charges")
        .parse::<f64>()
        .expect("amount");
    let credited = credit["amount"]
        .as_str()
        .expect("amount")
        .parse::<f64>()
        .expect("amount");
    assert!(
        (charges - 0.000001 + credited).abs() < 1e-8,
        "credit {credited} of charges {charges}"
    );
    let id = credit["records"][0].as_str().expect("record");
    let e = me
        .call(M::GET, &format!("/v1/lines/{id}/explain"), None)
        .await
        .1;
    assert_eq!(e["reconciles"], true, "{e}");

    // Every request is in the audit log, accepted or refused, newest first.
    let log = me.call(M::GET, "/v1/audit", None).await.1;
    let entries = log["entries"].as_array().expect("entries");
    let refused = entries.iter().filter(|e| e["accepted"] == false).count();
    let accepted = entries.iter().filter(|e| e["accepted"] == true).count();
    assert_eq!((accepted, refused), (5, 4), "{log}");
    assert!(entries.iter().all(|e| e["token"] == write_id.as_str()));
    assert!(!format!("{log}").contains(host.as_str()));
    server.stop().await;
}
both!(influence_within_limits);
