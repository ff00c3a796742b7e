//! A stored ledger line as its own customer may read it.
//!
//! The agent writes lines for the host's operator and for `interference bill` on that
//! host: they carry the host's name (`x_Host`, `ResourceId`), record and action ids
//! that embed host and VM names, a migration's target address, and neighbours under
//! the host's own alias. Before a line leaves the controller every one of these is
//! replaced by what [`PublicIds`] derives for the viewing customer; amounts,
//! quantities, prices, times and the words of the line stay as written, so an invoice
//! of redacted lines has the numbers of `interference bill`.

use interference_core::billing::LedgerRecord;

use super::public_ids::{vm_id, PublicIds};

/// What the controller stores of a line besides its text.
#[derive(Debug, Clone)]
pub struct StoredLine {
    pub record_id: String,
    pub host_id: String,
    pub customer: String,
    pub vm_uuid: Option<String>,
}

/// The other side of an action's line (the same action's charge for a credit, or the
/// credit for a charge), when the controller has it.
#[derive(Debug, Clone)]
pub struct OtherSide {
    pub record_id: String,
    pub customer: String,
    pub vm_uuid: Option<String>,
    /// The VM's name on its host.
    pub name: String,
}

/// The VM's name from `ResourceId` (`<host>/<vm>`).
pub fn vm_name<'a>(resource_id: &'a str, host: &str) -> &'a str {
    resource_id
        .strip_prefix(host)
        .and_then(|s| s.strip_prefix('/'))
        .unwrap_or(resource_id)
}

/// Replaces the host alias `from` by `to` wherever the line's words may carry it.
fn replace_alias(r: &mut LedgerRecord, from: &str, to: &str) {
    for field in [
        r.neighbor.as_mut(),
        r.changed_vm.as_mut(),
        r.direction.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        *field = field.replace(from, to);
    }
    r.charge_description = r.charge_description.replace(from, to);
    r.formula = r.formula.replace(from, to);
}

/// The fleet alias of the neighbour named by the host alias of `r`.
fn neighbour_alias(
    ids: &PublicIds,
    viewer: &str,
    stored: &StoredLine,
    other: Option<&OtherSide>,
    host_alias: &str,
) -> String {
    match other {
        Some(o) if o.customer != viewer => {
            ids.neighbour(viewer, &vm_id(o.vm_uuid.as_deref(), &o.customer, &o.name))
        }
        _ => ids.neighbour_on_host(viewer, &stored.host_id, host_alias),
    }
}

/// `r` (the parsed text of `stored`) as `viewer`, its owner, may read it.
pub fn redact_own(
    ids: &PublicIds,
    viewer: &str,
    stored: &StoredLine,
    mut r: LedgerRecord,
    other: Option<&OtherSide>,
) -> LedgerRecord {
    let name = vm_name(&r.resource_id, &stored.host_id).to_owned();
    if let Some(alias) = r.neighbor.clone().filter(|n| n.starts_with('#')) {
        let fleet = neighbour_alias(ids, viewer, stored, other, &alias);
        replace_alias(&mut r, &alias, &fleet);
    }
    // A changed VM shown by alias that is not the pair's neighbour (cannot happen
    // today; redacted all the same).
    if let Some(alias) = r
        .changed_vm
        .clone()
        .filter(|n| n.starts_with('#') && n.len() == 7)
    {
        let fleet = ids.neighbour_on_host(viewer, &stored.host_id, &alias);
        replace_alias(&mut r, &alias, &fleet);
    }
    if let Some(d) = r.resource_delta.as_mut() {
        if r.action.as_deref() == Some("migrate") || d.what == "host" {
            let target = std::mem::replace(&mut d.after, "another host".into());
            if !target.is_empty() {
                r.charge_description = r.charge_description.replace(&target, "another host");
                r.formula = r.formula.replace(&target, "another host");
            }
            d.before = "its host".into();
        }
        if d.what == "rollback" {
            d.before = ids.action(viewer, &d.before);
        }
    }
    r.record_id = ids.record(viewer, &stored.record_id);
    r.resource_id = vm_id(stored.vm_uuid.as_deref(), &stored.customer, &name);
    r.host = ids.host(viewer, &stored.host_id);
    r.action_id = r.action_id.map(|a| ids.action(viewer, &a));
    r
}

