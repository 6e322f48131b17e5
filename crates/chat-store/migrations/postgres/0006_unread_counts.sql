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
ALTER TABLE messages ADD COLUMN ord BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN sender_ord BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN msg_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE room_members ADD COLUMN read_ord BIGINT NOT NULL DEFAULT 0;
ALTER TABLE room_members ADD COLUMN read_sent BIGINT NOT NULL DEFAULT 0;
-- Who sent the mentioning message: mention counts skip the member's own
-- without reading the messages.
ALTER TABLE message_mentions ADD COLUMN sender_id UUID;

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
