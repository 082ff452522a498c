/* ch08_tokenizer.c — chapter 08's benchmark: the tokenizer on Austen's six novels.
 *
 * Not a row of the case table: its work is bytes of text, not floating-point operations, and its
 * peer is tokenizers.js, timed by bench/tokenizers_js_bench.mjs in its own process and read back
 * (--peer). Timed here with the same method (bench_time): tok_encode_batch over every line of the
 * corpus with add_special_tokens, naive on one thread, fast on each thread count; fast's ids are
 * checked against naive's first (integers: they must be equal). Rates are MB of UTF-8 text per
 * second; the copy ceiling of the same run says how far from memory speed that is.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "tokenizer.h"

static const char *const BOOKS[] = {"sensesensibility", "prideprejudice", "mansfieldpark",
                                    "emma", "northangerabbey", "persuasion"};

typedef struct {
    const Vocab *v;
    TokenizeFn fn;
    const char **line;     /* [n] */
    size_t *len;           /* [n] */
    size_t n;
    TokBatch *enc;         /* the last run's output */
    size_t ids;            /* ids in the last run */
} TokBench;

static void run(void *state) {
    TokBench *b = state;
    TokOptions o = tok_default_options();
    char err[TFM_TOK_ERR];
    size_t bad;
    if (tok_encode_batch(b->enc, b->line, b->len, NULL, NULL, b->n, b->v, b->fn, &o, &bad, err,
                         sizeof err) != 0) {
        fprintf(stderr, "tfm bench: tokenizer: %s\n", err);
        exit(1);
    }
    b->ids = b->enc->offset[b->n];
}

/* The machine's line for the thread scaling: every thread tokenizes the whole corpus at once, each
 * on its own (no batch, nothing shared but the read-only vocabulary and text). threads x (one
 * thread's time) / (this time) is how much faster than one thread the threads can go together. */
typedef struct { const TokBench *b; TokIds ids[8]; TokScratch s[8]; } TokCopies;

static void run_copies(void *state) {
    TokCopies *c = state;
    #pragma omp parallel
    {
        const int t = omp_get_thread_num();
        if (t < 8) {            /* the thread's own copies of its buffers: no shared cache line */
            TokIds ids = c->ids[t];
            TokScratch s = c->s[t];
            ids.len = 0;
            for (size_t i = 0; i < c->b->n; i++) {
                TokError e;
                if (tokenize_fast(&ids, c->b->v, c->b->line[i], c->b->len[i], &s, &e) != 0) abort();
            }
            c->ids[t] = ids;
            c->s[t] = s;
        }
    }
}

static int read_peer(BenchTokenizer *t, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: %s", path, strerror(errno)); return -1; }
    char buf[4096];
    const size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *j = cJSON_Parse(buf);
    const cJSON *m = cJSON_GetObjectItem(j, "median_ms"), *lo = cJSON_GetObjectItem(j, "min_ms"),
                *hi = cJSON_GetObjectItem(j, "max_ms"), *s = cJSON_GetObjectItem(j, "samples"),
                *p = cJSON_GetObjectItem(j, "peer"), *ids = cJSON_GetObjectItem(j, "ids"),
                *bytes = cJSON_GetObjectItem(j, "bytes");
    if (!cJSON_IsNumber(m) || !cJSON_IsNumber(lo) || !cJSON_IsNumber(hi) || !cJSON_IsNumber(s) ||
        !cJSON_IsString(p) || !cJSON_IsNumber(ids) || !cJSON_IsNumber(bytes)) {
        cJSON_Delete(j);
        snprintf(err, errlen, "%s: not a tokenizers_js_bench.mjs result", path);
        return -1;
    }
    if ((size_t)bytes->valuedouble != t->bytes || (size_t)ids->valuedouble != t->ids) {
        snprintf(err, errlen, "%s: timed %.0f bytes giving %.0f ids; tfm's corpus is %zu bytes, "
                 "%zu ids: not the same text", path, bytes->valuedouble, ids->valuedouble,
                 t->bytes, t->ids);
        cJSON_Delete(j);
        return -1;
    }
    t->peer.median_ms = m->valuedouble;
    t->peer.min_ms = lo->valuedouble;
    t->peer.max_ms = hi->valuedouble;
    t->peer.samples = t->peer.kept = (size_t)s->valuedouble;
    snprintf(t->peer_name, sizeof t->peer_name, "%s", p->valuestring);
    t->have_peer = 1;
    cJSON_Delete(j);
    return 0;
}

