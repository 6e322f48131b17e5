// The bundle's budget: what a cold load downloads (every file under dist/,
// gzipped as the server would send it over a slow link) must stay under
// BUDGET_KIB, so that the first screen is usable quickly on a phone.
// Prints each file's size; exits 1 over the budget.
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const BUDGET_KIB = 150;

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../dist");

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [p];
  });
}

let total = 0;
for (const file of files(dist).sort()) {
  const raw = readFileSync(file);
  const gz = gzipSync(raw, { level: 9 }).length;
  total += gz;
  console.log(`${path.relative(dist, file).padEnd(32)} ${(raw.length / 1024).toFixed(1).padStart(7)} KiB  gzip ${(gz / 1024).toFixed(1).padStart(6)} KiB`);
}
const kib = total / 1024;
console.log(`total gzip ${kib.toFixed(1)} KiB of a ${BUDGET_KIB} KiB budget`);
if (kib > BUDGET_KIB) {
  console.error(`clients/web: the bundle is ${kib.toFixed(1)} KiB gzipped, over its ${BUDGET_KIB} KiB budget`);
  process.exit(1);
}
