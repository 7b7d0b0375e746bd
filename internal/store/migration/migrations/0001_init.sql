-- 0001_init: the first schema of Hodei's store.
--
-- Times are 64-bit unix nanoseconds in UTC; 0 is the zero time (PostgreSQL's
-- timestamptz keeps only microseconds). Worker labels are a JSON array of
-- strings in SQLite, a text[] in PostgreSQL. Run sources and job specs are
-- stored as given, as bytes. Keys sort byte by byte in both (see key in
-- package migration): run IDs sort by time, and ListRuns pages by them.

CREATE TABLE runs (
    id          {{key}} NOT NULL PRIMARY KEY,
    pipeline    {{key}} NOT NULL,
    file        {{key}} NOT NULL,
    tenant      {{key}} NOT NULL,
    priority    INTEGER NOT NULL,
    state       {{key}} NOT NULL,
    source      {{bytes}},
    created_at  {{int64}} NOT NULL,
    started_at  {{int64}} NOT NULL,
    finished_at {{int64}} NOT NULL,
    error       TEXT    NOT NULL
);

-- ListRuns filters by state or tenant and pages by id, newest first.
CREATE INDEX runs_state_id ON runs (state, id);
CREATE INDEX runs_tenant_id ON runs (tenant, id);

-- ActiveRuns: the runs that are not final. The WHERE clause must stay the
-- same expression as activeRunsWhere in sqlite.go and postgres.go (same
-- states, same order), or SQLite will not use this index (the query still
-- works, only slower). UNIQUE tells the planner that each run comes once, so
-- the jobs of ActiveRuns come out of jobs_run_idx already in order.
CREATE UNIQUE INDEX runs_active ON runs (id) WHERE state NOT IN ('succeeded', 'failed', 'canceled');

CREATE TABLE jobs (
    id           {{key}} NOT NULL PRIMARY KEY,
    run_id       {{key}} NOT NULL REFERENCES runs (id),
    job_key      {{key}} NOT NULL,
    name         TEXT    NOT NULL,
    idx          INTEGER NOT NULL,
    state        {{key}} NOT NULL,
    spec         {{bytes}},
    attempt      INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    worker_id    {{key}} NOT NULL,
    queued_at    {{int64}} NOT NULL,
    started_at   {{int64}} NOT NULL,
    finished_at  {{int64}} NOT NULL,
    exit_code    INTEGER NOT NULL,
    error        TEXT    NOT NULL
);

CREATE INDEX jobs_run_idx ON jobs (run_id, idx);
CREATE INDEX jobs_state ON jobs (state);

CREATE TABLE attempts (
    job_id      {{key}} NOT NULL REFERENCES jobs (id),
    n           INTEGER NOT NULL,
    worker_id   {{key}} NOT NULL,
    state       {{key}} NOT NULL,
    assigned_at {{int64}} NOT NULL,
    started_at  {{int64}} NOT NULL,
    finished_at {{int64}} NOT NULL,
    exit_code   INTEGER NOT NULL,
    error       TEXT    NOT NULL,
    PRIMARY KEY (job_id, n)
){{if sqlite}} WITHOUT ROWID{{end}};

-- Chunks are a few KiB each, too large for a WITHOUT ROWID table to pay off.
CREATE TABLE log_chunks (
    job_id  {{key}} NOT NULL REFERENCES jobs (id),
    attempt INTEGER NOT NULL,
    seq     {{int64}} NOT NULL,
    step    INTEGER NOT NULL,
    data    {{bytes}},
    at      {{int64}} NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
);

CREATE TABLE workers (
    id           {{key}} NOT NULL PRIMARY KEY,
    pool         {{key}} NOT NULL,
    state        {{key}} NOT NULL,
    labels       {{textlist}} NOT NULL,
    cpu_milli    {{int64}} NOT NULL,
    memory_bytes {{int64}} NOT NULL,
    gpu          INTEGER NOT NULL,
    boot_id      TEXT    NOT NULL,
    first_seen   {{int64}} NOT NULL,
    last_seen    {{int64}} NOT NULL
);
