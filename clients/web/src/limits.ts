// The server's limits on what people type, checked here first so that the
// app can say what is wrong in the words people count in: characters.
// The server counts Unicode scalar values (Rust's `chars()`); so does
// `charCount`, where `String.length` would count UTF-16 units and make an
// emoji two.

/** The most characters one message may hold (the server's MessageText). */
export const MESSAGE_MAX_CHARS = 4096;
/** A password's length in characters, at least and at most (the server's Password). */
export const PASSWORD_MIN_CHARS = 8;
export const PASSWORD_MAX_CHARS = 1024;

/** Characters as the server counts them: code points, not UTF-16 units. */
export function charCount(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // A high surrogate followed by a low one is one character.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** What is wrong with a new password's length, in words; undefined when nothing is. */
export function passwordLengthProblem(password: string, what = "A password"): string | undefined {
  const n = charCount(password);
  if (n >= PASSWORD_MIN_CHARS && n <= PASSWORD_MAX_CHARS) return undefined;
  return `${what} must be ${PASSWORD_MIN_CHARS} to ${PASSWORD_MAX_CHARS} characters long; this one has ${n}.`;
}
