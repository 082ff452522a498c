/* bench.c — `tfm bench`: every op's naive and fast variant, a reference where there is one,
 * PyTorch (read back from bench/torch_bench.py's files) and the machine's ceilings, in one run.
 *
 *   tfm bench [CHAPTER] [--threads N[,M...]] [--quick] [--json FILE] [--dat FILE]
 *             [--torch FILE]... [--list]
 *
 * The harness itself is in bench/ (bench.h explains the method); this file is the command:
 * it picks the cases, runs the memory probes, the ceilings and the cases in that order (the
 * probes first, while the process is still small), and prints and writes the reports.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "cases.h"

int tfm_bench(int argc, char **argv);

static void help(FILE *f)
{
    fprintf(f,
            "usage: tfm bench [CHAPTER] [--threads N[,M...]] [--quick] [--json FILE] [--dat FILE]\n"
            "                 [--torch FILE]... [--peer FILE] [--list]\n"
            "Times every op's naive and fast variant (and OpenBLAS for the matmuls) against the\n"
            "machine's ceilings measured in the same run: FMA peak, STREAM copy and triad.\n"
            "  CHAPTER       only this chapter's cases (0, 01, attention, 01-attention)\n"
            "  --threads     thread counts of the tables (default 1,2); naive always runs on 1\n"
            "  --quick       fewer samples, naive timed once on a smaller slice of big shapes,\n"
            "                256 MiB STREAM arrays instead of 1 GiB: a smoke test, not for quoting\n"
            "  --torch FILE  PyTorch timings from bench/torch_bench.py (once per configuration)\n"
            "  --peer FILE   tokenizers.js's timing from bench/tokenizers_js_bench.mjs (chapter 08)\n"
            "  --json FILE   the full report (rows, ceilings, machine, build) as JSON\n"
            "  --dat FILE    the ratio chart's data, for bench/ratios.gp\n"
            "  --list        print the selected cases as JSON (torch_bench.py's input) and exit\n"
            "Exits 1 if a fast or reference variant disagrees with naive (FAIL) or cannot run.\n");
}

static int usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "tfm bench: %s%s\n(see 'tfm bench --help')\n", msg, arg);
    return 2;
}

/* "1,2" -> {1, 2}. */
static int parse_threads(const char *s, BenchReport *r)
{
    r->nthreads = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > BENCH_MAX_THREADS || r->nthreads == 8) return -1;
        r->threads[r->nthreads++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return -1;
        s = end;
    }
    return r->nthreads ? 0 : -1;
}

static void print_list(const BenchCase *const *cases, size_t n)
{
    printf("{\"cases\": [");
    for (size_t i = 0; i < n; i++) {
        char key[128];
        bench_case_key(key, sizeof key, cases[i]);
        const TfmOp *op = tfm_op_find(cases[i]->op);
        printf("%s\n  {\"key\": \"%s\", \"chapter\": %d, \"op\": \"%s\", \"naive\": \"%s\", "
               "\"fast\": \"%s\", \"dims\": [", i ? "," : "", key, cases[i]->chapter,
               cases[i]->op, op ? op->naive_name : "?", op ? op->fast_name : "?");
        for (size_t d = 0; d < BENCH_MAX_DIMS; d++)
            printf("%s%zu", d ? ", " : "", cases[i]->dims[d]);
        printf("]}");
    }
    printf("\n]}\n");
}

