-- The values a run was given for its pipeline's inputs, as a JSON object
-- of strings ('' when it was given none).
ALTER TABLE runs ADD COLUMN inputs TEXT NOT NULL DEFAULT '';
