/* tokenizer.c — what both tokenizer kernels share: the vocabulary and its two lookups, UTF-8
 * validation, the Unicode classes of the pipeline, special tokens, and step 7 (the [CLS]/[SEP]
 * template, truncation, padding, the attention mask), batch encoding and decoding.
 *
 * Dimensions: V vocabulary entries; n texts in a batch; L tokens of one encoding.
 */
#include "tokenizer.h"

#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

#include "tensor.h"

/* ---------------------------------------------------------------- buffers */

void tok_ids_free(TokIds *t) { free(t->ids); memset(t, 0, sizeof *t); }

void tok_scratch_free(TokScratch *s) {
    free(s->cp); free(s->cp2); free(s->word); free(s->hash);
    memset(s, 0, sizeof *s);
}

void tok_batch_free(TokBatch *b) {
    free(b->offset); free(b->input_ids); free(b->token_type_ids); free(b->attention_mask);
    free(b->work);
    for (int t = 0; t < b->n_pieces; t++) { tok_ids_free(&b->pieces[t]); tok_scratch_free(&b->scratch[t]); }
    free(b->pieces);
    free(b->scratch);
    memset(b, 0, sizeof *b);
}

/* ---------------------------------------------------------------- the vocabulary */

static const char *const SPECIALS[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

void vocab_free(Vocab *v) {
    free(v->token); free(v->len); free(v->sorted); free(v->slot);
    free(v->block);
    memset(v, 0, sizeof *v);
}

/* An entry and its id, sorted by the entry's bytes for the naive lookup. */
typedef struct { const char *token; uint32_t id; } ById;
static int by_entry(const void *a, const void *b) {
    return strcmp(((const ById *)a)->token, ((const ById *)b)->token);
}

int vocab_load_bytes(Vocab *v, const char *bytes, size_t len, const char *label, char *err,
                     size_t errlen) {
    memset(v, 0, sizeof *v);
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += bytes[i] == '\n';
    if (len > 0 && bytes[len - 1] != '\n') lines++;               /* a last line without '\n' */
    if (lines == 0) return tfm_fail(err, errlen, "%s: the vocabulary is empty", label);
    if (lines > INT32_MAX) return tfm_fail(err, errlen, "%s: more than 2^31 - 1 entries", label);
    v->block = malloc(len + 1);
    v->token = calloc(lines, sizeof *v->token);
    v->len = calloc(lines, sizeof *v->len);
    v->sorted = calloc(lines, sizeof *v->sorted);
    v->n_slot = 16;
    while (v->n_slot < 2 * lines) v->n_slot *= 2;
    v->slot = calloc(v->n_slot, sizeof *v->slot);
    if (!v->block || !v->token || !v->len || !v->sorted || !v->slot) {
        vocab_free(v);
        return tfm_fail(err, errlen, "%s: out of memory for %zu entries", label, lines);
    }
    memcpy(v->block, bytes, len);
    v->block[len] = '\0';
    size_t pos = 0;
    for (size_t id = 0; id < lines; id++) {
        char *line = v->block + pos;
        char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + 1;
        if (n > 0 && line[n - 1] == '\r') n--;                    /* a CRLF file */
        line[n] = '\0';
        TokError e;
        if (n == 0) { vocab_free(v); return tfm_fail(err, errlen, "%s: line %zu: empty entry", label, id + 1); }
        if (tok_utf8_check(line, n, &e) != 0) {
            vocab_free(v);
            return tfm_fail(err, errlen, "%s: line %zu: not UTF-8 (%s at byte %zu of the line)", label,
                        id + 1, e.what, e.offset);
        }
        for (size_t k = 0; k < n; k++)
            if ((unsigned char)line[k] <= ' ' || line[k] == 0x7f) {
                vocab_free(v);
                return tfm_fail(err, errlen, "%s: line %zu: entry contains a space or control "
                            "character (byte %zu)", label, id + 1, k);
            }
        v->token[id] = line;
        v->len[id] = (uint32_t)n;
        if (n > v->max_len) v->max_len = n;
        uint64_t h = tok_hash(TOK_HASH_INIT, line, n);
        size_t s = (size_t)h & (v->n_slot - 1);
        while (v->slot[s].id1) {
            const uint32_t other = v->slot[s].id1 - 1;
            if (v->slot[s].hash == h && strcmp(v->token[other], line) == 0) {
                const size_t first = other + 1;
                vocab_free(v);
                return tfm_fail(err, errlen, "%s: line %zu: entry already on line %zu", label, id + 1,
                            first);
            }
            s = (s + 1) & (v->n_slot - 1);
        }
        v->slot[s] = (VocabSlot){h, (uint32_t)id + 1, (uint32_t)n};
    }
    v->n = lines;
    ById *order = malloc(lines * sizeof *order);
    if (!order) { vocab_free(v); return tfm_fail(err, errlen, "%s: out of memory", label); }
    for (size_t id = 0; id < lines; id++) order[id] = (ById){v->token[id], (uint32_t)id};
    qsort(order, lines, sizeof *order, by_entry);
    for (size_t k = 0; k < lines; k++) v->sorted[k] = order[k].id;
    free(order);
    int32_t *ids[5] = {&v->pad_id, &v->unk_id, &v->cls_id, &v->sep_id, &v->mask_id};
    for (int k = 0; k < 5; k++) {
        *ids[k] = vocab_find_fast(v, SPECIALS[k], strlen(SPECIALS[k]));
        if (*ids[k] < 0) {
            vocab_free(v);
            return tfm_fail(err, errlen, "%s: no %s entry (BERT's special tokens are [PAD], [UNK], "
                        "[CLS], [SEP], [MASK])", label, SPECIALS[k]);
        }
    }
    return 0;
}

int vocab_load(Vocab *v, const char *path, char *err, size_t errlen) {
    memset(v, 0, sizeof *v);
    FILE *f = fopen(path, "rb");
    if (!f) return tfm_fail(err, errlen, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) { fclose(f); return tfm_fail(err, errlen, "%s: out of memory", path); }
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        if (cap >= ((size_t)1 << 31)) { free(buf); fclose(f); return tfm_fail(err, errlen, "%s: larger than 2 GiB", path); }
        char *bigger = realloc(buf, cap *= 2);
        if (!bigger) free(buf);
        buf = bigger;
    }
    const int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return tfm_fail(err, errlen, "%s: read error", path); }
    const int rc = vocab_load_bytes(v, buf, len, path, err, errlen);
    free(buf);
    return rc;
}

