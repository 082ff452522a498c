/* tokenizer.h — chapter 08: BERT's tokenizer (Hugging Face's BertTokenizer for
 * bert-base-uncased), from UTF-8 text to the input_ids, token_type_ids and attention_mask a model
 * reads, and back.
 *
 * The pipeline, as tokenizer.json's "normalizer", "pre_tokenizer", "model" and "post_processor"
 * run it (the Rust library strips accents before it lowercases; Python and tokenizers.js the other
 * way round; the results are the same):
 *
 *   0. special tokens  "[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]" written in the raw text are cut
 *                      out first, before any normalization, and become their own ids;
 *   1. clean           drop U+0000, U+FFFD and control characters (categories Cc, Cf, Co, Cs,
 *                      except TAB, LF, CR); every whitespace character becomes a space;
 *   2. CJK             put a space on each side of a CJK ideograph, so each is a word;
 *   3. lowercase       full Unicode lowercasing, with Greek capital sigma's final form;
 *   4. strip accents   NFD (canonical decomposition, then canonical ordering), then drop every
 *                      nonspacing mark (category Mn): "Café" -> "cafe";
 *   5. pre-tokenize    split on whitespace, and make every punctuation character a word of its own
 *                      (Unicode P* categories, and all of ASCII's !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~,
 *                      whose $ + < = > ^ ` | ~ Unicode calls symbols);
 *   6. WordPiece       per word: the longest vocabulary entry that is a prefix, then the longest
 *                      "##"-prefixed entry that continues it, and so on ("unaffable" -> "un",
 *                      "##aff", "##able"); a word that cannot be split to the end, or is longer
 *                      than 100 characters (code points), is one [UNK].
 *   7. post-process    [CLS] A [SEP], or [CLS] A [SEP] B [SEP] with token_type_ids 0 for the
 *                      first part and 1 for B and its [SEP]; truncation, padding, attention_mask.
 *
 * Steps 0-6 are the kernel, in two variants with one signature (tokenize_naive, tokenize_fast:
 * text -> word-piece ids). Step 7, the vocabulary and decoding are shared (tokenizer.c).
 * Unicode properties (categories, combining classes, case mappings, canonical decompositions)
 * come from utf8proc, never from tables written here.
 *
 * Where Hugging Face's three implementations disagree -- Python's BertTokenizer (transformers 4,
 * the articles' code), the Rust `tokenizers` (BertTokenizerFast, transformers 5) and
 * tokenizers.js (the peer of the goldens) -- tfm does what two of them do: unassigned code points
 * (Cn) are kept (Python drops them); capital sigma at the end of a word lowercases to final sigma
 * (Rust maps each character alone); CJK ideographs beyond the Basic Multilingual Plane are spaced
 * (tokenizers.js looks at UTF-16 units and misses them), from U+2B820 (Rust's table starts that
 * block at U+2B920); U+2028 and U+2029 are whitespace (Python keeps them inside words). The book
 * has the table.
 *
 * Errors: invalid UTF-8 (an ill-formed byte, an overlong form, a surrogate, a code point past
 * U+10FFFF, a truncated sequence) is refused with the byte offset of the first bad byte, never
 * guessed at; so is a vocabulary file that is not one entry per line.
 */
#ifndef TFM_TOKENIZER_H
#define TFM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

/* Hugging Face's WordPiece settings for BERT. */
#define TOK_MAX_WORD_CHARS 100        /* longer words are [UNK] (max_input_chars_per_word) */
#define TOK_MODEL_MAX_LENGTH 512      /* bert-base-uncased's model_max_length */
#define TFM_TOK_ERR 512               /* room for any of this chapter's error messages */

/* ---------------------------------------------------------------- the vocabulary */

/* vocab.txt: one entry per line, the line number (from 0) is the id. Continuation pieces carry
 * the "##" prefix ("##able"); the special tokens are written as themselves ("[CLS]"). */
typedef struct {             /* one slot of the hash table: 16 bytes, four to a cache line */
    uint64_t hash;           /* the entry's full hash: a probe compares it before any byte */
    uint32_t id1;            /* id + 1; 0 = empty */
    uint32_t len;            /* the entry's byte length */
} VocabSlot;
typedef struct {
    size_t n;                /* V, number of entries */
    char **token;            /* [V] NUL-terminated UTF-8 entries, in id order (one block) */
    uint32_t *len;           /* [V] byte length of each entry */
    uint32_t *sorted;        /* [V] ids sorted by strcmp of their entries: the naive lookup */
    VocabSlot *slot;         /* [n_slot] open addressing, linear probing: the fast lookup */
    size_t n_slot;           /* a power of two, at least 2 V */
    size_t max_len;          /* longest entry in bytes: no piece longer can match */
    int32_t pad_id, unk_id, cls_id, sep_id, mask_id;
    char *block;             /* owns the entries' bytes */
} Vocab;

