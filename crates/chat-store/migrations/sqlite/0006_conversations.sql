-- Replies, threads, reactions, mentions and read markers
-- (docs/design/room-log.md).
--
-- reply_to_id: the message of the same room this one quotes (its preview
-- is built when read, so it shows that message as it is now).
-- thread_root_id: for a thread reply, the top-level message it replies to;
-- a root counts its replies (tombstones included) and the newest's time.
ALTER TABLE messages ADD COLUMN reply_to_id BLOB;
ALTER TABLE messages ADD COLUMN thread_root_id BLOB;
ALTER TABLE messages ADD COLUMN thread_reply_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN thread_last_reply_at INTEGER;
-- History reads top-level messages newest first; ListThread a thread's.
CREATE INDEX messages_top_level ON messages (room_id, seq) WHERE thread_root_id IS NULL;
CREATE INDEX messages_thread ON messages (thread_root_id, seq) WHERE thread_root_id IS NOT NULL;

-- Who reacted with what: one row per (message, user, emoji).
CREATE TABLE message_reactions (
    message_id BLOB NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    BLOB NOT NULL,
    emoji      TEXT NOT NULL,
    PRIMARY KEY (message_id, user_id, emoji)
) WITHOUT ROWID;

-- Each emoji's count on a message, in order of first use: first_seq is the
-- seq of the event that took its count from zero, and the row goes when
-- the count is back at zero, so an emoji added again goes last.
CREATE TABLE reaction_counts (
    message_id BLOB NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    emoji      TEXT NOT NULL,
    first_seq  INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (message_id, emoji)
) WITHOUT ROWID;

-- The members a message names, keyed for mention counts: a user's
-- mentions in a room after a seq are one index range.
CREATE TABLE message_mentions (
    user_id    BLOB NOT NULL,
    room_id    BLOB NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    message_id BLOB NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, room_id, seq)
) WITHOUT ROWID;
CREATE INDEX message_mentions_by_message ON message_mentions (message_id);

-- The read marker: every event of the room up to it is read. Members of
-- rooms from before have read everything so far.
ALTER TABLE room_members ADD COLUMN last_read_seq INTEGER NOT NULL DEFAULT 0;
UPDATE room_members SET last_read_seq =
    (SELECT last_seq FROM rooms WHERE rooms.id = room_members.room_id);