void tok_data_path(char *buf, size_t buflen, const char *rel) {
    const char *env = getenv("TFM_DATA");
    if (env && *env) { snprintf(buf, buflen, "%s/%s", env, rel); return; }
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) { snprintf(buf, buflen, "build/data/%s", rel); return; }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';                                 /* build/bin */
    snprintf(buf, buflen, "%s/../data/%s", exe, rel);
}

/* Binary search: the textbook lookup, O(log V) string comparisons. s[0..n) is compared as bytes,
 * as strcmp orders the entries (byte by byte, unsigned; the shorter first when one is a prefix). */
int32_t vocab_find_naive(const Vocab *v, const char *s, size_t n) {
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const uint32_t id = v->sorted[mid];
        const size_t m = v->len[id];
        int c = memcmp(v->token[id], s, m < n ? m : n);
        if (c == 0) c = (m > n) - (m < n);
        if (c == 0) return (int32_t)id;
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return -1;
}

int32_t vocab_find_hashed(const Vocab *v, const char *s, size_t n, uint64_t h, int cont) {
    const size_t skip = cont ? 2 : 0;
    for (size_t k = (size_t)h & (v->n_slot - 1);; k = (k + 1) & (v->n_slot - 1)) {
        const VocabSlot *q = &v->slot[k];
        if (q->id1 == 0) return -1;
        if (q->hash == h && q->len == n + skip) {
            const char *t = v->token[q->id1 - 1];
            if ((!cont || (t[0] == '#' && t[1] == '#')) && memcmp(t + skip, s, n) == 0)
                return (int32_t)(q->id1 - 1);
        }
    }
}