/* Reads vocab.txt. Returns 0, or -1 with "PATH: line N: what is wrong" in err (not UTF-8, an
 * empty entry, a space or control character in an entry, an entry given twice, a special token
 * missing, more than 2^31 - 1 entries, a file over 2 GiB). */
int vocab_load(Vocab *v, const char *path, char *err, size_t errlen);
/* The same from memory (the bytes of a vocab.txt); `label` names it in messages. */
int vocab_load_bytes(Vocab *v, const char *bytes, size_t len, const char *label, char *err,
                     size_t errlen);
void vocab_free(Vocab *v);
/* The id of entry s[0..n), or -1: binary search over `sorted` (naive) or the hash (fast). */
int32_t vocab_find_naive(const Vocab *v, const char *s, size_t n);
int32_t vocab_find_fast(const Vocab *v, const char *s, size_t n);
/* The hash vocab_find_fast uses (FNV-1a, 64 bits), continued from state h over s[0..n): hashing
 * "##" once and continuing from there hashes every continuation candidate without copying it. */
#define TOK_HASH_INIT 0xcbf29ce484222325ull
static inline uint64_t tok_hash(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}
/* The fast lookup with the hash h already computed: of s[0..n), or with cont = 1 of "##" + s[0..n)
 * (the entry then has n + 2 bytes, and only s is compared after its "##"). */
int32_t vocab_find_hashed(const Vocab *v, const char *s, size_t n, uint64_t h, int cont);

/* Where make deps puts the data: $TFM_DATA if set, else the folder "data" beside the one holding
 * the running program (build/bin/tfm and build/tests/... -> build/data). Writes
 * "<that>/<rel>" into buf. */
void tok_data_path(char *buf, size_t buflen, const char *rel);
#define TOK_DEFAULT_VOCAB "bert-base-uncased/vocab.txt"

/* ---------------------------------------------------------------- the kernel (steps 0-6) */

/* Growable arrays the kernels append to. Grown by doubling, so a kernel allocates a few times per
 * run, never per word; tok_buf_free releases them. */
typedef struct { int32_t *ids; size_t len, cap; } TokIds;             /* ids [cap], len used */
typedef struct {
    uint32_t *cp;  size_t cp_cap;    /* [cp_cap] code points of a segment, then its NFD (naive) */
    uint32_t *cp2; size_t cp2_cap;   /* [cp2_cap] a second stage buffer (naive) */
    char *word;    size_t word_cap;  /* [word_cap] one word's normalized UTF-8 bytes */
    uint64_t *hash; size_t hash_cap; /* [hash_cap] prefix hashes of a word (fast) */
} TokScratch;
void tok_ids_free(TokIds *t);
void tok_scratch_free(TokScratch *s);

/* Where the text was refused: the byte offset of the first invalid UTF-8 byte. */
typedef struct { size_t offset; const char *what; } TokError;

/* Appends the word-piece ids of text[0..n) (UTF-8, not NUL-terminated; special tokens in the text
 * included, [CLS]/[SEP] of step 7 not) to out. Returns 0, or -1 with e filled for invalid
 * UTF-8 (out is then left at its old length). Neither variant allocates per word: both grow
 * out and s. */
int tokenize_naive(TokIds *out, const Vocab *v, const char *text, size_t n, TokScratch *s,
                   TokError *e);
int tokenize_fast(TokIds *out, const Vocab *v, const char *text, size_t n, TokScratch *s,
                  TokError *e);
typedef int (*TokenizeFn)(TokIds *, const Vocab *, const char *, size_t, TokScratch *, TokError *);

/* Checks that text[0..n) is UTF-8 as Unicode defines it (the first step of both kernels). Returns
 * 0, or -1 with e->offset at the first byte of the first ill-formed sequence. */
int tok_utf8_check(const char *text, size_t n, TokError *e);

/* Shared by both kernels. tok_special_at: the id of the special token that starts at text[i]
 * (its byte length in *len), or -1. tok_sigma_final: does the capital sigma cp[i] end a word
 * (Unicode's Final_Sigma condition: a cased letter before it and none after it, skipping
 * case-ignorable characters, within cp[0..n))? Then it lowercases to final sigma, U+03C2. */
int32_t tok_special_at(const Vocab *v, const char *text, size_t n, size_t i, size_t *len);
int tok_sigma_final(const uint32_t *cp, size_t n, size_t i);
/* Steps 1-6 on text[lo..hi) (valid UTF-8, no special token inside), appended to out: the naive
 * kernel's body, and the fast kernel's path for the rare text it does not handle itself. */
int tokenize_segment_naive(TokIds *out, const Vocab *v, const char *text, size_t lo, size_t hi,
                           TokScratch *s);
/* Unicode classes of the pipeline: CJK ideograph (the blocks BERT lists), whitespace (after
 * cleaning), control (removed by cleaning), punctuation (split off). */
int tok_is_cjk(uint32_t c);
int tok_is_whitespace(uint32_t c);
int tok_is_control(uint32_t c);
int tok_is_punct(uint32_t c);

/* ---------------------------------------------------------------- step 7: encoding */