static void pause_for(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Runs fn once and compares its output with naive's: a wrong variant gets FAIL and no time. */
static int run_checked(BenchRow *w, const BenchInstance *in, void (*fn)(void *), double atol,
                       double rtol)
{
    fn(in->state);
    Tensor want = tensor_view(TFM_F32, (void *)in->naive_out, in->ndim, in->shape);
    w->checked = 1;
    w->check = compare_f32(in->out, in->n_check, &want, atol, rtol);
    if (w->check.pass) return 0;
    char label[160];
    snprintf(label, sizeof label, "  %s %s %s, %d thread(s), vs naive", w->c->op, w->c->shape,
             w->variant, w->threads);
    compare_print(stderr, label, &w->check, &want, atol, rtol);
    w->status = BENCH_ROW_FAIL;
    snprintf(w->note, sizeof w->note, "wrong result: max_abs %.2e, %zu of %zu elements outside "
             "tolerance", w->check.max_abs, w->check.n_bad, w->check.n);
    return -1;
}

static int run_case(BenchReport *r, const BenchCase *c, uint64_t seed)
{
    const int quick = r->quick;
    /* fast and reference: enough samples for a stable median; naive: a few, it is slow */
    const BenchPlan plan = quick ? (BenchPlan){1, 3, 200, 0.1, 0.0}
                                 : (BenchPlan){3, 10, 2000, 1.0, 0.0};
    BenchPlan ref_plan = plan;
    ref_plan.settle_seconds = 0.02;
    const BenchPlan naive_plan = quick ? (BenchPlan){0, 1, 1, 0.0, 0.0}
                                       : (BenchPlan){0, 1, 50, 0.5, 0.0};   /* the first run warms up */
    const double naive_budget = quick ? 0.3e9 : 1.0e9;

    char err[256];
    const TfmOp *op = tfm_op_find(c->op);   /* its tolerance holds fast to naive */
    if (!op) {
        fprintf(stderr, "tfm bench: case %s %s: op '%s' is not in the op table\n", c->op,
                c->shape, c->op);
        return -1;
    }
    BenchInstance in;
    memset(&in, 0, sizeof in);
    in.naive_share = 1.0;
    fprintf(stderr, "bench: %s %s\n", c->op, c->shape);
    if (c->setup(&in, c, seed, naive_budget, err, sizeof err) != 0) {
        fprintf(stderr, "tfm bench: %s\n", err);
        BenchRow *w = bench_add_row(r, c, 1, "fast");
        if (w) {
            w->status = BENCH_ROW_ERROR;
            snprintf(w->note, sizeof w->note, "%.120s", err);
        }
        c->teardown(in.state);
        return -1;
    }
    int bad = 0;

    /* naive: sequential code, timed on one thread only; its first run is the expected
     * output of every check below */
    omp_set_num_threads(1);
    BenchRow *nv = bench_add_row(r, c, 1, "naive");
    if (!nv) goto oom;
    c->run_naive(in.state);
    bench_time(&nv->t, c->run_naive, in.state, 1, &naive_plan);
    nv->scale = 1.0 / in.naive_share;
    nv->t.median_ms *= nv->scale;
    nv->t.min_ms *= nv->scale;
    nv->t.max_ms *= nv->scale;
    snprintf(nv->note, sizeof nv->note, "%s", in.naive_note);

    for (size_t t = 0; t < r->nthreads; t++) {
        const int threads = r->threads[t];
        omp_set_num_threads(threads);
        BenchRow *w = bench_add_row(r, c, threads, "fast");
        if (!w) goto oom;
        w->probed = threads > 1;
        if (run_checked(w, &in, c->run_fast, op->atol, op->rtol) == 0)
            bench_time(&w->t, c->run_fast, in.state, threads, &plan);
        else
            bad = 1;

        if (c->run_ref) {
            bench_openblas_threads(threads);
            w = bench_add_row(r, c, threads, c->ref_name);
            if (!w) goto oom;
            w->probed = threads > 1;
            if (run_checked(w, &in, c->run_ref, op->atol, op->rtol) == 0)
                bench_time(&w->t, c->run_ref, in.state, threads, &ref_plan);
            else
                bad = 1;
            /* OpenBLAS's idle workers spin (sched_yield) for a while before they sleep; let
             * them, so that they do not compete with the next fast row for the cores. */
            if (threads > 1) pause_for(0.3);
        }
    }
    c->teardown(in.state);
    return bad ? -1 : 0;
oom:
    fprintf(stderr, "tfm bench: out of memory\n");
    c->teardown(in.state);
    return -1;
}

static void measure_ceilings(BenchReport *r)
{
    r->stream_bytes = (double)(r->quick ? (size_t)256 << 20 : (size_t)1 << 30);
    int have1 = 0;
    for (size_t t = 0; t < r->nthreads; t++) {
        const int threads = r->threads[t];
        fprintf(stderr, "bench: ceilings, %d thread(s)\n", threads);
        r->peak[t] = bench_fma_peak(threads, r->quick);
        bench_stream(&r->copy[t], &r->triad[t], (size_t)r->stream_bytes, threads, r->quick);
        if (threads == 1) {
            bench_probe_init(r->peak[t].best);
            have1 = 1;
        }
    }
    if (!have1) bench_probe_init(bench_fma_peak(1, r->quick).best);
    r->have_ceilings = 1;
}

static void print_header(FILE *f, const BenchReport *r)
{
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    fprintf(f, "tfm bench%s: %s, %d CPUs; %s; OpenBLAS kernels: %s%s%s\n",
            r->quick ? " --quick" : "", bench_cpu_model(), omp_get_num_procs(), bench_compiler(),
            bench_openblas_core(), coretype && *coretype ? " (set by OPENBLAS_CORETYPE)" : "",
            coretype && *coretype ? "" : " (OpenBLAS's own choice)");
    fprintf(f, "flags: %s; fast files add: %s\n", bench_cflags(), bench_fast_cflags());
    if (r->have_ceilings) {
        fprintf(f, "ceilings (best sample; FMA kernel: %s; STREAM arrays of %.0f MiB each):\n",
                bench_fma_kernel(), r->stream_bytes / 1048576.0);
        for (size_t t = 0; t < r->nthreads; t++)
            fprintf(f, "  %d thread%s: FMA peak %7.1f GFLOP/s (median %.1f), copy %5.1f GB/s "
                       "(median %.1f), triad %5.1f GB/s (median %.1f)\n",
                    r->threads[t], r->threads[t] > 1 ? "s" : " ", r->peak[t].best,
                    r->peak[t].median, r->copy[t].best, r->copy[t].median, r->triad[t].best,
                    r->triad[t].median);
    }
    for (size_t k = 0; k < r->ntorch; k++)
        fprintf(f, "PyTorch '%s': %s\n", r->torch_config[k], r->torch_path[k]);
}

int tfm_bench(int argc, char **argv)
{
    const char *chapter = NULL, *json = NULL, *dat = NULL, *peer = NULL, *torch[BENCH_MAX_TORCH];
    size_t ntorch = 0;
    int list = 0;
    BenchReport r;
    memset(&r, 0, sizeof r);
    r.nthreads = 2;
    r.threads[0] = 1;
    r.threads[1] = 2;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            help(stdout);
            return 0;
        } else if (strcmp(a, "--quick") == 0) {
            r.quick = 1;
        } else if (strcmp(a, "--list") == 0) {
            list = 1;
        } else if (strcmp(a, "--threads") == 0 || strcmp(a, "--json") == 0 ||
                   strcmp(a, "--dat") == 0 || strcmp(a, "--torch") == 0 || strcmp(a, "--peer") == 0) {
            if (i + 1 >= argc) return usage_error(a, " needs a value");
            const char *v = argv[++i];
            if (strcmp(a, "--threads") == 0) {
                if (parse_threads(v, &r) != 0) return usage_error("bad --threads list ", v);
            } else if (strcmp(a, "--json") == 0) {
                json = v;
            } else if (strcmp(a, "--dat") == 0) {
                dat = v;
            } else if (strcmp(a, "--peer") == 0) {
                peer = v;
            } else if (ntorch == BENCH_MAX_TORCH) {
                return usage_error("too many --torch files at ", v);
            } else {
                torch[ntorch++] = v;
            }
        } else if (a[0] == '-') {
            return usage_error("unknown option ", a);
        } else if (!chapter) {
            chapter = a;
        } else {
            return usage_error("unexpected argument ", a);
        }
    }

    /* the cases of the chosen chapter (all by default) */
    size_t nall;
    const BenchCase *all = bench_cases(&nall);
    const BenchCase **cases = malloc(nall * sizeof *cases);
    size_t ncases = 0;
    const TfmChapter *only = NULL;
    if (!cases) return 1;
    /* chapter 08 has no golden file of tensors, so it is not in tfm_chapters: its own names */
    const int tokenizer_only = chapter && (strcmp(chapter, "8") == 0 || strcmp(chapter, "08") == 0 ||
                                           strcmp(chapter, "tokenizer") == 0 ||
                                           strcmp(chapter, "08-tokenizer") == 0);
    if (chapter && !tokenizer_only && !(only = tfm_chapter_find(chapter))) {
        free(cases);
        return usage_error("no chapter ", chapter);
    }
    for (size_t i = 0; i < nall && !tokenizer_only; i++)
        if (!only || all[i].chapter == only->number) cases[ncases++] = &all[i];
    if (ncases == 0 && !tokenizer_only) {
        free(cases);
        return usage_error("no benchmark cases yet for chapter ", chapter);
    }
    if (list) {
        print_list(cases, ncases);
        free(cases);
        return 0;
    }
    if (omp_get_num_procs() < r.threads[r.nthreads - 1])
        fprintf(stderr, "tfm bench: warning: %d threads on %d CPUs: those rows share cores\n",
                r.threads[r.nthreads - 1], omp_get_num_procs());

    int rc = 0;
    char err[512];
    /* PyTorch's files first: a missing one is an error now, not after minutes of measuring */
    for (size_t k = 0; k < ntorch; k++) {
        if (bench_load_torch(&r, torch[k], cases, ncases, err, sizeof err) != 0) {
            fprintf(stderr, "tfm bench: %s\n", err);
            bench_report_free(&r);
            free(cases);
            return 1;
        }
    }
    /* memory probes next, while the process holds nothing large */
    size_t nprobe;
    const BenchMemoryProbe *probes = bench_memory_probes(&nprobe);
    for (size_t p = 0; p < nprobe && r.nmem < BENCH_MAX_MEMORY; p++) {
        if (tokenizer_only || (only && probes[p].chapter != only->number)) continue;
        fprintf(stderr, "bench: peak memory probe, chapter %d\n", probes[p].chapter);
        if (probes[p].run(&r.mem[r.nmem], r.threads[r.nthreads - 1], err, sizeof err) != 0) {
            fprintf(stderr, "tfm bench: %s\n", err);
            rc = 1;
        }
        r.nmem++;
    }
    measure_ceilings(&r);
    for (size_t i = 0; i < ncases; i++)
        if (run_case(&r, cases[i], 1000 + 17 * (uint64_t)i) != 0) rc = 1;
    if ((!only || tokenizer_only) && bench_tokenizer(&r, peer, err, sizeof err) != 0) {
        fprintf(stderr, "tfm bench: %s\n", err);
        rc = 1;
    }

    print_header(stdout, &r);
    if (ncases) bench_print(stdout, &r, cases, ncases);
    bench_tokenizer_print(stdout, &r);
    if (json && bench_write_json(json, &r, cases, ncases, err, sizeof err) != 0) {
        fprintf(stderr, "tfm bench: %s\n", err);
        rc = 1;
    }
    if (dat && bench_write_dat(dat, &r, cases, ncases, err, sizeof err) != 0) {
        fprintf(stderr, "tfm bench: %s\n", err);
        rc = 1;
    }
    if (json) printf("JSON report: %s\n", json);
    bench_report_free(&r);
    free(cases);
    return rc;
}
