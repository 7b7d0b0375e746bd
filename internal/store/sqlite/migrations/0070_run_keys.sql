-- Idempotency keys of submissions: the first submission with a key makes a
-- run, a later one with the same key in the same tenant gets that run.
CREATE TABLE run_keys (
    tenant     TEXT NOT NULL,
    idem_key   TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, idem_key)
);
