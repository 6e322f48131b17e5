-- The operator's tool, `chat-server admin` (docs/operations.md, "Admin
-- tool"; docs/design/rooms-and-people.md, "The operator's tool").
--
-- A disabled account: its logins are refused and none of its sessions is
-- live (the session and credential queries read this column).
ALTER TABLE users ADD COLUMN disabled_at INTEGER;

-- What the tool changed, for every node to act on: each node reads the
-- rows after the highest id it has seen, every 500 ms, and ends the
-- sessions, streams or room memberships a row names. AUTOINCREMENT, so
-- that an id is never given twice, even after the rows before it are
-- purged (a node remembers the highest id it has seen). kind: 1 user
-- disabled, 2 user enabled, 3 password reset, 4 room deleted, 5 room owner
-- set. Rows older than a day are purged.
CREATE TABLE control_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    kind    INTEGER NOT NULL,
    user_id BLOB,
    room_id BLOB,
    at      INTEGER NOT NULL
);
CREATE INDEX control_events_by_time ON control_events (at);
