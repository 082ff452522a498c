// tokenizers_js_bench.mjs [--quick] --out FILE — the peer's side of chapter 08's benchmark:
// tokenizers.js (@huggingface/tokenizers, as make deps installed it) encoding every line of
// Austen's six novels with add_special_tokens=true, on one thread (JavaScript's), timed as
// `tfm bench` times tfm: warm-up, then samples until a count and a time are reached; median,
// min and max. Writes JSON that `tfm bench --peer FILE` reads.
//
// Environment: TFM_BUILD (default build).
import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { austenFiles, fileLines, loadPeer } from "../oracle/peers/bert_tokenizer.mjs";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const out = args[args.indexOf("--out") + 1];
if (!args.includes("--out") || !out) {
  console.error("usage: node tokenizers_js_bench.mjs [--quick] --out FILE");
  process.exit(2);
}
const build = process.env.TFM_BUILD || "build";
const { tok, version } = await loadPeer(build);
const bufs = austenFiles(build).map((p) => readFileSync(p));
const bytes = bufs.reduce((n, b) => n + b.length, 0);
const lines = bufs.flatMap((b) => fileLines(b.toString("utf8")));

function run() {
  let ids = 0;
  for (const l of lines) ids += tok.encode(l).ids.length;
  return ids;
}
const [warmup, minSamples, minSeconds] = quick ? [1, 2, 0.5] : [1, 5, 10];
let ids = 0;
for (let w = 0; w < warmup; w++) ids = run();
const ms = [];
const start = performance.now();
while (ms.length < minSamples || performance.now() - start < 1000 * minSeconds) {
  const t0 = performance.now();
  run();
  ms.push(performance.now() - t0);
  process.stderr.write(`\rbench: tokenizers.js, sample ${ms.length}: ${ms[ms.length - 1].toFixed(0)} ms  `);
}
process.stderr.write("\n");
ms.sort((a, b) => a - b);
const n = ms.length;
const median = n % 2 ? ms[(n - 1) / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
const result = {
  peer: `@huggingface/tokenizers ${version} (tokenizers.js)`, node: process.versions.node,
  corpus: "austen", bytes, lines: lines.length, ids, threads: 1, samples: n,
  median_ms: median, min_ms: ms[0], max_ms: ms[n - 1],
};
writeFileSync(out + ".tmp", JSON.stringify(result, null, 1) + "\n");
renameSync(out + ".tmp", out);
console.log(`tokenizers.js: ${(bytes / 1e6 / (median / 1e3)).toFixed(2)} MB/s (median of ${n}), ${ids} ids`);
