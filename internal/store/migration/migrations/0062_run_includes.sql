-- The files a run's pipeline includes (include:), by name, as they were
-- read when the run was made: a JSON object of base64 strings ('' when
-- it includes none). A re-run parses the same content.
ALTER TABLE runs ADD COLUMN includes TEXT NOT NULL DEFAULT '';
