-- The outputs of a job that succeeded (what its steps wrote to
-- $HODEI_OUTPUT under its declared names), as a JSON object of strings
-- ('' when it has none): the jobs that need it read them.
ALTER TABLE jobs ADD COLUMN outputs TEXT NOT NULL DEFAULT '';
