// The end-to-end harness for the web client: real chat-server processes
// (port 0, fresh database), real headless Chromium (Debian's package) driven
// by playwright-core, and the helpers the test files share. Each test file
// imports it; its hooks stop the servers and browsers a file started.
//
// Env: CHAT_SERVER_BIN (default ../../target/debug/chat-server),
// WEB_ARTIFACTS (default ../../test-artifacts/web) for the screenshots,
// CHROMIUM (default /usr/bin/chromium), CHAT_SERVER_ARGS (extra flags for
// every server). WEB_DEV_STATIC=1 serves dist/ from this process (the page
// then reaches the server through `?server=`), for developing the app
// against a server that does not serve it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, existsSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

export const here = path.dirname(fileURLToPath(import.meta.url));
export const webDir = path.resolve(here, "..");
export const serverBin = path.resolve(webDir, process.env.CHAT_SERVER_BIN ?? "../../target/debug/chat-server");
export const artifacts = path.resolve(webDir, process.env.WEB_ARTIFACTS ?? "../../test-artifacts/web");
export const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const CHROMIUM_FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
/** How long to wait for anything to show up on a page. */
export const UI_TIMEOUT = 15_000;

export const tempDirs = [];
export const servers = [];
let staticServer;
let staticPort;
export const browsers = [];

export function tempDir(prefix) {
  const d = mkdtempSync(path.join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

/**
 * Starts chat-server on a free port with a fresh database, and resolves to
 * `{ address, appUrl, db, srv }` once it reports its address. CHAT_SERVER_ARGS
 * adds flags to every server; `extra` to this one.
 */
export async function startServer(name, extra = [], { db, listen = "127.0.0.1:0" } = {}) {
  assert.ok(existsSync(serverBin), `server binary not found at ${serverBin}: run cargo build, or set CHAT_SERVER_BIN`);
  db ??= path.join(tempDir("chat-web-db-"), "chat.db");
  const envArgs = (process.env.CHAT_SERVER_ARGS ?? "").split(" ").filter(Boolean);
  const child = spawn(serverBin, ["--listen", listen, "--database-url", `sqlite://${db}`, ...envArgs, ...extra], {
    env: { ...process.env, RUST_LOG: "info" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const srv = { name, child, log: "" };
  servers.push(srv);
  const address = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not report its address:\n${srv.log}`)), 30_000);
    let found = false;
    child.stderr.setEncoding("utf8");
    // Keep draining stderr for the whole run, so the server never blocks on it.
    child.stderr.on("data", (chunk) => {
      srv.log += chunk;
      const m = !found && srv.log.match(/address=(\d+\.\d+\.\d+\.\d+:\d+)/);
      if (m) {
        found = true;
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => {
      if (!found) {
        clearTimeout(timer);
        reject(new Error(`server exited with ${code}:\n${srv.log}`));
      }
    });
  });
  let appUrl;
  if (process.env.WEB_DEV_STATIC === "1") {
    staticPort ??= await serveDist();
    appUrl = `http://127.0.0.1:${staticPort}/?server=${encodeURIComponent(`http://${address}`)}`;
  } else {
    appUrl = `http://${address}/`;
    const res = await fetch(appUrl);
    const body = await res.text();
    assert.ok(
      res.ok && body.includes('data-testid="app"'),
      `the server does not serve the web app at / (HTTP ${res.status}); build the server with clients/web/dist, ` +
        `or set WEB_DEV_STATIC=1`,
    );
  }
  return { address, appUrl, db, srv };
}

export async function stopServer(srv) {
  const { child } = srv;
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise((r) => {
    const t = setTimeout(() => {
      child.kill("SIGKILL");
      r();
    }, 5_000);
    child.on("exit", () => {
      clearTimeout(t);
      r();
    });
    child.kill("SIGTERM");
  });
}

/** Serves dist/ on another port (development only, see WEB_DEV_STATIC). */
export function serveDist() {
  const dist = path.join(webDir, "dist");
  const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };
  staticServer = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    const file = path.join(dist, url.pathname === "/" ? "index.html" : path.normalize(url.pathname));
    if (!file.startsWith(dist) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => staticServer.listen(0, "127.0.0.1", () => resolve(staticServer.address().port)));
}

/**
 * Content-Security-Policy violations, per browser context: the server's
 * policy (src/web.rs) forbids inline script and style and `eval`, and a
 * violation is a bug in the app even when nothing visibly breaks.
 */
export const cspViolationsOf = new WeakMap();

/**
 * A fresh browser profile. `csp` collects the CSP violations of its pages:
 * each page reports `securitypolicyviolation` events (kept in
 * `window.__cspViolations` too), and openPage adds the console's
 * "Content Security Policy" messages. `options` adds to or overrides the
 * context's (a phone: `{ hasTouch: true, isMobile: true, viewport }`).
 */
export async function launch(csp, options = {}) {
  assert.ok(Array.isArray(csp), "launch(csp): pass the test's list of CSP violations");
  const context = await chromium.launchPersistentContext(tempDir("chat-web-profile-"), {
    executablePath: chromiumPath,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1100, height: 720 },
    // No drawer animation caught half-way in a screenshot.
    reducedMotion: "reduce",
    ...options,
  });
  browsers.push(context);
  cspViolationsOf.set(context, csp);
  // Reported to this process as they happen, so that none is lost with a
  // reload or a closed page.
  await context.exposeBinding("__reportCspViolation", ({ page }, text) => csp.push(`${page.url()}: ${text}`));
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      const text = `${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`;
      window.__cspViolations.push(text);
      window.__reportCspViolation(text);
    });
  });
  return context;
}

