-- Rooms and people (docs/design/rooms-and-people.md): private rooms,
-- invitations, roles, bans, display names and blocking; membership and
-- room changes in the room log.

-- topic: 0 to 512 characters; visibility: 1 public, 2 private (direct
-- rooms keep 1 and never show it); member_count: kept by the statements
-- that add and remove members, in their transaction.
ALTER TABLE rooms ADD COLUMN topic TEXT NOT NULL DEFAULT '';
ALTER TABLE rooms ADD COLUMN visibility BIGINT NOT NULL DEFAULT 1;
ALTER TABLE rooms ADD COLUMN member_count BIGINT NOT NULL DEFAULT 0;
UPDATE rooms SET member_count =
    (SELECT COUNT(*) FROM room_members m WHERE m.room_id = rooms.id);

-- role: 1 member, 2 admin, 3 owner. Each group room with members gets an
-- owner: its longest-standing member.
ALTER TABLE room_members ADD COLUMN role BIGINT NOT NULL DEFAULT 1;
UPDATE room_members SET role = 3
WHERE user_id = (SELECT m.user_id FROM room_members m JOIN rooms r ON r.id = m.room_id
                 WHERE m.room_id = room_members.room_id AND r.kind = 1
                 ORDER BY m.joined_at, m.user_id LIMIT 1);
-- ListMembers' order: owner, admins, members, each by when they joined.
CREATE INDEX room_members_by_rank ON room_members (room_id, role DESC, joined_at, user_id);

-- A pending invitation; accepted by joining, declined by leaving.
CREATE TABLE room_invites (
    room_id UUID NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    by_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    at      BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_invites_by_user ON room_invites (user_id, room_id);

-- A ban outlives the membership it ended.
CREATE TABLE room_bans (
    room_id UUID NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    by_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reason  TEXT NOT NULL,
    at      BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- display_name: 0 to 64 characters, shown instead of the username where
-- set; display_key: its lower case, for search by prefix.
ALTER TABLE users ADD COLUMN display_name TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN display_key TEXT NOT NULL DEFAULT '';
CREATE INDEX users_by_display_key ON users (display_key) WHERE display_key <> '';

-- blocker_id blocked blocked_id.
CREATE TABLE user_blocks (
    blocker_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    at         BIGINT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX user_blocks_by_blocked ON user_blocks (blocked_id, blocker_id);

-- Room events of kind 6 (member) and 7 (room updated). A member event:
-- target_id whom it concerns, actor_id who made it, member_change (1
-- joined, 2 left, 3 invited, 4 removed, 5 banned, 6 unbanned, 7 role
-- changed), member_role the target's role after it (NULL: not a member),
-- reason a removal's. A room-updated event carries nothing: it shows the
-- room's settings as they are now, as a message event shows its message.
ALTER TABLE room_events ADD COLUMN target_id UUID;
ALTER TABLE room_events ADD COLUMN member_change BIGINT;
ALTER TABLE room_events ADD COLUMN member_role BIGINT;
ALTER TABLE room_events ADD COLUMN reason TEXT;
