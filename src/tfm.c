/* tfm — the command line of tfm.
 *
 *   tfm check [CHAPTER] [--variant naive|fast]      the oracle table; non-zero exit on any FAIL
 *   tfm run OP [--variant V] [--case NAME] [--param N=V]... IN OUT   run one op on your tensors
 *   tfm ops [--json]                                 the op table (oracle/ops.c)
 *   tfm inspect FILE                                 list a safetensors file's tensors and metadata
 *   tfm slice FILE TENSOR [--at I,J] OUT             write a 2-D slice as a gnuplot matrix
 *   tfm tokenize [OPTIONS] [FILE...], tfm detokenize  BERT's tokenizer on lines (src/tokenize.c)
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
int tfm_tokenize(int argc, char **argv);     /* src/tokenize.c */
int tfm_detokenize(int argc, char **argv);
int tfm_pretrain(int argc, char **argv);
int tfm_evaluate(int argc, char **argv);
int tfm_fill_mask(int argc, char **argv);

static void usage(FILE *f) {
    fprintf(f,
            "usage: tfm COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  check [CHAPTER] [--variant naive|fast]\n"
            "      run every golden case of every chapter (or one: 0, 01, attention, 01-attention)\n"
            "      and print the oracle table; exits 1 if any row FAILs\n"
            "  run OP [--variant naive|fast] [--case NAME] [--param NAME=VALUE]... IN OUT\n"
            "      run exactly OP on the tensors in IN (plain or .gz); writes its outputs to OUT\n"
            "      (gzip-compressed if OUT ends in .gz). --case NAME reads NAME/<tensor> instead\n"
            "      of <tensor>, e.g. a case of a golden file. 'tfm run --help' lists the ops\n"
            "  ops [--json]\n"
            "      the op table: every op's inputs, parameters, outputs, kernels, tolerance\n"
            "  inspect FILE\n"
            "      list the tensors (name, dtype, shape) and metadata of a safetensors file\n"
            "  slice FILE TENSOR [--at I[,J]] OUT.dat\n"
            "      write the last two dimensions of TENSOR (at the leading indices I,J) as a\n"
            "      whitespace matrix for gnuplot's 'matrix' format\n"
            "  tokenize [--vocab FILE] [--no-special] [--format ids|tokens|json] [--pair]\n"
            "           [--max-length N] [--truncation S] [--padding S] [FILE...]\n"
            "      BERT's WordPiece tokenizer (bert-base-uncased) on each line (tfm tokenize --help)\n"
            "  detokenize [--vocab FILE] [--skip-special] [FILE...]\n"
            "      ids back to text, as Hugging Face's decode\n"
            "  bench [CHAPTER] [--threads N,M] [--quick] [--json FILE] [--torch FILE]  (tfm bench --help)\n"
            "\n"
            "environment: TFM_ROOT (where oracle/golden/ is; default .), OMP_NUM_THREADS,\n"
            "TFM_DATA (the vocabulary and corpora make deps installs; default build/data)\n");
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

static int cmd_check(int argc, char **argv) {
    const char *chapter = NULL;
    unsigned variants = 3;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            printf("usage: tfm check [CHAPTER] [--variant naive|fast]\n"
                   "Runs every golden case with the op its metadata names and prints, per output:\n"
                   "max abs error and relative Frobenius error against PyTorch float32 (or the\n"
                   "float64 truth, for a case marked 'vs truth'), then the relative Frobenius error\n"
                   "against the float64 truth for tfm and for PyTorch float32, and PASS/FAIL\n"
                   "(|got - want| <= atol + rtol |want|, the op's tolerance, oracle/tolerances.h),\n"
                   "then how many outputs of the case were compared. Every output a golden case\n"
                   "holds must be one the op produces, and the other way round.\n");
            return 0;
        } else if (strcmp(argv[i], "--variant") == 0) {
            TfmVariant v;
            if (i + 1 >= argc) return usage_error("--variant needs a value (naive or fast)%s", "");
            if (parse_variant(argv[++i], &v) != 0) return usage_error("unknown variant '%s' (naive or fast)", argv[i]);
            variants = 1u << v;
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
    tfm_check_header(stdout);
    CheckTotals tot = {0};
    for (size_t c = 0; c < nch; c++)
        if (!only || only == &chs[c]) tfm_check_chapter(&chs[c], variants, stdout, &tot);
    const size_t bad = tot.failed + tot.errors;
    printf("%zu cases (%zu pin%s), %zu outputs compared: %zu passed, %zu failed, %zu errors\n",
           tot.cases, tot.pin_cases, tot.pin_cases == 1 ? "" : "s", tot.outputs, tot.outputs - tot.failed, tot.failed, tot.errors);
    return bad ? 1 : 0;
}

/* ---- run, ops --------------------------------------------------------------------------- */

static const char *param_type_name(TfmParamType t) {
    return t == TFM_PARAM_INT ? "int" : t == TFM_PARAM_FLOAT ? "float" : "word";
}

static void run_help(void) {
    size_t n;
    const TfmOp *ops = tfm_ops(&n);
    printf("usage: tfm run OP [--variant naive|fast] [--case NAME] [--param NAME=VALUE]...\n"
           "              [--model DIR] IN.safetensors OUT.safetensors\n"
           "Reads OP's inputs from IN (F32 unless said), writes its outputs to OUT. IN must hold\n"
           "only tensors OP reads (under NAME/ with --case). A parameter is given with --param or\n"
           "as a 0-d tensor of its name in IN (I64 for int, F32 or F64 for float), not both.\n"
           "An op that reads a model (bert) takes --model DIR, a Hugging Face directory\n"
           "(config.json and model.safetensors, as save_pretrained writes them).\n"
           "With --case NAME (a case of a golden file) the case's outputs are passed over and its\n"
           "parameters apply unless given as --param, as tfm check runs it.\n"
           "Default variant: fast. The ops (tfm ops --json prints this table as JSON):\n");
    for (size_t i = 0; i < n; i++) {
        const TfmOp *op = &ops[i];
        printf("\n  %s  (chapter %02d) %s\n", op->name, op->chapter, op->summary);
        for (size_t k = 0; k < tfm_op_n_inputs(op); k++) {
            const TfmInputSpec *s = &op->inputs[k];
            char dts[32] = "";
            size_t used = 0;
            static const TfmDType all[] = {TFM_F32, TFM_F64, TFM_I64, TFM_BOOL};
            for (size_t d = 0; d < 4; d++)
                if (s->dtypes & DT(all[d]))
                    used += (size_t)snprintf(dts + used, sizeof dts - used, "%s%s", used ? "|" : "", tfm_dtype_name(all[d]));
            printf("    in    %-42s %-8s %s%s\n", s->name, dts, s->shape, s->optional ? " (optional)" : "");
        }
        for (size_t k = 0; k < tfm_op_n_params(op); k++) {
            const TfmParamSpec *p = &op->params[k];
            char what[96];
            if (p->type == TFM_PARAM_WORD) snprintf(what, sizeof what, "%s", p->words);
            else snprintf(what, sizeof what, "%s in [%g, %g]", param_type_name(p->type), p->min, p->max);
            printf("    param %-42s %s; %s%s%s\n", p->name, what, p->help,
                   p->def ? "; default " : (p->optional ? "" : " (required)"), p->def ? p->def : "");
        }
        for (size_t k = 0; k < tfm_op_n_outputs(op); k++)
            printf("    out   %-42s %s\n", op->outputs[k].name, op->outputs[k].shape);
        printf("    kernels %s, %s; tolerance atol %g rtol %g\n", op->naive_name, op->fast_name, op->atol, op->rtol);
    }
}

/* The op table as JSON, for the notebooks' helpers and scripts. */
static int cmd_ops(int argc, char **argv) {
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) { printf("usage: tfm ops [--json]\nLists the op table (names; --json: everything).\n"); return 0; }
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else return usage_error("ops: unexpected argument '%s'", argv[i]);
    }
    size_t n;
    const TfmOp *ops = tfm_ops(&n);
    if (!json) {
        for (size_t i = 0; i < n; i++) printf("%-18s %02d  %s\n", ops[i].name, ops[i].chapter, ops[i].summary);
        return 0;
    }
    static const TfmDType all[] = {TFM_F32, TFM_F64, TFM_I64, TFM_BOOL};
    printf("[\n");
    for (size_t i = 0; i < n; i++) {
        const TfmOp *op = &ops[i];
        printf("  {\"name\": \"%s\", \"chapter\": %d, \"summary\": \"%s\",\n   \"inputs\": [", op->name, op->chapter, op->summary);
        for (size_t k = 0; k < tfm_op_n_inputs(op); k++) {
            const TfmInputSpec *s = &op->inputs[k];
            printf("%s{\"name\": \"%s\", \"dtypes\": [", k ? ", " : "", s->name);
            int first = 1;
            for (size_t d = 0; d < 4; d++)
                if (s->dtypes & DT(all[d])) { printf("%s\"%s\"", first ? "" : ", ", tfm_dtype_name(all[d])); first = 0; }
            printf("], \"min_rank\": %d, \"max_rank\": %d, \"optional\": %s, \"shape\": \"%s\"}",
                   s->min_rank, s->max_rank, s->optional ? "true" : "false", s->shape);
        }
        printf("],\n   \"params\": [");
        for (size_t k = 0; k < tfm_op_n_params(op); k++) {
            const TfmParamSpec *p = &op->params[k];
            printf("%s{\"name\": \"%s\", \"type\": \"%s\", ", k ? ", " : "", p->name, param_type_name(p->type));
            if (p->def) printf("\"default\": \"%s\", ", p->def);
            else printf("\"default\": null, ");
            printf("\"required\": %s, ", !p->def && !p->optional ? "true" : "false");
            if (p->type == TFM_PARAM_WORD) printf("\"words\": \"%s\", ", p->words);
            else printf("\"min\": %.17g, \"max\": %.17g, ", p->min, p->max);
            printf("\"help\": \"%s\"}", p->help);
        }
        printf("],\n   \"outputs\": [");
        for (size_t k = 0; k < tfm_op_n_outputs(op); k++)
            printf("%s{\"name\": \"%s\", \"shape\": \"%s\"}", k ? ", " : "", op->outputs[k].name, op->outputs[k].shape);
        printf("],\n   \"model\": %s, \"naive\": \"%s\", \"fast\": \"%s\", \"atol\": %.17g, "
               "\"rtol\": %.17g}%s\n", op->model ? "true" : "false", op->naive_name, op->fast_name,
               op->atol, op->rtol, i + 1 < n ? "," : "");
    }
    printf("]\n");
    return 0;
}

