// compare.mjs NEW COMMITTED — chapter 08's check that the peer still gives the committed goldens:
// every tensor of NEW must be in COMMITTED with the same dtype, shape and bytes, and so must the
// metadata. A corpus missing from NEW because its text is not on this machine (the articles live
// outside the repository, and NEW's metadata says "<corpus>/skipped") is reported as skipped; any
// other difference fails (exit 1). Token ids are integers: equality is the only tolerance.
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

function load(path) {
  let b = readFileSync(path);
  if (b[0] === 0x1f && b[1] === 0x8b) b = gunzipSync(b);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString("utf8"));
  const data = b.subarray(8 + n);
  const meta = header.__metadata__ || {};
  delete header.__metadata__;
  return { header, data, meta };
}

const [pNew, pOld] = process.argv.slice(2);
if (!pNew || !pOld) { console.error("usage: node compare.mjs NEW COMMITTED"); process.exit(2); }
const a = load(pNew), b = load(pOld);
const skipped = Object.keys(a.meta).filter((k) => k.endsWith("/skipped")).map((k) => k.slice(0, -8));
const isSkipped = (name) => skipped.some((c) => name.startsWith(c + "/"));
const problems = [];
for (const [name, t] of Object.entries(a.header)) {
  const u = b.header[name];
  if (!u) { problems.push(`tensor '${name}' only in the new export`); continue; }
  if (t.dtype !== u.dtype || JSON.stringify(t.shape) !== JSON.stringify(u.shape)) {
    problems.push(`tensor '${name}': ${t.dtype} ${JSON.stringify(t.shape)} (new) vs ${u.dtype} ${JSON.stringify(u.shape)} (committed)`);
    continue;
  }
  const x = a.data.subarray(...t.data_offsets), y = b.data.subarray(...u.data_offsets);
  if (!x.equals(y)) {
    let i = 0;
    while (i < x.length && x[i] === y[i]) i++;
    problems.push(`tensor '${name}' differs from byte ${i} on`);
  }
}
for (const name of Object.keys(b.header))
  if (!a.header[name] && !isSkipped(name)) problems.push(`tensor '${name}' only in the committed goldens`);
for (const key of new Set([...Object.keys(a.meta), ...Object.keys(b.meta)])) {
  if (key.endsWith("/skipped") || isSkipped(key)) continue;
  if (key === "peer" && a.meta[key] !== b.meta[key]) { console.log(`WARN 08-tokenizer: peer ${a.meta[key]} (new) vs ${b.meta[key]} (committed); comparing ids anyway`); continue; }
  if (a.meta[key] !== b.meta[key]) problems.push(`metadata '${key}': ${JSON.stringify(a.meta[key])} (new) vs ${JSON.stringify(b.meta[key])} (committed)`);
}
for (const c of skipped) console.log(`SKIPPED 08-tokenizer ${c}: ${a.meta[c + "/skipped"]}`);
if (problems.length) {
  console.log(`FAIL 08-tokenizer: ${problems.length} problem(s)`);
  for (const p of problems.slice(0, 20)) console.log("    " + p);
  process.exit(1);
}
console.log(`OK 08-tokenizer: ${Object.keys(a.header).length} tensors identical to the committed goldens (tokenizers.js, ${a.meta.peer})`);
