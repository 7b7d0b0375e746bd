-- 0001_init: the first schema of Hodei's embedded store.
--
-- Times are INTEGER unix nanoseconds in UTC; 0 is the zero time.
-- Worker labels are a JSON array of strings. Run sources and job specs are
-- stored as given, as BLOBs.

CREATE TABLE runs (
    id          TEXT    NOT NULL PRIMARY KEY,
    pipeline    TEXT    NOT NULL,
    file        TEXT    NOT NULL,
    tenant      TEXT    NOT NULL,
    priority    INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    source      BLOB,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    error       TEXT    NOT NULL
);

-- ListRuns filters by state or tenant and pages by id, newest first.
CREATE INDEX runs_state_id ON runs (state, id);
CREATE INDEX runs_tenant_id ON runs (tenant, id);

-- ActiveRuns: the runs that are not final. The WHERE clause must stay the
-- same expression as activeRunsWhere in sqlite.go (same states, same order),
-- or SQLite will not use this index (the query still works, only slower). UNIQUE tells
-- the planner that each run comes once, so the jobs of ActiveRuns come out of
-- jobs_run_idx already in order.
CREATE UNIQUE INDEX runs_active ON runs (id) WHERE state NOT IN ('succeeded', 'failed', 'canceled');

CREATE TABLE jobs (
    id           TEXT    NOT NULL PRIMARY KEY,
    run_id       TEXT    NOT NULL REFERENCES runs (id),
    job_key      TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    idx          INTEGER NOT NULL,
    state        TEXT    NOT NULL,
    spec         BLOB,
    attempt      INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    worker_id    TEXT    NOT NULL,
    queued_at    INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL,
    exit_code    INTEGER NOT NULL,
    error        TEXT    NOT NULL
);

CREATE INDEX jobs_run_idx ON jobs (run_id, idx);
CREATE INDEX jobs_state ON jobs (state);

CREATE TABLE attempts (
    job_id      TEXT    NOT NULL REFERENCES jobs (id),
    n           INTEGER NOT NULL,
    worker_id   TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    assigned_at INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    exit_code   INTEGER NOT NULL,
    error       TEXT    NOT NULL,
    PRIMARY KEY (job_id, n)
) WITHOUT ROWID;

-- Chunks are a few KiB each, too large for a WITHOUT ROWID table to pay off.
CREATE TABLE log_chunks (
    job_id  TEXT    NOT NULL REFERENCES jobs (id),
    attempt INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    step    INTEGER NOT NULL,
    data    BLOB,
    at      INTEGER NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
);

CREATE TABLE workers (
    id           TEXT    NOT NULL PRIMARY KEY,
    pool         TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    labels       TEXT    NOT NULL,
    cpu_milli    INTEGER NOT NULL,
    memory_bytes INTEGER NOT NULL,
    gpu          INTEGER NOT NULL,
    boot_id      TEXT    NOT NULL,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL
);
