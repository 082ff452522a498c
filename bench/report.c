/* report.c — the results of `tfm bench`: the rows, PyTorch's timings read back, the tables,
 * the JSON report (cJSON) and the data of the ratio chart.
 *
 * Every ratio is a ratio of median times, written "vs_X = time(X) / time(this row)": above 1
 * this row is faster than X. vs_naive compares with the 1-thread naive (naive is sequential
 * code), vs_1T with the same variant on 1 thread, vs_<config> with PyTorch in that configuration
 * at the same thread count.
 *
 * The JSON report (schema "tfm-bench/1"):
 *   { "schema", "date" (UTC, ISO 8601), "cpu", "compiler", "cflags", "fast_cflags",
 *     "fma_kernel", "openblas_core", "openblas_coretype_env", "quick", "threads": [1, 2],
 *     "ceilings": [ {"name": "fma_peak"|"copy"|"triad", "threads", "unit", "best", "median",
 *                    "min", "max", "samples", "array_bytes" (copy, triad)} ],
 *     "torch": [ the torch_bench.py file's own fields except "results", plus "file" ],
 *     "rows": [ {"chapter", "op", "shape", "key", "dims", "threads", "variant", "status"
 *                ("ok" | "FAIL" | "error"), "flops", "bytes", "bound", "big", "median_ms",
 *                "min_ms", "max_ms", "samples", "samples_kept", "samples_shared_core",
 *                "naive_scale", "rate", "rate_unit", "ceiling_fraction", "vs_naive",
 *                "vs_1_thread", "vs_torch_<config>"..., "vs_<reference>" (cases with one),
 *                "time_vs_previous_case" (causal rows), "check_vs_naive": {"pass", "max_abs",
 *                "max_rel", "rel_fro", "elements"} (fast, reference), "note"} ],
 *     "memory": [ {"op", "shape", "variant", "peak_rss_growth_bytes", "inputs_bytes",
 *                  "quadratic_scores_bytes", "method"} ] }
 * Missing numbers are null.
 */
#include "bench.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cases.h"

#ifndef TFM_BENCH_CFLAGS
#define TFM_BENCH_CFLAGS "unknown (built without mk/bench.mk)"
#endif
#ifndef TFM_BENCH_FAST_CFLAGS
#define TFM_BENCH_FAST_CFLAGS "unknown (built without mk/bench.mk)"
#endif

/* ---- machine and build ------------------------------------------------------------------ */

const char *bench_cpu_model(void)
{
    static char model[128];
    if (model[0]) return model;
    snprintf(model, sizeof model, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return model;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            const char *v = strchr(line, ':');
            if (v) {
                v++;
                while (*v == ' ' || *v == '\t') v++;
                snprintf(model, sizeof model, "%s", v);
                model[strcspn(model, "\n")] = '\0';
            }
            break;
        }
    }
    fclose(f);
    return model;
}

const char *bench_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

const char *bench_cflags(void) { return TFM_BENCH_CFLAGS; }
const char *bench_fast_cflags(void) { return TFM_BENCH_FAST_CFLAGS; }

/* ---- rows ------------------------------------------------------------------------------- */

BenchRow *bench_add_row(BenchReport *r, const BenchCase *c, int threads, const char *variant)
{
    if (r->nrows == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        BenchRow *rows = realloc(r->rows, cap * sizeof *rows);
        if (!rows) return NULL;
        r->rows = rows;
        r->cap = cap;
    }
    BenchRow *row = &r->rows[r->nrows++];
    memset(row, 0, sizeof *row);
    row->c = c;
    row->threads = threads;
    row->scale = 1.0;
    snprintf(row->variant, sizeof row->variant, "%s", variant);
    return row;
}

/* The row of a variant that ran correctly, or NULL. */
static const BenchRow *find(const BenchReport *r, const BenchCase *c, int threads,
                            const char *variant)
{
    for (size_t i = 0; i < r->nrows; i++) {
        const BenchRow *w = &r->rows[i];
        if (w->c == c && w->threads == threads && w->status == BENCH_ROW_OK &&
            strcmp(w->variant, variant) == 0)
            return w;
    }
    return NULL;
}

/* time(other) / time(row), NAN when either is missing. */
static double ratio(const BenchRow *other, const BenchRow *row)
{
    if (!other || !row || row->status != BENCH_ROW_OK || row->t.median_ms <= 0) return NAN;
    return other->t.median_ms / row->t.median_ms;
}

