// A message's text as DOM nodes: a small, safe Markdown subset and
// clickable web links.
//
// Everything is built with createElement and text nodes: user text never
// reaches innerHTML, insertAdjacentHTML or outerHTML, so no markup anyone
// types can become an element (test/rendering.test.mjs greps for them).
//
// The subset:
//   **bold**   *italic*   _italic_   `code`   ```code block```
// Markers only pair up around text ("2 * 3 * 4" and snake_case stay as
// they are), an unclosed marker stays literal, and nothing inside code is
// formatted or linked. Links are http://, https:// and www. addresses
// only: every other scheme (javascript:, data:, vbscript:…) stays text.
//
// Mentions: an `@username` the server found in the text (Message.mentions)
// is a highlighted span, a stronger one when it names the reader. It is
// read out of the text by the server's rule (chat-domain's mention.rs): an
// `@` at the start or after a character a username cannot hold, the
// longest run of username characters, trailing `.`, `-` and `_` dropped.
import { h } from "../dom";

/** The names a message mentions, lower case, each mapped to whether it is the reader. */
export type Mentions = ReadonlyMap<string, boolean>;

const NO_MENTIONS: Mentions = new Map();
const isNameChar = (c: string | undefined) => c !== undefined && /[A-Za-z0-9_.-]/.test(c);

/** The nodes for a message's text, fenced code blocks first, then inline marks. */
export function renderText(text: string, mentions: Mentions = NO_MENTIONS): Node[] {
  return withMentions(mentions, () => blocks(text));
}

/** The mentions of the text being rendered (renderText is not re-entered). */
let current: Mentions = NO_MENTIONS;

function withMentions<T>(mentions: Mentions, f: () => T): T {
  const before = current;
  current = mentions;
  try {
    return f();
  } finally {
    current = before;
  }
}

/** A mention of someone in `current` starting at `i`: its length with the `@`, or 0. */
function mentionLength(s: string, i: number): number {
  if (!current.size || s[i] !== "@" || isNameChar(s[i - 1])) return 0;
  let end = i + 1;
  while (isNameChar(s[end])) end++;
  let name = s.slice(i + 1, end);
  name = name.replace(/[._-]+$/, "");
  return name && current.has(name.toLowerCase()) ? name.length + 1 : 0;
}

function blocks(text: string): Node[] {
  const out: Node[] = [];
  let i = 0;
  while (i < text.length) {
    const open = text.indexOf("```", i);
    const close = open < 0 ? -1 : text.indexOf("```", open + 3);
    if (close < 0) break;
    // So is the line break before it.
    out.push(...inline(text.slice(i, text[open - 1] === "\n" ? open - 1 : open)));
    out.push(codeBlock(text.slice(open + 3, close)));
    i = close + 3;
    // The line break after a block belongs to the block.
    if (text[i] === "\n") i++;
  }
  out.push(...inline(text.slice(i)));
  return out;
}

/**
 * A fenced block: monospace, white space kept, scrolled sideways rather
 * than wrapped. "```js" on a line of its own names the language.
 */
