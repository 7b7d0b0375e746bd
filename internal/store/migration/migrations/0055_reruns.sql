-- Runs made again from an earlier run (hodei rerun), and the jobs such a
-- run carried over from the attempt that ran them (rerun --failed).
CREATE TABLE run_reruns (
    run_id      TEXT NOT NULL PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    rerun_of    TEXT NOT NULL,
    failed_only INTEGER NOT NULL
);

CREATE TABLE carried_jobs (
    job_id       TEXT NOT NULL PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    run_id       TEXT NOT NULL,
    job_key      TEXT NOT NULL,
    from_run     TEXT NOT NULL,
    from_job     TEXT NOT NULL,
    from_attempt INTEGER NOT NULL
);

CREATE INDEX carried_jobs_run ON carried_jobs (run_id);
