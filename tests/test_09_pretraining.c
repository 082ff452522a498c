/* test_09_pretraining.c — chapter 09: pretraining BERT on Jane Austen.
 *
 * TCase "data": the corpus reader and create_pretraining_data's instances (pretrain_data.h).
 * No peer computes these instances with tfm's draws, so the tests check what must hold of any
 * of them: the shape [CLS] A [SEP] B [SEP] with its token types, the length bound, labels near
 * one half, an IsNext B that really is the text after A (found again in the corpus by a search
 * that knows nothing of how the instances were made), a random B from another document, seeds
 * that repeat and seeds that differ; small corpora written here for the reader's edge cases and
 * refusals; and the padded batches.
 *
 * TCase "goldens": pretrain-steps against PyTorch's Trainer recipe (oracle/export_09.py): 20
 * optimizer steps of the micro model, and 6 of 2 accumulated micro-batches, from the same
 * weights and batches; every step's losses, learning rate and gradient norm, every parameter
 * after step 2 and after the last.
 *
 * TCase "optim": the schedule's values, AdamW's update against its closed form in double and
 * fast against naive, the clipping, the parameter table (names, decay, the packed q/k/v), the
 * initialization's statistics.
 *
 * TCase "cli": `tfm pretrain` killed with SIGKILL and resumed gives the uninterrupted run's
 * losses and weights bit for bit; a corrupt or mismatched checkpoint is a clear error; `tfm
 * evaluate` and `tfm fill-mask` print what they promise.
 *
 * Dimensions: B batch, T tokens per instance, n instances.
 */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/stat.h>
#include <sys/wait.h>

#include "golden.h"
#include "optim.h"
#include "pretrain.h"
#include "pretrain_data.h"
#include "rng.h"
#include "testutil.h"
#include "tokenizer.h"

static Vocab V;
static PretrainSpecials SP;

static void data_setup(void) {
    char path[4096], err[TFM_ERR_LEN];
    tok_data_path(path, sizeof path, TOK_DEFAULT_VOCAB);
    if (vocab_load(&V, path, err, sizeof err) != 0)
        ck_abort_msg("%s (run `make deps`: it installs the vocabulary)", err);
    SP = pretrain_specials(&V);
}

static void data_teardown(void) { vocab_free(&V); }

/* $TFM_DATA/austen/pretrain-<split>.txt, which make deps writes (tools/austen-sentences.py).
 * Absent, the test fails and says so: a skipped test would pass without checking anything. */
static void load_austen(PretrainCorpus *c, const char *split) {
    char rel[64], path[4096], err[TFM_ERR_LEN];
    snprintf(rel, sizeof rel, "austen/pretrain-%s.txt", split);
    tok_data_path(path, sizeof path, rel);
    if (access(path, R_OK) != 0)
        ck_abort_msg("%s is missing: run `make deps` (tools/install-data writes it with "
                     "tools/austen-sentences.py)", path);
    if (pretrain_corpus_load(c, path, &V, err, sizeof err) != 0) ck_abort_msg("%s", err);
}

/* A corpus file made by the test: `text` written to a fresh temporary file, its name in path. */
static void write_temp(char *path, size_t pathlen, const char *text, size_t n) {
    snprintf(path, pathlen, "/tmp/tfm-corpus-XXXXXX");
    const int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert(write(fd, text, n) == (ssize_t)n);
    close(fd);
}

static void load_text(PretrainCorpus *c, const char *text) {
    char path[64], err[TFM_ERR_LEN];
    write_temp(path, sizeof path, text, strlen(text));
    const int rc = pretrain_corpus_load(c, path, &V, err, sizeof err);
    unlink(path);
    ck_assert_msg(rc == 0, "%s", err);
}

static size_t inst_len(const PretrainInstances *in, size_t i) { return in->offset[i + 1] - in->offset[i]; }

/* Every instance is [CLS] A [SEP] B [SEP] with A, B non-empty and no special token inside, types
 * 0 up to the first [SEP] and 1 after it, at most T tokens; the labels are 0 or 1. Returns the
 * number of instances with label 1. */
static size_t check_well_formed(const PretrainInstances *in, size_t T) {
    size_t n_random = 0, longest = 0;
    ck_assert_uint_gt(in->n, 0);
    ck_assert_uint_eq(in->offset[0], 0);
    for (size_t i = 0; i < in->n; i++) {
        const int32_t *ids = in->ids + in->offset[i];
        const uint8_t *type = in->type + in->offset[i];
        const size_t len = inst_len(in, i);
        ck_assert_msg(len >= 5 && len <= T, "instance %zu: %zu tokens, T = %zu", i, len, T);
        if (len > longest) longest = len;
        ck_assert_msg(ids[0] == SP.cls, "instance %zu starts with %d, not [CLS]", i, ids[0]);
        size_t n_sep = 0, sep1 = 0;
        for (size_t t = 1; t < len; t++) {
            ck_assert_msg(ids[t] != SP.cls && ids[t] != SP.pad && ids[t] != SP.mask,
                          "instance %zu: special token %d at %zu", i, ids[t], t);
            if (ids[t] == SP.sep && n_sep++ == 0) sep1 = t;
        }
        ck_assert_msg(n_sep == 2, "instance %zu: %zu [SEP]", i, n_sep);
        ck_assert_msg(ids[len - 1] == SP.sep, "instance %zu does not end with [SEP]", i);
        ck_assert_msg(sep1 >= 2 && sep1 + 2 < len, "instance %zu: A or B empty (first [SEP] at %zu of %zu)",
                      i, sep1, len);
        for (size_t t = 0; t < len; t++)
            ck_assert_msg(type[t] == (t > sep1), "instance %zu: token %zu has type %d, the first [SEP] at %zu",
                          i, t, type[t], sep1);
        ck_assert_msg(in->nsp_label[i] <= 1, "instance %zu: label %d", i, in->nsp_label[i]);
        n_random += in->nsp_label[i];
    }
    ck_assert_uint_eq(in->max_len, longest);
    return n_random;
}

/* ---------------------------------------------------------------- finding text in the corpus */

/* Where a run of ids occurs in the corpus, found by brute force over a sorted index of every
 * position's first four ids: what the search knows is the corpus, never the builder's draws. */
typedef struct { uint64_t key; size_t pos; } Gram;
typedef struct {
    const PretrainCorpus *c;
    size_t n_ids;
    size_t *doc_of;          /* [n_ids] the document of each position */
    Gram *g;                 /* [n_g] the positions with four ids left in their document */
    size_t n_g;
} Finder;

static uint64_t key4(const int32_t *x) {
    uint64_t k = 0;
    for (int i = 0; i < 4; i++) k = k << 16 | (uint16_t)x[i];
    return k;
}

static int gram_cmp(const void *a, const void *b) {
    const Gram *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static void finder_init(Finder *f, const PretrainCorpus *c) {
    ck_assert_uint_le(V.n, 65536);                   /* key4 packs ids in 16 bits */
    f->c = c;
    f->n_ids = c->sent_offset[c->n_sent];
    f->doc_of = tu_malloc(f->n_ids * sizeof *f->doc_of);
    f->g = tu_malloc(f->n_ids * sizeof *f->g);
    f->n_g = 0;
    for (size_t d = 0; d < c->n_docs; d++) {
        const size_t lo = c->sent_offset[c->doc_offset[d]], hi = c->sent_offset[c->doc_offset[d + 1]];
        for (size_t p = lo; p < hi; p++) {
            f->doc_of[p] = d;
            if (p + 4 <= hi) f->g[f->n_g++] = (Gram){key4(c->ids + p), p};
        }
    }
    qsort(f->g, f->n_g, sizeof *f->g, gram_cmp);
}

static void finder_free(Finder *f) {
    free(f->doc_of);
    free(f->g);
}

/* The positions p (at most max_hits) where x[0..n) occurs within one document; n >= 4. */
static size_t find_all(const Finder *f, const int32_t *x, size_t n, size_t *hits, size_t max_hits) {
    const uint64_t k = key4(x);
    size_t lo = 0, hi = f->n_g;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (f->g[mid].key < k) lo = mid + 1; else hi = mid;
    }
    size_t n_hits = 0;
    for (size_t i = lo; i < f->n_g && f->g[i].key == k && n_hits < max_hits; i++) {
        const size_t p = f->g[i].pos;
        if (p + n <= f->n_ids && f->doc_of[p + n - 1] == f->doc_of[p] &&
            memcmp(f->c->ids + p, x, n * sizeof *x) == 0)
            hits[n_hits++] = p;
    }
    return n_hits;
}

/* Does a sentence of the corpus start at position p? (The end of the corpus counts.) */
static int is_boundary(const PretrainCorpus *c, size_t p) {
    size_t lo = 0, hi = c->n_sent + 1;
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        if (c->sent_offset[mid] < p) lo = mid + 1; else hi = mid;
    }
    return lo <= c->n_sent && c->sent_offset[lo] == p;
}

/* Is there a sentence start in [lo, hi]? */
static int boundary_between(const PretrainCorpus *c, size_t lo, size_t hi) {
    size_t a = 0, b = c->n_sent + 1;
    while (a < b) {
        const size_t mid = a + (b - a) / 2;
        if (c->sent_offset[mid] < lo) a = mid + 1; else b = mid;
    }
    return a <= c->n_sent && c->sent_offset[a] <= hi;
}

