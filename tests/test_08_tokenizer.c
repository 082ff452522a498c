/* test_08_tokenizer.c — chapter 08: the tokenizer against a peer nobody here wrote.
 *
 * The goldens (oracle/peers/08-tokenizer.safetensors.gz, from oracle/peers/export_08.mjs) are
 * tokenizers.js's ids for every line of Austen's six novels, of the five articles, of a Unicode
 * torture set and of sentence pairs, and its decode of each. Every line must give the same ids,
 * in both variants; ids are integers, so the tolerance is none. Then the properties no golden
 * holds: fast = naive on random text, invalid UTF-8 refused at the right byte, truncation as
 * Hugging Face's own test table has it, padding and the attention mask, the vocabulary loader's
 * refusals, threads that change nothing.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <utf8proc.h>
#include <zlib.h>

#include "golden.h"
#include "rng.h"
#include "testutil.h"
#include "tokenizer.h"

static Vocab V;
static GoldenFile G;

static void setup(void) {
    char path[4096], err[TFM_ERR_LEN];
    tok_data_path(path, sizeof path, TOK_DEFAULT_VOCAB);
    if (vocab_load(&V, path, err, sizeof err) != 0)
        ck_abort_msg("%s (make deps installs the vocabulary)", err);
    const char *root = getenv("TFM_ROOT");
    snprintf(path, sizeof path, "%s/oracle/peers/08-tokenizer.safetensors.gz", root && *root ? root : ".");
    if (golden_load(&G, path, err, sizeof err) != 0) ck_abort_msg("%s", err);
}

static void teardown(void) {
    vocab_free(&V);
    golden_free(&G);
}

static const Tensor *need(const char *name, TfmDType dt) {
    char err[TFM_ERR_LEN];
    const Tensor *t = golden_require(&G, name, dt, 1, err, sizeof err);
    if (!t) ck_abort_msg("%s", err);
    return t;
}

/* A corpus's lines: pointers into one buffer, split at '\n' (no line after a final '\n'). */
typedef struct { char *buf; size_t n; const char **line; size_t *len; } Lines;

/* Adds the lines of buf[lo..hi) to L: split at '\n', no line after a final '\n'. */
static void lines_add(Lines *L, const char *buf, size_t lo, size_t hi) {
    size_t start = lo;
    for (size_t i = lo; i <= hi; i++)
        if (i == hi ? start < hi : buf[i] == '\n') {
            L->line[L->n] = buf + start;
            L->len[L->n++] = i - start;
            start = i + 1;
        }
}

static void lines_from_tensor(Lines *L, const char *name) {
    char off[128];
    snprintf(off, sizeof off, "%s_offsets", name);
    const Tensor *t = need(name, TFM_U8), *o = need(off, TFM_I64);
    const int64_t *of = tensor_i64(o);
    L->buf = NULL;
    L->n = o->numel - 1;
    L->line = tu_malloc((L->n + 1) * sizeof *L->line);
    L->len = tu_malloc((L->n + 1) * sizeof *L->len);
    for (size_t i = 0; i < L->n; i++) {
        L->line[i] = (const char *)t->data + of[i];
        L->len[i] = (size_t)(of[i + 1] - of[i]);
    }
}

static void lines_free(Lines *L) { free(L->buf); free(L->line); free(L->len); }

/* The files of corpus `name` (metadata name/files, in `dir`), concatenated, checked against the
 * size and CRC-32 the exporter saw. Returns 0, or -1 if the folder is absent (articles only). */
