-- The chat schema. Ids are UUIDv7 as 16-byte blobs; times are microseconds
-- since the Unix epoch.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id            BLOB PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL,
    -- lower-cased username: uniqueness regardless of case
    username_key  TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    id           BLOB PRIMARY KEY NOT NULL,
    user_id      BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_agent   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    -- the expiry of the newest refresh token: the session dies with it
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Every refresh token ever issued, by hash; a spent one (used_at set) that
-- comes back is a stolen one.
CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    session_id BLOB NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE rooms (
    id         BLOB PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    -- 1 group, 2 direct
    kind       INTEGER NOT NULL,
    -- for direct rooms: the two user ids, ordered; one room per pair
    direct_key BLOB UNIQUE,
    -- the seq of the newest message, bumped in the storing transaction
    last_seq   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE TABLE room_members (
    room_id   BLOB NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX room_members_by_user ON room_members (user_id, room_id);

CREATE TABLE messages (
    id            BLOB PRIMARY KEY NOT NULL,
    room_id       BLOB NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    sender_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text          TEXT NOT NULL,
    sent_at       INTEGER NOT NULL,
    client_msg_id TEXT,
    UNIQUE (room_id, seq)
);
CREATE UNIQUE INDEX messages_idempotency ON messages (sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