/* For an IsNext instance (label 0) with segments a[0..na), b[0..nb): is there an occurrence of A
 * at p and of B at q in the same document with B after A and a sentence start between them?
 * Untruncated (na + nb < T - 3, so no token was cut), the match must be exact: A starts a
 * sentence and ends where B starts, at a sentence start, and B ends at a sentence end. Truncated,
 * tokens may be missing at A's ends and B's ends, so only the order and the boundary between them
 * are required. The search goes through the longer segment, which has at least 4 ids. */
static int continuation_found(const Finder *f, const int32_t *a, size_t na, const int32_t *b,
                              size_t nb, int truncated) {
    static size_t hits[4096];
    const int via_a = na >= nb;
    const size_t n_hits = via_a ? find_all(f, a, na, hits, 4096) : find_all(f, b, nb, hits, 4096);
    const PretrainCorpus *c = f->c;
    for (size_t h = 0; h < n_hits; h++) {
        const size_t d = f->doc_of[hits[h]];
        const size_t dlo = c->sent_offset[c->doc_offset[d]], dhi = c->sent_offset[c->doc_offset[d + 1]];
        if (!truncated) {
            const size_t p = via_a ? hits[h] : hits[h] - na, q = p + na;
            if (hits[h] < (via_a ? 0 : na) || p < dlo || q + nb > dhi) continue;
            if (memcmp(c->ids + p, a, na * sizeof *a) != 0 || memcmp(c->ids + q, b, nb * sizeof *b) != 0)
                continue;
            if (is_boundary(c, p) && is_boundary(c, q) && is_boundary(c, q + nb)) return 1;
            continue;
        }
        if (via_a) {           /* B somewhere after A's end in the same document */
            const size_t ea = hits[h] + na;
            for (size_t q = ea; q + nb <= dhi; q++)
                if (c->ids[q] == b[0] && memcmp(c->ids + q, b, nb * sizeof *b) == 0 &&
                    boundary_between(c, ea, q))
                    return 1;
        } else {               /* A somewhere before B's start in the same document */
            const size_t sb = hits[h];
            for (size_t p = dlo; p + na <= sb; p++)
                if (c->ids[p] == a[0] && memcmp(c->ids + p, a, na * sizeof *a) == 0 &&
                    boundary_between(c, p + na, sb))
                    return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- the Austen corpus */

START_TEST(test_austen_corpus) {
    PretrainCorpus tr, ev;
    load_austen(&tr, "train");
    load_austen(&ev, "eval");
    /* The six novels have 269 chapters; chapters 10, 20, ... of each are held out: 5 + 6 + 4 + 5
     * + 3 + 2 (Sense and Sensibility 50, Pride and Prejudice 61, Mansfield Park 48, Emma 55,
     * Northanger Abbey 31, Persuasion 24 chapters). */
    ck_assert_uint_eq(tr.n_docs, 244);
    ck_assert_uint_eq(ev.n_docs, 25);
    const PretrainCorpus *cs[2] = {&tr, &ev};
    const char *names[2] = {"train", "eval"};
    for (int k = 0; k < 2; k++) {
        const PretrainCorpus *c = cs[k];
        ck_assert_uint_eq(c->doc_offset[0], 0);
        ck_assert_uint_eq(c->doc_offset[c->n_docs], c->n_sent);
        for (size_t d = 0; d < c->n_docs; d++) ck_assert_uint_lt(c->doc_offset[d], c->doc_offset[d + 1]);
        for (size_t s = 0; s < c->n_sent; s++) ck_assert_uint_lt(c->sent_offset[s], c->sent_offset[s + 1]);
        for (size_t i = 0; i < c->sent_offset[c->n_sent]; i++)
            ck_assert(c->ids[i] >= 0 && (size_t)c->ids[i] < V.n && c->ids[i] != SP.cls &&
                      c->ids[i] != SP.sep && c->ids[i] != SP.pad && c->ids[i] != SP.mask);
        printf("09 corpus %s: %zu documents, %zu sentences, %zu tokens\n", names[k], c->n_docs,
               c->n_sent, c->sent_offset[c->n_sent]);
    }
    /* Held out means held out: no evaluation chapter's first sentence (long ones, over 20 word
     * pieces, that no other chapter repeats) is found anywhere in the training set. */
    Finder f;
    finder_init(&f, &tr);
    size_t checked = 0, hits[1];
    for (size_t d = 0; d < ev.n_docs; d++)
        for (size_t s = ev.doc_offset[d]; s < ev.doc_offset[d + 1]; s++) {
            const size_t lo = ev.sent_offset[s], n = ev.sent_offset[s + 1] - lo;
            if (n <= 20) continue;
            ck_assert_msg(find_all(&f, ev.ids + lo, n, hits, 1) == 0,
                          "eval sentence %zu (document %zu) is in the training set", s, d);
            checked++;
            break;
        }
    ck_assert_uint_eq(checked, ev.n_docs);
    finder_free(&f);
    pretrain_corpus_free(&tr);
    pretrain_corpus_free(&ev);
}
END_TEST

static const size_t AUSTEN_T[2] = {128, 64};

/* The instances of the training set at T = 128 and 64, short_seq_prob 0.1: their shape, and the
 * next-sentence labels. Each chunk of two sentences or more flips a fair coin; a chunk of one
 * sentence (a sentence longer than the target) has a random B without one, as in
 * create_pretraining_data. Over thousands of instances the coin's share is 0.5 within 0.03 (more
 * than five standard deviations; over 20 seeds it pooled to 0.5006 at T = 128, 0.5015 at 64).
 * The single-sentence chunks push the share of all labels above one half: 0.54..0.56 at T = 128
 * (one instance in sixteen is a single sentence), about 0.6 at T = 64 (one in five); the bounds
 * 0.5..0.6 and 0.55..0.65 hold for any seed, and the original has the same bias. */
START_TEST(test_austen_instances) {
    const size_t T = AUSTEN_T[_i];
    PretrainCorpus c;
    load_austen(&c, "train");
    PretrainInstances in;
    char err[TFM_ERR_LEN];
    ck_assert_msg(pretrain_instances_build(&in, &c, T, 0.1, 1, 12345, &SP, err, sizeof err) == 0, "%s", err);
    const size_t n_random = check_well_formed(&in, T);
    ck_assert_uint_eq(in.n_skipped, 0);              /* many documents: B is never empty */
    ck_assert_uint_gt(in.n, 2000);
    ck_assert_uint_le(in.n_single, n_random);
    ck_assert_uint_lt(in.n_single, in.n / 4);
    const double frac = (double)n_random / (double)in.n;
    const double coin = (double)(n_random - in.n_single) / (double)(in.n - in.n_single);
    ck_assert_msg(coin >= 0.47 && coin <= 0.53, "T = %zu: the coin said random %zu times of %zu (%.4f)",
                  T, n_random - in.n_single, in.n - in.n_single, coin);
    const double lo = T == 128 ? 0.5 : 0.55;
    ck_assert_msg(frac >= lo && frac <= lo + 0.1, "T = %zu: %zu of %zu instances random (%.4f)", T,
                  n_random, in.n, frac);
    /* Most instances fill the sequence: the chunk grows to the target, max_num_tokens but for
     * short_seq_prob of the documents. */
    size_t full = 0, tokens = 0;
    for (size_t i = 0; i < in.n; i++) {
        full += inst_len(&in, i) == T;
        tokens += inst_len(&in, i);
    }
    ck_assert_msg(full * 2 > in.n, "T = %zu: only %zu of %zu instances have T tokens", T, full, in.n);
    printf("09 instances T = %zu, short_seq_prob 0.1, seed 12345: %zu instances (%zu IsNext, %zu "
           "random: %.3f; %zu of one sentence, the coin %.3f), %zu with T tokens, %zu tokens "
           "(%.1f per instance)\n", T, in.n, in.n - n_random, n_random, frac, in.n_single, coin,
           full, tokens, (double)tokens / (double)in.n);
    pretrain_instances_free(&in);
    pretrain_corpus_free(&c);
}
END_TEST

/* Label 0: B is the text that follows A in A's document; label 1: B is found in a document
 * other than A's (checked where A occurs in one document only). */
START_TEST(test_austen_isnext_is_continuation) {
    const size_t T = AUSTEN_T[_i];
    PretrainCorpus c;
    load_austen(&c, "train");
    PretrainInstances in;
    char err[TFM_ERR_LEN];
    ck_assert_msg(pretrain_instances_build(&in, &c, T, 0.1, 1, 777, &SP, err, sizeof err) == 0, "%s", err);
    Finder f;
    finder_init(&f, &c);
    static size_t hits_a[4096], hits_b[4096];
    size_t n_exact = 0, n_trunc = 0, n_random_checked = 0;
    for (size_t i = 0; i < in.n; i++) {
        const int32_t *ids = in.ids + in.offset[i];
        const size_t len = inst_len(&in, i);
        size_t sep1 = 1;
        while (ids[sep1] != SP.sep) sep1++;
        const int32_t *a = ids + 1, *b = ids + sep1 + 1;
        const size_t na = sep1 - 1, nb = len - sep1 - 2;
        const int truncated = na + nb == T - 3;
        if (in.nsp_label[i] == 0) {
            if (na < 4 && nb < 4) continue;          /* too short for the index (a few) */
            ck_assert_msg(continuation_found(&f, a, na, b, nb, truncated),
                          "T = %zu, instance %zu (IsNext, %zu + %zu tokens%s): B is not the text after A",
                          T, i, na, nb, truncated ? ", truncated" : "");
            if (truncated) n_trunc++; else n_exact++;
        } else if (na >= 4 && nb >= 4) {
            const size_t ha = find_all(&f, a, na, hits_a, 4096), hb = find_all(&f, b, nb, hits_b, 4096);
            ck_assert_msg(ha > 0 && hb > 0, "T = %zu, instance %zu: a segment is not in the corpus", T, i);
            int one_doc = 1, other = 0;
            for (size_t h = 1; h < ha; h++) one_doc &= f.doc_of[hits_a[h]] == f.doc_of[hits_a[0]];
            if (!one_doc) continue;
            for (size_t h = 0; h < hb; h++) other |= f.doc_of[hits_b[h]] != f.doc_of[hits_a[0]];
            ck_assert_msg(other, "T = %zu, instance %zu: the random B comes from A's document", T, i);
            n_random_checked++;
        }
    }
    /* Both kinds of IsNext occur, so both branches of the search were exercised. */
    ck_assert_uint_gt(n_exact, 50);
    ck_assert_uint_gt(n_trunc, 50);
    ck_assert_uint_gt(n_random_checked, in.n / 4);
    printf("09 T = %zu: IsNext found in the corpus: %zu exact, %zu truncated; %zu random B from another document\n",
           T, n_exact, n_trunc, n_random_checked);
    finder_free(&f);
    pretrain_instances_free(&in);
    pretrain_corpus_free(&c);
}
END_TEST

static int same_instances(const PretrainInstances *x, const PretrainInstances *y) {
    return x->n == y->n && memcmp(x->offset, y->offset, (x->n + 1) * sizeof *x->offset) == 0 &&
           memcmp(x->ids, y->ids, x->offset[x->n] * sizeof *x->ids) == 0 &&
           memcmp(x->type, y->type, x->offset[x->n]) == 0 &&
           memcmp(x->nsp_label, y->nsp_label, x->n) == 0;
}

/* One seed, the same instances; another seed, others; dupe_factor 2 about twice as many. */
START_TEST(test_austen_seeds) {
    PretrainCorpus c;
    load_austen(&c, "eval");
    PretrainInstances a, b, d, two;
    char err[TFM_ERR_LEN];
    ck_assert(pretrain_instances_build(&a, &c, 64, 0.1, 1, 42, &SP, err, sizeof err) == 0);
    ck_assert(pretrain_instances_build(&b, &c, 64, 0.1, 1, 42, &SP, err, sizeof err) == 0);
    ck_assert(pretrain_instances_build(&d, &c, 64, 0.1, 1, 43, &SP, err, sizeof err) == 0);
    ck_assert(pretrain_instances_build(&two, &c, 64, 0.1, 2, 42, &SP, err, sizeof err) == 0);
    ck_assert_msg(same_instances(&a, &b), "seed 42 twice: different instances");
    ck_assert_msg(!same_instances(&a, &d), "seeds 42 and 43: the same instances");
    /* Not a permutation of each other either: the first instances differ as sets of labels and
     * lengths (a shuffle alone would keep the multiset). */
    size_t ra = 0, rd = 0;
    for (size_t i = 0; i < a.n; i++) ra += a.nsp_label[i];
    for (size_t i = 0; i < d.n; i++) rd += d.nsp_label[i];
    ck_assert_msg(a.n != d.n || ra != rd || a.offset[a.n] != d.offset[d.n],
                  "seeds 42 and 43: same count, labels and tokens (%zu, %zu, %zu)", a.n, ra, a.offset[a.n]);
    ck_assert_msg(two.n > a.n * 19 / 10 && two.n < a.n * 21 / 10, "dupe_factor 2: %zu instances, 1: %zu",
                  two.n, a.n);
    check_well_formed(&two, 64);
    pretrain_instances_free(&a);
    pretrain_instances_free(&b);
    pretrain_instances_free(&d);
    pretrain_instances_free(&two);
    pretrain_corpus_free(&c);
}
END_TEST

/* ---------------------------------------------------------------- small corpora */

/* Blank-line runs, a whitespace-only line, an empty document, CRLF, a line with no word piece,
 * no final newline: three documents of 4, 3 and 2 sentences. */
static const char SMALL[] =
    "\n\n"
    "the cat sat on the mat .\n"
    "it was a very warm day in the garden .\n"
    "she said nothing at all for some time .\n"
    "then the dog came home .\n"
    "\n\n\n"
    " \t \n"
    "\n"
    "a letter came from london this morning .\r\n"
    "\x01\x02\n"
    "nobody knew who had written it .\r\n"
    "the house was quiet again .\n"
    "\r\n"
    "   \n"
    "\n"
    "mr. darcy bowed .\n"
    "elizabeth smiled and turned away from the window";

static void tokenized(TokIds *out, const char *s) {
    TokScratch scr = {0};
    TokError e;
    out->len = 0;
    ck_assert(tokenize_fast(out, &V, s, strlen(s), &scr, &e) == 0);
    tok_scratch_free(&scr);
}

START_TEST(test_small_corpus_reader) {
    PretrainCorpus c;
    load_text(&c, SMALL);
    ck_assert_uint_eq(c.n_docs, 3);
    ck_assert_uint_eq(c.n_sent, 9);
    const size_t want_docs[4] = {0, 4, 7, 9};
    for (size_t d = 0; d <= 3; d++) ck_assert_uint_eq(c.doc_offset[d], want_docs[d]);
    const char *sents[9] = {"the cat sat on the mat .", "it was a very warm day in the garden .",
                            "she said nothing at all for some time .", "then the dog came home .",
                            "a letter came from london this morning .", "nobody knew who had written it .",
                            "the house was quiet again .", "mr. darcy bowed .",
                            "elizabeth smiled and turned away from the window"};
    TokIds t = {0};
    for (size_t s = 0; s < 9; s++) {
        tokenized(&t, sents[s]);
        const size_t lo = c.sent_offset[s], n = c.sent_offset[s + 1] - lo;
        ck_assert_msg(n == t.len && memcmp(c.ids + lo, t.ids, n * sizeof *t.ids) == 0,
                      "sentence %zu: %zu ids, tokenize_fast gives %zu", s, n, t.len);
    }
    tok_ids_free(&t);
    pretrain_corpus_free(&c);
}
END_TEST

/* The small corpus at a small T: every IsNext pair is exact or truncated continuation, every
 * random B from another document; short_seq_prob 1 and 0 both work. */
START_TEST(test_small_corpus_instances) {
    PretrainCorpus c;
    load_text(&c, SMALL);
    Finder f;
    finder_init(&f, &c);
    const size_t Ts[3] = {5, 16, 40};
    const double probs[2] = {0.0, 1.0};
    char err[TFM_ERR_LEN];
    size_t seen[2] = {0, 0};
    for (size_t k = 0; k < 3; k++)
        for (size_t p = 0; p < 2; p++)
            for (uint64_t seed = 0; seed < 20; seed++) {
                PretrainInstances in;
                ck_assert_msg(pretrain_instances_build(&in, &c, Ts[k], probs[p], 2, seed, &SP, err, sizeof err) == 0,
                              "%s", err);
                check_well_formed(&in, Ts[k]);
                ck_assert_uint_eq(in.n_skipped, 0);
                for (size_t i = 0; i < in.n; i++) {
                    const int32_t *ids = in.ids + in.offset[i];
                    size_t sep1 = 1;
                    while (ids[sep1] != SP.sep) sep1++;
                    const size_t na = sep1 - 1, nb = inst_len(&in, i) - sep1 - 2;
                    seen[in.nsp_label[i]]++;
                    if (in.nsp_label[i] == 0 && (na >= 4 || nb >= 4))
                        ck_assert_msg(continuation_found(&f, ids + 1, na, ids + sep1 + 1, nb, na + nb == Ts[k] - 3),
                                      "T = %zu, seed %zu, instance %zu: B is not the text after A", Ts[k],
                                      (size_t)seed, i);
                }
                pretrain_instances_free(&in);
            }
    ck_assert_uint_gt(seen[0], 0);
    ck_assert_uint_gt(seen[1], 0);
    finder_free(&f);
    pretrain_corpus_free(&c);
}
END_TEST

/* One document: no other document to draw B from, so every B is the rest of its chunk (label 0),
 * and a chunk of one sentence is skipped. With T large, the whole document is one chunk. */
START_TEST(test_one_document) {
    PretrainCorpus c;
    load_text(&c, "\n\nthe first sentence is here .\nand a second one follows it .\n"
                  "a third sentence ends the story .\n\n\n");
    ck_assert_uint_eq(c.n_docs, 1);
    ck_assert_uint_eq(c.n_sent, 3);
    char err[TFM_ERR_LEN];
    size_t n_total = 0, skipped = 0;
    for (uint64_t seed = 0; seed < 50; seed++) {
        PretrainInstances in;
        ck_assert_msg(pretrain_instances_build(&in, &c, 64, 0.0, 1, seed, &SP, err, sizeof err) == 0, "%s", err);
        check_well_formed(&in, 64);
        ck_assert_uint_eq(in.n, 1);                   /* 3 sentences, about 20 tokens: one chunk */
        ck_assert_uint_eq(in.nsp_label[0], 0);
        /* [CLS] A [SEP] B [SEP] without the specials is the whole document, in order. */
        const int32_t *ids = in.ids;
        const size_t len = inst_len(&in, 0), n_ids = c.sent_offset[3];
        ck_assert_uint_eq(len, n_ids + 3);
        size_t k = 0;
        for (size_t t = 1; t + 1 < len; t++)
            if (ids[t] != SP.sep) ck_assert_int_eq(ids[t], c.ids[k++]);
        ck_assert_uint_eq(k, n_ids);
        n_total += in.n;
        pretrain_instances_free(&in);
    }
    ck_assert_uint_eq(n_total, 50);
    /* A short target (short_seq_prob 1) makes chunks of one sentence: those are skipped, counted. */
    for (uint64_t seed = 0; seed < 50; seed++) {
        PretrainInstances in;
        if (pretrain_instances_build(&in, &c, 64, 1.0, 1, seed, &SP, err, sizeof err) != 0) {
            ck_assert_msg(strstr(err, "no instance") != NULL, "%s", err);
            skipped++;
            continue;
        }
        check_well_formed(&in, 64);
        for (size_t i = 0; i < in.n; i++) ck_assert_uint_eq(in.nsp_label[i], 0);
        skipped += in.n_skipped > 0;
        pretrain_instances_free(&in);
    }
    ck_assert_uint_gt(skipped, 0);
    /* One sentence in all: no pair at all. */
    PretrainCorpus one;
    load_text(&one, "a single sentence .\n");
    PretrainInstances in;
    ck_assert_int_eq(pretrain_instances_build(&in, &one, 64, 0.1, 1, 1, &SP, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "no instance") != NULL, "%s", err);
    pretrain_corpus_free(&one);
    pretrain_corpus_free(&c);
}
END_TEST

/* A corpus where nothing is ever truncated, so every instance can be traced back exactly:
 * sentence j is one word w_j four times ("apple apple apple apple", one word piece each), 40
 * sentences in 5 documents of 6 to 10, and T = 3 + 4 m (m = 3), short_seq_prob 0. The target is
 * then 4 m: a chunk is m sentences (fewer at a document's end), a random B fills exactly the
 * m - a_end sentences A leaves room for (fewer where its document ends), and no pair is ever
 * longer than T - 3. So: A is whole consecutive sentences of one document; an IsNext B the next
 * ones; a random B consecutive whole sentences of another document; and because the unused
 * sentences go back, the A's and the IsNext B's of one pass tile every document: each sentence
 * in exactly dupe_factor of them. */
static const char *const WORDS[40] = {
    "apple", "bread", "chair", "door", "earth", "field", "glass", "horse", "island", "king",
    "lamp", "music", "north", "ocean", "paper", "queen", "river", "stone", "table", "uncle",
    "voice", "water", "yellow", "angel", "bottle", "castle", "dinner", "engine", "forest", "garden",
    "hammer", "jungle", "kitchen", "letter", "mirror", "needle", "orange", "pencil", "silver", "winter"};
static const size_t DOC_SENTS[5] = {6, 10, 7, 9, 8};

START_TEST(test_tiling) {
    int32_t word_id[40];
    size_t sent_doc[40];
    char text[4096];
    size_t used = 0, j = 0;
    TokIds t = {0};
    for (size_t d = 0; d < 5; d++) {
        for (size_t k = 0; k < DOC_SENTS[d]; k++, j++) {
            tokenized(&t, WORDS[j]);
            ck_assert_msg(t.len == 1, "\"%s\" is %zu word pieces", WORDS[j], t.len);
            word_id[j] = t.ids[0];
            sent_doc[j] = d;
            used += (size_t)snprintf(text + used, sizeof text - used, "%s %s %s %s\n", WORDS[j], WORDS[j],
                                     WORDS[j], WORDS[j]);
        }
        used += (size_t)snprintf(text + used, sizeof text - used, "\n");
    }
    tok_ids_free(&t);
    ck_assert_uint_eq(j, 40);
    PretrainCorpus c;
    load_text(&c, text);
    ck_assert_uint_eq(c.n_docs, 5);
    ck_assert_uint_eq(c.n_sent, 40);
    const size_t m = 3, T = 3 + 4 * m, dupe = 3;
    char err[TFM_ERR_LEN];
    size_t n_random = 0, n_next = 0, a_split[3] = {0, 0, 0}, n_adjacent = 0, n_same_doc = 0;
    for (uint64_t seed = 0; seed < 30; seed++) {
        PretrainInstances in;
        ck_assert_msg(pretrain_instances_build(&in, &c, T, 0.0, dupe, seed, &SP, err, sizeof err) == 0, "%s", err);
        check_well_formed(&in, T);
        size_t covered[40] = {0}, prev_doc = SIZE_MAX;
        for (size_t i = 0; i < in.n; i++) {
            const int32_t *ids = in.ids + in.offset[i];
            const size_t len = inst_len(&in, i);
            /* Sentences of the instance, in order, from each block of four: [CLS] A.. [SEP] B.. [SEP]. */
            size_t s_of[16], n_s = 0, na = 0, pos = 1;
            while (pos < len) {
                if (ids[pos] == SP.sep) {
                    if (na == 0) na = n_s;
                    pos++;
                    continue;
                }
                size_t w = 0;
                while (w < 40 && word_id[w] != ids[pos]) w++;
                ck_assert_msg(w < 40, "seed %zu, instance %zu: id %d is in no sentence", (size_t)seed, i, ids[pos]);
                for (size_t q = 0; q < 4; q++)
                    ck_assert_msg(pos + q < len && ids[pos + q] == word_id[w],
                                  "seed %zu, instance %zu: sentence %zu cut (truncated?)", (size_t)seed, i, w);
                ck_assert_uint_lt(n_s, 16);
                s_of[n_s++] = w;
                pos += 4;
            }
            ck_assert_msg(na >= 1 && n_s > na && n_s <= m, "seed %zu, instance %zu: %zu sentences, %zu in A",
                          (size_t)seed, i, n_s, na);
            for (size_t q = 1; q < n_s; q++)   /* A, and B, each consecutive in one document */
                if (q != na)
                    ck_assert_msg(s_of[q] == s_of[q - 1] + 1 && sent_doc[s_of[q]] == sent_doc[s_of[q - 1]],
                                  "seed %zu, instance %zu: sentences %zu, %zu not consecutive", (size_t)seed, i,
                                  s_of[q - 1], s_of[q]);
            for (size_t q = 0; q < na; q++) covered[s_of[q]]++;
            if (prev_doc != SIZE_MAX) {
                n_adjacent++;
                n_same_doc += sent_doc[s_of[0]] == prev_doc;
            }
            prev_doc = sent_doc[s_of[0]];
            if (in.nsp_label[i] == 0 && n_s == m) a_split[na]++;   /* a full chunk of 3: a_end 1 or 2 */
            if (in.nsp_label[i] == 0) {
                ck_assert_msg(s_of[na] == s_of[na - 1] + 1 && sent_doc[s_of[na]] == sent_doc[s_of[na - 1]],
                              "seed %zu, instance %zu (IsNext): B starts at sentence %zu, A ends at %zu",
                              (size_t)seed, i, s_of[na], s_of[na - 1]);
                for (size_t q = na; q < n_s; q++) covered[s_of[q]]++;
                n_next++;
            } else {
                ck_assert_msg(sent_doc[s_of[na]] != sent_doc[s_of[0]],
                              "seed %zu, instance %zu (random): B from A's own document %zu", (size_t)seed, i,
                              sent_doc[s_of[0]]);
                /* B is as long as the target allows, or runs to its document's end. */
                const size_t last = s_of[n_s - 1];
                ck_assert_msg(n_s == m || last + 1 == 40 || sent_doc[last + 1] != sent_doc[last],
                              "seed %zu, instance %zu (random): B stops short at sentence %zu", (size_t)seed,
                              i, last);
                n_random++;
            }
        }
        for (size_t w = 0; w < 40; w++)
            ck_assert_msg(covered[w] == dupe, "seed %zu: sentence %zu is in %zu A's and IsNext B's, not %zu",
                          (size_t)seed, w, covered[w], dupe);
        pretrain_instances_free(&in);
    }
    ck_assert_uint_gt(n_random, 100);
    ck_assert_uint_gt(n_next, 100);
    /* a_end is uniform in [1, len(chunk) - 1]: in the IsNext pairs of a full chunk, A is one
     * sentence or two about equally often. */
    ck_assert_msg(a_split[1] * 10 > (a_split[1] + a_split[2]) * 4 && a_split[2] * 10 > (a_split[1] + a_split[2]) * 4,
                  "a_end of full chunks: 1 %zu times, 2 %zu times", a_split[1], a_split[2]);
    /* Shuffled: neighbours come from the same document about one time in five (five documents),
     * not as in the order of making, where a document's instances follow each other. */
    ck_assert_msg(n_same_doc * 10 < n_adjacent * 4, "%zu of %zu neighbouring instances from one document",
                  n_same_doc, n_adjacent);
    pretrain_corpus_free(&c);
}
END_TEST

/* truncate_seq_pair takes from the front or the back with probability 1/2: two documents of one
 * sentence each, words 0..29 and 30..39 of WORDS (one word piece each), T = 10. Each is a chunk of
 * one sentence, with the other as its random B; 40 tokens are cut to 7, the longer segment losing
 * one at a time, and where A's window starts in its sentence says how many went from its front. */
START_TEST(test_truncation_both_ends) {
    char text[1024];
    size_t used = 0;
    int32_t word_id[40];
    TokIds t = {0};
    for (size_t w = 0; w < 40; w++) {
        tokenized(&t, WORDS[w]);
        ck_assert_uint_eq(t.len, 1);
        word_id[w] = t.ids[0];
        used += (size_t)snprintf(text + used, sizeof text - used, "%s%s", WORDS[w],
                                 w == 29 ? "\n\n" : w == 39 ? "\n" : " ");
    }
    tok_ids_free(&t);
    PretrainCorpus c;
    load_text(&c, text);
    ck_assert_uint_eq(c.n_docs, 2);
    char err[TFM_ERR_LEN];
    size_t cut = 0, cut_front = 0;
    for (uint64_t seed = 0; seed < 200; seed++) {
        PretrainInstances in;
        ck_assert_msg(pretrain_instances_build(&in, &c, 10, 0.0, 1, seed, &SP, err, sizeof err) == 0, "%s", err);
        check_well_formed(&in, 10);
        ck_assert_uint_eq(in.n, 2);
        ck_assert_uint_eq(in.n_single, 2);
        for (size_t i = 0; i < 2; i++) {
            ck_assert_uint_eq(in.nsp_label[i], 1);
            ck_assert_uint_eq(inst_len(&in, i), 10);
            const int32_t *ids = in.ids + in.offset[i];
            size_t na = 1;
            while (ids[1 + na] != SP.sep) na++;
            size_t w = 0;
            while (w < 40 && word_id[w] != ids[1]) w++;
            ck_assert_uint_lt(w, 40);
            const size_t first = w < 30 ? 0 : 30, n_sent = w < 30 ? 30 : 10;
            for (size_t k = 0; k < na; k++) ck_assert_int_eq(ids[1 + k], word_id[w + k]);  /* a window */
            cut += n_sent - na;
            cut_front += w - first;
        }
        pretrain_instances_free(&in);
    }
    const double front = (double)cut_front / (double)cut;
    ck_assert_msg(front > 0.45 && front < 0.55, "%zu of %zu tokens cut from A's front (%.3f)", cut_front,
                  cut, front);
    pretrain_corpus_free(&c);
}
END_TEST

/* ---------------------------------------------------------------- refusals */

START_TEST(test_corpus_errors) {
    PretrainCorpus c;
    char err[TFM_ERR_LEN], path[64];
    ck_assert_int_eq(pretrain_corpus_load(&c, "/nonexistent/corpus.txt", &V, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "/nonexistent/corpus.txt: cannot open") != NULL, "%s", err);
    ck_assert_ptr_null(c.ids);

    const char *empties[3] = {"", "\n\n \t\n\r\n", "\x01\n\n\x02\x03\n"};
    for (int k = 0; k < 3; k++) {
        write_temp(path, sizeof path, empties[k], strlen(empties[k]));
        ck_assert_int_eq(pretrain_corpus_load(&c, path, &V, err, sizeof err), -1);
        unlink(path);
        ck_assert_msg(strstr(err, path) != NULL && strstr(err, ": no sentence") != NULL, "%s", err);
    }

    /* Line 3, byte 4 (from 0) is a lone continuation byte. */
    const char bad[] = "good line .\n\nbad \x80 line .\nmore .\n";
    write_temp(path, sizeof path, bad, sizeof bad - 1);
    ck_assert_int_eq(pretrain_corpus_load(&c, path, &V, err, sizeof err), -1);
    unlink(path);
    char want[128];
    snprintf(want, sizeof want, "%s: line 3: invalid UTF-8 at byte 4 of the line", path);
    ck_assert_msg(strcmp(err, want) == 0, "got \"%s\", want \"%s\"", err, want);
    ck_assert_ptr_null(c.sent_offset);

    PretrainInstances in;
    load_text(&c, SMALL);
    ck_assert_int_eq(pretrain_instances_build(&in, &c, 4, 0.1, 1, 1, &SP, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "T = 4") && strstr(err, "T >= 5"), "%s", err);
    ck_assert_int_eq(pretrain_instances_build(&in, &c, 64, 1.5, 1, 1, &SP, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "short_seq_prob = 1.5") != NULL, "%s", err);
    ck_assert_int_eq(pretrain_instances_build(&in, &c, 64, 0.1, 0, 1, &SP, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "dupe_factor = 0") != NULL, "%s", err);
    PretrainCorpus none = {0};
    ck_assert_int_eq(pretrain_instances_build(&in, &none, 64, 0.1, 1, 1, &SP, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "no document") != NULL, "%s", err);
    ck_assert_ptr_null(in.ids);
    pretrain_corpus_free(&c);
}
END_TEST

/* ---------------------------------------------------------------- batches */

START_TEST(test_batch_fill) {
    PretrainCorpus c;
    load_text(&c, SMALL);
    PretrainInstances in;
    char err[TFM_ERR_LEN];
    ck_assert(pretrain_instances_build(&in, &c, 24, 0.0, 3, 5, &SP, err, sizeof err) == 0);
    ck_assert_uint_ge(in.n, 4);
    enum { B = 5, T = 26 };
    int64_t ids[B * T], type[B * T], mask[B * T], label[B];
    /* Without order: rows are instances first, first + 1, ... modulo n (here wrapping round). */
    const size_t first = in.n - 2;
    ck_assert_msg(pretrain_batch_fill(ids, type, mask, label, &in, NULL, first, B, T, SP.pad, err, sizeof err) == 0,
                  "%s", err);
    for (size_t r = 0; r < B; r++) {
        const size_t k = (first + r) % in.n, len = inst_len(&in, k);
        ck_assert_int_eq(label[r], in.nsp_label[k]);
        for (size_t t = 0; t < T; t++) {
            const size_t at = r * T + t;
            if (t < len) {
                ck_assert_int_eq(ids[at], in.ids[in.offset[k] + t]);
                ck_assert_int_eq(type[at], in.type[in.offset[k] + t]);
                ck_assert_int_eq(mask[at], 1);
            } else {
                ck_assert_int_eq(ids[at], SP.pad);
                ck_assert_int_eq(type[at], 0);
                ck_assert_int_eq(mask[at], 0);
            }
        }
    }
    /* With an order: row r is instance order[first + r]. */
    size_t *order = tu_malloc(in.n * sizeof *order);
    for (size_t i = 0; i < in.n; i++) order[i] = in.n - 1 - i;
    ck_assert(pretrain_batch_fill(ids, type, mask, label, &in, order, 1, B, T, SP.pad, err, sizeof err) == 0);
    for (size_t r = 0; r < B; r++) {
        const size_t k = order[(1 + r) % in.n];
        ck_assert_int_eq(ids[r * T + inst_len(&in, k) - 1], SP.sep);
        ck_assert_int_eq(label[r], in.nsp_label[k]);
        ck_assert_int_eq(mask[r * T + inst_len(&in, k) - 1], 1);
        if (inst_len(&in, k) < T) ck_assert_int_eq(mask[r * T + inst_len(&in, k)], 0);
    }
    /* Refusals: an order entry past n, a T shorter than an instance, no batch. */
    order[2] = in.n;
    ck_assert_int_eq(pretrain_batch_fill(ids, type, mask, label, &in, order, 0, B, T, SP.pad, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "order[2]") != NULL, "%s", err);
    ck_assert_int_eq(pretrain_batch_fill(ids, type, mask, label, &in, NULL, 0, B, in.max_len - 1, SP.pad, err,
                                         sizeof err), -1);
    ck_assert_msg(strstr(err, "more than T") != NULL, "%s", err);
    ck_assert_int_eq(pretrain_batch_fill(ids, type, mask, label, &in, NULL, 0, 0, T, SP.pad, err, sizeof err), -1);
    free(order);
    pretrain_instances_free(&in);
    pretrain_corpus_free(&c);
}
END_TEST


/* ---------------------------------------------------------------- goldens */

START_TEST(test_naive_vs_goldens) { tu_check_all_cases("09", TFM_NAIVE); }
END_TEST

START_TEST(test_fast_vs_goldens) { tu_check_all_cases("09", TFM_FAST); }
END_TEST

/* ---------------------------------------------------------------- optim */

START_TEST(test_schedule)
{
    /* lr(s) = base s / warmup, then base (steps - s) / (steps - warmup), never below 0 */
    static const struct { int64_t s, warmup, steps; double want; } C[] = {
        {0, 5, 20, 0.0}, {1, 5, 20, 0.2}, {4, 5, 20, 0.8}, {5, 5, 20, 1.0}, {10, 5, 20, 10.0 / 15},
        {19, 5, 20, 1.0 / 15}, {20, 5, 20, 0.0}, {25, 5, 20, 0.0}, {0, 0, 10, 1.0},
        {3, 0, 10, 0.7}, {0, 1, 1, 0.0}, {1, 1, 1, 0.0},
    };
    for (size_t i = 0; i < sizeof C / sizeof C[0]; i++) {
        const double got = lr_linear_schedule(2e-3, C[i].s, C[i].warmup, C[i].steps);
        ck_assert_msg(fabs(got - 2e-3 * C[i].want) <= 1e-18, "lr(%lld; warmup %lld, steps %lld) = "
                      "%.17g, want %.17g", (long long)C[i].s, (long long)C[i].warmup,
                      (long long)C[i].steps, got, 2e-3 * C[i].want);
    }
}
END_TEST

/* AdamW's closed form in double: what each float step rounds. */
static void adamw_double(double *p, double *m, double *v, const float *g, double lr, double wd,
                         int64_t t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] *= 1.0 - lr * wd;
        m[i] = 0.9 * m[i] + 0.1 * g[i];
        v[i] = 0.999 * v[i] + 0.001 * (double)g[i] * g[i];
        const double mh = m[i] / (1.0 - pow(0.9, (double)t));
        const double vh = v[i] / (1.0 - pow(0.999, (double)t));
        p[i] -= lr * mh / (sqrt(vh) + 1e-8);
    }
}

START_TEST(test_adamw)
{
    const size_t n = 100003;      /* past the fast loop's threading threshold, odd */
    TuRng r = {0x0901};
    float *p[2], *m[2], *v[2], *g = tu_malloc(n * sizeof *g);
    double *pd = tu_malloc(n * sizeof *pd), *md = tu_malloc(n * sizeof *md);
    double *vd = tu_malloc(n * sizeof *vd);
    for (int k = 0; k < 2; k++) {
        p[k] = tu_malloc(n * sizeof(float)), m[k] = tu_malloc(n * sizeof(float));
        v[k] = tu_malloc(n * sizeof(float));
    }
    tu_fill_normal(p[0], n, &r);
    for (size_t i = 0; i < n; i++) {
        p[1][i] = p[0][i], pd[i] = p[0][i];
        m[0][i] = m[1][i] = v[0][i] = v[1][i] = 0.0f;
        md[i] = vd[i] = 0.0;
    }
    const AdamWConfig cfg = {0.9, 0.999, 1e-8, 0.01};
    double worst = 0.0, worst_fast = 0.0;
    for (int64_t t = 1; t <= 10; t++) {
        tu_fill_normal(g, n, &r);
        const float scale = t == 3 ? 1e-6f : 0.5f;          /* a step of tiny gradients */
        for (size_t i = 0; i < n; i++)
            g[i] *= scale;
        g[0] = 0.0f;                                       /* and an element with none */
        adamw_step_naive(p[0], m[0], v[0], g, 1e-3, 0.01, t, &cfg, n);
        adamw_step_fast(p[1], m[1], v[1], g, 1e-3, 0.01, t, &cfg, n);
        adamw_double(pd, md, vd, g, 1e-3, 0.01, t, n);
        for (size_t i = 0; i < n; i++) {
            worst = fmax(worst, fabs((double)p[0][i] - pd[i]) / (1e-3 + fabs(pd[i])));
            worst_fast = fmax(worst_fast, fabs((double)p[1][i] - p[0][i]) / (1e-3 + fabs(pd[i])));
        }
    }
    /* ten float32 updates of size ~lr: a few float ulps of |p| ~ 1 */
    ck_assert_msg(worst < 2e-6, "naive AdamW is %.3g (relative) from the closed form", worst);
    ck_assert_msg(worst_fast < 2e-6, "fast AdamW is %.3g (relative) from naive", worst_fast);
    for (int k = 0; k < 2; k++)
        free(p[k]), free(m[k]), free(v[k]);
    free(g), free(pd), free(md), free(vd);
}
END_TEST

START_TEST(test_clip)
{
    const size_t n = 70001;
    TuRng r = {0x0902};
    float *g = tu_malloc(n * sizeof *g), *h = tu_malloc(n * sizeof *h);
    tu_fill_normal(g, n, &r);
    for (size_t i = 0; i < n; i++)
        g[i] *= 0.1f;
    double sq = 0.0;
    for (size_t i = 0; i < n; i++)
        sq += (double)g[i] * g[i];
    const double naive = grad_sq_sum_naive(g, n), fast = grad_sq_sum_fast(g, n);
    ck_assert_msg(fabs(naive - sq) <= 1e-12 * sq && fabs(fast - sq) <= 1e-12 * sq,
                  "sum of squares %.17g naive %.17g fast %.17g", sq, naive, fast);
    /* norm 26.5 > 1: scaled to norm 1 (to the 1e-6 of torch's denominator) */
    const float c = clip_coefficient(sqrt(sq), 1.0);
    memcpy(h, g, n * sizeof *h);
    grad_scale_fast(h, c, n);
    const double after = sqrt(grad_sq_sum_naive(h, n));
    ck_assert_msg(fabs(after - 1.0) < 1e-5, "norm after clipping %.9g, want 1", after);
    ck_assert_msg(clip_coefficient(0.5, 1.0) == 1.0f, "a norm below max_norm is not scaled");
    ck_assert_msg(clip_coefficient(0.0, 1.0) == 1.0f, "a zero gradient is not scaled");
    free(g), free(h);
}
END_TEST

static const BertConfig MICRO = {1024, 64, 2, 2, 256, 64, 2, 1e-12f, TFM_ACT_GELU, 0};

START_TEST(test_layout)
{
    BertPretrainLayout lay;
    char err[256];
    ck_assert_int_eq(bert_pretrain_layout(&lay, &MICRO, err, sizeof err), 0);
    size_t at = 0;
    for (size_t k = 0; k < lay.n_tensors; k++) {
        const BertPretrainTensor *t = &lay.tensors[k];
        const size_t len = strlen(t->name);
        const int exempt = (len > 4 && strcmp(t->name + len - 4, "bias") == 0) ||
                           strstr(t->name, "LayerNorm.weight") != NULL;
        ck_assert_msg(t->decay == !exempt, "%s: decay %d (Hugging Face's Trainer: %d)", t->name,
                      t->decay, !exempt);
        ck_assert_msg(t->offset == at, "%s at %zu, want %zu: the block is dense", t->name,
                      t->offset, at);
        ck_assert_msg(strcmp(t->name, "cls.predictions.decoder.weight") != 0, "tied: no entry");
        at += t->shape[0] * t->shape[1];
    }
    ck_assert_uint_eq(at, lay.n_params);
    ck_assert_uint_eq(lay.n_tensors, 5 + 16 * 2 + 2 + 7);
    /* query, key, value weights back to back: the packed [3E, E] in-projection */
    const BertPretrainTensor *q = bert_pretrain_find(&lay, "bert.encoder.layer.1.attention.self.query.weight");
    const BertPretrainTensor *kk = bert_pretrain_find(&lay, "bert.encoder.layer.1.attention.self.key.weight");
    const BertPretrainTensor *vv = bert_pretrain_find(&lay, "bert.encoder.layer.1.attention.self.value.weight");
    ck_assert(q && kk && vv);
    ck_assert_uint_eq(kk->offset, q->offset + 64 * 64);
    ck_assert_uint_eq(vv->offset, kk->offset + 64 * 64);
    float *block = tu_malloc(lay.n_params * sizeof(float));
    EncoderLayerParams layers[2];
    BertPretrainViews w;
    bert_pretrain_views(&w, layers, block, &lay);
    ck_assert_ptr_eq(layers[1].self_attn.in_proj_weight, block + q->offset);
    ck_assert_ptr_eq(w.mlm.decoder_w, w.bert.word_embeddings);   /* the tie */
    ck_assert_ptr_eq(w.nsp.pooler_w, w.bert.pooler_w);
    free(block);
    bert_pretrain_layout_free(&lay);
}
END_TEST

START_TEST(test_init)
{
    BertPretrainLayout lay;
    char err[256];
    ck_assert_int_eq(bert_pretrain_layout(&lay, &MICRO, err, sizeof err), 0);
    float *p = tu_malloc(lay.n_params * sizeof(float));
    bert_pretrain_init(p, &lay, 0.02, 7);
    double sum = 0.0, sq = 0.0;
    size_t n = 0;
    for (size_t k = 0; k < lay.n_tensors; k++) {
        const BertPretrainTensor *t = &lay.tensors[k];
        const float *x = p + t->offset;
        const size_t m = t->shape[0] * t->shape[1];
        const int ln_w = strstr(t->name, "LayerNorm.weight") != NULL;
        for (size_t i = 0; i < m; i++) {
            if (t->decay) {
                if (k == 0 && i < 64)
                    ck_assert_msg(x[i] == 0.0f, "the [PAD] row (padding_idx) must be 0");
                else
                    sum += x[i], sq += (double)x[i] * x[i], n++;
            } else {
                ck_assert_msg(x[i] == (ln_w ? 1.0f : 0.0f), "%s[%zu] = %g", t->name, i,
                              (double)x[i]);
            }
        }
    }
    /* N(0, 0.02^2) over n ~ 170k draws: the mean within 5 sigma/sqrt(n), the std within 1% */
    const double mean = sum / (double)n, sd = sqrt(sq / (double)n - mean * mean);
    ck_assert_msg(fabs(mean) < 5 * 0.02 / sqrt((double)n), "mean %.3g", mean);
    ck_assert_msg(fabs(sd - 0.02) < 2e-4, "std %.6f, want 0.02", sd);
    free(p);
    bert_pretrain_layout_free(&lay);
}
END_TEST

/* ---------------------------------------------------------------- cli */

/* build/bin/tfm beside this suite's build/tests/. */
static void tfm_path(char *buf, size_t len)
{
    char exe[3072];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ck_assert(n > 0);
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    ck_assert(slash);
    *slash = '\0';
    slash = strrchr(exe, '/');
    ck_assert(slash);
    *slash = '\0';
    snprintf(buf, len, "%s/bin/tfm", exe);
    ck_assert_msg(access(buf, X_OK) == 0, "%s is missing: build it (make)", buf);
}

/* Runs tfm with argv (NULL-terminated, argv[0] ignored), stderr into errfile; returns the exit
 * status, or -signal. With kill_when, SIGKILLs the child once that path exists. */
static int run_tfm(char *const argv[], const char *errfile, const char *kill_when)
{
    char tfm[4096];
    tfm_path(tfm, sizeof tfm);
    const pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        FILE *e = freopen(errfile, "w", stderr);
        FILE *o = freopen("/dev/null", "w", stdout);
        (void)e, (void)o;
        execv(tfm, argv);
        _exit(127);
    }
    int st;
    if (kill_when) {
        struct stat sb;
        while (waitpid(pid, &st, WNOHANG) == 0) {
            if (stat(kill_when, &sb) == 0) {
                kill(pid, SIGKILL);
                break;
            }
            nanosleep(&(struct timespec){0, 2000000}, NULL);
        }
    }
    ck_assert(waitpid(pid, &st, 0) == pid || kill_when);
    return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? -WTERMSIG(st) : -1000;
}