static size_t thread_index(const BenchReport *r, int threads)
{
    for (size_t i = 0; i < r->nthreads; i++)
        if (r->threads[i] == threads) return i;
    return r->nthreads;
}

/* GFLOP/s or GB/s of a row, and its fraction of the matching ceiling (NAN if none). */
static double rate(const BenchRow *w)
{
    if (w->status != BENCH_ROW_OK || w->t.median_ms <= 0) return NAN;
    const double work = w->c->bound == BENCH_COMPUTE ? w->c->flops : w->c->bytes;
    return work / (w->t.median_ms * 1e-3) * 1e-9;
}

static double ceiling_fraction(const BenchReport *r, const BenchRow *w)
{
    size_t ti = thread_index(r, w->threads);
    if (!r->have_ceilings || ti == r->nthreads) return NAN;
    const double ceil = w->c->bound == BENCH_COMPUTE ? r->peak[ti].best : r->copy[ti].best;
    return ceil > 0 ? rate(w) / ceil : NAN;
}

/* The ratios of a row, in a fixed order: naive, 1 thread, each torch config, reference. */
typedef struct {
    double naive, one_thread, torch[BENCH_MAX_TORCH], ref, prev;
} Ratios;

static Ratios ratios(const BenchReport *r, const BenchRow *w, const BenchCase *prev_case)
{
    Ratios q;
    q.naive = ratio(find(r, w->c, 1, "naive"), w);
    q.one_thread = w->threads > 1 ? ratio(find(r, w->c, 1, w->variant), w) : NAN;
    for (size_t k = 0; k < BENCH_MAX_TORCH; k++) {
        char name[48];
        snprintf(name, sizeof name, "torch %s", r->torch_config[k]);
        q.torch[k] = k < r->ntorch ? ratio(find(r, w->c, w->threads, name), w) : NAN;
    }
    q.ref = w->c->ref_name ? ratio(find(r, w->c, w->threads, w->c->ref_name), w) : NAN;
    /* vs_prev: this row's time as a fraction of the previous case's (causal vs unmasked) */
    q.prev = NAN;
    if (w->c->vs_prev && prev_case) {
        const BenchRow *p = find(r, prev_case, w->threads, w->variant);
        if (p && w->status == BENCH_ROW_OK) q.prev = w->t.median_ms / p->t.median_ms;
    }
    return q;
}

