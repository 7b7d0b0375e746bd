-- RecentDurations reads the most recently finished succeeded jobs at every
-- start of the orchestrator: an index keeps that from scanning every job.
CREATE INDEX jobs_state_finished ON jobs (state, finished_at);
