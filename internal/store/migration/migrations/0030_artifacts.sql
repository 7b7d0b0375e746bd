-- Artifacts of jobs and cache entries: what was stored where (the object
-- in the blob store), its size and the sha256 of every file in it (files,
-- JSON), so that every download is checked against what was uploaded.
-- kind is 'artifact' (run_id, job_id, attempt, name) or 'cache' (tenant,
-- scope, name: the key).
CREATE TABLE artifacts (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    scope      TEXT NOT NULL DEFAULT '',
    run_id     TEXT NOT NULL DEFAULT '',
    job_id     TEXT NOT NULL DEFAULT '',
    job_key    TEXT NOT NULL DEFAULT '',
    attempt    {{int64}} NOT NULL DEFAULT 0,
    name       TEXT NOT NULL,
    object     TEXT NOT NULL,
    size       {{int64}} NOT NULL,
    files      TEXT NOT NULL,
    created_at {{int64}} NOT NULL,
    expires_at {{int64}} NOT NULL
);
CREATE INDEX artifacts_run ON artifacts (run_id, job_key, name);
CREATE INDEX artifacts_scope ON artifacts (tenant, kind, scope, name);
CREATE INDEX artifacts_expiry ON artifacts (expires_at);