/* ---- PyTorch's timings ------------------------------------------------------------------ */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    do {
        if (cap - len < 65536) {
            char *nb = realloc(buf, cap + 65536 + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
            cap += 65536;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

int bench_load_torch(BenchReport *r, const char *path, const BenchCase *const *cases,
                     size_t ncases, char *err, size_t errlen)
{
    if (r->ntorch == BENCH_MAX_TORCH) {
        snprintf(err, errlen, "at most %d --torch files", BENCH_MAX_TORCH);
        return -1;
    }
    char *text = slurp(path);
    if (!text) {
        snprintf(err, errlen, "%s: cannot read", path);
        return -1;
    }
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(root, "config");
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(root, "results");
    if (!root || !cJSON_IsString(config) || !cJSON_IsObject(results)) {
        snprintf(err, errlen, "%s: not a torch_bench.py result (needs \"config\" and \"results\")",
                 path);
        cJSON_Delete(root);
        return -1;
    }
    const size_t k = r->ntorch++;
    snprintf(r->torch_config[k], sizeof r->torch_config[k], "%s", config->valuestring);
    snprintf(r->torch_path[k], sizeof r->torch_path[k], "%s", path);
    r->torch_json[k] = root;
    char variant[48];
    snprintf(variant, sizeof variant, "torch %s", config->valuestring);
    for (size_t i = 0; i < ncases; i++) {
        char key[128];
        bench_case_key(key, sizeof key, cases[i]);
        const cJSON *per_case = cJSON_GetObjectItemCaseSensitive(results, key);
        for (size_t t = 0; t < r->nthreads; t++) {
            char tk[16];
            snprintf(tk, sizeof tk, "%d", r->threads[t]);
            const cJSON *res = cJSON_GetObjectItemCaseSensitive(per_case, tk);
            if (!cJSON_IsObject(res)) continue;
            BenchRow *w = bench_add_row(r, cases[i], r->threads[t], variant);
            if (!w) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(res, "error");
            if (cJSON_IsString(e)) {
                w->status = BENCH_ROW_ERROR;
                snprintf(w->note, sizeof w->note, "%s", e->valuestring);
                continue;
            }
            w->t.median_ms = num(res, "median_ms");
            w->t.min_ms = num(res, "min_ms");
            w->t.max_ms = num(res, "max_ms");
            double n = num(res, "samples");
            w->t.samples = w->t.kept = isfinite(n) && n > 0 ? (size_t)n : 0;
            w->status = isfinite(w->t.median_ms) ? BENCH_ROW_OK : BENCH_ROW_ERROR;
        }
    }
    return 0;
}

/* ---- tables ----------------------------------------------------------------------------- */

static void cell_ratio(char *buf, size_t n, double x)
{
    if (isfinite(x)) snprintf(buf, n, "%.2f", x);
    else snprintf(buf, n, "-");
}

static const BenchCase *prev_case(const BenchCase *const *cases, size_t ncases,
                                  const BenchCase *c)
{
    for (size_t i = 1; i < ncases; i++)
        if (cases[i] == c) return cases[i - 1];
    return NULL;
}

static void print_row(FILE *f, const BenchReport *r, const BenchRow *w, const BenchCase *prev)
{
    char med[24], range[40], rt[24], frac[16], cores[16];
    Ratios q = ratios(r, w, prev);
    if (w->status == BENCH_ROW_OK) {
        snprintf(med, sizeof med, "%.3f", w->t.median_ms);
        snprintf(range, sizeof range, "%.3f-%.3f", w->t.min_ms, w->t.max_ms);
        snprintf(rt, sizeof rt, "%.1f %s", rate(w), w->c->bound == BENCH_COMPUTE ? "GF/s" : "GB/s");
        double fr = ceiling_fraction(r, w);
        if (isfinite(fr)) snprintf(frac, sizeof frac, "%.0f%%", 100.0 * fr);
        else snprintf(frac, sizeof frac, "-");
    } else {
        snprintf(med, sizeof med, "%s", w->status == BENCH_ROW_FAIL ? "FAIL" : "ERROR");
        snprintf(range, sizeof range, "-");
        snprintf(rt, sizeof rt, "-");
        snprintf(frac, sizeof frac, "-");
    }
    if (w->threads > 1 && w->probed)
        snprintf(cores, sizeof cores, "%zu/%zu", w->t.samples - w->t.shared, w->t.samples);
    else
        snprintf(cores, sizeof cores, "-");
    char cn[12], c1[12], ct[BENCH_MAX_TORCH][12];
    cell_ratio(cn, sizeof cn, strcmp(w->variant, "naive") == 0 ? NAN : q.naive);
    cell_ratio(c1, sizeof c1, q.one_thread);
    for (size_t k = 0; k < r->ntorch; k++) cell_ratio(ct[k], sizeof ct[k], q.torch[k]);

    char note[256];
    snprintf(note, sizeof note, "%s", w->note);
    if (strcmp(w->variant, "fast") == 0 && isfinite(q.ref)) {
        size_t l = strlen(note);
        snprintf(note + l, sizeof note - l, "%s%.0f%% of %s", l ? "; " : "", 100.0 * q.ref,
                 w->c->ref_name);
    }
    if (strcmp(w->variant, "fast") == 0 && w->c->remark) {
        size_t l = strlen(note);
        snprintf(note + l, sizeof note - l, "%s%s", l ? "; " : "", w->c->remark);
    }
    if (isfinite(q.prev)) {
        size_t l = strlen(note);
        snprintf(note + l, sizeof note - l, "%s%.2fx the unmasked time", l ? "; " : "", q.prev);
    }
    char key[128];
    bench_case_key(key, sizeof key, w->c);
    fprintf(f, "%-34s %-14s %10s %21s %13s %5s %8s", key, w->variant, med, range, rt, frac, cn);
    for (size_t k = 0; k < r->ntorch; k++) fprintf(f, " %10s", ct[k]);
    fprintf(f, " %6s %6s  %s\n", c1, cores, note);
}

void bench_print(FILE *f, const BenchReport *r, const BenchCase *const *cases, size_t ncases)
{
    size_t nch;
    const TfmChapter *chs = tfm_chapters(&nch);
    for (size_t t = 0; t < r->nthreads; t++) {
        const int threads = r->threads[t];
        int last_chapter = -1;
        for (size_t i = 0; i < ncases; i++) {
            const BenchCase *c = cases[i];
            if (c->chapter != last_chapter) {
                last_chapter = c->chapter;
                const char *name = "?";
                for (size_t j = 0; j < nch; j++)
                    if (chs[j].number == c->chapter) name = chs[j].name;
                fprintf(f, "\n== chapter %s, %d thread%s", name, threads, threads > 1 ? "s" : "");
                if (r->have_ceilings)
                    fprintf(f, " (ceilings: FMA %.1f GFLOP/s, copy %.1f GB/s)", r->peak[t].best,
                            r->copy[t].best);
                fprintf(f, "\n%-34s %-14s %10s %21s %13s %5s %8s", "op and shape", "variant", "median_ms",
                        "min-max_ms", "rate", "ceil", "vs_naive");
                for (size_t k = 0; k < r->ntorch; k++) {
                    char h[48];
                    snprintf(h, sizeof h, "vs_%s", r->torch_config[k]);
                    fprintf(f, " %10s", h);
                }
                fprintf(f, " %6s %6s  %s\n", "vs_1T", "cores", "note");
            }
            /* tfm's rows (naive, on 1 thread only; fast; the reference), then PyTorch's */
            for (int torch_rows = 0; torch_rows < 2; torch_rows++) {
                for (size_t j = 0; j < r->nrows; j++) {
                    const BenchRow *w = &r->rows[j];
                    if (w->c == c && w->threads == threads &&
                        (strncmp(w->variant, "torch ", 6) == 0) == torch_rows)
                        print_row(f, r, w, prev_case(cases, ncases, c));
                }
            }
        }
    }
    fprintf(f, "\nvs_X = median time of X / median time of the row (> 1: the row is faster). "
               "vs_naive: against the 1-thread naive;\n"
               "vs_1T: against the same variant on 1 thread. cores: samples in which the two-core "
               "probe saw every thread on a core of\nits own / samples (statistics are over "
               "those). ceil: GFLOP/s over the FMA peak, or GB/s over copy bandwidth.\n");
    for (size_t m = 0; m < r->nmem; m++) {
        const BenchMemory *b = &r->mem[m];
        fprintf(f, "\npeak memory, %s %s (%s): ", b->op, b->shape, b->variant);
        if (b->growth_bytes >= 0)
            fprintf(f, "+%.1f MiB during the op", b->growth_bytes / 1048576.0);
        else
            fprintf(f, "unavailable");
        fprintf(f, " (inputs and output: %.0f MiB; the T x T scores alone would be %.0f MiB) [%s]\n",
                b->inputs_bytes / 1048576.0, b->quadratic_bytes / 1048576.0, b->method);
    }
}

/* ---- JSON ------------------------------------------------------------------------------- */

static void add_num(cJSON *o, const char *key, double x)
{
    if (isfinite(x)) cJSON_AddNumberToObject(o, key, x);
    else cJSON_AddNullToObject(o, key);
}

static cJSON *rate_json(const char *name, int threads, const BenchRate *b, const char *unit)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddNumberToObject(o, "threads", threads);
    cJSON_AddStringToObject(o, "unit", unit);
    add_num(o, "best", b->best);
    add_num(o, "median", b->median);
    add_num(o, "min", b->min);
    add_num(o, "max", b->max);
    cJSON_AddNumberToObject(o, "samples", (double)b->samples);
    return o;
}

int bench_write_json(const char *path, const BenchReport *r, const BenchCase *const *cases,
                     size_t ncases, char *err, size_t errlen)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "schema", "tfm-bench/1");
    char date[32];
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON_AddStringToObject(root, "date", date);
    cJSON_AddStringToObject(root, "cpu", bench_cpu_model());
    cJSON_AddStringToObject(root, "compiler", bench_compiler());
    cJSON_AddStringToObject(root, "cflags", bench_cflags());
    cJSON_AddStringToObject(root, "fast_cflags", bench_fast_cflags());
    cJSON_AddStringToObject(root, "fma_kernel", bench_fma_kernel());
    cJSON_AddStringToObject(root, "openblas_core", bench_openblas_core());
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    if (coretype && *coretype) cJSON_AddStringToObject(root, "openblas_coretype_env", coretype);
    else cJSON_AddNullToObject(root, "openblas_coretype_env");
    cJSON_AddBoolToObject(root, "quick", r->quick);
    cJSON *th = cJSON_AddArrayToObject(root, "threads");
    for (size_t t = 0; t < r->nthreads; t++) cJSON_AddItemToArray(th, cJSON_CreateNumber(r->threads[t]));

    cJSON *ceil = cJSON_AddArrayToObject(root, "ceilings");
    if (r->have_ceilings) {
        for (size_t t = 0; t < r->nthreads; t++) {
            cJSON_AddItemToArray(ceil, rate_json("fma_peak", r->threads[t], &r->peak[t], "GFLOP/s"));
            cJSON *c = rate_json("copy", r->threads[t], &r->copy[t], "GB/s");
            cJSON_AddNumberToObject(c, "array_bytes", r->stream_bytes);
            cJSON_AddItemToArray(ceil, c);
            c = rate_json("triad", r->threads[t], &r->triad[t], "GB/s");
            cJSON_AddNumberToObject(c, "array_bytes", r->stream_bytes);
            cJSON_AddItemToArray(ceil, c);
        }
    }

    cJSON *torch = cJSON_AddArrayToObject(root, "torch");
    for (size_t k = 0; k < r->ntorch; k++) {
        /* everything the torch file says about itself, without its results (now rows) */
        cJSON *meta = cJSON_Duplicate((const cJSON *)r->torch_json[k], 1);
        cJSON_DeleteItemFromObjectCaseSensitive(meta, "results");
        cJSON_AddStringToObject(meta, "file", r->torch_path[k]);
        cJSON_AddItemToArray(torch, meta);
    }

    bench_tokenizer_json(root, r);
    cJSON *rows = cJSON_AddArrayToObject(root, "rows");
    for (size_t i = 0; i < r->nrows; i++) {
        const BenchRow *w = &r->rows[i];
        Ratios q = ratios(r, w, prev_case(cases, ncases, w->c));
        cJSON *o = cJSON_CreateObject();
        char key[128];
        bench_case_key(key, sizeof key, w->c);
        cJSON_AddNumberToObject(o, "chapter", w->c->chapter);
        cJSON_AddStringToObject(o, "op", w->c->op);
        cJSON_AddStringToObject(o, "shape", w->c->shape);
        cJSON_AddStringToObject(o, "key", key);
        cJSON *d = cJSON_AddArrayToObject(o, "dims");
        for (size_t j = 0; j < BENCH_MAX_DIMS; j++) cJSON_AddItemToArray(d, cJSON_CreateNumber((double)w->c->dims[j]));
        cJSON_AddNumberToObject(o, "threads", w->threads);
        cJSON_AddStringToObject(o, "variant", w->variant);
        cJSON_AddStringToObject(o, "status", w->status == BENCH_ROW_OK ? "ok"
                                             : w->status == BENCH_ROW_FAIL ? "FAIL" : "error");
        cJSON_AddNumberToObject(o, "flops", w->c->flops);
        cJSON_AddNumberToObject(o, "bytes", w->c->bytes);
        cJSON_AddStringToObject(o, "bound", w->c->bound == BENCH_COMPUTE ? "compute" : "memory");
        cJSON_AddBoolToObject(o, "big", w->c->big);
        const int ok = w->status == BENCH_ROW_OK;
        add_num(o, "median_ms", ok ? w->t.median_ms : NAN);
        add_num(o, "min_ms", ok ? w->t.min_ms : NAN);
        add_num(o, "max_ms", ok ? w->t.max_ms : NAN);
        cJSON_AddNumberToObject(o, "samples", (double)w->t.samples);
        cJSON_AddNumberToObject(o, "samples_kept", (double)w->t.kept);
        if (w->probed) cJSON_AddNumberToObject(o, "samples_shared_core", (double)w->t.shared);
        else cJSON_AddNullToObject(o, "samples_shared_core");
        cJSON_AddNumberToObject(o, "naive_scale", w->scale);
        add_num(o, "rate", rate(w));
        cJSON_AddStringToObject(o, "rate_unit", w->c->bound == BENCH_COMPUTE ? "GFLOP/s" : "GB/s");
        add_num(o, "ceiling_fraction", ceiling_fraction(r, w));
        add_num(o, "vs_naive", strcmp(w->variant, "naive") == 0 ? NAN : q.naive);
        add_num(o, "vs_1_thread", q.one_thread);
        for (size_t k = 0; k < r->ntorch; k++) {
            char name[64];
            snprintf(name, sizeof name, "vs_torch_%s", r->torch_config[k]);
            add_num(o, name, q.torch[k]);
        }
        if (w->c->ref_name) {
            char name[64];
            snprintf(name, sizeof name, "vs_%s", w->c->ref_name);
            add_num(o, name, q.ref);
        }
        if (w->c->vs_prev) add_num(o, "time_vs_previous_case", q.prev);
        if (w->checked) {
            cJSON *ck = cJSON_AddObjectToObject(o, "check_vs_naive");
            cJSON_AddBoolToObject(ck, "pass", w->check.pass);
            add_num(ck, "max_abs", w->check.max_abs);
            add_num(ck, "max_rel", w->check.max_rel);
            add_num(ck, "rel_fro", w->check.rel_fro);
            cJSON_AddNumberToObject(ck, "elements", (double)w->check.n);
        }
        cJSON_AddStringToObject(o, "note", w->note);
        cJSON_AddItemToArray(rows, o);
    }

    cJSON *mem = cJSON_AddArrayToObject(root, "memory");
    for (size_t m = 0; m < r->nmem; m++) {
        const BenchMemory *b = &r->mem[m];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "op", b->op);
        cJSON_AddStringToObject(o, "shape", b->shape);
        cJSON_AddStringToObject(o, "variant", b->variant);
        add_num(o, "peak_rss_growth_bytes", b->growth_bytes >= 0 ? b->growth_bytes : NAN);
        cJSON_AddNumberToObject(o, "inputs_bytes", b->inputs_bytes);
        cJSON_AddNumberToObject(o, "quadratic_scores_bytes", b->quadratic_bytes);
        cJSON_AddStringToObject(o, "method", b->method);
        cJSON_AddItemToArray(mem, o);
    }

    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    FILE *f = text ? fopen(path, "w") : NULL;
    int rc = -1;
    if (!text) snprintf(err, errlen, "%s: out of memory", path);
    else if (!f) snprintf(err, errlen, "%s: cannot open for writing", path);
    else if (fputs(text, f) < 0 || fputc('\n', f) == EOF) snprintf(err, errlen, "%s: write failed", path);
    else rc = 0;
    if (f && fclose(f) != 0 && rc == 0) {
        snprintf(err, errlen, "%s: write failed", path);
        rc = -1;
    }
    free(text);
    return rc;
}

