// The member panel of the open room, in the side panel: who is in it
// (ListMembers, every page), their role and whether they are online, kept
// current by `member`, `presence` and `profile` events; inviting by
// username (invite.ts); and what the reader may do to a member: remove or
// ban (admins and the owner; the owner also to admins; nobody to the
// owner), make or unmake an admin and hand the room over (the owner), and
// block or unblock anyone.
import { create } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import {
  MemberChange,
  MemberRole,
  MemberSchema,
  RoomKind,
  RoomVisibility,
  type Member,
  type Room,
  type ServerEvent_MemberEvent,
  type User,
} from "./gen/chat/v1/chat_pb";
import { chatClient, describe } from "./api";
import { h } from "./dom";
import { confirmDialog } from "./confirm";
import "./members.css";
import { inviteForm } from "./invite";
import type { Opener, SidePanel } from "./panel";
import { displayName, isBlocked, markBlocked, usernameOf } from "./people";

/** Members asked for per ListMembers page. */
const MEMBERS_PAGE_SIZE = 200;
/** The server's limit on a removal's reason, in characters. */
const REASON_MAX_CHARS = 512;

export interface MembersHooks {
  me: () => string | undefined;
  /** The room as this page holds it now (my_role kept current). */
  room: (roomId: string) => Room | undefined;
  /** Whether presence says `u` is online (the reader: whether the page is live). */
  online: (u: User) => boolean;
  /** A member ListMembers (or a join) told of, and whether they are online: for the rest of the page. */
  sawOnline: (u: User, online: boolean) => void;
  /** A block was made or lifted: messages shown from them change. */
  blockChanged: () => void;
}

export interface MembersPanel {
  /** Opens the panel on room `roomId` and lists its members. */
  open(roomId: string, opener?: Opener): void;
  /** The room whose members show, or "" when the panel shows something else. */
  readonly roomId: string;
  /** A `member` event: the list changes with it, if it shows that room. */
  memberEvent(ev: ServerEvent_MemberEvent): void;
  /** Names, presence, blocks or the reader's role changed: shown anew. */
  refresh(): void;
}

const RANK: Record<number, number> = { [MemberRole.OWNER]: 0, [MemberRole.ADMIN]: 1 };
const rank = (m: Member) => RANK[m.role] ?? 2;

function roleName(role: MemberRole): string {
  return role === MemberRole.OWNER ? "owner" : role === MemberRole.ADMIN ? "admin" : "member";
}

