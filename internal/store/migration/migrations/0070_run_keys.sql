-- Idempotency keys of submissions: the first submission with a key makes a
-- run, a later one with the same key in the same tenant gets that run.
CREATE TABLE run_keys (
    tenant     {{key}} NOT NULL,
    idem_key   {{key}} NOT NULL,
    run_id     {{key}} NOT NULL,
    created_at {{int64}} NOT NULL,
    PRIMARY KEY (tenant, idem_key)
);