static int lines_from_files(Lines *L, const char *name, const char *dir, int optional) {
    char key[64], path[4096];
    snprintf(key, sizeof key, "%s/files", name);
    const char *files = golden_meta(&G, key);
    ck_assert_msg(files != NULL, "golden has no %s", key);
    snprintf(key, sizeof key, "%s/bytes", name);
    const size_t want_bytes = (size_t)strtoull(golden_meta(&G, key), NULL, 10);
    snprintf(key, sizeof key, "%s/crc32", name);
    const unsigned long want_crc = strtoul(golden_meta(&G, key), NULL, 16);
    char *buf = tu_malloc(want_bytes + 1);
    size_t used = 0, n_files = 0, file_end[16];
    char list[1024];
    snprintf(list, sizeof list, "%s", files);
    for (char *f = strtok(list, ","); f; f = strtok(NULL, ",")) {
        snprintf(path, sizeof path, "%s/%s", dir, f);
        FILE *fp = fopen(path, "rb");
        if (!fp) {
            free(buf);
            if (optional) return -1;
            ck_abort_msg("%s: cannot open (make deps installs it)", path);
        }
        used += fread(buf + used, 1, want_bytes + 1 - used, fp);
        fclose(fp);
        ck_assert(n_files < 16);
        file_end[n_files++] = used;
    }
    const unsigned long crc = crc32(0L, (const Bytef *)buf, (uInt)used);
    ck_assert_msg(used == want_bytes && crc == want_crc,
                  "%s: %zu bytes, CRC-32 %08lx; the goldens were made from %zu bytes, %08lx",
                  dir, used, crc, want_bytes, want_crc);
    /* each file's lines, as the exporter split them: a file without a final '\n' ends a line */
    L->buf = buf;
    L->n = 0;
    L->line = tu_malloc((used + n_files + 1) * sizeof *L->line);
    L->len = tu_malloc((used + n_files + 1) * sizeof *L->len);
    for (size_t f = 0; f < n_files; f++) lines_add(L, buf, f ? file_end[f - 1] : 0, file_end[f]);
    return 0;
}

