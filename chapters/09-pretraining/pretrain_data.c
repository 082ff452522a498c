/* pretrain_data.c — chapter 09's data: the corpus reader, create_pretraining_data's instances,
 * padded batches (pretrain_data.h has the algorithm and where tfm departs from it).
 *
 * Dimensions: B batch, T tokens per instance, n instances, n_docs documents, n_sent sentences.
 */
#include "pretrain_data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "tensor.h"

/* Grows *p (of *cap elements of `size` bytes) to hold at least `need`, doubling. Returns 0, or -1
 * when the memory is not there (the loaders report it; they do not abort as the kernels do). */
static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2 / size) return -1;
        c *= 2;
    }
    void *q = realloc(*p, c * size);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* ---------------------------------------------------------------- the corpus */

/* The whole file in one malloc'd buffer (plain reads, so a pipe works too). */
static char *read_all(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        tfm_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    int oom = 0;
    for (;;) {
        if (grow((void **)&buf, &cap, n + 65536, 1) != 0) { oom = 1; break; }
        const size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    const int bad = ferror(f) != 0;
    fclose(f);
    if (oom || bad) {
        if (oom) tfm_fail(err, errlen, "%s: out of memory reading the file", path);
        else tfm_fail(err, errlen, "%s: read error", path);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* A document break: a line that is empty or ASCII whitespace only. (Python's strip() also takes
 * Unicode spaces; a line of those gives no word piece here, so it is no sentence, but no break.) */
static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v')
            return 0;
    return 1;
}

void pretrain_corpus_free(PretrainCorpus *c) {
    free(c->doc_offset);
    free(c->sent_offset);
    free(c->ids);
    memset(c, 0, sizeof *c);
}

int pretrain_corpus_load(PretrainCorpus *c, const char *path, const Vocab *v, char *err,
                         size_t errlen) {
    memset(c, 0, sizeof *c);
    size_t len = 0;
    char *buf = read_all(path, &len, err, errlen);
    if (!buf) return -1;
    TokIds tok = {0};                /* every sentence's ids, appended: becomes c->ids */
    TokScratch scratch = {0};
    size_t cap_sent = 0, cap_doc = 0, lineno = 0;
    int rc = 0;
    /* sent_offset[0] = 0 and doc_offset[0] = 0 before the first line. */
    if (grow((void **)&c->sent_offset, &cap_sent, 1, sizeof(size_t)) != 0 ||
        grow((void **)&c->doc_offset, &cap_doc, 1, sizeof(size_t)) != 0) {
        rc = tfm_fail(err, errlen, "%s: out of memory", path);
        goto done;
    }
    c->sent_offset[0] = c->doc_offset[0] = 0;
    for (size_t start = 0; start < len;) {
        const char *nl = memchr(buf + start, '\n', len - start);
        const size_t end = nl ? (size_t)(nl - buf) : len;
        size_t n = end - start;
        const char *line = buf + start;
        start = end + 1;
        lineno++;
        if (n && line[n - 1] == '\r') n--;
        /* A blank line closes the document being read, if it has a sentence: runs of blank lines
         * and empty documents leave nothing behind. */
        if (is_blank(line, n)) {
            if (c->n_sent > c->doc_offset[c->n_docs]) {
                if (grow((void **)&c->doc_offset, &cap_doc, c->n_docs + 2, sizeof(size_t)) != 0) {
                    rc = tfm_fail(err, errlen, "%s: out of memory", path);
                    goto done;
                }
                c->doc_offset[++c->n_docs] = c->n_sent;
            }
            continue;
        }
        TokError e;
        if (tokenize_fast(&tok, v, line, n, &scratch, &e) != 0) {
            rc = tfm_fail(err, errlen, "%s: line %zu: %s at byte %zu of the line", path, lineno,
                      e.what, e.offset);
            goto done;
        }
        if (tok.len == c->sent_offset[c->n_sent]) continue;   /* no word piece: no sentence */
        if (grow((void **)&c->sent_offset, &cap_sent, c->n_sent + 2, sizeof(size_t)) != 0) {
            rc = tfm_fail(err, errlen, "%s: out of memory", path);
            goto done;
        }
        c->sent_offset[++c->n_sent] = tok.len;
    }
    if (c->n_sent > c->doc_offset[c->n_docs]) {                 /* the last document */
        if (grow((void **)&c->doc_offset, &cap_doc, c->n_docs + 2, sizeof(size_t)) != 0) {
            rc = tfm_fail(err, errlen, "%s: out of memory", path);
            goto done;
        }
        c->doc_offset[++c->n_docs] = c->n_sent;
    }
    if (c->n_sent == 0)
        rc = tfm_fail(err, errlen, "%s: no sentence in %zu lines (a corpus is one sentence per line, "
                  "a blank line between documents)", path, lineno);
done:
    free(buf);
    tok_scratch_free(&scratch);
    if (rc != 0) {
        tok_ids_free(&tok);
        pretrain_corpus_free(c);
        return -1;
    }
    c->ids = tok.ids;                /* owned by c from here (not NULL: there is a sentence) */
    return 0;
}

/* ---------------------------------------------------------------- instances */

PretrainSpecials pretrain_specials(const Vocab *v) {
    PretrainSpecials sp = {v->cls_id, v->sep_id, v->pad_id, v->mask_id};
    return sp;
}

void pretrain_instances_free(PretrainInstances *in) {
    free(in->offset);
    free(in->ids);
    free(in->type);
    free(in->nsp_label);
    memset(in, 0, sizeof *in);
}

/* A uniform integer in [0, n), n >= 1: Python's randrange(n). Rejection of the top 2^64 mod n
 * outputs makes every value equally likely (a bare % n would favour the small ones). */
static uint64_t draw_below(uint64_t *state, uint64_t n) {
    const uint64_t reject_below = (0 - n) % n;     /* 2^64 mod n */
    for (;;) {
        const uint64_t x = tfm_rng_next(state);
        if (x >= reject_below) return x % n;
    }
}

/* The instances as they are made, before the shuffle. */
typedef struct {
    PretrainInstances in;    /* offset, ids, type, nsp_label, grown as instances arrive */
    size_t cap_offset, cap_ids, cap_type, cap_label;   /* their room, in elements */
} Builder;

/* Appends [CLS] ids[a_lo..a_hi) [SEP] ids[b_lo..b_hi) [SEP] with its label. */
static int emit(Builder *b, const int32_t *ids, size_t a_lo, size_t a_hi, size_t b_lo,
                size_t b_hi, int label, const PretrainSpecials *sp) {
    PretrainInstances *in = &b->in;
    const size_t la = a_hi - a_lo, lb = b_hi - b_lo, len = la + lb + 3;
    const size_t at = in->offset[in->n];
    if (grow((void **)&in->ids, &b->cap_ids, at + len, sizeof(int32_t)) != 0 ||
        grow((void **)&in->type, &b->cap_type, at + len, sizeof(uint8_t)) != 0 ||
        grow((void **)&in->offset, &b->cap_offset, in->n + 2, sizeof(size_t)) != 0 ||
        grow((void **)&in->nsp_label, &b->cap_label, in->n + 1, sizeof(uint8_t)) != 0)
        return -1;
    int32_t *o = in->ids + at;
    uint8_t *t = in->type + at;
    size_t k = 0;
    o[k] = sp->cls; t[k++] = 0;
    for (size_t i = a_lo; i < a_hi; i++) { o[k] = ids[i]; t[k++] = 0; }
    o[k] = sp->sep; t[k++] = 0;
    for (size_t i = b_lo; i < b_hi; i++) { o[k] = ids[i]; t[k++] = 1; }
    o[k] = sp->sep; t[k++] = 1;
    in->nsp_label[in->n] = (uint8_t)label;
    in->offset[++in->n] = at + len;
    if (len > in->max_len) in->max_len = len;
    return 0;
}

/* create_instances_from_document for document d, drawing from *state. */
static int from_document(Builder *bld, const PretrainCorpus *c, size_t d, size_t max_num_tokens,
                         double short_seq_prob, uint64_t *state, const PretrainSpecials *sp) {
    const size_t *so = c->sent_offset;
    const size_t s0 = c->doc_offset[d], ns = c->doc_offset[d + 1] - s0;
    size_t target = max_num_tokens;
    if (tfm_rng_uniform_next(state) < short_seq_prob)
        target = 2 + (size_t)draw_below(state, max_num_tokens - 1);     /* randint(2, max) */
    size_t chunk_lo = 0, chunk_len = 0;   /* the chunk: sentences chunk_lo..i of the document */
    for (size_t i = 0; i < ns; i++) {
        chunk_len += so[s0 + i + 1] - so[s0 + i];
        if (i + 1 < ns && chunk_len < target) continue;
        const size_t n_chunk = i - chunk_lo + 1;
        const size_t a_end = n_chunk >= 2 ? 1 + (size_t)draw_below(state, n_chunk - 1) : 1;
        /* Sentences of a document are consecutive in ids, so A and B are ranges of it. */
        size_t a_lo = so[s0 + chunk_lo], a_hi = so[s0 + chunk_lo + a_end], b_lo, b_hi;
        int label = 0;
        const int random_next = n_chunk == 1 || tfm_rng_uniform_next(state) < 0.5;
        if (random_next && c->n_docs > 1) {
            /* Uniform among the other documents: draw in [0, n_docs - 1) and skip d. */
            size_t r = (size_t)draw_below(state, c->n_docs - 1);
            if (r >= d) r++;
            const size_t r0 = c->doc_offset[r], rn = c->doc_offset[r + 1] - r0;
            const size_t start = (size_t)draw_below(state, rn);
            const size_t la = a_hi - a_lo;
            const size_t target_b = target > la ? target - la : 0;
            b_lo = so[r0 + start];
            size_t j = start;
            do b_hi = so[r0 + ++j]; while (j < rn && b_hi - b_lo < target_b);
            label = 1;
            i -= n_chunk - a_end;    /* the unused sentences go back: the next chunk starts there */
        } else {
            b_lo = a_hi;             /* the true continuation; empty for a one-sentence chunk */
            b_hi = so[s0 + i + 1];
        }
        /* truncate_seq_pair: one token at a time off the longer segment (B when equal). */
        while ((a_hi - a_lo) + (b_hi - b_lo) > max_num_tokens) {
            const int from_a = a_hi - a_lo > b_hi - b_lo;
            const int front = tfm_rng_uniform_next(state) < 0.5;
            if (from_a) { if (front) a_lo++; else a_hi--; }
            else        { if (front) b_lo++; else b_hi--; }
        }
        if (a_hi > a_lo && b_hi > b_lo) {
            if (emit(bld, c->ids, a_lo, a_hi, b_lo, b_hi, label, sp) != 0) return -1;
            bld->in.n_single += n_chunk == 1;
        } else {
            bld->in.n_skipped++;
        }
        chunk_lo = i + 1;
        chunk_len = 0;
    }
    return 0;
}

int pretrain_instances_build(PretrainInstances *out, const PretrainCorpus *c, size_t T,
                             double short_seq_prob, size_t dupe_factor, uint64_t seed,
                             const PretrainSpecials *sp, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (T < 5)
        return tfm_fail(err, errlen, "T = %zu: an instance [CLS] A [SEP] B [SEP] needs T >= 5 "
                    "(a token each for A and B)", T);
    if (!(short_seq_prob >= 0.0 && short_seq_prob <= 1.0))
        return tfm_fail(err, errlen, "short_seq_prob = %g is not a probability in [0, 1]",
                    short_seq_prob);
    if (dupe_factor == 0) return tfm_fail(err, errlen, "dupe_factor = 0: no pass over the corpus");
    if (!c || c->n_docs == 0 || c->n_sent == 0)
        return tfm_fail(err, errlen, "the corpus has no document");
    Builder b = {0};
    size_t *perm = NULL;
    uint64_t state = seed;
    if (grow((void **)&b.in.offset, &b.cap_offset, 1, sizeof(size_t)) != 0) goto oom;
    b.in.offset[0] = 0;
    for (size_t pass = 0; pass < dupe_factor; pass++)
        for (size_t d = 0; d < c->n_docs; d++)
            if (from_document(&b, c, d, T - 3, short_seq_prob, &state, sp) != 0) goto oom;
    if (b.in.n == 0) {
        pretrain_instances_free(&b.in);
        return tfm_fail(err, errlen, "no instance: %zu pairs had an empty segment (a corpus of one "
                    "document needs chunks of two sentences)", b.in.n_skipped);
    }
    /* rng.shuffle(instances): Fisher-Yates from the same stream, then the instances copied in
     * that order into arrays of exactly their size. */
    const size_t n = b.in.n, n_ids = b.in.offset[n];
    perm = malloc(n * sizeof *perm);
    out->offset = malloc((n + 1) * sizeof *out->offset);
    out->ids = malloc(n_ids * sizeof *out->ids);
    out->type = malloc(n_ids * sizeof *out->type);
    out->nsp_label = malloc(n * sizeof *out->nsp_label);
    if (!perm || !out->offset || !out->ids || !out->type || !out->nsp_label) goto oom;
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        const size_t j = (size_t)draw_below(&state, (uint64_t)i + 1);
        const size_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    out->offset[0] = 0;
    for (size_t k = 0; k < n; k++) {
        const size_t src = b.in.offset[perm[k]], len = b.in.offset[perm[k] + 1] - src;
        memcpy(out->ids + out->offset[k], b.in.ids + src, len * sizeof *out->ids);
        memcpy(out->type + out->offset[k], b.in.type + src, len);
        out->nsp_label[k] = b.in.nsp_label[perm[k]];
        out->offset[k + 1] = out->offset[k] + len;
    }
    out->n = n;
    out->max_len = b.in.max_len;
    out->n_single = b.in.n_single;
    out->n_skipped = b.in.n_skipped;
    free(perm);
    pretrain_instances_free(&b.in);
    return 0;
oom:
    free(perm);
    pretrain_instances_free(&b.in);
    pretrain_instances_free(out);
    return tfm_fail(err, errlen, "out of memory building the pretraining instances");
}

/* ---------------------------------------------------------------- batches */

int pretrain_batch_fill(int64_t *input_ids, int64_t *token_type_ids, int64_t *attention_mask,
                        int64_t *nsp_label, const PretrainInstances *in, const size_t *order,
                        size_t first, size_t B, size_t T, int64_t pad_id, char *err,
                        size_t errlen) {
    if (!in || in->n == 0) return tfm_fail(err, errlen, "batch: no instance to take");
    if (B == 0 || T == 0) return tfm_fail(err, errlen, "batch: B = %zu, T = %zu", B, T);
    for (size_t r = 0; r < B; r++) {
        const size_t pos = (first % in->n + r) % in->n;
        const size_t k = order ? order[pos] : pos;
        if (k >= in->n)
            return tfm_fail(err, errlen, "batch: order[%zu] = %zu, past the %zu instances", pos, k,
                        in->n);
        const size_t lo = in->offset[k], len = in->offset[k + 1] - lo;
        if (len > T)
            return tfm_fail(err, errlen, "batch: instance %zu has %zu tokens, more than T = %zu", k,
                        len, T);
        int64_t *ids = input_ids + r * T, *type = token_type_ids + r * T;
        int64_t *mask = attention_mask + r * T;
        for (size_t t = 0; t < len; t++) {
            ids[t] = in->ids[lo + t];
            type[t] = in->type[lo + t];
            mask[t] = 1;
        }
        for (size_t t = len; t < T; t++) {
            ids[t] = pad_id;
            type[t] = 0;
            mask[t] = 0;
        }
        nsp_label[r] = in->nsp_label[k];
    }
    return 0;
}