/* A whole text file (golden_read_text), or the test fails naming it. */
static char *slurp(const char *path)
{
    char *text = NULL, err[TFM_ERR_LEN];
    ck_assert_msg(golden_read_text(path, &text, err, sizeof err) == 0, "%s", err);
    return text;
}

/* The JSON log without its tokens_per_s (a timing), one line per step. */
static void strip_timing(char *log)
{
    for (char *p = strstr(log, ", \"tokens_per_s\""); p; p = strstr(p, ", \"tokens_per_s\"")) {
        char *end = strchr(p, '}');
        memmove(p, end, strlen(end) + 1);
    }
}

/* A whole file's bytes, its size in *n, or the test fails naming it. */
static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f, "%s: cannot open", path);
    ck_assert(fseek(f, 0, SEEK_END) == 0);
    const long len = ftell(f);
    ck_assert(len >= 0 && fseek(f, 0, SEEK_SET) == 0);
    unsigned char *b = malloc((size_t)len + 1);
    ck_assert(b && fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* Overwrites the first element of the float32 tensor `name` in a safetensors file with a NaN,
 * through the golden reader and writer (names, order and metadata kept). */
static void poison_tensor(const char *path, const char *name)
{
    GoldenFile gf;
    char err[TFM_ERR_LEN];
    ck_assert_msg(golden_load(&gf, path, err, sizeof err) == 0, "%s", err);
    const Tensor *t = golden_require(&gf, name, TFM_F32, -1, err, sizeof err);
    ck_assert_msg(t && t->numel > 0, "%s", err);
    tensor_f32(t)[0] = NAN;
    ck_assert_msg(golden_save(path, gf.n, (const char *const *)gf.names, gf.tensors, gf.n_meta,
                              (const char *const *)gf.meta_keys,
                              (const char *const *)gf.meta_values, err, sizeof err) == 0,
                  "%s", err);
    golden_free(&gf);
}

static char DIR_[64];

static void cli_setup(void)
{
    snprintf(DIR_, sizeof DIR_, "/tmp/tfm-pretrain-XXXXXX");
    ck_assert(mkdtemp(DIR_) != NULL);
}

static void cli_teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", DIR_);
    ck_assert(system(cmd) == 0);
}

