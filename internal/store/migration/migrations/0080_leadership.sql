-- The leader of the servers that share a database and its epoch, bumped by
-- each new leader (see docs/architecture.md#several-servers). SQLite serves
-- one server: the row stays at epoch 0 and nothing is fenced.
CREATE TABLE leadership (
    id     INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    epoch  {{int64}} NOT NULL,
    leader TEXT NOT NULL,
    api    TEXT NOT NULL,
    since  {{int64}} NOT NULL
);
INSERT INTO leadership (id, epoch, leader, api, since) VALUES (1, 0, '', '', 0);

{{if postgres}}
-- hodei_fence is the first statement of every batch a leader commits: it
-- fails the batch (SQLSTATE HF001) unless want is the current epoch. FOR
-- SHARE makes a new leader's bump wait for batches under way, and a batch
-- that starts after the bump see the new epoch.
CREATE FUNCTION hodei_fence(want BIGINT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    cur BIGINT;
BEGIN
    SELECT epoch INTO cur FROM leadership WHERE id = 1 FOR SHARE;
    IF cur IS DISTINCT FROM want THEN
        RAISE EXCEPTION 'fenced: epoch % is not the current epoch %', want, cur USING ERRCODE = 'HF001';
    END IF;
END
$$;
{{end}}