function codeBlock(body: string): HTMLElement {
  const lang = /^([\w+#.-]+)\n/.exec(body);
  if (lang) body = body.slice(lang[0].length);
  else if (body.startsWith("\n")) body = body.slice(1);
  if (body.endsWith("\n")) body = body.slice(0, -1);
  return h(
    "pre",
    { class: "code-block", dir: "ltr", "data-lang": lang?.[1] },
    h("code", {}, body),
  );
}

// ---------- inline marks ----------

type Delim = "**" | "*" | "_";
const DELIMS: readonly Delim[] = ["**", "*", "_"];
const TAGS: Record<Delim, string> = { "**": "strong", "*": "em", _: "em" };

const isSpace = (c: string | undefined) => c === undefined || /\s/u.test(c);
const isWordChar = (c: string | undefined) => c !== undefined && /[\p{L}\p{N}_]/u.test(c);

/**
 * A web address starting at `i`, without the punctuation that ends a
 * sentence around it, or "" if none starts there.
 */
export function matchUrl(s: string, i: number): string {
  // Not in the middle of a word ("xhttp://", "awww.") or of a path.
  if (i > 0 && /[\p{L}\p{N}/@.:-]/u.test(s[i - 1])) return "";
  const re = /(?:https?:\/\/|www\.)[^\s<>"'`]+/iy;
  re.lastIndex = i;
  const m = re.exec(s);
  if (!m) return "";
  let url = m[0];
  // Trailing punctuation is the sentence's, and a closing bracket is the
  // address's only if it closes one opened inside it: (see https://x.y/a_(b)).
  for (;;) {
    const last = url[url.length - 1];
    const pair = { ")": "(", "]": "[", "}": "{" }[last];
    if (".,:;!?*_~".includes(last)) url = url.slice(0, -1);
    else if (pair && count(url, pair) < count(url, last)) url = url.slice(0, -1);
    else break;
  }
  return href(url) ? url : "";
}

function count(s: string, c: string): number {
  return s.split(c).length - 1;
}

/** Where a matched address leads: always http or https, or nothing. */
function href(url: string): string {
  const full = /^www\./i.test(url) ? `https://${url}` : url;
  try {
    const parsed = new URL(full);
    if ((parsed.protocol !== "http:" && parsed.protocol !== "https:") || !parsed.hostname) return "";
    if (/^www\.?$/i.test(parsed.hostname)) return "";
  } catch {
    return "";
  }
  return full;
}

function link(url: string): HTMLElement {
  return h("a", { href: href(url), target: "_blank", rel: "noopener noreferrer" }, url);
}

/** A `code` span starting at `i`: its length with both backticks, or 0. */
function codeSpanLength(s: string, i: number): number {
  if (s[i] !== "`") return 0;
  const end = s.indexOf("`", i + 1);
  return end > i + 1 ? end - i + 1 : 0;
}

function canOpen(s: string, i: number, d: Delim): boolean {
  if (isSpace(s[i + d.length])) return false;
  return d !== "_" || !isWordChar(s[i - 1]);
}

/**
 * Where the marker opened just before `from` closes: skips code spans and
 * addresses (an "_" in a URL closes nothing) and, for "*", whole "**".
 */
function findCloser(s: string, from: number, d: Delim): number {
  for (let k = from; k < s.length; ) {
    const code = codeSpanLength(s, k);
    if (code) {
      k += code;
      continue;
    }
    const url = matchUrl(s, k);
    if (url) {
      k += url.length;
      continue;
    }
    if (d === "*" && s.startsWith("**", k)) {
      k += 2;
      continue;
    }
    if (s.startsWith(d, k) && k > from && !isSpace(s[k - 1]) && (d !== "_" || !isWordChar(s[k + 1]))) {
      // "***both***": the bold closes with the run's last two stars.
      if (d === "**") while (s[k + 2] === "*") k++;
      return k;
    }
    k++;
  }
  return -1;
}

/** Inline marks, code spans and links of one stretch of text. */
function inline(s: string): Node[] {
  const out: Node[] = [];
  let text = "";
  const flush = () => {
    if (text) out.push(document.createTextNode(text));
    text = "";
  };
  // A marker with no closer after one place has none after a later one
  // either: remembering that keeps long unclosed runs linear.
  const unclosed = new Set<Delim>();
  let i = 0;
  scan: while (i < s.length) {
    const code = codeSpanLength(s, i);
    if (code) {
      flush();
      out.push(h("code", {}, s.slice(i + 1, i + code - 1)));
      i += code;
      continue;
    }
    const url = matchUrl(s, i);
    if (url) {
      flush();
      out.push(link(url));
      i += url.length;
      continue;
    }
    const mention = mentionLength(s, i);
    if (mention) {
      flush();
      const name = s.slice(i, i + mention);
      const me = current.get(name.slice(1).toLowerCase()) === true;
      out.push(
        h("span", { class: me ? "mention mention-me" : "mention", "data-testid": "mention", "data-me": me ? "true" : false }, name),
      );
      i += mention;
      continue;
    }
    for (const d of DELIMS) {
      if (unclosed.has(d) || !s.startsWith(d, i) || !canOpen(s, i, d)) continue;
      const end = findCloser(s, i + d.length, d);
      if (end < 0) {
        unclosed.add(d);
        continue;
      }
      flush();
      out.push(h(TAGS[d], {}, ...inline(s.slice(i + d.length, end))));
      i = end + d.length;
      continue scan;
    }
    // A run of markers that opened nothing stays literal as a whole, so
    // that "**" is not taken apart into two "*".
    const run = /^(\*+|_+)/.exec(s.slice(i, i + 64))?.[0] ?? s[i];
    text += run;
    i += run.length;
  }
  flush();
  return out;
}
