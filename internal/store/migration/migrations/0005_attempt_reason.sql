-- Why each attempt ended ("lost: worker restarted", "exit 1", ...) and, per
-- job, how many attempts infrastructure losses took: those do not count
-- against the job's retry budget but against its infra_retries.
ALTER TABLE attempts ADD COLUMN reason TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN infra_lost INTEGER NOT NULL DEFAULT 0;
