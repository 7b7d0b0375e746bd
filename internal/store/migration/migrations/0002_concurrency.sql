-- Concurrency groups: a run remembers its group so that a restarted
-- orchestrator can hold back the same runs.
ALTER TABLE runs ADD COLUMN concurrency_group {{key}} NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN concurrency_limit INTEGER NOT NULL DEFAULT 0;