static void print_ids(const char *label, const int64_t *ids, size_t n) {
    fprintf(stderr, "    %s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %lld", (long long)ids[i]);
    fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

/* Encodes every line (pairs: A and B) with fn and compares ids (and token types) with the
 * corpus's goldens; decodes the golden ids and compares with the peer's text. */
static void check_corpus(const char *name, const Lines *A, const Lines *B, TokenizeFn fn,
                         const char *variant) {
    char key[128], err[TFM_ERR_LEN];
    snprintf(key, sizeof key, "%s/input_ids", name);
    const int64_t *ids = tensor_i64(need(key, TFM_I64));
    snprintf(key, sizeof key, "%s/line_offsets", name);
    const Tensor *offt = need(key, TFM_I64);
    const int64_t *off = tensor_i64(offt);
    ck_assert_uint_eq(offt->numel, A->n + 1);
    const int64_t *types = NULL;
    if (B) {
        snprintf(key, sizeof key, "%s/token_type_ids", name);
        types = tensor_i64(need(key, TFM_I64));
    }
    TokOptions o = tok_default_options();
    TokBatch enc = {0};
    size_t bad;
    if (tok_encode_batch(&enc, A->line, A->len, B ? B->line : NULL, B ? B->len : NULL, A->n, &V,
                         fn, &o, &bad, err, sizeof err) != 0)
        ck_abort_msg("%s (%s): %s", name, variant, err);
    size_t wrong = 0, first = 0;
    for (size_t i = 0; i < A->n; i++) {
        const size_t n = (size_t)(off[i + 1] - off[i]);
        const int64_t *got = enc.input_ids + enc.offset[i];
        int same = tok_batch_len(&enc, i) == n && memcmp(got, ids + off[i], n * sizeof *ids) == 0;
        if (same && types) same = memcmp(enc.token_type_ids + enc.offset[i], types + off[i], n * sizeof *ids) == 0;
        for (size_t k = 0; k < tok_batch_len(&enc, i); k++) same = same && enc.attention_mask[enc.offset[i] + k] == 1;
        if (!same && wrong++ == 0) first = i;
    }
    if (wrong) {
        const size_t i = first;
        fprintf(stderr, "%s (%s): %zu of %zu lines differ from tokenizers.js; the first, line %zu: "
                "\"%.*s\"\n", name, variant, wrong, A->n, i + 1, (int)(A->len[i] < 200 ? A->len[i] : 200),
                A->line[i]);
        print_ids("tfm", enc.input_ids + enc.offset[i], tok_batch_len(&enc, i));
        print_ids("peer", ids + off[i], (size_t)(off[i + 1] - off[i]));
    }
    tok_batch_free(&enc);
    ck_assert_msg(wrong == 0, "%s (%s): %zu lines differ", name, variant, wrong);
    printf("%-9s %-5s %6zu lines, %8lld ids: all identical to tokenizers.js\n", name, variant, A->n,
           (long long)off[A->n]);
}

/* The same for a corpus whose golden holds, per line, only the id count and FNV-1a hashes of the
 * ids (int64 little-endian bytes) and of their decode (the articles: not our text to store). */
static uint64_t fnv_ids(const int64_t *ids, size_t n) {
    uint64_t h = TOK_HASH_INIT;
    for (size_t i = 0; i < n; i++) {
        unsigned char b[8];
        for (int k = 0; k < 8; k++) b[k] = (unsigned char)((uint64_t)ids[i] >> (8 * k));
        h = tok_hash(h, (const char *)b, 8);
    }
    return h;
}

static void check_corpus_hashed(const char *name, const Lines *A, TokenizeFn fn, const char *variant) {
    char key[128], err[TFM_ERR_LEN];
    snprintf(key, sizeof key, "%s/ids_per_line", name);
    const Tensor *lt = need(key, TFM_I64);
    const int64_t *len = tensor_i64(lt);
    snprintf(key, sizeof key, "%s/ids_fnv1a", name);
    const int64_t *hid = tensor_i64(need(key, TFM_I64));
    snprintf(key, sizeof key, "%s/decoded_fnv1a", name);
    const int64_t *hdec = tensor_i64(need(key, TFM_I64));
    ck_assert_uint_eq(lt->numel, A->n);
    TokOptions o = tok_default_options();
    TokBatch enc = {0};
    size_t bad, wrong = 0, wrong_dec = 0, total = 0;
    if (tok_encode_batch(&enc, A->line, A->len, NULL, NULL, A->n, &V, fn, &o, &bad, err, sizeof err) != 0)
        ck_abort_msg("%s (%s): %s", name, variant, err);
    for (size_t i = 0; i < A->n; i++) {
        const int64_t *ids = enc.input_ids + enc.offset[i];
        const size_t n = tok_batch_len(&enc, i);
        total += n;
        if (n != (size_t)len[i] || fnv_ids(ids, n) != (uint64_t)hid[i]) {
            if (wrong++ == 0)
                fprintf(stderr, "%s (%s): line %zu, \"%.*s\": %zu ids, the peer's %lld (ids hash %s)\n",
                        name, variant, i + 1, (int)(A->len[i] < 200 ? A->len[i] : 200), A->line[i], n,
                        (long long)len[i], fnv_ids(ids, n) == (uint64_t)hid[i] ? "equal" : "differs");
            continue;
        }
        char *d = tok_decode(&V, ids, n, 0, err, sizeof err);
        ck_assert_msg(d != NULL, "%s line %zu: %s", name, i + 1, err);
        if (tok_hash(TOK_HASH_INIT, d, strlen(d)) != (uint64_t)hdec[i] && wrong_dec++ == 0)
            fprintf(stderr, "%s: decode of line %zu differs from the peer's: \"%s\"\n", name, i + 1, d);
        free(d);
    }
    tok_batch_free(&enc);
    ck_assert_msg(wrong == 0, "%s (%s): %zu lines differ from tokenizers.js", name, variant, wrong);
    ck_assert_msg(wrong_dec == 0, "%s: %zu decoded lines differ from tokenizers.js", name, wrong_dec);
    printf("%-9s %-5s %6zu lines, %8zu ids: all identical to tokenizers.js (hashes)\n", name, variant,
           A->n, total);
}

static void check_decoded(const char *name) {
    char key[128], err[TFM_ERR_LEN];
    snprintf(key, sizeof key, "%s/decoded", name);
    Lines D;
    lines_from_tensor(&D, key);
    snprintf(key, sizeof key, "%s/input_ids", name);
    const int64_t *ids = tensor_i64(need(key, TFM_I64));
    snprintf(key, sizeof key, "%s/line_offsets", name);
    const int64_t *off = tensor_i64(need(key, TFM_I64));
    size_t wrong = 0;
    for (size_t i = 0; i < D.n; i++) {
        char *s = tok_decode(&V, ids + off[i], (size_t)(off[i + 1] - off[i]), 0, err, sizeof err);
        ck_assert_msg(s != NULL, "%s line %zu: %s", name, i + 1, err);
        if (strlen(s) != D.len[i] || memcmp(s, D.line[i], D.len[i]) != 0) {
            if (wrong++ == 0)
                fprintf(stderr, "%s: decode of line %zu:\n    tfm  \"%s\"\n    peer \"%.*s\"\n", name,
                        i + 1, s, (int)D.len[i], D.line[i]);
        }
        free(s);
    }
    lines_free(&D);
    ck_assert_msg(wrong == 0, "%s: %zu decoded lines differ from tokenizers.js", name, wrong);
}

static const TokenizeFn FNS[2] = {tokenize_naive, tokenize_fast};
static const char *const FN_NAMES[2] = {"naive", "fast"};

START_TEST(test_austen) {
    char dir[4096];
    tok_data_path(dir, sizeof dir, "austen");
    Lines L;
    lines_from_files(&L, "austen", dir, 0);
    check_corpus("austen", &L, NULL, FNS[_i], FN_NAMES[_i]);
    lines_free(&L);
    if (_i == 1) check_decoded("austen");
}
END_TEST

START_TEST(test_articles) {
    const char *env = getenv("TFM_ARTICLES"), *root = getenv("TFM_ROOT");
    char dir[4096];
    if (env && *env) snprintf(dir, sizeof dir, "%s", env);
    else snprintf(dir, sizeof dir, "%s/../shared/articles", root && *root ? root : ".");
    Lines L;
    if (lines_from_files(&L, "articles", dir, 1) != 0) {
        printf("articles: SKIPPED, no articles at %s (set TFM_ARTICLES)\n", dir);
        return;
    }
    check_corpus_hashed("articles", &L, FNS[_i], FN_NAMES[_i]);
    lines_free(&L);
}
END_TEST

START_TEST(test_torture) {
    Lines L;
    lines_from_tensor(&L, "torture/text");
    check_corpus("torture", &L, NULL, FNS[_i], FN_NAMES[_i]);
    lines_free(&L);
    if (_i == 1) check_decoded("torture");
}
END_TEST

START_TEST(test_pairs) {
    Lines A, B;
    lines_from_tensor(&A, "pairs/text_a");
    lines_from_tensor(&B, "pairs/text_b");
    check_corpus("pairs", &A, &B, FNS[_i], FN_NAMES[_i]);
    lines_free(&A);
    lines_free(&B);
}
END_TEST

/* Random strings over an alphabet of every class the pipeline treats differently: fast = naive.
 * Loop 0 uses the whole alphabet; loop 1 leaves out the three characters that send a segment down
 * the naive path (capital sigma, the two musical marks), so that its strings exercise the fast
 * path itself. */
START_TEST(test_fast_equals_naive_random) {
    static const uint32_t ALPHABET[] = {
        'a', 'b', 'E', 'z', 'Q', '0', '7', ' ', ' ', '\t', '\n', '\r', '.', ',', '\'', '#', '[', ']',
        '$', '~', 0, 1, 0x1F, 0x7F, 0x85, 0xA0, 0xAD, 0xC9, 0xE9, 0xDF, 0x130, 0x131, 0x301, 0x308,
        0x323, 0x3C3, 0x391, 0x1F00, 0x4E2D, 0x6587, 0x3400, 0x20000, 0x2B820, 0x3042, 0xAC00,
        0x1100, 0x200B, 0x200D, 0x2028, 0x3000, 0xFEFF, 0xFFFD, 0xE000, 0x378, 0x1F600, 0x1F3FD,
        0xF9C7, 0xFA10, 0x2F800,  /* compatibility ideographs: CJK, and decomposing to unified ones */
        0xFB01, 0xFF21, 0x212B, 0x2126, 0x0E44, 0x0E48, 0x0915, 0x094D, 0x0627, 0x05D0, 0x10D0,
        0x3A3, 0x1D165, 0x1D16D,  /* last: the three that take the naive path (loop 0 only) */
    };
    const size_t NA = sizeof ALPHABET / sizeof ALPHABET[0] - (_i == 1 ? 3 : 0);
    static const char *const SPECIAL[] = {"[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]"};
    TuRng r = {20261202 + (uint64_t)_i};
    TokScratch s1 = {0}, s2 = {0};
    TokIds a = {0}, b = {0};
    char text[120 * 60 * 4 + 64];            /* 120 items, each at most 60 repeats of 4 bytes */
    for (int t = 0; t < 3000; t++) {
        size_t n = 0;
        const size_t len = (size_t)(tu_uniform(&r) * 120);
        for (size_t k = 0; k < len; k++) {
            if (tu_uniform(&r) < 0.03) {
                const char *sp = SPECIAL[(size_t)(tu_uniform(&r) * 5)];
                memcpy(text + n, sp, strlen(sp));
                n += strlen(sp);
                continue;
            }
            /* words of a repeated letter reach the 100-character limit now and then */
            const uint32_t c = ALPHABET[(size_t)(tu_uniform(&r) * (double)NA)];
            const size_t rep = tu_uniform(&r) < 0.02 ? 60 : 1;
            for (size_t q = 0; q < rep; q++)
                n += (size_t)utf8proc_encode_char((utf8proc_int32_t)c, (utf8proc_uint8_t *)text + n);
        }
        ck_assert_uint_le(n, sizeof text);
        TokError e1, e2;
        a.len = b.len = 0;
        ck_assert_int_eq(tokenize_naive(&a, &V, text, n, &s1, &e1), 0);
        ck_assert_int_eq(tokenize_fast(&b, &V, text, n, &s2, &e2), 0);
        if (a.len != b.len || (a.len && memcmp(a.ids, b.ids, a.len * sizeof *a.ids) != 0)) {
            size_t k = 0;
            while (k < a.len && k < b.len && a.ids[k] == b.ids[k]) k++;
            ck_abort_msg("string %d (%zu bytes): naive %zu ids, fast %zu, first difference at %zu", t,
                         n, a.len, b.len, k);
        }
    }
    tok_ids_free(&a); tok_ids_free(&b);
    tok_scratch_free(&s1); tok_scratch_free(&s2);
}
END_TEST

/* Ill-formed UTF-8 is refused at the offset of its first byte, by both variants. */
START_TEST(test_invalid_utf8) {
    static const struct { const char *s; size_t n, at; } BAD[] = {
        {"ab\xff", 3, 2},                     /* a byte that never occurs */
        {"x\xc0\xaf", 3, 1},                  /* overlong "/" */
        {"\xe0\x80\xaf", 3, 0},               /* overlong, three bytes */
        {"ok \xed\xa0\x80", 6, 3},            /* a surrogate, U+D800 */
        {"\xf4\x90\x80\x80", 4, 0},           /* past U+10FFFF */
        {"abc\xe2\x82", 5, 3},                /* cut off */
        {"caf\xc3", 4, 3},                    /* cut off at the end */
        {"\x80", 1, 0},                       /* a lone continuation byte */
        {"[CLS]\xfe[SEP]", 11, 5},            /* between special tokens */
    };
    for (size_t v = 0; v < 2; v++)
        for (size_t k = 0; k < sizeof BAD / sizeof BAD[0]; k++) {
            TokScratch s = {0};
            TokIds out = {0};
            TokError e = {0};
            ck_assert_msg(FNS[v](&out, &V, BAD[k].s, BAD[k].n, &s, &e) == -1, "%s: case %zu accepted",
                          FN_NAMES[v], k);
            ck_assert_msg(e.offset == BAD[k].at, "%s: case %zu refused at byte %zu, not %zu",
                          FN_NAMES[v], k, e.offset, BAD[k].at);
            ck_assert_uint_eq(out.len, 0);
            tok_ids_free(&out);
            tok_scratch_free(&s);
        }
}
END_TEST

/* Hugging Face tokenizers' own table (utils/truncation.rs, its test truncate_encodings_longest_first):
 * lengths kept of A and B with max_length 7, for A, B of 0, 2, 4 and 8 tokens. */
START_TEST(test_truncation_longest_first_hf_table) {
    static const size_t LEN[4] = {0, 2, 4, 8};
    static const size_t WANT[4][4][2] = {
        {{0, 0}, {0, 2}, {0, 4}, {0, 7}},
        {{2, 0}, {2, 2}, {2, 4}, {2, 5}},
        {{4, 0}, {4, 2}, {3, 4}, {3, 4}},
        {{7, 0}, {5, 2}, {4, 3}, {3, 4}},
    };
    char err[TFM_ERR_LEN];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            size_t n1 = LEN[i], n2 = LEN[j];
            ck_assert_int_eq(tok_truncate_lengths(&n1, &n2, 1, 7, TOK_TRUNC_LONGEST_FIRST, err, sizeof err), 0);
            ck_assert_msg(n1 == WANT[i][j][0] && n2 == WANT[i][j][1], "(%zu, %zu) -> (%zu, %zu), want (%zu, %zu)",
                          LEN[i], LEN[j], n1, n2, WANT[i][j][0], WANT[i][j][1]);
        }
}
END_TEST