typedef enum { TOK_TRUNC_NONE, TOK_TRUNC_LONGEST_FIRST, TOK_TRUNC_ONLY_FIRST,
               TOK_TRUNC_ONLY_SECOND } TokTruncation;
typedef enum { TOK_PAD_NONE, TOK_PAD_LONGEST, TOK_PAD_MAX_LENGTH } TokPadding;

typedef struct {
    int add_special_tokens;   /* 1: [CLS] A [SEP] (B [SEP]); 0: the word pieces only */
    size_t max_length;        /* the limit of truncation and of padding to max_length */
    TokTruncation truncation;
    TokPadding padding;       /* to the batch's longest, or to max_length; right side, [PAD] = 0 */
} TokOptions;

/* Hugging Face's defaults: tokenizer(text) with add_special_tokens=True and nothing else. */
/* The special tokens step 7 adds: 2 for one text, 3 for a pair, 0 without add_special_tokens.
 * A max_length below it leaves truncation no room (a usage error: check it before encoding). */
size_t tok_n_special(const TokOptions *o, int has_pair);
TokOptions tok_default_options(void);
/* Parses "longest_first" | "only_first" | "only_second" | "do_not_truncate", and
 * "longest" | "max_length" | "do_not_pad"; returns 0 or -1. */
int tok_parse_truncation(const char *s, TokTruncation *t);
int tok_parse_padding(const char *s, TokPadding *p);

/* A batch of encodings, back to back: text i is [offset[i], offset[i+1]) of the three arrays.
 * Padded batches have one length L, so the arrays are [n, L] row-major: the input_ids,
 * token_type_ids and attention_mask tensors a model takes (return_tensors='pt'). */
typedef struct {
    size_t n;                  /* texts */
    size_t *offset;            /* [n + 1] */
    int64_t *input_ids;        /* [offset[n]] */
    int64_t *token_type_ids;   /* [offset[n]] 0 for [CLS] A [SEP], 1 for B [SEP] */
    int64_t *attention_mask;   /* [offset[n]] 1 for a token, 0 for padding */
    /* Kept from one call to the next, so that encoding batch after batch (a training loop)
     * allocates nothing once the buffers have grown: */
    size_t cap_texts, cap_tokens;  /* room in offset and work (texts), in the three arrays */
    void *work;                /* [cap_texts] where each text's pieces went (tokenizer.c) */
    TokIds *pieces;            /* [n_pieces] each thread's word pieces */
    TokScratch *scratch;       /* [n_pieces] each thread's scratch */
    int n_pieces;
} TokBatch;
void tok_batch_free(TokBatch *b);
static inline size_t tok_batch_len(const TokBatch *b, size_t i) { return b->offset[i + 1] - b->offset[i]; }

/* How many word pieces of A (n1) and B (n2) truncation keeps within `budget` (max_length less the
 * special tokens), as Hugging Face's tokenizers does (truncate_encodings): longest_first trims the
 * longer one down to the shorter, then both to half the budget, the second keeping the odd
 * token; only_first / only_second trim that one and fail if it is too short. has_pair = 0: n2 is
 * 0 and only_second fails. Returns 0, or -1 with the reason in err. */
int tok_truncate_lengths(size_t *n1, size_t *n2, int has_pair, size_t budget, TokTruncation t,
                         char *err, size_t errlen);

/* Encodes n texts (pairs when b != NULL; no b[i] may then be NULL) on all OpenMP threads:
 * word pieces first, each thread into its own buffer with its own scratch; then truncation and
 * padding, which fix every length; then one allocation for the batch, filled in parallel. Texts
 * are UTF-8 a[i][0..na[i]). `out` is a zeroed TokBatch the first time; given again, its buffers
 * (output, per-thread pieces and scratch) are reused, so that a loop of batches allocates nothing
 * once they have grown. Returns 0, or -1 with out->n = 0 and the reason in err: "line I: ..."
 * (I from 1) with *bad_index = i for the first text refused, or "out of memory ..." (then
 * *bad_index = n). */
int tok_encode_batch(TokBatch *out,
                     const char *const *a, const size_t *na,          /* [n] */
                     const char *const *b, const size_t *nb,          /* [n] or NULL */
                     size_t n, const Vocab *v, TokenizeFn fn, const TokOptions *o,
                     size_t *bad_index, char *err, size_t errlen);

/* ---------------------------------------------------------------- decoding */

/* Hugging Face's decode: ids -> entries; "##" pieces joined to the one before, others after a
 * space; skip_special drops [CLS], [SEP], [PAD], [MASK], [UNK]; then its clean-up of spaces
 * (" ." -> ".", " ," -> ",", " ' " -> "'", " n't" -> "n't", " 's" -> "'s", ...). Returns a
 * malloc'd string, or NULL with "id X at position I is not in the vocabulary (V entries)". */
char *tok_decode(const Vocab *v, const int64_t *ids, size_t n, int skip_special, char *err,
                 size_t errlen);

#endif