#define P(...) snprintf(__VA_ARGS__)

START_TEST(test_kill_and_resume)
{
    char a[128], b[128], la[128], lb[128], lc[128], ea[128], ck8[256], ck4[256], ck8t[256];
    P(a, sizeof a, "%s/a", DIR_), P(b, sizeof b, "%s/b", DIR_);
    P(la, sizeof la, "%s/a.jsonl", DIR_), P(lb, sizeof lb, "%s/b.jsonl", DIR_);
    P(lc, sizeof lc, "%s/c.jsonl", DIR_), P(ea, sizeof ea, "%s/err.txt", DIR_);
    P(ck4, sizeof ck4, "%s/checkpoint-4", b), P(ck8, sizeof ck8, "%s/checkpoint-8", b);
    P(ck8t, sizeof ck8t, "%s/checkpoint-8/trainer_state.safetensors", b);
    /* the uninterrupted run */
    char *const run_a[] = {"tfm", "pretrain", "--config", "micro", "--steps", "40",
                           "--batch-size", "4", "--seq-len", "32", "--threads", "2", "--lr",
                           "1e-3", "--out", a, "--log", la, NULL};
    ck_assert_int_eq(run_tfm(run_a, ea, NULL), 0);
    /* the same run, killed once checkpoint-8 is whole (renamed into place) */
    char *const run_b[] = {"tfm", "pretrain", "--config", "micro", "--steps", "40",
                           "--batch-size", "4", "--seq-len", "32", "--threads", "2", "--lr",
                           "1e-3", "--save-every", "4", "--out", b, "--log", lb, NULL};
    const int killed = run_tfm(run_b, ea, ck8t);
    ck_assert_msg(killed == -SIGKILL, "the run ended (%d) before it could be killed", killed);
    /* a kill between two checkpoints leaves each earlier one whole, none half-written */
    struct stat sb;
    ck_assert_msg(stat(ck4, &sb) == 0, "checkpoint-4 missing after the kill");
    const char *from = stat(ck8t, &sb) == 0 ? ck8 : ck4;
    char *const run_c[] = {"tfm", "pretrain", "--steps", "40", "--threads", "2", "--resume",
                           (char *)from, "--log", lc, NULL};
    ck_assert_int_eq(run_tfm(run_c, ea, NULL), 0);
    /* the resumed steps' losses are the uninterrupted run's, bit for bit (%.9g of floats) */
    char *ta = slurp(la), *tc = slurp(lc);
    strip_timing(ta), strip_timing(tc);
    const char *tail = ta;
    const int first = from == ck8 ? 9 : 5;
    for (int k = 1; k < first; k++)
        tail = strchr(tail, '\n') + 1;
    ck_assert_msg(strcmp(tail, tc) == 0, "resumed from %s:\n%s\nwant:\n%s", from, tc, tail);
    /* and the final weights too */
    char ma[300], mb[300];
    P(ma, sizeof ma, "%s/model.safetensors", a), P(mb, sizeof mb, "%s/model.safetensors", b);
    char cmd[700];
    P(cmd, sizeof cmd, "cmp -s '%s' '%s'", ma, mb);
    ck_assert_msg(system(cmd) == 0, "the resumed run's model differs from the uninterrupted one");
    free(ta), free(tc);
}
END_TEST