START_TEST(test_truncation_only_and_errors) {
    char err[TFM_ERR_LEN];
    size_t n1 = 10, n2 = 4;
    ck_assert_int_eq(tok_truncate_lengths(&n1, &n2, 1, 8, TOK_TRUNC_ONLY_FIRST, err, sizeof err), 0);
    ck_assert(n1 == 4 && n2 == 4);
    n1 = 3, n2 = 10;
    ck_assert_int_eq(tok_truncate_lengths(&n1, &n2, 1, 8, TOK_TRUNC_ONLY_SECOND, err, sizeof err), 0);
    ck_assert(n1 == 3 && n2 == 5);
    n1 = 3, n2 = 10;                             /* only_first cannot cut 5 from 3 */
    ck_assert_int_eq(tok_truncate_lengths(&n1, &n2, 1, 8, TOK_TRUNC_ONLY_FIRST, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "too few"));
    n1 = 10;                                     /* only_second without a pair */
    ck_assert_int_eq(tok_truncate_lengths(&n1, &n2, 0, 8, TOK_TRUNC_ONLY_SECOND, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "pair"));
    n1 = 10;
    ck_assert_int_eq(tok_truncate_lengths(&n1, &n2, 0, 8, TOK_TRUNC_LONGEST_FIRST, err, sizeof err), 0);
    ck_assert_uint_eq(n1, 8);
    n1 = 5;                                      /* only_second, no pair, nothing to cut: fine */
    ck_assert_int_eq(tok_truncate_lengths(&n1, &n2, 0, 8, TOK_TRUNC_ONLY_SECOND, err, sizeof err), 0);
    ck_assert_uint_eq(n1, 5);
    n1 = 3, n2 = 4;                              /* a budget of 0 empties both, whatever the strategy */
    ck_assert_int_eq(tok_truncate_lengths(&n1, &n2, 1, 0, TOK_TRUNC_ONLY_FIRST, err, sizeof err), 0);
    ck_assert(n1 == 0 && n2 == 0);
    /* through the encoder: max_length 1 leaves no room for [CLS] and [SEP] */
    TokOptions o = tok_default_options();
    o.truncation = TOK_TRUNC_LONGEST_FIRST;
    o.max_length = 1;
    const char *t = "hello";
    const size_t nt = 5;
    TokBatch e = {0};
    size_t bad;
    ck_assert_int_eq(tok_encode_batch(&e, &t, &nt, NULL, NULL, 1, &V, tokenize_fast, &o, &bad, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "line 1: max_length 1"));
    ck_assert_uint_eq(e.n, 0);
    tok_batch_free(&e);
}
END_TEST