/* ---- the chart's data ------------------------------------------------------------------- */

int bench_write_dat(const char *path, const BenchReport *r, const BenchCase *const *cases,
                    size_t ncases, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open for writing", path);
        return -1;
    }
    /* One line per fast row: its label, then time(X) / time(fast) for X = naive, PyTorch
     * "shipped", PyTorch "tuned" and the reference; "?" where X is missing (gnuplot: set
     * datafile missing "?"). Fixed columns, whatever order the --torch files came in. */
    fprintf(f, "# label vs_naive vs_torch_shipped vs_torch_tuned vs_reference\n");
    for (size_t t = 0; t < r->nthreads; t++) {
        for (size_t i = 0; i < ncases; i++) {
            const BenchRow *w = find(r, cases[i], r->threads[t], "fast");
            if (!w) continue;
            Ratios q = ratios(r, w, NULL);
            double cols[4] = {q.naive, NAN, NAN, q.ref};
            for (size_t k = 0; k < r->ntorch; k++) {
                if (strcmp(r->torch_config[k], "shipped") == 0) cols[1] = q.torch[k];
                if (strcmp(r->torch_config[k], "tuned") == 0) cols[2] = q.torch[k];
            }
            fprintf(f, "\"%02d %s %s, %dT\"", cases[i]->chapter, cases[i]->op, cases[i]->shape,
                    r->threads[t]);
            for (size_t k = 0; k < 4; k++) {
                if (isfinite(cols[k])) fprintf(f, " %.4g", cols[k]);
                else fprintf(f, " ?");
            }
            fprintf(f, "\n");
        }
    }
    if (fclose(f) != 0) {
        snprintf(err, errlen, "%s: write failed", path);
        return -1;
    }
    return 0;
}

void bench_report_free(BenchReport *r)
{
    free(r->rows);
    for (size_t k = 0; k < r->ntorch; k++) cJSON_Delete(r->torch_json[k]);
    memset(r, 0, sizeof *r);
}
