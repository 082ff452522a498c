/* tfm — the command line of tfm.
 *
 *   tfm check [CHAPTER] [--variant naive|fast]      the oracle table; non-zero exit on any FAIL
 *   tfm run OP [--variant V] [--case NAME] IN OUT    run one op on your own tensors
 *   tfm inspect FILE                                 list a safetensors file's tensors and metadata
 *   tfm slice FILE TENSOR [--at I,J] OUT             write a 2-D slice as a gnuplot matrix
 *
 * Every error is one line on stderr and a non-zero exit status (2 for usage, 1 otherwise).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "golden.h"

static const char *PROG = "tfm";
int tfm_bench(int argc, char **argv);   /* src/bench.c */

static void usage(FILE *f) {
    fprintf(f,
            "usage: tfm COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  check [CHAPTER] [--variant naive|fast]\n"
            "      run every golden case of every chapter (or one: 0, 01, attention, 01-attention)\n"
            "      and print the oracle table; exits 1 if any row FAILs\n"
            "  run OP [--variant naive|fast] [--case NAME] IN.safetensors OUT.safetensors\n"
            "      run one op on the tensors in IN (plain or .gz); writes its outputs to OUT\n"
            "      (gzip-compressed if OUT ends in .gz). --case NAME reads NAME/<tensor> instead\n"
            "      of <tensor>, e.g. a case of a golden file. 'tfm run --help' lists the ops\n"
            "  inspect FILE\n"
            "      list the tensors (name, dtype, shape) and metadata of a safetensors file\n"
            "  slice FILE TENSOR [--at I[,J]] OUT.dat\n"
            "      write the last two dimensions of TENSOR (at the leading indices I,J) as a\n"
            "      whitespace matrix for gnuplot's 'matrix' format\n"
            "  bench [CHAPTER] [--threads N,M] [--quick] [--json FILE] [--torch FILE]  (tfm bench --help)\n"
            "\n"
            "environment: TFM_ROOT (where oracle/golden/ is; default .), OMP_NUM_THREADS\n");
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "%s: ", PROG);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see 'tfm --help')\n");
    return 2;
}

static int is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

static int parse_variant(const char *s, TfmVariant *v) {
    if (strcmp(s, "naive") == 0) { *v = TFM_NAIVE; return 0; }
    if (strcmp(s, "fast") == 0) { *v = TFM_FAST; return 0; }
    return -1;
}

/* ---- check ------------------------------------------------------------------------------ */

static void fmt_err(char *buf, size_t n, const CompareResult *r) {
    snprintf(buf, n, "%.2e", r->rel_fro);
}

static int check_chapter(const TfmChapter *ch, int variants, int *rows, int *fails) {
    char path[1024], err[TFM_ERR_LEN];
    tfm_golden_path(path, sizeof path, ch);
    GoldenFile gf;
    if (golden_load(&gf, path, err, sizeof err) != 0) {
        printf("%-13s %-22s %-6s ERROR %s\n", ch->name, "-", "-", err);
        (*rows)++;
        (*fails)++;
        return -1;
    }
    char **cases;
    size_t n = golden_cases(&gf, &cases);
    for (size_t i = 0; i < n; i++) {
        for (int v = 0; v < 2; v++) {
            if (!(variants & (1 << v))) continue;
            CaseOutcome oc;
            if (case_run(ch, &gf, cases[i], (TfmVariant)v, &oc, err, sizeof err) != 0) {
                printf("%-13s %-22s %-6s ERROR %s\n", ch->name, cases[i], tfm_variant_name((TfmVariant)v), err);
                (*rows)++;
                (*fails)++;
                continue;
            }
            for (size_t j = 0; j < oc.n; j++) {
                const OutputCheck *c = &oc.outputs[j];
                char label[96], ours[16] = "-", theirs[16] = "-";
                snprintf(label, sizeof label, "%s/%s", cases[i], c->output);
                if (c->has_truth) {
                    fmt_err(ours, sizeof ours, &c->vs_truth);
                    fmt_err(theirs, sizeof theirs, &c->torch_vs_truth);
                }
                printf("%-13s %-22s %-6s %10.2e %10.2e %10s | %-9s %s\n", ch->name, label,
                       tfm_variant_name((TfmVariant)v), c->vs_torch.max_abs, c->vs_torch.rel_fro,
                       ours, theirs, c->vs_torch.pass ? "PASS" : "FAIL");
                if (!c->vs_torch.pass) {
                    char l2[160];
                    snprintf(l2, sizeof l2, "    %s %s", label, tfm_variant_name((TfmVariant)v));
                    compare_print(stdout, l2, &c->vs_torch, c->want, ch->atol, ch->rtol);
                    (*fails)++;
                }
                (*rows)++;
            }
        }
    }
    golden_free_cases(cases, n);
    golden_free(&gf);
    return 0;
}