export function createMembersPanel(panel: SidePanel, hooks: MembersHooks): MembersPanel {
  let roomId = "";
  /** The members, in the server's order (owner, admins, members, by when they joined). */
  let members: Member[] = [];
  /** Whose actions are shown, by user id. */
  const expanded = new Set<string>();
  let loaded = false;
  const list = h("ul", { class: "member-list", "data-testid": "member-list", "aria-label": "Members" });
  const status = h("p", { class: "form-status", role: "status", "data-testid": "member-status" });
  const say = (text: string, bad = false) => {
    status.className = bad ? "form-status bad" : "form-status";
    status.textContent = text;
  };
  const count = h("p", { class: "muted small", "data-testid": "member-count" });
  const invite = h("div");

  async function load(id: string): Promise<void> {
    const all: Member[] = [];
    let pageToken = "";
    const seen = new Set<string>();
    try {
      for (;;) {
        const res = await chatClient.listMembers({ roomId: id, pageSize: MEMBERS_PAGE_SIZE, pageToken });
        all.push(...res.members);
        if (!res.nextPageToken || seen.has(res.nextPageToken)) break;
        seen.add(res.nextPageToken);
        pageToken = res.nextPageToken;
      }
    } catch (e) {
      if (roomId === id) say(`Could not list the members: ${describe(e)}`, true);
      return;
    }
    if (roomId !== id) return;
    const me = hooks.me();
    for (const m of all) if (m.user && m.user.id !== me) hooks.sawOnline(m.user, m.online);
    members = all;
    loaded = true;
    render();
  }

  /** What the reader may do to `m`, in the room as it is now. */
  function allowed(m: Member): { remove: boolean; roles: boolean; block: boolean } {
    const room = hooks.room(roomId);
    const self = m.user?.id === hooks.me();
    const mine = room?.myRole ?? MemberRole.UNSPECIFIED;
    const group = room?.kind === RoomKind.GROUP;
    const moderator = mine === MemberRole.OWNER || mine === MemberRole.ADMIN;
    return {
      remove:
        group && !self && moderator && m.role !== MemberRole.OWNER && (m.role !== MemberRole.ADMIN || mine === MemberRole.OWNER),
      roles: group && !self && mine === MemberRole.OWNER,
      block: !self,
    };
  }

  function render(): void {
    const room = hooks.room(roomId);
    if (!room || !panel.isOpen) return;
    const focused = document.activeElement as HTMLElement | null;
    const focusKey = focused && list.contains(focused) ? focused.dataset.focusKey : undefined;
    const sorted = [...members].sort((a, b) => rank(a) - rank(b));
    count.textContent = loaded ? `${sorted.length} member${sorted.length === 1 ? "" : "s"}` : "Loading members…";
    list.replaceChildren(...sorted.map(item));
    if (focusKey) {
      // The button pressed may be gone ("Make admin" became "Remove admin"): its member's toggle has the focus then.
      const find = (key: string) => list.querySelector<HTMLElement>(`[data-focus-key="${CSS.escape(key)}"]`);
      (find(focusKey) ?? find(`toggle:${focusKey.slice(focusKey.indexOf(":") + 1)}`))?.focus();
    }
    // Who may invite: any member of a public room, admins and the owner of a private one.
    const mayInvite =
      room.kind === RoomKind.GROUP &&
      (room.visibility !== RoomVisibility.PRIVATE || room.myRole === MemberRole.ADMIN || room.myRole === MemberRole.OWNER);
    if (mayInvite !== !!invite.firstChild) {
      invite.replaceChildren(
        ...(mayInvite ? [inviteForm(roomId, { members: () => new Set(members.map((m) => m.user?.id ?? "")) })] : []),
      );
    }
  }

  function item(m: Member): HTMLElement {
    const u = m.user;
    const id = u?.id ?? "";
    const name = displayName(u);
    const online = u ? hooks.online(u) : false;
    const self = id === hooks.me();
    const can = allowed(m);
    const any = can.remove || can.roles || can.block;
    const open = any && expanded.has(id);
    const actionsId = `member-actions-${id}`;
    const blocked = isBlocked(u);
    return h(
      "li",
      {
        class: "member",
        "data-testid": "member",
        "data-username": u?.username ?? "",
        "data-role": roleName(m.role),
        "data-online": online ? "true" : "false",
      },
      h(
        "div",
        { class: "member-row" },
        h("span", { class: `dot${online ? "" : " off"}`, "aria-hidden": "true" }),
        h(
          "span",
          { class: "member-name" },
          h("span", { "data-testid": "member-name", title: usernameOf(u), dir: "auto" }, name),
          name !== u?.username ? h("span", { class: "muted small" }, ` @${u?.username ?? ""}`) : null,
          self ? h("span", { class: "muted small" }, " (you)") : null,
          h("span", { class: "visually-hidden" }, online ? ", online" : ", offline"),
          blocked ? h("span", { class: "muted small", "data-testid": "member-blocked" }, " · blocked") : null,
        ),
        m.role === MemberRole.OWNER || m.role === MemberRole.ADMIN
          ? h("span", { class: `role-badge ${roleName(m.role)}`, "data-testid": "member-role" }, roleName(m.role))
          : null,
        any
          ? h(
              "button",
              {
                type: "button",
                class: "icon",
                title: `Actions for ${name}`,
                "aria-label": `Actions for ${name}`,
                "aria-expanded": open ? "true" : "false",
                "aria-controls": actionsId,
                "data-testid": "member-actions-toggle",
                "data-focus-key": `toggle:${id}`,
                onclick: () => {
                  if (expanded.has(id)) expanded.delete(id);
                  else expanded.add(id);
                  render();
                },
              },
              h("span", { "aria-hidden": "true" }, "⋯"),
            )
          : null,
      ),
      open
        ? h(
            "div",
            { class: "member-actions row", id: actionsId, role: "group", "aria-label": `Actions for ${name}`, "data-testid": "member-actions" },
            ...actionButtons(m, can),
          )
        : null,
    );
  }

  function actionButtons(m: Member, can: ReturnType<typeof allowed>): HTMLElement[] {
    const u = m.user!;
    const button = (key: string, label: string, run: () => void, danger = false) =>
      h(
        "button",
        { type: "button", class: danger ? "small-button danger-text" : "small-button", "data-testid": `member-${key}`, "data-focus-key": `${key}:${u.id}`, onclick: run },
        label,
      );
    const out: HTMLElement[] = [];
    if (can.roles && m.role === MemberRole.MEMBER) out.push(button("make-admin", "Make admin", () => void setRole(u, MemberRole.ADMIN)));
    if (can.roles && m.role === MemberRole.ADMIN) out.push(button("remove-admin", "Remove admin", () => void setRole(u, MemberRole.MEMBER)));
    if (can.roles) out.push(button("make-owner", "Transfer ownership", () => void transfer(u)));
    if (can.remove) {
      out.push(button("remove", "Remove", () => void remove(u, false), true));
      out.push(button("ban", "Ban", () => void remove(u, true), true));
    }
    if (can.block) {
      const blocked = isBlocked(u);
      out.push(button(blocked ? "unblock" : "block", blocked ? "Unblock" : "Block", () => void block(u, !blocked)));
    }
    return out;
  }

  async function act(what: string, f: () => Promise<unknown>, done: string): Promise<boolean> {
    say(`${what}…`);
    try {
      await f();
      say(done);
      return true;
    } catch (e) {
      say(`Could not ${what.charAt(0).toLowerCase()}${what.slice(1)}: ${describe(ConnectError.from(e))}`, true);
      return false;
    }
  }

  async function setRole(u: User, role: MemberRole): Promise<void> {
    const name = displayName(u);
    const id = roomId;
    const text = role === MemberRole.ADMIN ? `Make ${name} an admin` : `Make ${name} a plain member`;
    await act(text, () => chatClient.setMemberRole({ roomId: id, userId: u.id, role }), role === MemberRole.ADMIN ? `${name} is an admin now.` : `${name} is a member now.`);
  }

  async function transfer(u: User): Promise<void> {
    const name = displayName(u);
    const ok = await confirmDialog(
      `Make ${name} the owner?`,
      "You become an admin, and only the new owner can make you the owner again.",
      "Transfer ownership",
    );
    if (!ok) return;
    const id = roomId;
    await act(`Hand the room to ${name}`, () => chatClient.setMemberRole({ roomId: id, userId: u.id, role: MemberRole.OWNER }), `${name} owns the room now.`);
  }

  async function remove(u: User, ban: boolean): Promise<void> {
    const name = displayName(u);
    const reason = h("input", {
      id: "remove-reason",
      maxlength: REASON_MAX_CHARS,
      "data-testid": "remove-reason",
      // Enter would press the dialog's first button (Cancel): it confirms instead.
      onkeydown: (ev: KeyboardEvent) => {
        if (ev.key !== "Enter") return;
        ev.preventDefault();
        (reason.closest("dialog") as HTMLDialogElement | null)?.close("confirm");
      },
    }) as HTMLInputElement;
    const ok = await confirmDialog(
      ban ? `Ban ${name}?` : `Remove ${name}?`,
      ban
        ? `${name} leaves the room and cannot join it again, or be invited, until the ban is lifted.`
        : `${name} leaves the room. They can join it again${hooks.room(roomId)?.visibility === RoomVisibility.PRIVATE ? " if invited" : ""}.`,
      ban ? "Ban" : "Remove",
      h("div", { class: "dialog-field" }, h("label", { for: "remove-reason" }, "Reason (optional, shown to the room)"), reason),
    );
    if (!ok) return;
    const id = roomId;
    await act(
      ban ? `Ban ${name}` : `Remove ${name}`,
      () => chatClient.removeMember({ roomId: id, userId: u.id, ban, reason: reason.value.trim() }),
      ban ? `${name} was banned.` : `${name} was removed.`,
    );
  }

  async function block(u: User, on: boolean): Promise<void> {
    const name = displayName(u);
    const done = await act(
      on ? `Block ${name}` : `Unblock ${name}`,
      () => (on ? chatClient.blockUser({ username: u.username }) : chatClient.unblockUser({ username: u.username })),
      on ? `${name} is blocked: their messages are collapsed, and they cannot message you directly.` : `${name} is unblocked.`,
    );
    if (!done) return;
    markBlocked(u.username, on);
    hooks.blockChanged();
    render();
  }

  const members_: MembersPanel = {
    open(id, opener) {
      members = [];
      loaded = false;
      expanded.clear();
      say("");
      invite.replaceChildren();
      list.replaceChildren();
      // Opening tells what was there that it left (this panel too, if it
      // showed another room): the room is set after.
      panel.open(
        "Members",
        h("div", { class: "members", "data-testid": "members-panel" }, invite, count, list, status),
        opener,
        () => {
          roomId = "";
        },
      );
      roomId = id;
      render();
      void load(id);
    },
    get roomId() {
      return roomId;
    },
    memberEvent(ev) {
      if (ev.roomId !== roomId || !loaded || !ev.user) return;
      const u = ev.user;
      const i = members.findIndex((m) => m.user?.id === u.id);
      switch (ev.change) {
        case MemberChange.JOINED:
          if (i < 0) members.push(create(MemberSchema, { user: u, role: ev.role, online: true }));
          hooks.sawOnline(u, true);
          break;
        case MemberChange.LEFT:
        case MemberChange.REMOVED:
        case MemberChange.BANNED:
          if (i >= 0) members.splice(i, 1);
          expanded.delete(u.id);
          break;
        case MemberChange.ROLE_CHANGED:
          // A new owner: the old one is an admin now (its own event may follow).
          if (ev.role === MemberRole.OWNER) for (const m of members) if (m.role === MemberRole.OWNER) m.role = MemberRole.ADMIN;
          if (i >= 0) members[i].role = ev.role;
          break;
        default:
          return;
      }
      render();
    },
    refresh() {
      if (roomId) render();
    },
  };
  return members_;
}
