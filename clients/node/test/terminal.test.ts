// escapeControls: what the example prints of server text (no server needed).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { escapeControls } from "../src/index.js";

describe("escapeControls", () => {
  test("an ESC sequence prints as visible text", () => {
    // Clear the screen, then move home: shown, not done.
    assert.equal(escapeControls("\x1b[2J\x1b[Hgotcha"), "\\x1b[2J\\x1b[Hgotcha");
    // An OSC sequence that would retitle the window, ended by BEL.
    assert.equal(escapeControls("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
  });

  test("BEL, NUL, CR, DEL and C1 controls are escaped", () => {
    assert.equal(escapeControls("ring\x07"), "ring\\x07");
    assert.equal(escapeControls("nul\x00byte"), "nul\\x00byte");
    // A bare CR would let the rest overwrite what came before on the line.
    assert.equal(escapeControls("innocent\rEVIL"), "innocent\\x0dEVIL");
    assert.equal(escapeControls("del\x7f"), "del\\x7f");
    assert.equal(escapeControls("csi\x9b31m next\x85line"), "csi\\x9b31m next\\x85line");
    assert.equal(escapeControls("\x01\x08\x0b\x0c\x1f"), "\\x01\\x08\\x0b\\x0c\\x1f");
  });

  test("bidi controls are escaped", () => {
    // RLO would show "exe.txt" for "txt.exe".
    assert.equal(escapeControls("invoice\u202etxt.exe"), "invoice\\u202etxt.exe");
    assert.equal(
      escapeControls("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"),
      "\\u061c\\u200e\\u200f\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069",
    );
  });

  test("newline, tab and ordinary text are unchanged", () => {
    for (const text of ["line one\nline two", "a\tb", "héllo 👋", "日本語 عربي", "C:\\path \\x1b", ""]) {
      assert.equal(escapeControls(text), text);
    }
    // Escaped output holds no control character at all: nothing left to act.
    const all = Array.from({ length: 0xa0 }, (_, i) => String.fromCharCode(i)).join("");
    assert.doesNotMatch(escapeControls(all), /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
  });
});
