// export_08.mjs [--allow-missing-articles] OUT.safetensors.gz — chapter 08's goldens, from a tokenizer nobody here wrote:
// Hugging Face's tokenizers.js (@huggingface/tokenizers, pinned in tools/peers/package-lock.json)
// given bert-base-uncased's tokenizer.json (bert_tokenizer.mjs).
//
// Environment: TFM_ROOT (default .), TFM_BUILD (default $TFM_ROOT/build: where make deps put the
// peers and the data), TFM_ARTICLES (default $TFM_ROOT/../shared/articles).
//
// Corpora, each a list of lines (texts) encoded one by one with add_special_tokens=true:
//   austen    the six novels of build/data/austen, in bert_tokenizer.mjs's order, every line
//   articles  the five articles 000-004, every line (their text is not stored: the test reads
//             the files and checks their size and CRC-32 first; nor are their ids, which would
//             spell the text out: per line, the id count and hashes of the ids and the decode)
//   torture   the Unicode lines of TORTURE below (stored, as UTF-8 bytes)
//   pairs     [CLS] A [SEP] B [SEP] for consecutive non-empty torture lines and the first
//             PAIRS_AUSTEN consecutive non-empty lines of Emma (A and B stored)
// Tensors per corpus C (I64 unless said): C/input_ids [total], C/line_offsets [lines + 1] (the
// ids of line i are input_ids[off[i]..off[i+1])), C/decoded U8 [bytes] and C/decoded_offsets
// [lines + 1] (the peer's decode of those ids, clean-up on, special tokens kept) -- for articles
// C/ids_per_line, C/ids_fnv1a and C/decoded_fnv1a [lines] instead; for torture
// C/text U8 and C/text_offsets; for pairs also pairs/token_type_ids, pairs/text_a, pairs/text_b
// and their offsets. __metadata__: C/bytes, C/crc32 and C/files for the corpora read from files.
import { existsSync, readFileSync, writeFileSync, renameSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { crc32, gzipSync } from "node:zlib";
import { austenFiles, fileLines, loadPeer } from "./bert_tokenizer.mjs";

const ROOT = process.env.TFM_ROOT || ".";
const BUILD = process.env.TFM_BUILD || join(ROOT, "build");
const ARTICLES = process.env.TFM_ARTICLES || join(ROOT, "..", "shared", "articles");
const PAIRS_AUSTEN = 2000;
const args = process.argv.slice(2);
const allowMissing = args.includes("--allow-missing-articles");   // oracle-verify's, never make oracle's
const out = args.filter((a) => !a.startsWith("--"))[0];
if (!out) { console.error("usage: node export_08.mjs [--allow-missing-articles] OUT.safetensors.gz"); process.exit(2); }

const { tok, version: peerVersion } = await loadPeer(BUILD);

// ---- the torture set: each line names what it tries (the name is part of the text)
const u = String.fromCodePoint;
const TORTURE = [
  "", " ", "\t  \t", "hello world", "Hello, World!", "unaffable", "UNAFFABLE Unaffable",
  "café Café CAFÉ", "cafe\u0301 (e + combining acute)", "Ångström naïve façade résumé coöperate",
  "\u00c5 vs A\u030a vs \u212b (angstrom sign)", "São Paulo, Kraków, Zürich, Reykjavík, Đà Nẵng",
  "ﬁnancial ﬂow (ligatures stay)", "Ｆｕｌｌ－ｗｉｄｔｈ　ｆｏｒｍｓ！ １２３", "ｶﾀｶﾅ half-width kana",
  "zero\u200bwidth\u200cnon\u200djoiner\u2060word\ufeffbom", "soft\u00adhyphen", "nbsp\u00a0here\u202fnarrow\u3000ideographic",
  "tab\tand\rcarriage\u000bvertical\u000cform", "nul\u0000byte and del\u007f and \u0085 next-line",
  "bell\u0007 escape\u001b[0m", "line\u2028separator\u2029paragraph", "private \ue000 use \udb80\udc00 plane 16",
  "replacement \ufffd char", "unassigned a\u0378b and \u0379 (kept, as Rust and tokenizers.js keep them)", "emoji 😀 🤗 👍🏽 👨‍👩‍👧 🇫🇷", "math ∑ ∫ √ ≤ ≥ ≠ ∞ and € £ ¥ ©",
  "«guillemets» „quotes“ ‘single’ “double” — dash – en … ellipsis", "¿Qué? ¡Sí! ‽",
  "ΟΔΟΣ ΟΔΥΣΣΕΥΣ Σ ΑΣ. σοφός", "Ἀθῆναι ἐν ἀρχῇ", "Москва — столица России", "İstanbul ıi IJssel ǅemal",
  "straße STRASSE ß ẞ", "中文字符 and 日本語のかな and 한국어 문장", "我爱自然语言处理。", "㐀㐁 (extension A)",
  "ไม่มีช่องว่างในภาษาไทย", "नमस्ते दुनिया", "مرحبا بالعالم", "שלום עולם", "ქართული ენა", "Ελληνικά",
  "[CLS] special [SEP] tokens [MASK] inside [PAD] text [UNK]", "x[SEP]y[MASK]z", "[cls] [sep] [mask] lowercase are words",
  "[[CLS]] [ CLS ] [CLS", "don't can't won't I'm you're they've it's", "a.b,c;d:e!f?g", "e-mail @user #tag $5 100% a&b a*b a+b a<b a=b a>b a^b a_b a`b a|b a~b",
  "3.14159 1,000,000 2026-12-02 12:30:45", "https://huggingface.co/bert-base-uncased?x=1&y=2",
  "a".repeat(100), "a".repeat(101), "é".repeat(100), "é".repeat(101), "ab".repeat(60),
  "supercalifragilisticexpialidocious antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis",
  "xqzvbnm ghjkl qwrtp", "hello😀 price€ 3€ (a known start, an unknown rest)", "##hash ##tags #", "\u0301\u0302 leading marks", "a\u0308\u0323 stacked marks",
  "\ud835\udc00\ud835\udc01 math bold", "musical \ud834\udd65\ud834\udd6d (spacing marks with a class)",
  "Hangul jamo \u1100\u1161\u11a8 and syllable 각", "compatibility ideographs \uf9c7\ufa10 (劉 塚)", "ǄǅǆǇǈǉ digraphs", "ﬀ ﬃ ﬆ", "Ω ohm \u2126 kelvin \u212a",
  "Pride and Prejudice, by Jane Austen", "“Mr. Darcy,” said she, “is all politeness.”",
  "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.",
  "   leading and trailing spaces   ", "many     spaces\t\t\ttabs", u(0x1F600).repeat(3),
];

// ---- encoding
function encodeLines(lines) {
  const ids = [], off = [0], dec = [], decOff = [0];
  let decBytes = 0;
  for (const line of lines) {
    const e = tok.encode(line);
    ids.push(...e.ids);
    off.push(ids.length);
    const d = Buffer.from(tok.decode(e.ids), "utf8");
    dec.push(d);
    decBytes += d.length;
    decOff.push(decBytes);
  }
  return { ids, off, dec: Buffer.concat(dec), decOff };
}

const tensors = [];   // [name, dtype, shape, Buffer]
const meta = {};
const i64 = (arr) => { const b = Buffer.alloc(8 * arr.length); arr.forEach((x, k) => b.writeBigInt64LE(BigInt(x), 8 * k)); return b; };
// FNV-1a, 64 bits, over bytes, as a signed int64 (tokenizer.h's tok_hash).
function fnv1a(bytes) {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return BigInt.asIntN(64, h);
}
function addCorpus(name, lines, { hashed = false } = {}) {
  const r = encodeLines(lines);
  if (hashed) {
    // The text is not ours to copy, and its ids would spell it out: per line, the number of ids,
    // the hash of their int64 little-endian bytes, and the hash of the decoded UTF-8.
    const n = r.off.length - 1;
    const len = [], hid = [], hdec = [];
    for (let i = 0; i < n; i++) {
      len.push(r.off[i + 1] - r.off[i]);
      hid.push(fnv1a(i64(r.ids.slice(r.off[i], r.off[i + 1]))));
      hdec.push(fnv1a(r.dec.subarray(r.decOff[i], r.decOff[i + 1])));
    }
    tensors.push([`${name}/ids_per_line`, "I64", [n], i64(len)]);
    tensors.push([`${name}/ids_fnv1a`, "I64", [n], i64(hid)]);
    tensors.push([`${name}/decoded_fnv1a`, "I64", [n], i64(hdec)]);
  } else {
    tensors.push([`${name}/input_ids`, "I64", [r.ids.length], i64(r.ids)]);
    tensors.push([`${name}/line_offsets`, "I64", [r.off.length], i64(r.off)]);
    tensors.push([`${name}/decoded`, "U8", [r.dec.length], r.dec]);
    tensors.push([`${name}/decoded_offsets`, "I64", [r.decOff.length], i64(r.decOff)]);
  }
  meta[`${name}/lines`] = String(lines.length);
  meta[`${name}/ids`] = String(r.ids.length);
  return r;
}
function addTexts(name, lines) {
  const bufs = lines.map((l) => Buffer.from(l, "utf8"));
  const off = [0];
  for (const b of bufs) off.push(off[off.length - 1] + b.length);
  tensors.push([name, "U8", [off[off.length - 1]], Buffer.concat(bufs)]);
  tensors.push([`${name}_offsets`, "I64", [off.length], i64(off)]);
}
function fromFiles(name, paths) {
  const bufs = paths.map((p) => readFileSync(p));
  const all = Buffer.concat(bufs);
  meta[`${name}/bytes`] = String(all.length);
  meta[`${name}/crc32`] = crc32(all).toString(16).padStart(8, "0");
  meta[`${name}/files`] = paths.map((p) => p.split("/").pop()).join(",");
  return bufs.flatMap((b) => fileLines(b.toString("utf8")));
}

const austen = fromFiles("austen", austenFiles(BUILD));
addCorpus("austen", austen);
// The articles live outside the repository; without them this export leaves their corpus out
// and says so (oracle/peers/compare.mjs then skips it), so that the rest still verifies.
const articleFiles = existsSync(ARTICLES)
  ? readdirSync(ARTICLES).filter((f) => /^00[0-4]_.*\.txt$/.test(f)).sort() : [];
if (articleFiles.length === 5) {
  addCorpus("articles", fromFiles("articles", articleFiles.map((f) => join(ARTICLES, f))), { hashed: true });
} else if (!allowMissing) {
  console.error(`export_08: no articles 000-004 at ${ARTICLES} (set TFM_ARTICLES): nothing written`);
  process.exit(1);
} else {
  meta["articles/skipped"] = `no articles 000-004 at ${ARTICLES} (set TFM_ARTICLES)`;
  console.log(`export_08: ${meta["articles/skipped"]}: the articles' corpus is left out`);
}
addTexts("torture/text", TORTURE);
addCorpus("torture", TORTURE);

// pairs
const emma = fileLines(readFileSync(join(BUILD, "data/austen/emma.txt"), "utf8")).filter((l) => l.trim() !== "");
const pa = [], pb = [];
for (let i = 0; i + 1 < TORTURE.length; i++) if (TORTURE[i] && TORTURE[i + 1]) { pa.push(TORTURE[i]); pb.push(TORTURE[i + 1]); }
for (let i = 0; i < PAIRS_AUSTEN; i++) { pa.push(emma[i]); pb.push(emma[i + 1]); }
const pids = [], ptypes = [], poff = [0];
for (let i = 0; i < pa.length; i++) {
  const e = tok.encode(pa[i], { text_pair: pb[i], return_token_type_ids: true });
  pids.push(...e.ids); ptypes.push(...e.token_type_ids); poff.push(pids.length);
}
addTexts("pairs/text_a", pa);
addTexts("pairs/text_b", pb);
tensors.push(["pairs/input_ids", "I64", [pids.length], i64(pids)]);
tensors.push(["pairs/token_type_ids", "I64", [ptypes.length], i64(ptypes)]);
tensors.push(["pairs/line_offsets", "I64", [poff.length], i64(poff)]);
meta["pairs/lines"] = String(pa.length);

Object.assign(meta, {
  peer: `@huggingface/tokenizers ${peerVersion} (tokenizers.js), node ${process.versions.node}`,
  script: "oracle/peers/export_08.mjs",
  vocab: "bert-base-uncased vocab.txt, MD5 64800d5d8528ce344256daf115d4965e",
  format: "tfm peer golden 1",
});

// ---- safetensors, gzip'd: the header lists tensors in file order, data back to back
const header = {};
let at = 0;
for (const [name, dtype, shape, buf] of tensors) { header[name] = { dtype, shape, data_offsets: [at, at + buf.length] }; at += buf.length; }
header.__metadata__ = meta;
let hjson = JSON.stringify(header);
hjson += " ".repeat((8 - (Buffer.byteLength(hjson) % 8)) % 8);
const hlen = Buffer.alloc(8);
hlen.writeBigUInt64LE(BigInt(Buffer.byteLength(hjson)));
const file = Buffer.concat([hlen, Buffer.from(hjson, "utf8"), ...tensors.map((t) => t[3])]);
writeFileSync(out + ".tmp", gzipSync(file, { level: 9 }));
renameSync(out + ".tmp", out);
const n = (c) => meta[`${c}/lines`] ?? "skipped";
console.log(`wrote ${out}: austen ${n("austen")} lines, articles ${n("articles")}, torture ${n("torture")}, pairs ${n("pairs")}`);