START_TEST(test_bad_checkpoint)
{
    char out[128], ck[160], err[128], state[256];
    P(out, sizeof out, "%s/r", DIR_), P(ck, sizeof ck, "%s/r/checkpoint-2", DIR_);
    P(err, sizeof err, "%s/err.txt", DIR_), P(state, sizeof state, "%s/trainer_state.safetensors", ck);
    char *const run[] = {"tfm", "pretrain", "--config", "micro", "--steps", "3", "--batch-size",
                         "2", "--seq-len", "16", "--save-every", "2", "--out", out, NULL};
    ck_assert_int_eq(run_tfm(run, err, NULL), 0);
    /* another batch size than the checkpoint's: refused, naming the setting */
    char *const other[] = {"tfm", "pretrain", "--steps", "4", "--batch-size", "3", "--resume", ck,
                           NULL};
    ck_assert_int_eq(run_tfm(other, err, NULL), 1);
    char *msg = slurp(err);
    ck_assert_msg(strstr(msg, "batch_size = 2") && strstr(msg, "this run has 3"), "%s", msg);
    free(msg);
    /* nothing left to do */
    char *const done[] = {"tfm", "pretrain", "--steps", "2", "--resume", ck, NULL};
    ck_assert_int_eq(run_tfm(done, err, NULL), 1);
    msg = slurp(err);
    ck_assert_msg(strstr(msg, "leaves nothing to do"), "%s", msg);
    free(msg);
    /* a truncated optimizer state: an error naming the file, not a crash */
    ck_assert_int_eq(truncate(state, 1000), 0);
    char *const trunc[] = {"tfm", "pretrain", "--steps", "4", "--resume", ck, NULL};
    ck_assert_int_eq(run_tfm(trunc, err, NULL), 1);
    msg = slurp(err);
    ck_assert_msg(strstr(msg, "trainer_state.safetensors"), "%s", msg);
    free(msg);
    /* a model directory without the heads: refused by name */
    char model[256];
    P(model, sizeof model, "%s/model.safetensors", ck);
    ck_assert_int_eq(truncate(model, 100), 0);
    char *const bad[] = {"tfm", "evaluate", "--model", ck, NULL};
    ck_assert_int_eq(run_tfm(bad, err, NULL), 1);
    msg = slurp(err);
    ck_assert_msg(strstr(msg, "model.safetensors"), "%s", msg);
    free(msg);
}
END_TEST