/* Padding and the attention mask, against the unpadded golden ids of the torture lines. */
START_TEST(test_padding_and_mask) {
    Lines L;
    lines_from_tensor(&L, "torture/text");
    const int64_t *ids = tensor_i64(need("torture/input_ids", TFM_I64));
    const int64_t *off = tensor_i64(need("torture/line_offsets", TFM_I64));
    char err[TFM_ERR_LEN];
    size_t bad, longest = 0;
    for (size_t i = 0; i < L.n; i++) longest = (size_t)(off[i + 1] - off[i]) > longest ? (size_t)(off[i + 1] - off[i]) : longest;
    for (int mode = 0; mode < 2; mode++) {
        TokOptions o = tok_default_options();
        o.padding = mode == 0 ? TOK_PAD_LONGEST : TOK_PAD_MAX_LENGTH;
        o.truncation = mode == 0 ? TOK_TRUNC_NONE : TOK_TRUNC_LONGEST_FIRST;
        o.max_length = 12;
        const size_t target = mode == 0 ? longest : 12;
        TokBatch e = {0};
        ck_assert_int_eq(tok_encode_batch(&e, L.line, L.len, NULL, NULL, L.n, &V, tokenize_fast, &o, &bad, err, sizeof err), 0);
        for (size_t i = 0; i < L.n; i++) {
            const size_t n = (size_t)(off[i + 1] - off[i]);
            const size_t kept = n < target ? n : target;
            ck_assert_uint_eq(e.offset[i], i * target);            /* [n, L] row-major */
            ck_assert_uint_eq(tok_batch_len(&e, i), target);
            for (size_t k = 0; k < target; k++) {
                const size_t at = e.offset[i] + k;
                const int tok = k < kept;
                ck_assert_int_eq(e.attention_mask[at], tok);
                ck_assert_int_eq(e.token_type_ids[at], 0);
                if (!tok) ck_assert_int_eq(e.input_ids[at], V.pad_id);
                else if (mode == 1 && n > target && k == target - 1) ck_assert_int_eq(e.input_ids[at], V.sep_id);
                else ck_assert_int_eq(e.input_ids[at], ids[off[i] + (int64_t)k]);
            }
        }
        tok_batch_free(&e);
    }
    lines_free(&L);
}
END_TEST