static int cmd_check(int argc, char **argv) {
    const char *chapter = NULL;
    int variants = 3;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            printf("usage: tfm check [CHAPTER] [--variant naive|fast]\n"
                   "Runs every golden case and prints, per output: max abs error and relative\n"
                   "Frobenius error against PyTorch float32, then the relative Frobenius error\n"
                   "against the float64 truth for tfm and for PyTorch float32, and PASS/FAIL\n"
                   "(|got - want| <= atol + rtol |want|, tolerances in oracle/tolerances.h).\n");
            return 0;
        } else if (strcmp(argv[i], "--variant") == 0) {
            TfmVariant v;
            if (i + 1 >= argc) return usage_error("--variant needs a value (naive or fast)%s", "");
            if (parse_variant(argv[++i], &v) != 0) return usage_error("unknown variant '%s' (naive or fast)", argv[i]);
            variants = 1 << v;
        } else if (argv[i][0] == '-') {
            return usage_error("check: unknown option '%s'", argv[i]);
        } else if (!chapter) {
            chapter = argv[i];
        } else {
            return usage_error("check: unexpected argument '%s'", argv[i]);
        }
    }
    size_t nch;
    const TfmChapter *chs = tfm_chapters(&nch);
    const TfmChapter *only = NULL;
    if (chapter && !(only = tfm_chapter_find(chapter))) return usage_error("check: no chapter '%s'", chapter);
    printf("%-13s %-22s %-6s %10s %10s %10s | %-9s %s\n", "chapter", "case/output", "variant",
           "max_abs", "rel_err", "vs f64:tfm", "torch", "result");
    int rows = 0, fails = 0;
    for (size_t c = 0; c < nch; c++)
        if (!only || only == &chs[c]) check_chapter(&chs[c], variants, &rows, &fails);
    printf("%d rows, %d passed, %d failed\n", rows, rows - fails, fails);
    return fails ? 1 : 0;
}

/* ---- run -------------------------------------------------------------------------------- */

static void run_help(void) {
    size_t n;
    const TfmOp *ops = tfm_ops(&n);
    printf("usage: tfm run OP [--variant naive|fast] [--case NAME] IN.safetensors OUT.safetensors\n"
           "Reads the op's inputs from IN (float32 unless said), writes its float32 outputs to OUT.\n"
           "Default variant: fast. Ops and their tensors:\n");
    for (size_t i = 0; i < n; i++) printf("  %-10s %s\n", ops[i].name, ops[i].help);
}