/** Fails when any page saw a CSP violation (the live pages are asked too). */
export async function assertNoCspViolations(csp, pages) {
  for (const page of pages) {
    if (page.isClosed()) continue;
    const seen = await page.evaluate(() => window.__cspViolations ?? ["no CSP watcher in this page"]);
    for (const v of seen) if (!csp.some((c) => c.endsWith(v))) csp.push(`${page.url()}: ${v}`);
  }
  assert.deepEqual(csp, [], "no Content-Security-Policy violations");
}

/** A page that records every console error and uncaught exception. */
export async function openPage(context, errors, name, url) {
  const page = await context.newPage();
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`${name} console: ${msg.text()}`);
    if (msg.text().includes("Content Security Policy")) cspViolationsOf.get(context)?.push(`${name} console: ${msg.text()}`);
  });
  page.on("pageerror", (err) => errors.push(`${name} pageerror: ${err.message}`));
  page.setDefaultTimeout(UI_TIMEOUT);
  await page.goto(url);
  return page;
}

export const byTestId = (page, id) => page.locator(`[data-testid="${id}"]`);

export async function register(page, username, password) {
  await byTestId(page, "login-username").fill(username);
  await byTestId(page, "login-password").fill(password);
  await byTestId(page, "register-submit").click();
  await assertText(byTestId(page, "me"), username);
}

export async function assertText(locator, text) {
  await locator.filter({ hasText: text }).first().waitFor({ state: "visible" });
}

/** The texts of the messages shown in the open room, in order. */
export async function messageTexts(page) {
  return byTestId(page, "message-text").allInnerTexts();
}

/** Matches an element whose whole text is `text`. */
export const exactly = (text) => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`);

export async function send(page, text) {
  await byTestId(page, "composer").fill(text);
  await byTestId(page, "composer").press("Enter");
  await waitForMessage(page, text);
}

export async function waitForMessage(page, text) {
  await page
    .locator(`[data-testid="message"] [data-testid="message-text"]`, { hasText: exactly(text) })
    .first()
    .waitFor({ state: "visible" });
}

/** The access token the page keeps, to call the API from this process as its user. */
export async function accessToken(page) {
  return page.evaluate(() => JSON.parse(localStorage.getItem("chat.auth")).accessToken);
}

/** A protobuf varint. */
export function varint(n) {
  const bytes = [];
  while (n > 0x7f) {
    bytes.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

/**
 * The bytes of the first length-delimited field `number` of a protobuf
 * message (a string, or a message inside), or undefined.
 */
export function protoField(bytes, number) {
  let i = 0;
  const read = () => {
    let n = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[i++];
      n += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return n;
      shift += 7;
    }
  };
  while (bytes && i < bytes.length) {
    const key = read();
    const wire = key & 7;
    if (wire === 0) read();
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const len = read();
      if (key >>> 3 === number) return bytes.subarray(i, i + len);
      i += len;
    } else return undefined;
  }
  return undefined;
}

/** A protobuf message whose fields are all strings: `{ 1: "general" }`. */
export function stringFields(fields) {
  return Buffer.concat(
    Object.entries(fields).flatMap(([number, value]) => {
      const bytes = Buffer.from(value, "utf8");
      return [varint((Number(number) << 3) | 2), varint(bytes.length), bytes];
    }),
  );
}

/**
 * Calls a unary method over grpc-web from this process, as the browser
 * does, and resolves to its grpc-status and grpc-message, and its reply's
 * bytes (`reply`; see `protoField`).
 */
export async function grpcWebCall(address, method, request, token) {
  const frame = Buffer.concat([Buffer.from([0]), Buffer.alloc(4), request]);
  frame.writeUInt32BE(request.length, 1);
  const res = await fetch(`http://${address}/${method}`, {
    method: "POST",
    headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", authorization: `Bearer ${token}` },
    body: frame,
  });
  assert.equal(res.status, 200, `${method}: HTTP ${res.status}`);
  const body = Buffer.from(await res.arrayBuffer());
  let status = res.headers.get("grpc-status");
  let message = res.headers.get("grpc-message") ?? "";
  const replies = [];
  for (let i = 0; i + 5 <= body.length; ) {
    const len = body.readUInt32BE(i + 1);
    if (!(body[i] & 0x80)) replies.push(body.subarray(i + 5, i + 5 + len));
    if (body[i] & 0x80) {
      const trailers = body.subarray(i + 5, i + 5 + len).toString("utf8");
      status = /grpc-status:\s*(\d+)/i.exec(trailers)?.[1] ?? status;
      message = /grpc-message:\s*(.*)/i.exec(trailers)?.[1]?.trim() ?? message;
    }
    i += 5 + len;
  }
  return { status: Number(status), message: decodeURIComponent(message), reply: replies[0] };
}

