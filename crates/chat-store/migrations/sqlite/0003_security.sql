-- Names that fool people, and sessions that pile up.
--
-- users.username_skeleton: the Unicode TR39 skeleton of the username, taken
-- again after lower-casing (domain::Username::skeleton), unique: a name that
-- looks like another (paypal, paypaI, paypa1) is refused. For existing
-- accounts it is computed here from the characters usernames may hold (the
-- replace() calls are the skeleton of that alphabet: m -> rn, 0 -> O, and 1
-- and I -> l; a unit test keeps them in step with the Rust code). Where
-- existing names already collide, the oldest account keeps the key and the
-- others none: they stay as they are, and no new look-alike joins them.
-- Deleted accounts keep theirs: a name is never given to anyone else.
ALTER TABLE users ADD COLUMN username_skeleton TEXT;
UPDATE users SET username_skeleton =
    replace(lower(replace(replace(replace(replace(username, 'm', 'rn'), '0', 'O'), '1', 'l'), 'I', 'l')), 'm', 'rn')
    WHERE deleted_at IS NULL;
UPDATE users SET username_skeleton = NULL
    WHERE username_skeleton IS NOT NULL AND EXISTS (
        SELECT 1 FROM users older
        WHERE older.username_skeleton = users.username_skeleton
          AND (older.created_at < users.created_at
               OR (older.created_at = users.created_at AND older.id < users.id)));
CREATE UNIQUE INDEX users_by_skeleton ON users (username_skeleton);

-- rooms.name_key: a group room's name, lower-cased after NFKC
-- (domain::RoomName::key), unique: two public rooms cannot share a name.
-- Direct rooms have none. Existing duplicates keep the oldest room's key.
ALTER TABLE rooms ADD COLUMN name_key TEXT;
UPDATE rooms SET name_key = lower(name) WHERE kind = 1;
UPDATE rooms SET name_key = NULL
    WHERE name_key IS NOT NULL AND EXISTS (
        SELECT 1 FROM rooms older
        WHERE older.name_key = rooms.name_key
          AND (older.created_at < rooms.created_at
               OR (older.created_at = rooms.created_at AND older.id < rooms.id)));
CREATE UNIQUE INDEX rooms_by_name_key ON rooms (name_key);

-- The purge of expired refresh tokens and ended sessions.
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
CREATE INDEX sessions_by_revocation ON sessions (revoked_at);