/* A NaN loss stops the run, naming the step, and keeps the last good checkpoint: the checkpoint a
 * run resumes from gets a NaN in the MLM decoder's bias (every logit row reads it), so the first
 * step after it has a NaN loss. Nothing is written for that step: no checkpoint, no final model,
 * no log line, and the checkpoint resumed from is left byte for byte as it was. */
START_TEST(test_nan_stops)
{
    char out[128], ck[160], err[128], model[256], out2[128], log[160], final2[192], ck3[192];
    P(out, sizeof out, "%s/n", DIR_), P(ck, sizeof ck, "%s/n/checkpoint-2", DIR_);
    P(err, sizeof err, "%s/err.txt", DIR_), P(model, sizeof model, "%s/model.safetensors", ck);
    P(out2, sizeof out2, "%s/n2", DIR_), P(log, sizeof log, "%s/n2.jsonl", DIR_);
    P(final2, sizeof final2, "%s/model.safetensors", out2);
    P(ck3, sizeof ck3, "%s/checkpoint-3", out2);
    char *const run[] = {"tfm", "pretrain", "--config", "micro", "--steps", "3", "--batch-size",
                         "2", "--seq-len", "16", "--save-every", "2", "--out", out, NULL};
    ck_assert_int_eq(run_tfm(run, err, NULL), 0);
    poison_tensor(model, "cls.predictions.bias");
    size_t n_before, n_after;
    unsigned char *const before = read_bytes(model, &n_before);
    char *const resume[] = {"tfm", "pretrain", "--steps", "5", "--save-every", "1", "--resume", ck,
                            "--out", out2, "--log", log, NULL};
    ck_assert_int_eq(run_tfm(resume, err, NULL), 1);
    char *msg = slurp(err);
    ck_assert_msg(strstr(msg, "step 3: the loss is") && strstr(msg, "nan") &&
                  strstr(msg, "last checkpoint is kept"), "%s", msg);
    free(msg);
    struct stat sb;
    ck_assert_msg(stat(ck3, &sb) != 0, "a checkpoint was written for the NaN step");
    ck_assert_msg(stat(final2, &sb) != 0, "a final model was written after the NaN step");
    msg = slurp(log);
    ck_assert_msg(strstr(msg, "\"step\": 3") == NULL, "the NaN step was logged: %s", msg);
    free(msg);
    unsigned char *const after = read_bytes(model, &n_after);
    ck_assert_msg(n_before == n_after && memcmp(before, after, n_after) == 0,
                  "the checkpoint resumed from changed");
    free(before), free(after);
}
END_TEST