/// The other side of an action as `viewer` may see it beside its own line (only its
/// kind, amount and an id that leads nowhere, when it is another customer's).
pub fn redact_other(
    ids: &PublicIds,
    viewer: &str,
    other: &OtherSide,
    r: LedgerRecord,
) -> LedgerRecord {
    if other.customer == viewer {
        let stored = StoredLine {
            record_id: other.record_id.clone(),
            host_id: r.host.clone(),
            customer: other.customer.clone(),
            vm_uuid: other.vm_uuid.clone(),
        };
        return redact_own(ids, viewer, &stored, r, None);
    }
    let mut out = r;
    out.record_id = ids.other_record(viewer, &other.record_id);
    out.billing_account_id = String::new();
    out.resource_id = String::new();
    out.resource_name = String::new();
    out.host = String::new();
    out.action_id = None;
    out.neighbor = None;
    out.changed_vm = None;
    out.direction = None;
    out.charge_description = String::new();
    out.formula = String::new();
    out.resource_delta = None;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::public_ids::SECRET_LEN;

    fn line(host: &str, record: &str) -> LedgerRecord {
        serde_json::from_value(serde_json::json!({
            "x_RecordId": record,
            "BillingAccountId": "acme",
            "BillingCurrency": "EUR",
            "BillingPeriodStart": "2026-12-01T00:00:00Z",
            "BillingPeriodEnd": "2027-01-01T00:00:00Z",
            "ChargePeriodStart": "2026-12-03T10:00:00Z",
            "ChargePeriodEnd": "2026-12-03T10:01:00Z",
            "ChargeCategory": "Usage",
            "ChargeFrequency": "One-Time",
            "ChargeDescription": "Your VM web was slowed by neighbour #a1b2c3: live-migrating it to tcp:10.0.0.3:4444.",
            "ServiceName": "Interference Mitigation",
            "ServiceCategory": "Compute",
            "ProviderName": "interference",
            "ResourceId": format!("{host}/web"),
            "ResourceName": "web",
            "ResourceType": "Virtual Machine",
            "SkuId": "imc-migrate",
            "PricingUnit": "Migrations",
            "PricingQuantity": 1.0,
            "ConsumedUnit": "Migrations",
            "ConsumedQuantity": 1.0,
            "ListUnitPrice": 0.5,
            "ListCost": 0.5,
            "BilledCost": 0.55,
            "EffectiveCost": 0.55,
            "ContractedCost": 0.55,
            "x_Host": host,
            "x_Period": "2026-12",
            "x_Kind": "charge",
            "x_ActionId": format!("{host}-a7"),
            "x_Action": "migrate",
            "x_Role": "protected",
            "x_Neighbor": "#a1b2c3",
            "x_ChangedVm": "web",
            "x_Direction": "web slowed by #a1b2c3",
            "x_ContentionScore": 62.0,
            "x_ResourceDelta": {"what": "host", "before": "this host", "after": "tcp:10.0.0.3:4444", "per_hour": 1.0, "basis": "one live migration"},
            "x_DurationSeconds": 0.0,
            "x_ImpactMultiplier": 1.1,
            "x_Formula": "1 migration × 0.5 × 1.1",
        }))
        .expect("a valid line")
    }

    #[test]
    fn no_host_record_action_target_or_host_alias_survives() {
        let ids = PublicIds::from_secret([3; SECRET_LEN]);
        let stored = StoredLine {
            record_id: "host-alpha/web/host-alpha-a7/0/charge".into(),
            host_id: "host-alpha".into(),
            customer: "acme".into(),
            vm_uuid: Some("uuid-web".into()),
        };
        let other = OtherSide {
            record_id: "host-alpha/web/host-alpha-a7/0/credit".into(),
            customer: "globex".into(),
            vm_uuid: Some("uuid-batch".into()),
            name: "batch".into(),
        };
        let r = redact_own(
            &ids,
            "acme",
            &stored,
            line("host-alpha", &stored.record_id),
            Some(&other),
        );
        let text = serde_json::to_string(&r).expect("serialises");
        for secret in ["host-alpha", "#a1b2c3", "10.0.0.3", "uuid-batch", "batch"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let alias = ids.neighbour("acme", "uuid-batch");
        assert_eq!(r.neighbor.as_deref(), Some(alias.as_str()));
        assert!(
            r.charge_description.contains(&alias),
            "{}",
            r.charge_description
        );
        assert_eq!(r.resource_id, "uuid-web");
        assert_eq!(r.record_id, ids.record("acme", &stored.record_id));
        // The same neighbour seen from another host has the same alias.
        let moved = StoredLine {
            host_id: "host-beta".into(),
            record_id: "host-beta/web/host-beta-a2/0/charge".into(),
            ..stored.clone()
        };
        let r2 = redact_own(
            &ids,
            "acme",
            &moved,
            line("host-beta", &moved.record_id),
            Some(&other),
        );
        assert_eq!(r2.neighbor, r.neighbor);
        assert_eq!(r2.billed_cost, r.billed_cost);
    }

    #[test]
    fn another_customers_side_keeps_only_kind_and_amount() {
        let ids = PublicIds::from_secret([3; SECRET_LEN]);
        let other = OtherSide {
            record_id: "host-alpha/batch/x/0/credit".into(),
            customer: "globex".into(),
            vm_uuid: None,
            name: "batch".into(),
        };
        let r = redact_other(&ids, "acme", &other, line("host-alpha", &other.record_id));
        let text = serde_json::to_string(&r).expect("serialises");
        assert!(
            !text.contains("host-alpha") && !text.contains("batch"),
            "{text}"
        );
        assert!(r.record_id.starts_with("ox_"));
    }
}
