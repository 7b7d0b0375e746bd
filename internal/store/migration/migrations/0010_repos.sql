-- Repositories of each tenant, the webhook deliveries they received (the
-- forge's delivery id makes a redelivery start nothing), what started each
-- run from a repository, and the commit statuses posted for those runs.
CREATE TABLE repos (
    tenant         {{key}} NOT NULL,
    name           {{key}} NOT NULL,
    url            TEXT NOT NULL,
    forge          TEXT NOT NULL,
    api_url        TEXT NOT NULL,
    token_secret   TEXT NOT NULL,
    webhook_secret TEXT NOT NULL,
    default_branch TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE deliveries (
    tenant  TEXT NOT NULL,
    repo    TEXT NOT NULL,
    id      TEXT NOT NULL,
    run_ids TEXT NOT NULL, -- space-separated
    at      BIGINT NOT NULL,
    PRIMARY KEY (tenant, repo, id)
);

CREATE TABLE run_triggers (
    run_id     TEXT NOT NULL PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    repo       TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    ref        TEXT NOT NULL,
    event      TEXT NOT NULL,
    branch     TEXT NOT NULL,
    tag        TEXT NOT NULL,
    pr         INTEGER NOT NULL,
    delivery   TEXT NOT NULL
);

CREATE TABLE status_reports (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq    BIGINT NOT NULL,
    state  TEXT NOT NULL,
    error  TEXT NOT NULL,
    at     BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