int bench_tokenizer(BenchReport *r, const char *peer_path, char *err, size_t errlen) {
    BenchTokenizer *t = &r->tok;
    memset(t, 0, sizeof *t);
    char path[4096];
    tok_data_path(path, sizeof path, TOK_DEFAULT_VOCAB);
    Vocab v;
    if (vocab_load(&v, path, err, errlen) != 0) return -1;
    /* the corpus, one buffer, lines split at '\n' file by file */
    char *text = NULL;
    size_t used = 0, cap = 0, n = 0, ncap = 0;
    size_t *start = NULL, *len = NULL;
    for (size_t b = 0; b < sizeof BOOKS / sizeof BOOKS[0]; b++) {
        char rel[64];
        snprintf(rel, sizeof rel, "austen/%s.txt", BOOKS[b]);
        tok_data_path(path, sizeof path, rel);
        FILE *f = fopen(path, "rb");
        if (!f) { snprintf(err, errlen, "%s: %s (make deps installs it)", path, strerror(errno)); goto fail; }
        const size_t from = used;
        for (;;) {
            if (used == cap) {
                cap = cap ? 2 * cap : 1 << 22;
                char *bigger = realloc(text, cap);
                if (!bigger) { fclose(f); snprintf(err, errlen, "out of memory"); goto fail; }
                text = bigger;
            }
            const size_t got = fread(text + used, 1, cap - used, f);
            used += got;
            if (got == 0) break;
        }
        fclose(f);
        for (size_t i = from, s = from; i <= used; i++) {
            if (i < used ? text[i] != '\n' : s >= used) continue;
            if (n == ncap) {
                ncap = ncap ? 2 * ncap : 1 << 16;
                size_t *s2 = realloc(start, ncap * sizeof *start);
                if (s2) start = s2;
                size_t *l2 = s2 ? realloc(len, ncap * sizeof *len) : NULL;
                if (l2) len = l2;
                if (!s2 || !l2) { snprintf(err, errlen, "out of memory"); goto fail; }
            }
            start[n] = s;
            len[n++] = i - s;
            s = i + 1;
        }
    }
    const char **line = malloc(n * sizeof *line);
    TokBatch enc = {0}, naive_enc = {0};
    if (!line) { snprintf(err, errlen, "out of memory"); goto fail; }
    for (size_t i = 0; i < n; i++) line[i] = text + start[i];
    t->bytes = used;
    t->lines = n;

    const BenchPlan plan = r->quick ? (BenchPlan){1, 3, 200, 0.1, 0.0}
                                    : (BenchPlan){3, 10, 2000, 1.0, 0.0};
    const BenchPlan naive_plan = r->quick ? (BenchPlan){0, 1, 1, 0.0, 0.0}
                                          : (BenchPlan){0, 3, 50, 1.0, 0.0};
    TokBench b = {&v, tokenize_naive, line, len, n, &naive_enc, 0};
    fprintf(stderr, "bench: tokenizer, naive\n");
    omp_set_num_threads(1);
    bench_time(&t->naive, run, &b, 1, &naive_plan);
    t->ids = b.ids;
    b.fn = tokenize_fast;
    b.enc = &enc;
    t->status = BENCH_ROW_OK;
    for (size_t k = 0; k < r->nthreads; k++) {
        omp_set_num_threads(r->threads[k]);
        fprintf(stderr, "bench: tokenizer, fast, %d thread%s\n", r->threads[k], r->threads[k] > 1 ? "s" : "");
        run(&b);
        for (size_t i = 0; i < n && t->status == BENCH_ROW_OK; i++)
            if (tok_batch_len(&enc, i) != tok_batch_len(&naive_enc, i) ||
                memcmp(enc.input_ids + enc.offset[i], naive_enc.input_ids + naive_enc.offset[i],
                       tok_batch_len(&enc, i) * sizeof(int64_t)) != 0) {
                t->status = BENCH_ROW_FAIL;
                snprintf(t->note, sizeof t->note, "fast differs from naive at line %zu", i + 1);
            }
        if (t->status != BENCH_ROW_OK) break;
        bench_time(&t->fast[k], run, &b, r->threads[k], &plan);
        if (r->threads[k] > 1 && r->threads[k] <= 8) {
            TokCopies c;
            memset(&c, 0, sizeof c);
            c.b = &b;
            bench_time(&t->copies[k], run_copies, &c, r->threads[k], &plan);
            for (int q = 0; q < 8; q++) { tok_ids_free(&c.ids[q]); tok_scratch_free(&c.s[q]); }
        }
    }
    tok_batch_free(&enc);
    tok_batch_free(&naive_enc);
    free(line);
    free(text); free(start); free(len);
    vocab_free(&v);
    t->have = 1;
    if (peer_path && read_peer(t, peer_path, err, errlen) != 0) return -1;
    return t->status == BENCH_ROW_OK ? 0 : (snprintf(err, errlen, "tokenizer: %s", t->note), -1);
fail:
    free(text); free(start); free(len);
    vocab_free(&v);
    return -1;
}