/* The batch gives the same three arrays on 1 and on 4 threads (more than this machine's cores:
 * the schedule then differs the most). */
START_TEST(test_threads_change_nothing) {
    char dir[4096];
    tok_data_path(dir, sizeof dir, "austen");
    Lines L;
    lines_from_files(&L, "austen", dir, 0);
    const size_t n = L.n < 20000 ? L.n : 20000;
    TokOptions o = tok_default_options();
    char err[TFM_ERR_LEN];
    size_t bad;
    TokBatch e1 = {0}, e2 = {0};
    omp_set_num_threads(1);
    ck_assert_int_eq(tok_encode_batch(&e1, L.line, L.len, NULL, NULL, n, &V, tokenize_fast, &o, &bad, err, sizeof err), 0);
    omp_set_num_threads(4);
    ck_assert_int_eq(tok_encode_batch(&e2, L.line, L.len, NULL, NULL, n, &V, tokenize_fast, &o, &bad, err, sizeof err), 0);
    ck_assert(memcmp(e1.offset, e2.offset, (n + 1) * sizeof *e1.offset) == 0);
    ck_assert(memcmp(e1.input_ids, e2.input_ids, e1.offset[n] * sizeof(int64_t)) == 0);
    ck_assert(memcmp(e1.token_type_ids, e2.token_type_ids, e1.offset[n] * sizeof(int64_t)) == 0);
    ck_assert(memcmp(e1.attention_mask, e2.attention_mask, e1.offset[n] * sizeof(int64_t)) == 0);
    tok_batch_free(&e1);
    tok_batch_free(&e2);
    lines_free(&L);
}
END_TEST