START_TEST(test_evaluate_and_fill_mask)
{
    char out[128], err[128], res[128];
    P(out, sizeof out, "%s/m", DIR_), P(err, sizeof err, "%s/err.txt", DIR_);
    P(res, sizeof res, "%s/out.txt", DIR_);
    char *const run[] = {"tfm", "pretrain", "--config", "micro", "--steps", "3", "--batch-size",
                         "2", "--seq-len", "32", "--out", out, NULL};
    ck_assert_int_eq(run_tfm(run, err, NULL), 0);
    char tfm[4096], cmd[8400];
    tfm_path(tfm, sizeof tfm);
    P(cmd, sizeof cmd, "'%s' fill-mask --model '%s' --top-k 4 --format json "
      "'It is a truth universally [MASK].' > '%s'", tfm, out, res);
    ck_assert_int_eq(system(cmd), 0);
    char *j = slurp(res);
    /* four scores, each in (0, 1), in decreasing order, summing to at most 1 */
    double sc[4], sum = 0.0;
    const char *p = j;
    for (int k = 0; k < 4; k++) {
        p = strstr(p, "\"score\": ");
        ck_assert_msg(p != NULL, "score %d missing: %s", k, j);
        p += 9;
        sc[k] = strtod(p, NULL);
        ck_assert(sc[k] > 0.0 && sc[k] < 1.0);
        ck_assert(k == 0 || sc[k] <= sc[k - 1]);
        sum += sc[k];
    }
    ck_assert(sum <= 1.0 + 1e-6);
    ck_assert_msg(strstr(p, "\"score\"") == NULL, "more than --top-k 4 tokens: %s", j);
    free(j);
    P(cmd, sizeof cmd, "'%s' fill-mask --model '%s' 'no mask here' 2> '%s'", tfm, out, err);
    ck_assert_int_ne(system(cmd), 0);
    j = slurp(err);
    ck_assert_msg(strstr(j, "no [MASK]"), "%s", j);
    free(j);
    P(cmd, sizeof cmd, "'%s' evaluate --model '%s' --seq-len 32 --batch-size 8 --max-batches 3 "
      "--format json > '%s'", tfm, out, res);
    ck_assert_int_eq(system(cmd), 0);
    j = slurp(res);
    static const char *const KEYS[] = {"\"mlm_accuracy\": ", "\"nsp_accuracy\": ",
                                       "\"most_frequent_accuracy\": "};
    for (int k = 0; k < 3; k++) {
        const char *q = strstr(j, KEYS[k]);
        ck_assert_msg(q != NULL, "%s missing: %s", KEYS[k], j);
        const double x = strtod(q + strlen(KEYS[k]), NULL);
        ck_assert_msg(x >= 0.0 && x <= 1.0, "%s%g", KEYS[k], x);
    }
    const char *q = strstr(j, "\"mlm_perplexity\": ");
    ck_assert(q && strtod(q + 18, NULL) > 1.0);
    free(j);
}
END_TEST

