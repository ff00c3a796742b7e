-- The customer API (docs/customer-api.md): customer tokens, the fleet's secret for
-- public ids and aliases, the directory that ties a host's VM names to uuids and
-- customers, and the indexes the API's queries read.

-- Customer tokens: sha256 of the token; `id` is the public handle an operator lists
-- and revokes. scope 'read' or 'write'. Expired or revoked tokens answer 401.
CREATE TABLE customer_tokens (
    token_sha256  TEXT PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    customer      TEXT NOT NULL,
    scope         TEXT NOT NULL,
    label         TEXT,
    created_ms    BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL,
    revoked_ms    BIGINT
);
CREATE INDEX customer_tokens_customer ON customer_tokens (customer);

-- Fleet-wide secrets (name 'public_ids': the HMAC key of every id and alias a
-- customer sees). Created once by the first controller that starts.
CREATE TABLE fleet_secrets (
    name        TEXT PRIMARY KEY,
    secret      BYTEA NOT NULL,
    created_ms  BIGINT NOT NULL
);

-- Which VM a name on a host is: its uuid (or, without one, an id derived from its
-- customer and name) and its customer, from the items that name it.
CREATE TABLE vm_directory (
    host_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    vm_id       TEXT NOT NULL,
    vm_uuid     TEXT,
    customer    TEXT NOT NULL,
    first_ms    BIGINT NOT NULL,
    last_ms     BIGINT NOT NULL,
    PRIMARY KEY (host_id, name, vm_id)
);
CREATE INDEX vm_directory_customer ON vm_directory (customer, vm_id);

-- A ledger line's id as its customer sees it (an HMAC of the record id).
ALTER TABLE ledger_lines ADD COLUMN public_id TEXT;
CREATE INDEX ledger_customer_public ON ledger_lines (customer, public_id);
CREATE INDEX ledger_customer_time ON ledger_lines (customer, charge_start_ms);
CREATE INDEX rollups_vm_time ON rollups (host_id, vm, window_start_ms);
CREATE INDEX score_events_victim_time ON score_events (host_id, victim, at_ms);
CREATE INDEX score_events_aggressor_time ON score_events (host_id, aggressor, at_ms);