int32_t vocab_find_fast(const Vocab *v, const char *s, size_t n) {
    return vocab_find_hashed(v, s, n, tok_hash(TOK_HASH_INIT, s, n), 0);
}

/* ---------------------------------------------------------------- UTF-8 and Unicode classes */

int tok_utf8_check(const char *text, size_t n, TokError *e) {
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)text[i] < 0x80) { i++; continue; }
        utf8proc_int32_t c;
        const utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i,
                                                    (utf8proc_ssize_t)(n - i), &c);
        if (k < 0) {                 /* ill-formed, overlong, surrogate, past U+10FFFF, cut off */
            e->offset = i;
            e->what = "invalid UTF-8";
            return -1;
        }
        i += (size_t)k;
    }
    return 0;
}

/* The ideograph blocks of BERT's _is_chinese_char: CJK Unified Ideographs and Extensions A-F,
 * the Compatibility Ideographs and their Supplement. Hangul and kana are not among them. */
int tok_is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* TAB, LF, CR count as whitespace, not control; then Unicode's White_Space characters that
 * survive cleaning (Zs, U+2028, U+2029: the others are Cc and already gone). */
int tok_is_whitespace(uint32_t c) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return 1;
    const utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat == UTF8PROC_CATEGORY_ZS || cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

int tok_is_control(uint32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return 0;
    /* Cs cannot occur in valid UTF-8; Cn (unassigned) is kept, as Rust and tokenizers.js keep it */
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CS: return 1;
    default: return 0;
    }
}

int tok_is_punct(uint32_t c) {
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126))
        return 1;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO: return 1;
    default: return 0;
    }
}

/* Unicode's "cased" (has case: Lu, Ll, Lt, or a case mapping) and "case-ignorable" (marks,
 * format characters, modifiers, and the apostrophes and dots that sit inside words). */
static int is_cased(uint32_t c) {
    const utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT ||
           utf8proc_tolower((utf8proc_int32_t)c) != (utf8proc_int32_t)c ||
           utf8proc_toupper((utf8proc_int32_t)c) != (utf8proc_int32_t)c;
}

static int is_case_ignorable(uint32_t c) {
    switch (c) {          /* Word_Break MidLetter, MidNumLet, Single_Quote (not in a category below) */
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x5F4: case 0x2018: case 0x2019:
    case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E:
    case 0xFF1A: return 1;
    default: break;
    }
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_SK: return 1;
    default: return 0;
    }
}

int tok_sigma_final(const uint32_t *cp, size_t n, size_t i) {
    size_t k = i;
    while (k > 0 && is_case_ignorable(cp[k - 1])) k--;
    if (k == 0 || !is_cased(cp[k - 1])) return 0;            /* nothing cased before it */
    k = i + 1;
    while (k < n && is_case_ignorable(cp[k])) k++;
    return k == n || !is_cased(cp[k]);                       /* nothing cased after it */
}

int32_t tok_special_at(const Vocab *v, const char *text, size_t n, size_t i, size_t *len) {
    if (text[i] != '[') return -1;
    const int32_t ids[5] = {v->pad_id, v->unk_id, v->cls_id, v->sep_id, v->mask_id};
    for (int k = 0; k < 5; k++) {
        const size_t m = strlen(SPECIALS[k]);
        if (n - i >= m && memcmp(text + i, SPECIALS[k], m) == 0) { *len = m; return ids[k]; }
    }
    return -1;
}

/* ---------------------------------------------------------------- step 7 */

TokOptions tok_default_options(void) {
    TokOptions o = {1, TOK_MODEL_MAX_LENGTH, TOK_TRUNC_NONE, TOK_PAD_NONE};
    return o;
}