static double mbps(const BenchTokenizer *t, const BenchTiming *x) {
    return x->median_ms > 0 ? (double)t->bytes / 1e6 / (x->median_ms / 1e3) : 0.0;
}

void bench_tokenizer_print(FILE *f, const BenchReport *r) {
    const BenchTokenizer *t = &r->tok;
    if (!t->have) return;
    fprintf(f, "\nchapter 08: the tokenizer on Austen's six novels (%.2f MB, %zu lines, %zu ids; "
               "tok_encode_batch, add_special_tokens)\n", (double)t->bytes / 1e6, t->lines, t->ids);
    fprintf(f, "  %-14s %7s %10s %21s %9s %9s %13s %11s %8s\n", "variant", "threads", "median ms",
            "[min, max]", "MB/s", "vs naive", "vs peer 1 th", "vs 1 thread", "of copy");
    const BenchTiming *rows[1 + 8];
    const char *names[1 + 8];
    int th[1 + 8];
    size_t nr = 0;
    rows[nr] = &t->naive; names[nr] = "naive"; th[nr++] = 1;
    for (size_t k = 0; k < r->nthreads && t->status == BENCH_ROW_OK; k++) {
        rows[nr] = &t->fast[k]; names[nr] = "fast"; th[nr++] = r->threads[k];
    }
    if (t->have_peer) { rows[nr] = &t->peer; names[nr] = "tokenizers.js"; th[nr++] = 1; }
    for (size_t i = 0; i < nr; i++) {
        const BenchTiming *x = rows[i];
        char range[48], vn[16] = "", vp[16] = "", v1[16] = "", cp[16] = "";
        snprintf(range, sizeof range, "[%.1f, %.1f]", x->min_ms, x->max_ms);
        if (i > 0 && strcmp(names[i], "fast") == 0) {
            snprintf(vn, sizeof vn, "%.1fx", t->naive.median_ms / x->median_ms);
            if (t->have_peer) snprintf(vp, sizeof vp, "%.1fx", t->peer.median_ms / x->median_ms);
            snprintf(v1, sizeof v1, "%.2fx", t->fast[0].median_ms / x->median_ms);
        }
        for (size_t k = 0; k < r->nthreads; k++)
            if (r->have_ceilings && r->threads[k] == th[i])
                snprintf(cp, sizeof cp, "%.2f%%", 100.0 * mbps(t, x) / 1e3 / r->copy[k].best);
        fprintf(f, "  %-14s %7d %10.1f %21s %9.1f %9s %13s %11s %8s\n", names[i], th[i],
                x->median_ms, range, mbps(t, x), vn, vp, v1, cp);
    }
    if (t->status != BENCH_ROW_OK) fprintf(f, "  FAIL: %s\n", t->note);
    if (t->have_peer) fprintf(f, "  peer: %s\n", t->peer_name);
    fprintf(f, "  Hugging Face's Rust tokenizers advertise about 50 MB/s (\"a GB in 20 s\"; not measured here)\n");
    if (t->status == BENCH_ROW_OK && t->have_peer)
        fprintf(f, "  target: fast >= 20x tokenizers.js on 1 thread: %.1fx, %s\n",
                t->peer.median_ms / t->fast[0].median_ms,
                t->peer.median_ms / t->fast[0].median_ms >= 20.0 ? "met" : "MISSED");
    for (size_t k = 1; k < r->nthreads && t->status == BENCH_ROW_OK; k++) {
        const double line = t->copies[k].median_ms > 0
                          ? r->threads[k] * t->fast[0].median_ms / t->copies[k].median_ms : 0.0;
        if (t->copies[k].median_ms > 0)
            fprintf(f, "  the machine's line: %d independent copies run at %.2fx one thread's rate "
                       "(median %.1f ms for %d corpora, [%.1f, %.1f])\n", r->threads[k], line,
                    t->copies[k].median_ms, r->threads[k], t->copies[k].min_ms, t->copies[k].max_ms);
        if (r->threads[k] == 2)
            fprintf(f, "  target: 2 threads >= 1.8x 1 thread: %.2fx, %s%s\n",
                    t->fast[0].median_ms / t->fast[k].median_ms,
                    t->fast[0].median_ms / t->fast[k].median_ms >= 1.8 ? "met"
                    : t->fast[0].median_ms / t->fast[k].median_ms >= 0.9 * line ? "MISSED, at the machine's line"
                    : "MISSED",
                    t->fast[k].shared ? " (some samples had shared cores)" : "");
    }
}