START_TEST(test_vocab_refusals) {
    static const struct { const char *text, *needle; } BAD[] = {
        {"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nthe\n", "line 7: entry already on line 6"},
        {"[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n[MASK]\n", "line 3: empty entry"},
        {"[PAD]\n[CLS]\n[SEP]\n[MASK]\n", "no [UNK] entry"},
        {"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nca\xc3\n", "line 6: not UTF-8"},
        {"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na b\n", "line 6: entry contains a space"},
        {"", "empty"},
    };
    for (size_t k = 0; k < sizeof BAD / sizeof BAD[0]; k++) {
        Vocab v;
        char err[TFM_ERR_LEN];
        ck_assert_int_eq(vocab_load_bytes(&v, BAD[k].text, strlen(BAD[k].text), "v.txt", err, sizeof err), -1);
        ck_assert_msg(strstr(err, BAD[k].needle) != NULL, "case %zu: '%s' lacks '%s'", k, err, BAD[k].needle);
    }
    Vocab v;
    char err[TFM_ERR_LEN];
    ck_assert_int_eq(vocab_load(&v, "/nonexistent/vocab.txt", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/vocab.txt: "));
    /* CRLF line ends and a last line without '\n' are read as entries */
    const char *ok = "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\nhello";
    ck_assert_int_eq(vocab_load_bytes(&v, ok, strlen(ok), "v.txt", err, sizeof err), 0);
    ck_assert_int_eq(vocab_find_fast(&v, "hello", 5), 5);
    ck_assert_int_eq(vocab_find_naive(&v, "hello", 5), 5);
    ck_assert_int_eq(vocab_find_naive(&v, "hell", 4), -1);
    ck_assert_int_eq(v.mask_id, 4);
    vocab_free(&v);
}
END_TEST

/* The chapter's examples, by name: the book quotes these. */
START_TEST(test_examples) {
    static const struct { const char *text, *pieces; } EX[] = {
        {"unaffable", "una ##ffa ##ble"},    /* bert-base-uncased's split; the torture golden agrees */
        {"Café", "cafe"},
        {"Hello, World!", "hello , world !"},
        {"[CLS]x[MASK]", "[CLS] x [MASK]"},
    };
    for (size_t k = 0; k < sizeof EX / sizeof EX[0]; k++)
        for (int v = 0; v < 2; v++) {
            TokScratch s = {0};
            TokIds out = {0};
            TokError e;
            ck_assert_int_eq(FNS[v](&out, &V, EX[k].text, strlen(EX[k].text), &s, &e), 0);
            char got[256] = "";
            size_t used = 0;
            for (size_t i = 0; i < out.len; i++)
                used += (size_t)snprintf(got + used, sizeof got - used, "%s%s", i ? " " : "", V.token[out.ids[i]]);
            ck_assert_msg(strcmp(got, EX[k].pieces) == 0, "%s: \"%s\" -> \"%s\", want \"%s\"", FN_NAMES[v],
                          EX[k].text, got, EX[k].pieces);
            tok_ids_free(&out);
            tok_scratch_free(&s);
        }
    char err[TFM_ERR_LEN];
    const int64_t bad[2] = {101, 40000};
    ck_assert_ptr_null(tok_decode(&V, bad, 2, 0, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "id 40000 at position 2"));
}
END_TEST

static Suite *tokenizer_suite(void) {
    Suite *s = suite_create("08-tokenizer");
    TCase *peer = tcase_create("tokenizers.js goldens");
    tcase_add_checked_fixture(peer, setup, teardown);
    tcase_set_timeout(peer, 300);
    tcase_add_loop_test(peer, test_austen, 0, 2);
    tcase_add_loop_test(peer, test_articles, 0, 2);
    tcase_add_loop_test(peer, test_torture, 0, 2);
    tcase_add_loop_test(peer, test_pairs, 0, 2);
    suite_add_tcase(s, peer);
    TCase *prop = tcase_create("properties");
    tcase_add_checked_fixture(prop, setup, teardown);
    tcase_set_timeout(prop, 120);
    tcase_add_loop_test(prop, test_fast_equals_naive_random, 0, 2);
    tcase_add_test(prop, test_invalid_utf8);
    tcase_add_test(prop, test_truncation_longest_first_hf_table);
    tcase_add_test(prop, test_truncation_only_and_errors);
    tcase_add_test(prop, test_padding_and_mask);
    tcase_add_test(prop, test_threads_change_nothing);
    tcase_add_test(prop, test_vocab_refusals);
    tcase_add_test(prop, test_examples);
    suite_add_tcase(s, prop);
    return s;
}

int main(void) { return tu_run(tokenizer_suite()); }