int tok_parse_truncation(const char *s, TokTruncation *t) {
    if (strcmp(s, "longest_first") == 0) *t = TOK_TRUNC_LONGEST_FIRST;
    else if (strcmp(s, "only_first") == 0) *t = TOK_TRUNC_ONLY_FIRST;
    else if (strcmp(s, "only_second") == 0) *t = TOK_TRUNC_ONLY_SECOND;
    else if (strcmp(s, "do_not_truncate") == 0) *t = TOK_TRUNC_NONE;
    else return -1;
    return 0;
}

int tok_parse_padding(const char *s, TokPadding *p) {
    if (strcmp(s, "longest") == 0) *p = TOK_PAD_LONGEST;
    else if (strcmp(s, "max_length") == 0) *p = TOK_PAD_MAX_LENGTH;
    else if (strcmp(s, "do_not_pad") == 0) *p = TOK_PAD_NONE;
    else return -1;
    return 0;
}

size_t tok_n_special(const TokOptions *o, int has_pair) {
    return o->add_special_tokens ? (has_pair ? 3 : 2) : 0;
}

static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }
static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

int tok_truncate_lengths(size_t *n1, size_t *n2, int has_pair, size_t budget, TokTruncation t,
                         char *err, size_t errlen) {
    if (!has_pair) *n2 = 0;
    if (t == TOK_TRUNC_NONE || *n1 + *n2 <= budget) return 0;
    if (budget == 0) { *n1 = *n2 = 0; return 0; }             /* every strategy: nothing fits */
    const size_t remove = *n1 + *n2 - budget;
    if (t == TOK_TRUNC_LONGEST_FIRST) {
        if (!has_pair) { *n1 = budget; return 0; }
        /* short <= long; the longer is cut to max(short, budget - short), and if both are still
         * too long, each to half the budget, the longer one keeping the odd token. */
        const int swap = *n1 > *n2;
        size_t s = min_sz(*n1, *n2), l = max_sz(*n1, *n2);
        const size_t l0 = l, s0 = s;
        l = s > budget ? s : max_sz(s, budget - s);
        if (s + l > budget) { s = budget / 2; l = s + budget % 2; }
        s = min_sz(s, s0); l = min_sz(l, l0);
        *n1 = swap ? l : s;
        *n2 = swap ? s : l;
        return 0;
    }
    if (t == TOK_TRUNC_ONLY_SECOND && !has_pair)
        return tfm_fail(err, errlen, "truncation only_second needs a pair (a TAB-separated B)");
    size_t *target = t == TOK_TRUNC_ONLY_FIRST ? n1 : n2;
    if (*target <= remove)
        return tfm_fail(err, errlen, "the %s sequence has %zu tokens, too few to cut %zu and fit "
                    "max_length (truncation %s)", t == TOK_TRUNC_ONLY_FIRST ? "first" : "second",
                    *target, remove, t == TOK_TRUNC_ONLY_FIRST ? "only_first" : "only_second");
    *target -= remove;
    return 0;
}

/* The template [CLS] A [SEP] (B [SEP]) around n1 pieces of A and n2 of B, then right padding to
 * L with [PAD], token type 0, attention 0; writes L entries of each array. */
static void fill_one(int64_t *ids, int64_t *types, int64_t *mask, size_t L, const int32_t *pa,
                     size_t n1, const int32_t *pb, size_t n2, int has_pair, const Vocab *v,
                     const TokOptions *o) {
    size_t k = 0;
    if (o->add_special_tokens) ids[k++] = v->cls_id;
    for (size_t i = 0; i < n1; i++) ids[k++] = pa[i];
    if (o->add_special_tokens) ids[k++] = v->sep_id;
    const size_t first = k;
    for (size_t i = 0; i < n2; i++) ids[k++] = pb[i];
    if (o->add_special_tokens && has_pair) ids[k++] = v->sep_id;
    for (size_t i = 0; i < L; i++) {
        if (i >= k) ids[i] = v->pad_id;
        types[i] = i >= first && i < k ? 1 : 0;
        mask[i] = i < k;
    }
}

