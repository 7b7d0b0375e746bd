-- 0001_init: the first schema of Hodei's PostgreSQL store, the same tables,
-- columns and indexes as the SQLite store's 0001_init.
--
-- Times are BIGINT unix nanoseconds in UTC; 0 is the zero time (timestamptz
-- keeps only microseconds). Worker labels are a text[]. Run
-- sources and job specs are stored as given, as BYTEA. Text columns use the
-- "C" collation, so that IDs compare and sort byte by byte, as in SQLite,
-- whatever the database's locale: run IDs sort by time, and ListRuns pages
-- by them.

CREATE TABLE runs (
    id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    pipeline    TEXT COLLATE "C" NOT NULL,
    file        TEXT COLLATE "C" NOT NULL,
    tenant      TEXT COLLATE "C" NOT NULL,
    priority    INTEGER NOT NULL,
    state       TEXT COLLATE "C" NOT NULL,
    source      BYTEA,
    created_at  BIGINT  NOT NULL,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT  NOT NULL,
    error       TEXT    NOT NULL
);

-- ListRuns filters by state or tenant and pages by id, newest first.
CREATE INDEX runs_state_id ON runs (state, id);
CREATE INDEX runs_tenant_id ON runs (tenant, id);

-- ActiveRuns: the runs that are not final (the condition of activeRunsWhere
-- in postgres.go).
CREATE UNIQUE INDEX runs_active ON runs (id) WHERE state NOT IN ('succeeded', 'failed', 'canceled');

CREATE TABLE jobs (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    run_id       TEXT COLLATE "C" NOT NULL REFERENCES runs (id),
    job_key      TEXT COLLATE "C" NOT NULL,
    name         TEXT    NOT NULL,
    idx          INTEGER NOT NULL,
    state        TEXT COLLATE "C" NOT NULL,
    spec         BYTEA,
    attempt      INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    worker_id    TEXT COLLATE "C" NOT NULL,
    queued_at    BIGINT  NOT NULL,
    started_at   BIGINT  NOT NULL,
    finished_at  BIGINT  NOT NULL,
    exit_code    INTEGER NOT NULL,
    error        TEXT    NOT NULL
);

CREATE INDEX jobs_run_idx ON jobs (run_id, idx);
CREATE INDEX jobs_state ON jobs (state);

CREATE TABLE attempts (
    job_id      TEXT COLLATE "C" NOT NULL REFERENCES jobs (id),
    n           INTEGER NOT NULL,
    worker_id   TEXT COLLATE "C" NOT NULL,
    state       TEXT COLLATE "C" NOT NULL,
    assigned_at BIGINT  NOT NULL,
    started_at  BIGINT  NOT NULL,
    finished_at BIGINT  NOT NULL,
    exit_code   INTEGER NOT NULL,
    error       TEXT    NOT NULL,
    PRIMARY KEY (job_id, n)
);

CREATE TABLE log_chunks (
    job_id  TEXT COLLATE "C" NOT NULL REFERENCES jobs (id),
    attempt INTEGER NOT NULL,
    seq     BIGINT  NOT NULL,
    step    INTEGER NOT NULL,
    data    BYTEA,
    at      BIGINT  NOT NULL,
    PRIMARY KEY (job_id, attempt, seq)
);

CREATE TABLE workers (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    pool         TEXT COLLATE "C" NOT NULL,
    state        TEXT COLLATE "C" NOT NULL,
    labels       TEXT[]  NOT NULL,
    cpu_milli    BIGINT  NOT NULL,
    memory_bytes BIGINT  NOT NULL,
    gpu          INTEGER NOT NULL,
    boot_id      TEXT    NOT NULL,
    first_seen   BIGINT  NOT NULL,
    last_seen    BIGINT  NOT NULL
);
