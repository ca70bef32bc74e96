-- The SQLite journal schema 5, as human-rpc-sdk wrote it before budgets per period (schema 6):
-- tests/test_budget_periods_migration.py makes old journals from it.
CREATE TABLE IF NOT EXISTS payments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    invoice_key   TEXT,
    state         TEXT NOT NULL CHECK (state IN ('reserved', 'signed', 'submitted', 'accepted', 'refused', 'failed')),
    created       TEXT NOT NULL,
    updated       TEXT NOT NULL,
    updated_unix  REAL NOT NULL,
    url           TEXT NOT NULL,
    network       TEXT NOT NULL,
    format        TEXT NOT NULL,
    currency      TEXT NOT NULL,
    currency_key  TEXT NOT NULL,
    amount        TEXT NOT NULL,
    atomic_amount TEXT NOT NULL,
    mint          TEXT,
    recipient     TEXT NOT NULL,
    destination   TEXT NOT NULL,
    reference     TEXT,
    payer         TEXT NOT NULL,
    fee_lamports  INTEGER NOT NULL DEFAULT 0,
    rent_lamports INTEGER NOT NULL DEFAULT 0,
    signature     TEXT,
    fee_payer     TEXT,
    blockhash     TEXT,
    transaction_b64 TEXT,
    headers       TEXT,
    http_status   INTEGER,
    settled       INTEGER,
    error         TEXT,
    landed        INTEGER,
    replaces      INTEGER REFERENCES payments(id),
    last_valid_block_height INTEGER,
    blockhash_slot INTEGER,
    landed_proof  TEXT,
    pid           INTEGER,
    host          TEXT,
    process       TEXT,
    genesis_hash  TEXT,
    task_id       TEXT,
    task_outcome  TEXT,
    payment_id    TEXT,
    resume_key    TEXT
);
CREATE TABLE IF NOT EXISTS totals (
    network       TEXT NOT NULL,
    currency_key  TEXT NOT NULL,
    spent         TEXT NOT NULL,
    PRIMARY KEY (network, currency_key)
);
CREATE TABLE IF NOT EXISTS budget_raises (
    network       TEXT NOT NULL,
    currency_key  TEXT NOT NULL,
    raised        TEXT NOT NULL,
    updated       TEXT NOT NULL,
    PRIMARY KEY (network, currency_key)
);
CREATE TABLE IF NOT EXISTS counters (
    name          TEXT PRIMARY KEY,
    value         INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (name, value) VALUES ('writes', 0), ('counted', 0);
CREATE TRIGGER IF NOT EXISTS payments_inserted AFTER INSERT ON payments
    BEGIN UPDATE counters SET value = value + 1 WHERE name = 'writes'; END;
CREATE TRIGGER IF NOT EXISTS payments_updated AFTER UPDATE ON payments
    BEGIN UPDATE counters SET value = value + 1 WHERE name = 'writes'; END;
CREATE TRIGGER IF NOT EXISTS payments_deleted AFTER DELETE ON payments
    BEGIN UPDATE counters SET value = value + 1 WHERE name = 'writes'; END;
CREATE TRIGGER IF NOT EXISTS totals_inserted AFTER INSERT ON totals
    BEGIN UPDATE counters SET value = value + 1 WHERE name = 'writes'; END;
CREATE TRIGGER IF NOT EXISTS totals_updated AFTER UPDATE ON totals
    BEGIN UPDATE counters SET value = value + 1 WHERE name = 'writes'; END;
CREATE TRIGGER IF NOT EXISTS totals_deleted AFTER DELETE ON totals
    BEGIN UPDATE counters SET value = value + 1 WHERE name = 'writes'; END;
CREATE UNIQUE INDEX IF NOT EXISTS payments_one_per_invoice
    ON payments(invoice_key) WHERE invoice_key IS NOT NULL AND state != 'failed';
CREATE INDEX IF NOT EXISTS payments_spending ON payments(network, currency_key, state);
CREATE INDEX IF NOT EXISTS payments_state ON payments(state);
CREATE INDEX IF NOT EXISTS payments_unsettled ON payments(landed, state);
CREATE INDEX IF NOT EXISTS payments_replaces ON payments(replaces);
CREATE INDEX IF NOT EXISTS payments_payer ON payments(payer, network, id);
CREATE INDEX IF NOT EXISTS payments_open_tasks ON payments(task_id)
    WHERE task_id IS NOT NULL AND task_outcome IS NULL;
CREATE INDEX IF NOT EXISTS payments_resumable ON payments(resume_key)
    WHERE resume_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS payments_paid_for ON payments(payer, network, url, id)
    WHERE state = 'accepted';
