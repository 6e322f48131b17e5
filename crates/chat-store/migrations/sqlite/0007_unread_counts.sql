-- Unread and mention counts that cost the same however far behind a member
-- is (docs/design/room-log.md, "Read state").
--
-- ord: the message's number in its room (1, 2, ...; other events take seqs
-- but no number), and rooms.msg_count the room's newest. sender_ord: its
-- number among its sender's messages in the room. A member's row keeps
-- both numbers as they were at its marker (read_ord, read_sent), written
-- with the marker, so the messages from others after the marker are
--   (msg_count - read_ord) - (sender's newest sender_ord - read_sent)
--   - the others' deleted messages after the marker,
-- two stored differences, one probe of messages_by_sender and a range of
-- messages_deleted (deletions are rare), whatever the gap.
ALTER TABLE messages ADD COLUMN ord INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN sender_ord INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN msg_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE room_members ADD COLUMN read_ord INTEGER NOT NULL DEFAULT 0;
ALTER TABLE room_members ADD COLUMN read_sent INTEGER NOT NULL DEFAULT 0;
-- Mentions are numbered the same way, per member and room: ord is the
-- mention's number among the member's mentions by others there, given when
-- the message is sent; 0 for a member's own; NULL for a name an edit adds
-- (a "late" row). When a message is deleted, or an edit drops a name, a
-- numbered row stays, as removed, so that the numbers stay; the others go.
-- The member's row keeps the number at its marker (read_mentions).
-- Mentions after the marker are
--   (newest ord - read_mentions) - removed rows after the marker
--   + late rows after it,
-- one probe and two short ranges, of the two indexes below.
ALTER TABLE message_mentions ADD COLUMN sender_id BLOB;
ALTER TABLE message_mentions ADD COLUMN ord INTEGER;
ALTER TABLE message_mentions ADD COLUMN removed BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE room_members ADD COLUMN read_mentions INTEGER NOT NULL DEFAULT 0;

UPDATE messages SET ord = n.ord, sender_ord = n.sender_ord
FROM (SELECT id,
             row_number() OVER (PARTITION BY room_id ORDER BY seq) AS ord,
             row_number() OVER (PARTITION BY room_id, sender_id ORDER BY seq) AS sender_ord
      FROM messages) AS n
WHERE messages.id = n.id;
UPDATE rooms SET msg_count = (SELECT COUNT(*) FROM messages WHERE room_id = rooms.id);

CREATE INDEX messages_by_sender ON messages (room_id, sender_id, seq, sender_ord);
CREATE INDEX messages_deleted ON messages (room_id, seq, sender_id) WHERE deleted;

UPDATE room_members SET
    read_ord = COALESCE((SELECT x.ord FROM messages x
                         WHERE x.room_id = room_members.room_id
                             AND x.seq <= room_members.last_read_seq
                         ORDER BY x.seq DESC LIMIT 1), 0),
    read_sent = COALESCE((SELECT x.sender_ord FROM messages x
                          WHERE x.room_id = room_members.room_id
                              AND x.sender_id = room_members.user_id
                              AND x.seq <= room_members.last_read_seq
                          ORDER BY x.seq DESC LIMIT 1), 0);
UPDATE message_mentions SET sender_id =
    (SELECT sender_id FROM messages WHERE messages.id = message_mentions.message_id);
UPDATE message_mentions SET ord = n.ord
FROM (SELECT user_id, room_id, seq,
             row_number() OVER (PARTITION BY user_id, room_id ORDER BY seq) AS ord
      FROM message_mentions WHERE sender_id <> user_id) AS n
WHERE message_mentions.user_id = n.user_id AND message_mentions.room_id = n.room_id
    AND message_mentions.seq = n.seq;
UPDATE message_mentions SET ord = 0 WHERE sender_id = user_id;
-- Whole indexes with the flag as a column rather than partial ones: with
-- an equality on it, each covering its count, they are SQLite's pick over
-- the primary key's range, which it took for partial ones (and read every
-- mention after the marker).
CREATE INDEX message_mentions_ord ON message_mentions (user_id, room_id, ord, seq);
CREATE INDEX message_mentions_removed ON message_mentions (user_id, room_id, removed, seq);
UPDATE room_members SET read_mentions =
    COALESCE((SELECT mm.ord FROM message_mentions mm
              WHERE mm.user_id = room_members.user_id AND mm.room_id = room_members.room_id
                  AND mm.seq <= room_members.last_read_seq AND mm.ord > 0
              ORDER BY mm.seq DESC LIMIT 1), 0);

-- The room's newest top-level message that is not deleted, for the room
-- list's previews: kept by the appends, and found again when it is deleted,
-- rather than searched for in every room of every list.
ALTER TABLE rooms ADD COLUMN last_message_id BLOB;
UPDATE rooms SET last_message_id =
    (SELECT x.id FROM messages x
     WHERE x.room_id = rooms.id AND x.thread_root_id IS NULL AND NOT x.deleted
     ORDER BY x.seq DESC LIMIT 1);

-- History reads top-level messages over the (room_id, seq) index, skipping
-- thread replies, instead of an index of its own: every message now
-- enters messages_by_sender, and without this one an append writes as
-- many index pages as before (the durable-send benchmark fell by a fifth
-- with both; BENCHMARKS.md).
DROP INDEX messages_top_level;