/* Where text i's pieces went: thread `owner`'s buffer, A at [a0, a0 + na), B at [b0, b0 + nb). */
typedef struct { size_t a0, na, b0, nb; int owner; int bad; size_t bad_at; const char *what; } Piece;

/* Grows *p to hold n elements of `size` bytes (contents kept); 0 or -1. */
static int grow(void **p, size_t *cap, size_t n, size_t size) {
    if (n <= *cap) return 0;
    void *q = realloc(*p, n * size);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

int tok_encode_batch(TokBatch *out, const char *const *a, const size_t *na,
                     const char *const *b, const size_t *nb, size_t n, const Vocab *v,
                     TokenizeFn fn, const TokOptions *o, size_t *bad_index, char *err,
                     size_t errlen) {
    const int nt = omp_get_max_threads();
    const int has_pair = b != NULL;
    out->n = 0;
    *bad_index = n;
    if (out->n_pieces < nt) {
        TokIds *p = realloc(out->pieces, (size_t)nt * sizeof *p);
        if (p) out->pieces = p;
        TokScratch *q = p ? realloc(out->scratch, (size_t)nt * sizeof *q) : NULL;
        if (q) out->scratch = q;
        if (!p || !q) return tfm_fail(err, errlen, "out of memory");
        memset(p + out->n_pieces, 0, (size_t)(nt - out->n_pieces) * sizeof *p);
        memset(q + out->n_pieces, 0, (size_t)(nt - out->n_pieces) * sizeof *q);
        out->n_pieces = nt;
    }
    size_t cap_texts = out->cap_texts, cap_off = out->cap_texts;
    if (grow(&out->work, &cap_texts, n + 1, sizeof(Piece)) != 0 ||
        grow((void **)&out->offset, &cap_off, n + 1, sizeof *out->offset) != 0)
        return tfm_fail(err, errlen, "out of memory for %zu texts", n);
    out->cap_texts = cap_texts;
    Piece *pc = out->work;                                 /* [n] */
    TokIds *buf = out->pieces;                             /* [nt] */
    /* 1. word pieces, in parallel: one growing buffer per thread, no allocation per text */
    #pragma omp parallel num_threads(nt)
    {
        /* the thread's buffers live on its own stack while it works: buf[] entries share cache
         * lines, and each piece appended would write one of them */
        const int t = omp_get_thread_num();
        TokIds mine = buf[t];
        mine.len = 0;
        TokScratch s = out->scratch[t];
        #pragma omp for schedule(dynamic, 64)
        for (size_t i = 0; i < n; i++) {
            TokError e;
            Piece *p = &pc[i];
            memset(p, 0, sizeof *p);
            p->owner = t;
            p->a0 = mine.len;
            if (fn(&mine, v, a[i], na[i], &s, &e) != 0) { p->bad = 1; p->bad_at = e.offset; p->what = e.what; continue; }
            p->na = mine.len - p->a0;
            p->b0 = mine.len;
            if (has_pair && fn(&mine, v, b[i], nb[i], &s, &e) != 0) { p->bad = 2; p->bad_at = e.offset; p->what = e.what; continue; }
            p->nb = mine.len - p->b0;
        }
        buf[t] = mine;
        out->scratch[t] = s;
    }
    /* 2. lengths: truncation, then padding's target; the first refusal ends the batch */
    const size_t n_special = tok_n_special(o, has_pair);
    size_t longest = 0, total = 0;
    char why[TFM_TOK_ERR] = "";
    for (size_t i = 0; i < n && !why[0]; i++) {
        Piece *p = &pc[i];
        if (p->bad) {
            snprintf(why, sizeof why, "%s at byte %zu%s", p->what, p->bad_at,
                     has_pair ? (p->bad == 1 ? " of A" : " of B") : "");
        } else if (o->truncation != TOK_TRUNC_NONE) {
            if (o->max_length < n_special)
                snprintf(why, sizeof why, "max_length %zu leaves no room for the %zu special tokens",
                         o->max_length, n_special);
            else
                tok_truncate_lengths(&p->na, &p->nb, has_pair, o->max_length - n_special,
                                     o->truncation, why, sizeof why);
        }
        if (why[0]) { *bad_index = i; break; }
        const size_t L = p->na + p->nb + n_special;
        longest = max_sz(longest, L);
        out->offset[i] = L;                                /* lengths for now */
    }
    if (why[0]) return tfm_fail(err, errlen, "line %zu: %s", *bad_index + 1, why);
    const size_t target = o->padding == TOK_PAD_LONGEST ? longest
                        : o->padding == TOK_PAD_MAX_LENGTH ? o->max_length : 0;
    for (size_t i = 0; i < n; i++) {
        const size_t L = max_sz(out->offset[i], target);
        out->offset[i] = total;
        total += L;
    }
    out->offset[n] = total;
    /* 3. the three arrays (grown if need be), filled in parallel */
    if (total + 1 > out->cap_tokens) {
        int64_t **arrays[3] = {&out->input_ids, &out->token_type_ids, &out->attention_mask};
        for (int k = 0; k < 3; k++) {
            int64_t *p = realloc(*arrays[k], (total + 1) * sizeof *p);
            if (!p) return tfm_fail(err, errlen, "out of memory for %zu tokens", total);
            *arrays[k] = p;
        }
        out->cap_tokens = total + 1;
    }
    #pragma omp parallel for schedule(static) num_threads(nt)
    for (size_t i = 0; i < n; i++) {
        const Piece *p = &pc[i];
        const size_t at = out->offset[i];
        const int32_t *ids = buf[p->owner].ids;             /* NULL when no piece at all */
        fill_one(out->input_ids + at, out->token_type_ids + at, out->attention_mask + at,
                 out->offset[i + 1] - at, p->na ? ids + p->a0 : NULL, p->na,
                 p->nb ? ids + p->b0 : NULL, p->nb, has_pair, v, o);
    }
    out->n = n;
    return 0;
}

/* ---------------------------------------------------------------- decoding */

/* Replaces every non-overlapping `from` by the shorter `to`, left to right, in place. */
static void replace_all(char *s, const char *from, const char *to) {
    const size_t nf = strlen(from), nt = strlen(to);
    char *r = s, *w = s;
    while (*r) {
        if (strncmp(r, from, nf) == 0) { memcpy(w, to, nt); w += nt; r += nf; }
        else *w++ = *r++;
    }
    *w = '\0';
}

char *tok_decode(const Vocab *v, const int64_t *ids, size_t n, int skip_special, char *err,
                 size_t errlen) {
    size_t cap = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (uint64_t)ids[i] >= v->n) {
            tfm_fail(err, errlen, "id %lld at position %zu is not in the vocabulary (%zu entries)",
                 (long long)ids[i], i + 1, v->n);
            return NULL;
        }
        cap += v->len[ids[i]] + 1;
    }
    char *s = malloc(cap), *w = s;
    if (!s) { tfm_fail(err, errlen, "out of memory"); return NULL; }
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        const int32_t id = (int32_t)ids[i];
        if (skip_special && (id == v->pad_id || id == v->unk_id || id == v->cls_id ||
                             id == v->sep_id || id == v->mask_id))
            continue;
        const char *t = v->token[id];
        size_t m = v->len[id];
        if (!first && m >= 2 && t[0] == '#' && t[1] == '#') { t += 2; m -= 2; }  /* "##" joins */
        else if (!first) *w++ = ' ';
        memcpy(w, t, m);
        w += m;
        first = 0;
    }
    *w = '\0';
    /* Hugging Face's clean_up_tokenization, in its order. */
    static const char *const CLEAN[][2] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
        {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
    };
    for (size_t k = 0; k < sizeof CLEAN / sizeof CLEAN[0]; k++) replace_all(s, CLEAN[k][0], CLEAN[k][1]);
    return s;
}
