// Who people are, as this page knows them now: each user's newest profile
// (a display name set or cleared reaches every message, list and line at
// once, from `profile` events), and whom the reader blocks. Every place
// that shows a person asks here for the name to show; the username stays
// in its tooltip.
import type { User } from "./gen/chat/v1/chat_pb";

/** The newest profile heard of each user, by id. */
const profiles = new Map<string, User>();
/** Usernames the reader blocks, lower-cased (the server's rule for names). */
const blocked = new Set<string>();
/**
 * Goes up whenever a name or a block changes: what is built from names
 * (a message's header) is built anew when it has moved on.
 */
let version = 0;

/** Remembers `u` as its newest profile, if it carries one; true if a name changed. */
export function noteProfile(u: User | undefined, newest = false): boolean {
  if (!u?.id || !u.username) return false;
  const held = profiles.get(u.id);
  // A message's copy of its sender is as old as the message: only a
  // profile event (newest) overrides what is held.
  if (held && !newest) return false;
  if (held && held.displayName === u.displayName && held.username === u.username) return false;
  profiles.set(u.id, u);
  if (held) version++;
  return !!held;
}

/** The name to show for `u`: their display name if set, else their username. */
export function displayName(u: User | undefined): string {
  if (!u) return "someone";
  const held = u.id ? profiles.get(u.id) : undefined;
  return held?.displayName || held?.username || u.displayName || u.username || "someone";
}

/** What a tooltip says of `u`: the username, which the display name may hide. */
export function usernameOf(u: User | undefined): string {
  const held = u?.id ? profiles.get(u.id) : undefined;
  return `@${held?.username ?? u?.username ?? "?"}`;
}

export function isBlocked(u: User | undefined): boolean {
  return !!u?.username && blocked.has(u.username.toLowerCase());
}

/** Replaces the blocked list (ListBlockedUsers' answer). */
export function setBlocked(users: Iterable<User>): void {
  blocked.clear();
  shown.clear();
  for (const u of users) blocked.add(u.username.toLowerCase());
  version++;
}

export function markBlocked(username: string, on: boolean): void {
  if (on) blocked.add(username.toLowerCase());
  else blocked.delete(username.toLowerCase());
  version++;
}

/** Messages from blocked users the reader asked to see, by id. */
const shown = new Set<string>();

/** Whether a message from a blocked user was asked to be shown. */
export function blockedShown(messageId: string): boolean {
  return shown.has(messageId);
}

export function showBlocked(messageId: string): void {
  shown.add(messageId);
}

/** Changes whenever what a name or a block shows changes. */
export function peopleVersion(): number {
  return version;
}
