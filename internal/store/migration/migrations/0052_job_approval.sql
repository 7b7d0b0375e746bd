-- Approval gates: a job whose environment asks for an approval waits in
-- state waiting_approval until its deadline (0: none); the decision
-- (approved, rejected, timed_out), who made it, when and why stay with the
-- job.
ALTER TABLE jobs ADD COLUMN approval_deadline {{int64}} NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN decision TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN decided_by TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN decided_at {{int64}} NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN decision_comment TEXT NOT NULL DEFAULT '';
