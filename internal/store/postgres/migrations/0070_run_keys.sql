-- Idempotency keys of submissions: the first submission with a key makes a
-- run, a later one with the same key in the same tenant gets that run.
CREATE TABLE run_keys (
    tenant     TEXT COLLATE "C" NOT NULL,
    idem_key   TEXT COLLATE "C" NOT NULL,
    run_id     TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, idem_key)
);