static cJSON *timing_json(const BenchTiming *x, const BenchTokenizer *t, int threads,
                          const char *variant) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "variant", variant);
    cJSON_AddNumberToObject(o, "threads", threads);
    cJSON_AddNumberToObject(o, "median_ms", x->median_ms);
    cJSON_AddNumberToObject(o, "min_ms", x->min_ms);
    cJSON_AddNumberToObject(o, "max_ms", x->max_ms);
    cJSON_AddNumberToObject(o, "samples", (double)x->samples);
    cJSON_AddNumberToObject(o, "kept", (double)x->kept);
    cJSON_AddNumberToObject(o, "MB_per_s", mbps(t, x));
    return o;
}

void bench_tokenizer_json(void *root_json, const BenchReport *r) {
    const BenchTokenizer *t = &r->tok;
    if (!t->have) return;
    cJSON *o = cJSON_AddObjectToObject((cJSON *)root_json, "tokenizer");
    cJSON_AddStringToObject(o, "corpus", "austen");
    cJSON_AddNumberToObject(o, "bytes", (double)t->bytes);
    cJSON_AddNumberToObject(o, "lines", (double)t->lines);
    cJSON_AddNumberToObject(o, "ids", (double)t->ids);
    cJSON_AddStringToObject(o, "status", t->status == BENCH_ROW_OK ? "ok" : "FAIL");
    cJSON *rows = cJSON_AddArrayToObject(o, "rows");
    cJSON_AddItemToArray(rows, timing_json(&t->naive, t, 1, "naive"));
    for (size_t k = 0; k < r->nthreads && t->status == BENCH_ROW_OK; k++) {
        cJSON_AddItemToArray(rows, timing_json(&t->fast[k], t, r->threads[k], "fast"));
        if (t->copies[k].median_ms > 0) {
            cJSON *c = timing_json(&t->copies[k], t, r->threads[k], "independent copies");
            cJSON_AddNumberToObject(c, "corpora", r->threads[k]);
            cJSON_AddNumberToObject(c, "scaling_line", r->threads[k] * t->fast[0].median_ms / t->copies[k].median_ms);
            cJSON_AddItemToArray(rows, c);
        }
    }
    if (t->have_peer) {
        cJSON *p = timing_json(&t->peer, t, 1, "tokenizers.js");
        cJSON_AddStringToObject(p, "peer", t->peer_name);
        cJSON_AddItemToArray(rows, p);
    }
}