static int cmd_run(int argc, char **argv) {
    const char *op_name = NULL, *in = NULL, *out = NULL, *case_name = "", *model_dir = NULL;
    TfmVariant variant = TFM_FAST;
    TfmParamArgs params = {0};
    char err[TFM_ERR_LEN];
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) { run_help(); return 0; }
        if (strcmp(argv[i], "--variant") == 0) {
            if (i + 1 >= argc) return usage_error("--variant needs a value (naive or fast)%s", "");
            if (parse_variant(argv[++i], &variant) != 0) return usage_error("unknown variant '%s' (naive or fast)", argv[i]);
        } else if (strcmp(argv[i], "--case") == 0) {
            if (i + 1 >= argc) return usage_error("--case needs a name%s", "");
            case_name = argv[++i];
        } else if (strcmp(argv[i], "--model") == 0) {
            if (i + 1 >= argc) return usage_error("--model needs a directory%s", "");
            model_dir = argv[++i];
        } else if (strcmp(argv[i], "--param") == 0) {
            if (i + 1 >= argc) return usage_error("--param needs NAME=VALUE%s", "");
            if (tfm_param_args_add(&params, argv[++i], err, sizeof err) != 0) return usage_error("%s", err);
        } else if (argv[i][0] == '-') {
            return usage_error("run: unknown option '%s'", argv[i]);
        } else if (!op_name) op_name = argv[i];
        else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else return usage_error("run: unexpected argument '%s'", argv[i]);
    }
    if (!op_name || !in || !out) return usage_error("run: needs OP, IN and OUT%s", "");
    const TfmOp *op = tfm_op_find(op_name);
    if (!op) return usage_error("run: unknown op '%s' ('tfm run --help' lists them)", op_name);

    if (model_dir && !op->model) return usage_error("run: op '%s' reads no model (--model)", op->name);
    GoldenFile gf, weights;
    char *config = NULL;
    TfmModelSource model = {&weights, "", NULL};
    memset(&weights, 0, sizeof weights);
    if (model_dir) {   /* a Hugging Face directory: config.json and model.safetensors */
        char path[1024];
        snprintf(path, sizeof path, "%s/config.json", model_dir);
        if (golden_read_text(path, &config, err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", PROG, err); return 1; }
        snprintf(path, sizeof path, "%s/model.safetensors", model_dir);
        if (golden_load(&weights, path, err, sizeof err) != 0) {
            fprintf(stderr, "%s: %s\n", PROG, err);
            free(config);
            return 1;
        }
        model.config_json = config;
    }
    if (golden_load(&gf, in, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        golden_free(&weights);
        free(config);
        return 1;
    }
    /* --case NAME of a golden file: the case's outputs ride along unread, its parameters
     * ("NAME/params") apply unless given as --param, and an op that reads a model finds it in
     * the case (its weights and "NAME/config"), as `tfm check` runs it. */
    const int from_case = case_name[0] != '\0';
    TfmModelSource case_model = {&gf, case_name, NULL};
    if (from_case) {
        char key[300];
        snprintf(key, sizeof key, "%s/params", case_name);
        TfmParamArgs meta = {0};
        const char *mp = golden_meta(&gf, key);
        if (mp && tfm_param_args_parse(&meta, mp, err, sizeof err) == 0) {
            for (size_t i = 0; i < meta.n; i++) {
                int given = 0;
                for (size_t j = 0; j < params.n; j++) given |= strcmp(params.names[j], meta.names[i]) == 0;
                char item[128];
                snprintf(item, sizeof item, "%s=%s", meta.names[i], meta.values[i]);
                if (!given && tfm_param_args_add(&params, item, err, sizeof err) != 0) break;
            }
        }
        snprintf(key, sizeof key, "%s/config", case_name);
        case_model.config_json = golden_meta(&gf, key);
    }
    const TfmModelSource *src = model_dir ? &model : from_case && case_model.config_json ? &case_model : NULL;
    int rc = 1;
    OpOutputs res;
    if (tfm_op_run_model(&res, op, &gf, case_name, &params, src, variant, from_case, err,
                         sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", PROG, err);
    } else {
        /* golden_save writes a temporary file beside OUT and renames it: a failed run or write
         * leaves no partial OUT behind (and an existing OUT untouched). The metadata records
         * the op and its parameters as a golden case's do. */
        const char *names[TFM_MAX_OUTPUTS];
        char ptext[TFM_MAX_PARAM_ARGS * 112] = "";
        size_t used = 0;
        for (size_t i = 0; i < params.n && used < sizeof ptext; i++) {
            int w = snprintf(ptext + used, sizeof ptext - used, "%s%s=%s", i ? " " : "", params.names[i], params.values[i]);
            if (w > 0) used += (size_t)w;
        }
        const char *mk[] = {"producer", "op", "variant", "params"};
        const char *mv[] = {"tfm run", op->name, tfm_variant_name(variant), ptext};
        for (size_t i = 0; i < res.n; i++) names[i] = res.names[i];
        if (golden_save(out, res.n, names, res.tensors, params.n ? 4 : 3, mk, mv, err, sizeof err) != 0)
            fprintf(stderr, "%s: %s\n", PROG, err);
        else
            rc = 0;
        op_outputs_free(&res);
    }
    golden_free(&gf);
    golden_free(&weights);
    free(config);
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
    if (strcmp(argv[1], "ops") == 0) return cmd_ops(argc - 2, argv + 2);
    if (strcmp(argv[1], "inspect") == 0) return cmd_inspect(argc - 2, argv + 2);
    if (strcmp(argv[1], "slice") == 0) return cmd_slice(argc - 2, argv + 2);
    if (strcmp(argv[1], "bench") == 0) return tfm_bench(argc - 2, argv + 2);
    if (strcmp(argv[1], "tokenize") == 0) return tfm_tokenize(argc - 2, argv + 2);
    if (strcmp(argv[1], "detokenize") == 0) return tfm_detokenize(argc - 2, argv + 2);
    if (strcmp(argv[1], "pretrain") == 0) return tfm_pretrain(argc - 2, argv + 2);
    if (strcmp(argv[1], "evaluate") == 0) return tfm_evaluate(argc - 2, argv + 2);
    if (strcmp(argv[1], "fill-mask") == 0) return tfm_fill_mask(argc - 2, argv + 2);
    return usage_error("unknown command '%s'", argv[1]);
}
