// When messages were sent, in the reader's own time zone and language.

/** A local calendar day ("2025-6-3"): two messages sent on the same day share it. */
export function dayKey(d: Date): string {
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

/** The local midnight that starts the day after `d`'s. */
export function nextMidnight(d: Date): Date {
  return new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1);
}

/** "Today", "Yesterday", or the full local date: a date separator's words. */
export function dayLabel(d: Date, now = new Date()): string {
  const today = dayKey(now);
  if (dayKey(d) === today) return "Today";
  const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  if (dayKey(d) === dayKey(yesterday)) return "Yesterday";
  return fullDate(d);
}

/** "Tuesday, June 3, 2025", in the reader's language. */
export function fullDate(d: Date): string {
  return d.toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" });
}

/** "10:42": the day is told by the separator above. */
export function shortTime(d: Date): string {
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** The date and time to the second: a time's tooltip. */
export function fullDateTime(d: Date): string {
  return d.toLocaleString([], { dateStyle: "full", timeStyle: "medium" });
}