before(() => {
  mkdirSync(artifacts, { recursive: true });
});

/** The CSP lists of tests that breach the policy on purpose (see expectCspBreach). */
const expectedBreaches = new WeakSet();

/** For the one test that breaches the policy on purpose: the file's end check leaves its list alone. */
export function expectCspBreach(csp) {
  expectedBreaches.add(csp);
}

after(async () => {
  // Every page of every test ran under the policy: a violation in any of
  // them fails the file, whether or not its test looked.
  const breaches = browsers
    .map((b) => cspViolationsOf.get(b))
    .filter((csp) => csp && !expectedBreaches.has(csp))
    .flat();
  for (const b of browsers) await b.close().catch(() => {});
  staticServer?.close();
  for (const srv of servers) {
    await stopServer(srv);
    // Each server's log goes with the screenshots, for when something fails.
    writeFileSync(path.join(artifacts, `server-${srv.name}.log`), srv.log);
  }
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  assert.deepEqual([...new Set(breaches)], [], "no Content-Security-Policy violation in any page of this file");
});


/** Opens the sessions page and waits for its list. */
export async function openSessions(page) {
  await byTestId(page, "sessions-button").click();
  await page.locator('[data-testid="session"][data-current="true"]').waitFor();
}

/** Logs in on the login page; the chat shows, live. */
export async function logIn(page, username, password) {
  await byTestId(page, "login-username").fill(username);
  await byTestId(page, "login-password").fill(password);
  await byTestId(page, "login-submit").click();
  await assertText(byTestId(page, "me"), username);
  await assertText(byTestId(page, "connection"), "online");
}

/** The other device is back at the login page, told why, within a few seconds. */
export async function assertLoggedOut(page) {
  const opts = { timeout: 8_000 };
  await byTestId(page, "login-submit").waitFor(opts);
  await byTestId(page, "auth-status").filter({ hasText: "session ended" }).waitFor(opts);
  assert.equal(await page.evaluate(() => localStorage.getItem("chat.auth")), null, "its tokens are gone");
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/**
 * Runs axe-core on the page as it is and fails on any serious or critical
 * violation, naming each with its elements and how to fix it. The source
 * goes in through the DevTools protocol (`evaluate`), which the page's
 * Content-Security-Policy does not apply to: a <script> tag would be a
 * violation.
 */
export async function assertAccessible(page, screen) {
  if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => `${n.target.join(" ")}: ${n.failureSummary?.replace(/\s+/g, " ")}`),
    }));
  });
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  const report = bad
    .map((v) => `- ${v.id} (${v.impact}): ${v.help}\n${v.nodes.map((n) => `    ${n}`).join("\n")}`)
    .join("\n");
  assert.equal(bad.length, 0, `${screen}: axe found serious or critical violations:\n${report}`);
}

/**
 * The page in the light and the dark colour scheme: axe on each, and a
 * screenshot `${suite}-${screen}-${scheme}.png` among the artifacts.
 */
export async function assertAccessibleInBothSchemes(page, suite, screen) {
  for (const colorScheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme });
    await assertAccessible(page, `${screen} (${colorScheme})`);
    await page.screenshot({ path: path.join(artifacts, `${suite}-${screen}-${colorScheme}.png`) });
  }
  await page.emulateMedia({ colorScheme: "light" });
}
