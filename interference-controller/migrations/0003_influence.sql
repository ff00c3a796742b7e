-- Customers' influence (docs/customer-api.md, "Influence"): their tier and
-- preferences, per-VM preferences, priority grants, and the audit log of every
-- request, accepted or refused.

-- One row per customer that has a tier or a preference. tier: a key of
-- [fleet.tiers] (set by the operator); charge_cap_nanos: the monthly cap on
-- interference charges (NULL: none); no_donor: 0/1.
CREATE TABLE customers (
    id                TEXT PRIMARY KEY,
    tier              TEXT,
    charge_cap_nanos  BIGINT,
    no_donor          BIGINT NOT NULL DEFAULT 0,
    updated_ms        BIGINT NOT NULL
);

CREATE TABLE vm_prefs (
    customer    TEXT NOT NULL,
    vm_id       TEXT NOT NULL,
    vm_uuid     TEXT,
    vm_name     TEXT NOT NULL,
    no_donor    BIGINT NOT NULL DEFAULT 0,
    updated_ms  BIGINT NOT NULL,
    PRIMARY KEY (customer, vm_id)
);

-- A VM is a priority VM from start_ms to end_ms (or until cancelled_ms).
CREATE TABLE priority_grants (
    id            TEXT PRIMARY KEY,
    customer      TEXT NOT NULL,
    vm_id         TEXT NOT NULL,
    vm_uuid       TEXT,
    vm_name       TEXT NOT NULL,
    start_ms      BIGINT NOT NULL,
    end_ms        BIGINT NOT NULL,
    cancelled_ms  BIGINT,
    token_id      TEXT NOT NULL
);
CREATE INDEX priority_grants_customer ON priority_grants (customer, start_ms);
CREATE INDEX priority_grants_end ON priority_grants (end_ms);

-- Every request a customer made that changes how its VMs are treated.
CREATE TABLE customer_audit (
    id          TEXT PRIMARY KEY,
    customer    TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    token_id    TEXT NOT NULL,
    request     TEXT NOT NULL,
    target      TEXT NOT NULL,
    accepted    BIGINT NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX customer_audit_customer ON customer_audit (customer, at_ms);

-- Charge caps sum a customer's charges of the period every snapshot reload.
CREATE INDEX ledger_customer_period_kind ON ledger_lines (customer, period, kind);
