-- The controller's schema, one text for SQLite and PostgreSQL.
--
-- Portable on purpose: types both accept (TEXT, BIGINT, DOUBLE PRECISION, BYTEA;
-- SQLite maps them to TEXT, INTEGER, REAL and keeps BLOBs as they are), no serial
-- columns (ids are the producers' own or random text), no booleans (0/1 BIGINT),
-- no SQL clock (instants are epoch milliseconds bound by the application), money as
-- integer nano-units of the currency.

-- Hosts, as registered and as their last heartbeat described them.
CREATE TABLE hosts (
    id                TEXT PRIMARY KEY,          -- the host's name, bound to its token
    grp               TEXT NOT NULL DEFAULT 'default',
    agent_version     TEXT,
    cpu_model         TEXT,
    qemu_version      TEXT,
    migration_uri     TEXT,
    total_vcpus       BIGINT NOT NULL DEFAULT 0,
    total_memory_mib  BIGINT NOT NULL DEFAULT 0,
    free_vcpus        BIGINT NOT NULL DEFAULT 0,
    free_memory_mib   BIGINT NOT NULL DEFAULT 0,
    vms               BIGINT NOT NULL DEFAULT 0,
    contention        DOUBLE PRECISION NOT NULL DEFAULT 0,
    draining          BIGINT NOT NULL DEFAULT 0,
    registered_ms     BIGINT,
    heartbeat_ms      BIGINT,
    policy_version    TEXT,
    model_sha         TEXT,
    shadow_model_sha  TEXT,
    backlog_items     BIGINT NOT NULL DEFAULT 0,
    oldest_unsent_ms  BIGINT,
    last_seq          BIGINT NOT NULL DEFAULT 0,
    last_ingest_ms    BIGINT
);

-- Bearer tokens, stored as the sha256 of the token (the token itself is shown once).
CREATE TABLE host_tokens (
    token_sha256  TEXT PRIMARY KEY,
    host_id       TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    revoked_ms    BIGINT
);
CREATE TABLE admin_tokens (
    token_sha256  TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    revoked_ms    BIGINT
);

-- One row per committed batch: a resent batch is recognised by (host, seq).
CREATE TABLE ingest_batches (
    host_id      TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    items        BIGINT NOT NULL,
    inserted     BIGINT NOT NULL,
    received_ms  BIGINT NOT NULL,
    PRIMARY KEY (host_id, seq)
);
CREATE INDEX ingest_batches_received ON ingest_batches (received_ms);

-- The fleet's ledger: every agent's lines, byte for byte, keyed by x_RecordId, with
-- the columns invoices and the customer API query. BilledCost in nano-units.
CREATE TABLE ledger_lines (
    record_id          TEXT PRIMARY KEY,
    host_id            TEXT NOT NULL,            -- the host that uploaded it
    customer           TEXT NOT NULL,            -- BillingAccountId
    resource_id        TEXT NOT NULL,
    vm_uuid            TEXT,
    period             TEXT NOT NULL,            -- YYYY-MM
    kind               TEXT NOT NULL,            -- base | charge | credit
    action_id          TEXT,
    billed_cost_nanos  BIGINT NOT NULL,
    charge_start_ms    BIGINT NOT NULL,
    charge_end_ms      BIGINT NOT NULL,
    line               TEXT NOT NULL,
    received_ms        BIGINT NOT NULL
);
CREATE INDEX ledger_customer_period ON ledger_lines (customer, period);
CREATE INDEX ledger_action ON ledger_lines (action_id);
CREATE INDEX ledger_vm_time ON ledger_lines (vm_uuid, charge_start_ms);
CREATE INDEX ledger_host ON ledger_lines (host_id);

-- Action journal phases.
CREATE TABLE action_phases (
    host_id               TEXT NOT NULL,
    id                    TEXT NOT NULL,
    action_id             TEXT NOT NULL,
    phase                 TEXT NOT NULL,
    at_ms                 BIGINT NOT NULL,
    rung                  TEXT,
    vm                    TEXT,
    vm_uuid               TEXT,
    customer              TEXT,
    model_sha             TEXT,
    victim_wait_after_ms  DOUBLE PRECISION,
    detail                TEXT,
    received_ms           BIGINT NOT NULL,
    PRIMARY KEY (host_id, id)
);
CREATE INDEX action_phases_customer_time ON action_phases (customer, at_ms);
CREATE INDEX action_phases_model_time ON action_phases (model_sha, at_ms);
CREATE INDEX action_phases_action ON action_phases (action_id);

-- 5-minute per-VM rollups.
CREATE TABLE rollups (
    host_id             TEXT NOT NULL,
    id                  TEXT NOT NULL,
    vm                  TEXT NOT NULL,
    vm_uuid             TEXT,
    customer            TEXT,
    window_start_ms     BIGINT NOT NULL,
    window_ms           BIGINT NOT NULL,
    cpu_usage_cores     DOUBLE PRECISION NOT NULL,
    run_queue_wait_ms   DOUBLE PRECISION NOT NULL,
    preempted_ms        DOUBLE PRECISION NOT NULL,
    io_ops              BIGINT NOT NULL,
    io_bytes            BIGINT NOT NULL,
    memory_mib          BIGINT NOT NULL,
    max_score           DOUBLE PRECISION NOT NULL,
    actions             BIGINT NOT NULL,
    model_sha           TEXT,
    forecast_abs_error  DOUBLE PRECISION,
    received_ms         BIGINT NOT NULL,
    PRIMARY KEY (host_id, id)
);
CREATE INDEX rollups_model_time ON rollups (model_sha, window_start_ms);

-- Pair scores at or above the off threshold (live and shadow).
CREATE TABLE score_events (
    host_id      TEXT NOT NULL,
    id           TEXT NOT NULL,
    victim       TEXT NOT NULL,
    aggressor    TEXT NOT NULL,
    at_ms        BIGINT NOT NULL,
    score        DOUBLE PRECISION NOT NULL,
    model_sha    TEXT,
    shadow       BIGINT NOT NULL,
    received_ms  BIGINT NOT NULL,
    PRIMARY KEY (host_id, id)
);
CREATE INDEX score_events_model_time ON score_events (model_sha, at_ms);

CREATE TABLE capacity_samples (
    host_id           TEXT NOT NULL,
    at_ms             BIGINT NOT NULL,
    total_vcpus       BIGINT NOT NULL,
    total_memory_mib  BIGINT NOT NULL,
    free_vcpus        BIGINT NOT NULL,
    free_memory_mib   BIGINT NOT NULL,
    vms               BIGINT NOT NULL,
    received_ms       BIGINT NOT NULL,
    PRIMARY KEY (host_id, at_ms)
);

-- Items that could not be read: kept, never dropped, for an operator to look at.
CREATE TABLE quarantine (
    host_id      TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    idx          BIGINT NOT NULL,
    reason       TEXT NOT NULL,
    item         TEXT NOT NULL,
    received_ms  BIGINT NOT NULL,
    PRIMARY KEY (host_id, seq, idx)
);

-- Policy documents: scope 'fleet', 'group:<name>' or 'host:<id>', versions from 1.
CREATE TABLE policy_docs (
    scope       TEXT NOT NULL,
    version     BIGINT NOT NULL,
    body        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    author      TEXT NOT NULL,
    PRIMARY KEY (scope, version)
);

-- Content-addressed files and the bundles that list them.
CREATE TABLE blobs (
    sha256      TEXT PRIMARY KEY,
    size        BIGINT NOT NULL,
    bytes       BYTEA NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE TABLE models (
    sha256      TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    manifest    TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);

-- Model rollouts: shadow -> canary -> fleet, or rolled_back / superseded.
CREATE TABLE rollouts (
    id              TEXT PRIMARY KEY,
    model_sha       TEXT NOT NULL,
    baseline_sha    TEXT,
    stage           TEXT NOT NULL,
    share_pct       BIGINT NOT NULL,
    started_ms      BIGINT NOT NULL,
    stage_since_ms  BIGINT NOT NULL,
    ended_ms        BIGINT,
    reason          TEXT
);
CREATE INDEX rollouts_stage ON rollouts (stage);

-- Room held on a target host for one migration.
CREATE TABLE reservations (
    id           TEXT PRIMARY KEY,
    source_host  TEXT NOT NULL,
    target_host  TEXT NOT NULL,
    vm           TEXT NOT NULL,
    vm_uuid      TEXT,
    vcpus        BIGINT NOT NULL,
    memory_mib   BIGINT NOT NULL,
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL,
    state        TEXT NOT NULL,                  -- active | consumed | released | expired
    ended_ms     BIGINT
);
CREATE INDEX reservations_target_state ON reservations (target_host, state);

-- Named counters: 'generation' changes whenever a desired state may have changed
-- (every replica polls it); 'placement' is the row a placement locks.
CREATE TABLE fleet_counters (
    name   TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);
INSERT INTO fleet_counters (name, value) VALUES ('generation', 1);
INSERT INTO fleet_counters (name, value) VALUES ('placement', 0);
