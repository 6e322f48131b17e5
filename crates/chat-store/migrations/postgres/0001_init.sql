-- The chat schema on PostgreSQL: the same tables as SQLite's, with native
-- uuid and bytea columns. Times stay bigint microseconds since the Unix
-- epoch, so both stores convert them the same way.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    username      TEXT NOT NULL,
    -- lower-cased username: uniqueness regardless of case
    username_key  TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    -- deleted accounts stay as tombstones so that their messages keep a
    -- sender and every room's seqs stay gapless
    deleted_at    BIGINT
);

CREATE TABLE sessions (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_agent   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    -- the expiry of the newest refresh token: the session dies with it
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Every refresh token ever issued, by hash; a spent one (used_at set) that
-- comes back is a stolen one.
CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    session_id UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

CREATE TABLE rooms (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    -- 1 group, 2 direct
    kind       BIGINT NOT NULL,
    -- for direct rooms: the two user ids, ordered; one room per pair
    direct_key BYTEA UNIQUE,
    -- the seq of the newest message, bumped in the storing transaction
    -- under this row's lock, so several nodes keep one room gapless
    last_seq   BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE room_members (
    room_id   UUID NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_by_user ON room_members (user_id, room_id);

CREATE TABLE messages (
    id            UUID PRIMARY KEY,
    room_id       UUID NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    sender_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text          TEXT NOT NULL,
    sent_at       BIGINT NOT NULL,
    client_msg_id TEXT,
    UNIQUE (room_id, seq)
);
CREATE UNIQUE INDEX messages_idempotency ON messages (sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;