static int cmd_run(int argc, char **argv) {
    const char *op_name = NULL, *in = NULL, *out = NULL, *case_name = "";
    TfmVariant variant = TFM_FAST;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) { run_help(); return 0; }
        if (strcmp(argv[i], "--variant") == 0) {
            if (i + 1 >= argc) return usage_error("--variant needs a value (naive or fast)%s", "");
            if (parse_variant(argv[++i], &variant) != 0) return usage_error("unknown variant '%s' (naive or fast)", argv[i]);
        } else if (strcmp(argv[i], "--case") == 0) {
            if (i + 1 >= argc) return usage_error("--case needs a name%s", "");
            case_name = argv[++i];
        } else if (argv[i][0] == '-') {
            return usage_error("run: unknown option '%s'", argv[i]);
        } else if (!op_name) op_name = argv[i];
        else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else return usage_error("run: unexpected argument '%s'", argv[i]);
    }
    if (!op_name || !in || !out) return usage_error("run: needs OP, IN and OUT%s", "");
    size_t nops;
    const TfmOp *ops = tfm_ops(&nops), *op = NULL;
    for (size_t i = 0; i < nops; i++)
        if (strcmp(ops[i].name, op_name) == 0) op = &ops[i];
    if (!op) return usage_error("run: unknown op '%s' ('tfm run --help' lists them)", op_name);

    char err[TFM_ERR_LEN];
    GoldenFile gf;
    if (golden_load(&gf, in, err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", PROG, err); return 1; }
    int rc = 1;
    OpOutputs res;
    if (tfm_run_op(&res, op, &gf, case_name, variant, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
    } else {
        /* golden_save writes a temporary file beside OUT and renames it: a failed run or write
         * leaves no partial OUT behind (and an existing OUT untouched). */
        const char *names[TFM_MAX_OUTPUTS];
        const char *mk[] = {"producer", "op", "variant"};
        const char *mv[] = {"tfm run", op->name, tfm_variant_name(variant)};
        for (size_t i = 0; i < res.n; i++) names[i] = res.names[i];
        if (golden_save(out, res.n, names, res.tensors, 3, mk, mv, err, sizeof err) != 0)
            fprintf(stderr, "%s: %s\n", PROG, err);
        else
            rc = 0;
        op_outputs_free(&res);
    }
    golden_free(&gf);
    return rc;
}

/* ---- inspect, slice --------------------------------------------------------------------- */

static int cmd_inspect(int argc, char **argv) {
    if (argc == 1 && is_help(argv[0])) { printf("usage: tfm inspect FILE\n"); return 0; }
    if (argc != 1) return usage_error("inspect: needs exactly one FILE%s", "");
    if (argv[0][0] == '-') return usage_error("inspect: unknown option '%s'", argv[0]);
    GoldenFile gf;
    char err[TFM_ERR_LEN];
    if (golden_load(&gf, argv[0], err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", PROG, err); return 1; }
    printf("%s: %zu tensors\n", gf.path, gf.n);
    for (size_t i = 0; i < gf.n; i++) {
        char s[96];
        tfm_shape_str(s, sizeof s, gf.tensors[i].ndim, gf.tensors[i].shape);
        printf("  %-40s %-4s %s\n", gf.names[i], tfm_dtype_name(gf.tensors[i].dtype), s);
    }
    for (size_t i = 0; i < gf.n_meta; i++) printf("  meta %s = %s\n", gf.meta_keys[i], gf.meta_values[i]);
    golden_free(&gf);
    return 0;
}

static int cmd_slice(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL};
    size_t npos = 0, lead[2] = {0, 0}, nlead = 0;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) { printf("usage: tfm slice FILE TENSOR [--at I[,J]] OUT.dat\n"); return 0; }
        if (strcmp(argv[i], "--at") == 0) {
            if (i + 1 >= argc) return usage_error("--at needs indices like 0,1%s", "");
            char *s = argv[++i], *end;
            while (*s && nlead < 2) {
                errno = 0;
                unsigned long long v = strtoull(s, &end, 10);
                if (end == s || errno) return usage_error("--at: bad index list '%s'", argv[i]);
                lead[nlead++] = (size_t)v;
                s = *end == ',' ? end + 1 : end;
                if (*end && *end != ',') return usage_error("--at: bad index list '%s'", argv[i]);
            }
        } else if (argv[i][0] == '-') {
            return usage_error("slice: unknown option '%s'", argv[i]);
        } else if (npos < 3) pos[npos++] = argv[i];
        else return usage_error("slice: unexpected argument '%s'", argv[i]);
    }
    if (npos != 3) return usage_error("slice: needs FILE, TENSOR and OUT%s", "");
    GoldenFile gf;
    char err[TFM_ERR_LEN];
    if (golden_load(&gf, pos[0], err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", PROG, err); return 1; }
    int rc = 1;
    const Tensor *t = golden_require(&gf, pos[1], TFM_F32, -1, err, sizeof err);
    if (!t) {
        fprintf(stderr, "%s: %s\n", PROG, err);
    } else if (t->ndim < 2 || (size_t)t->ndim - 2 != nlead) {
        fprintf(stderr, "%s: %s has %d dimensions: give --at with %d leading indices\n", PROG, pos[1], t->ndim,
                t->ndim < 2 ? 0 : t->ndim - 2);
    } else {
        size_t off = 0, rows = t->shape[t->ndim - 2], cols = t->shape[t->ndim - 1];
        int inside = 1;
        for (size_t d = 0; d < nlead; d++) {
            inside &= lead[d] < t->shape[d];
            off = off * t->shape[d] + lead[d];
        }
        FILE *f = inside ? fopen(pos[2], "w") : NULL;
        if (!inside) fprintf(stderr, "%s: --at index outside the shape of %s\n", PROG, pos[1]);
        else if (!f) fprintf(stderr, "%s: %s: cannot open for writing: %s\n", PROG, pos[2], strerror(errno));
        else {
            const float *m = tensor_f32(t) + off * rows * cols;
            for (size_t r = 0; r < rows; r++)
                for (size_t c = 0; c < cols; c++) fprintf(f, "%.9g%c", (double)m[r * cols + c], c + 1 < cols ? ' ' : '\n');
            rc = fclose(f) == 0 ? 0 : 1;
            if (rc) fprintf(stderr, "%s: %s: write failed\n", PROG, pos[2]);
        }
    }
    golden_free(&gf);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) { usage(stdout); return 0; }
    if (strcmp(argv[1], "check") == 0) return cmd_check(argc - 2, argv + 2);
    if (strcmp(argv[1], "run") == 0) return cmd_run(argc - 2, argv + 2);
    if (strcmp(argv[1], "inspect") == 0) return cmd_inspect(argc - 2, argv + 2);
    if (strcmp(argv[1], "slice") == 0) return cmd_slice(argc - 2, argv + 2);
    if (strcmp(argv[1], "bench") == 0) return tfm_bench(argc - 2, argv + 2);
    return usage_error("unknown command '%s'", argv[1]);
}