/* ---------------------------------------------------------------- the suite */

static Suite *pretraining_suite(void) {
    Suite *s = suite_create("09-pretraining");
    /* The whole corpus (Austen's six novels, two sequence lengths): tagged "corpus" so that
     * make valgrind, where it would take minutes, leaves it out (CK_EXCLUDE_TAGS, mk/hardening.mk);
     * every other run, ASan's included, has it. Its code paths are the small corpora's below. */
    TCase *austen = tcase_create("austen");
    tcase_set_tags(austen, "corpus");
    tcase_add_checked_fixture(austen, data_setup, data_teardown);
    tcase_set_timeout(austen, 300);
    tcase_add_test(austen, test_austen_corpus);
    tcase_add_loop_test(austen, test_austen_instances, 0, 2);
    tcase_add_loop_test(austen, test_austen_isnext_is_continuation, 0, 2);
    tcase_add_test(austen, test_austen_seeds);
    suite_add_tcase(s, austen);

    TCase *data = tcase_create("data");
    tcase_add_checked_fixture(data, data_setup, data_teardown);
    tcase_add_test(data, test_small_corpus_reader);
    tcase_add_test(data, test_small_corpus_instances);
    tcase_add_test(data, test_tiling);
    tcase_add_test(data, test_truncation_both_ends);
    tcase_add_test(data, test_one_document);
    tcase_add_test(data, test_corpus_errors);
    tcase_add_test(data, test_batch_fill);
    suite_add_tcase(s, data);

    TCase *goldens = tcase_create("goldens");
    tcase_set_tags(goldens, "goldens");    /* make valgrind leaves these to `tfm check` */
    tcase_set_timeout(goldens, 600);
    tcase_add_test(goldens, test_naive_vs_goldens);
    tcase_add_test(goldens, test_fast_vs_goldens);
    suite_add_tcase(s, goldens);

    TCase *optim = tcase_create("optim");
    tcase_add_test(optim, test_schedule);
    tcase_add_test(optim, test_adamw);
    tcase_add_test(optim, test_clip);
    tcase_add_test(optim, test_layout);
    tcase_add_test(optim, test_init);
    suite_add_tcase(s, optim);

    TCase *cli = tcase_create("cli");
    tcase_add_checked_fixture(cli, cli_setup, cli_teardown);
    tcase_set_timeout(cli, 300);
    tcase_add_test(cli, test_kill_and_resume);
    tcase_add_test(cli, test_bad_checkpoint);
    tcase_add_test(cli, test_nan_stops);
    tcase_add_test(cli, test_evaluate_and_fill_mask);
    suite_add_tcase(s, cli);
    return s;
}

int main(void) { return tu_run(pretraining_suite()); }
