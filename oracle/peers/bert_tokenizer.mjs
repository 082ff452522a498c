// bert_tokenizer.mjs — Hugging Face's tokenizers.js set up as bert-base-uncased's tokenizer, for
// the goldens (export_08.mjs) and the benchmark (bench/tokenizers_js_bench.mjs).
//
// tokenizer.json is built from vocab.txt with the settings Hugging Face publishes for that
// model: BertNormalizer (clean_text, handle_chinese_chars, lowercase, strip_accents unset, so
// following lowercase), BertPreTokenizer, WordPiece ("##", [UNK], at most 100 characters per
// word), the five special tokens as added tokens matched before normalization, the [CLS] A [SEP]
// (B [SEP]) template, and the WordPiece decoder with its clean-up.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

// Jane Austen's six novels as make deps installs them (build/data/austen), in this order.
export const BOOKS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma",
                      "northangerabbey", "persuasion"];
export const austenFiles = (build) => BOOKS.map((b) => join(build, "data/austen", b + ".txt"));

// A file's lines as the C side reads them: split at "\n", the text after a final "\n" is no line.
export function fileLines(text) {
  const l = text.split("\n");
  if (l[l.length - 1] === "") l.pop();
  return l;
}

export async function loadPeer(build) {
  const dir = resolve(build, "peers/node_modules/@huggingface/tokenizers");
  const { Tokenizer } = await import(pathToFileURL(join(dir, "dist/tokenizers.mjs")).href);
  const { version } = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  // tokenizer.json and tokenizer_config.json
  const vocabLines = readFileSync(join(build, "data/bert-base-uncased/vocab.txt"), "utf8").split("\n");
  vocabLines.pop();
  const vocab = Object.fromEntries(vocabLines.map((t, i) => [t, i]));
  const special = (content) => ({ id: vocab[content], content, single_word: false, lstrip: false,
                                  rstrip: false, normalized: false, special: true });
  const tokenizerJson = {
    version: "1.0", truncation: null, padding: null,
    added_tokens: ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].map(special),
    normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true,
                  strip_accents: null, lowercase: true },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
               { SpecialToken: { id: "[SEP]", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "[CLS]", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
             { SpecialToken: { id: "[SEP]", type_id: 0 } }, { Sequence: { id: "B", type_id: 1 } },
             { SpecialToken: { id: "[SEP]", type_id: 1 } }],
      special_tokens: {
        "[CLS]": { id: "[CLS]", ids: [vocab["[CLS]"]], tokens: ["[CLS]"] },
        "[SEP]": { id: "[SEP]", ids: [vocab["[SEP]"]], tokens: ["[SEP]"] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##",
             max_input_chars_per_word: 100, vocab },
  };
  const tokenizerConfig = { do_lower_case: true, clean_up_tokenization_spaces: true,
                            model_max_length: 512, tokenize_chinese_chars: true };
  const tok = new Tokenizer(tokenizerJson, tokenizerConfig);
  return { tok, version };
}
