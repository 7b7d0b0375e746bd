-- The leader of the servers that share a database and its epoch, bumped by
-- each new leader (see docs/architecture.md#several-servers). SQLite serves
-- one server: the row stays at epoch 0 and nothing is fenced.
CREATE TABLE leadership (
    id     INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    epoch  INTEGER NOT NULL,
    leader TEXT NOT NULL,
    api    TEXT NOT NULL,
    since  INTEGER NOT NULL
);
INSERT INTO leadership (id, epoch, leader, api, since) VALUES (1, 0, '', '', 0);
