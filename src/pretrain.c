/* pretrain.c — `tfm pretrain`: BERT's pretraining (MLM + NSP) on a corpus, in C (chapter 09).
 *
 * The loop, per optimizer step s = 0 .. steps-1, as Hugging Face's Trainer runs it:
 *   for each of grad_accum micro-batches g = s * grad_accum + k:
 *       B instances from the stream (below), padded to T; chapter 05's masking with the seed
 *       of (seed, g): 15% of the non-special tokens, 80/10/10 (dynamic masking: new masks
 *       every time an instance comes round again);
 *       forward, both losses, backward (gradients accumulate, each loss / grad_accum);
 *   clip the gradients to max_grad_norm; AdamW with lr(s) (pretrain.h, optim.h).
 *
 * The instance stream: chapter 09's instances (pretrain_data.h) from the corpus and the seed,
 * in epochs; epoch e visits them in a permutation drawn from (seed, e). Micro-batch g takes
 * stream items [g B, (g + 1) B). Everything random is a function of the seed and of a
 * position (tfm_rng_at), so the data position of a run is its step number: a resumed run
 * draws what the uninterrupted run would have drawn, and its losses are the same bits (for the
 * same thread count: the fast kernels' sums are ordered per thread).
 *
 * Files. --out DIR receives DIR/checkpoint-<step>/ every --save-every steps (a model
 * directory and trainer_state.safetensors: pretrain_model.h), written as
 * DIR/checkpoint-<step>.tmp/ and renamed, so a kill at any moment leaves every earlier
 * checkpoint whole and no half-written one under the final name; the final model goes to DIR
 * itself. --resume DIR/checkpoint-K continues from step K to --steps.
 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bert_model.h"
#include "cli.h"
#include "pretrain.h"
#include "pretrain_data.h"
#include "pretrain_model.h"
#include "pretraining.h"
#include "rng.h"
#include "tokenizer.h"

int tfm_pretrain(int argc, char **argv);

#define CMD "tfm pretrain"

/* ------------------------------------------------------------------ presets */

typedef struct {
    const char *name;
    size_t L, E, H, I, T;
} Preset;

static const Preset PRESETS[] = {
    {"micro", 2, 64, 2, 256, 64},      /* for tests: seconds */
    {"tiny", 4, 256, 4, 1024, 128},    /* the default: make pretrain */
    {"small", 6, 512, 8, 2048, 128},
    {"base", 12, 768, 12, 3072, 512},  /* bert-base-uncased's shape */
};

/* ------------------------------------------------------------------ options */

typedef struct {
    const char *config, *config_file, *corpus, *objective, *out, *resume, *log, *vocab;
    int64_t steps, batch, seq_len, warmup, grad_accum, save_every, print_every, threads;
    uint64_t seed;
    int seed_given;
    double lr, dropout, weight_decay, max_grad_norm;
    int naive;
} Options;

static void help(void)
{
    printf(
        "usage: tfm pretrain [--config micro|tiny|small|base | --config-file config.json]\n"
        "                    [--corpus FILE] [--objective mlm+nsp] [--steps N] [--batch-size B]\n"
        "                    [--seq-len T] [--lr X] [--warmup N] [--grad-accum K] [--seed S]\n"
        "                    [--dropout 0] [--weight-decay X] [--max-grad-norm X]\n"
        "                    [--save-every K] [--out DIR] [--resume DIR/checkpoint-K]\n"
        "                    [--log FILE] [--print-every K] [--threads N] [--variant naive|fast]\n"
        "Pretrains BertForPreTraining (masked LM + next-sentence prediction) from Hugging Face's\n"
        "initialization with AdamW, linear warm-up and decay, and gradient clipping, as\n"
        "Hugging Face's Trainer does. Defaults: --config tiny, the corpus of make deps (Jane\n"
        "Austen's chapters, $TFM_DATA/austen/pretrain-train.txt: one sentence per line, a blank\n"
        "line between documents), --steps 1000, --batch-size 32, --seq-len the preset's T,\n"
        "--lr 5e-4, --warmup steps/10, --grad-accum 1, --seed 42, --weight-decay 0.01,\n"
        "--max-grad-norm 1, --out build/pretrain/<config>. --steps is the total, also when\n"
        "resuming. Every --save-every steps DIR/checkpoint-<step>/ is written (a Hugging Face\n"
        "model directory plus the optimizer's state); the final model goes to DIR.\n"
        "--log FILE appends one JSON object per step. Dropout is not implemented: only 0.\n");
}

static int parse_options(Options *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->objective = "mlm+nsp";
    /* -1 (and lr < 0): not given. A new run takes the defaults (options_defaults); a resumed
     * one the settings of the run it continues. */
    o->steps = 1000, o->batch = -1, o->seq_len = -1, o->warmup = -1, o->grad_accum = -1;
    o->print_every = 10;
    o->seed_given = 0, o->seed = 42, o->lr = -1, o->weight_decay = 0.01, o->max_grad_norm = 1.0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            help();
            return 1;
        }
        if (a[0] != '-' || a[1] != '-')
            return cli_usage("pretrain", "unexpected argument '%s'", a);
        if (strcmp(a, "--naive") == 0) {      /* the naive kernels, for the tests */
            o->naive = 1;
            continue;
        }
        if (i + 1 >= argc)
            return cli_usage("pretrain", "%s needs a value", a);
        const char *v = argv[++i];
        int64_t seed;
        int rc = 0;
        if (strcmp(a, "--config") == 0) o->config = v;
        else if (strcmp(a, "--config-file") == 0) o->config_file = v;
        else if (strcmp(a, "--corpus") == 0) o->corpus = v;
        else if (strcmp(a, "--objective") == 0) o->objective = v;
        else if (strcmp(a, "--out") == 0) o->out = v;
        else if (strcmp(a, "--resume") == 0) o->resume = v;
        else if (strcmp(a, "--log") == 0) o->log = v;
        else if (strcmp(a, "--vocab") == 0) o->vocab = v;
        else if (strcmp(a, "--variant") == 0) {
            if (strcmp(v, "naive") != 0 && strcmp(v, "fast") != 0)
                return cli_usage("pretrain", "--variant is naive or fast, not '%s'", v);
            o->naive = strcmp(v, "naive") == 0;
        }
        else if (strcmp(a, "--steps") == 0) rc = cli_int(&o->steps, "pretrain", a, v, 1);
        else if (strcmp(a, "--batch-size") == 0) rc = cli_int(&o->batch, "pretrain", a, v, 1);
        else if (strcmp(a, "--seq-len") == 0) rc = cli_int(&o->seq_len, "pretrain", a, v, 5);
        else if (strcmp(a, "--warmup") == 0) rc = cli_int(&o->warmup, "pretrain", a, v, 0);
        else if (strcmp(a, "--grad-accum") == 0) rc = cli_int(&o->grad_accum, "pretrain", a, v, 1);
        else if (strcmp(a, "--save-every") == 0) rc = cli_int(&o->save_every, "pretrain", a, v, 0);
        else if (strcmp(a, "--print-every") == 0) rc = cli_int(&o->print_every, "pretrain", a, v, 1);
        else if (strcmp(a, "--threads") == 0) rc = cli_int(&o->threads, "pretrain", a, v, 1);
        else if (strcmp(a, "--seed") == 0) {
            rc = cli_int(&seed, "pretrain", a, v, 0);
            o->seed = (uint64_t)seed;
            o->seed_given = 1;
        }
        else if (strcmp(a, "--lr") == 0) rc = cli_float(&o->lr, "pretrain", a, v, 0, 1);
        else if (strcmp(a, "--dropout") == 0) rc = cli_float(&o->dropout, "pretrain", a, v, 0, 1);
        else if (strcmp(a, "--weight-decay") == 0) rc = cli_float(&o->weight_decay, "pretrain", a, v, 0, 1);
        else if (strcmp(a, "--max-grad-norm") == 0) rc = cli_float(&o->max_grad_norm, "pretrain", a, v, 0, 1e30);
        else return cli_usage("pretrain", "unknown option '%s'", a);
        if (rc)
            return rc;
    }
    if (o->config && o->config_file)
        return cli_usage("pretrain", "--config and --config-file: give one");
    if (strcmp(o->objective, "mlm+nsp") != 0)
        return cli_usage("pretrain", "--objective: only mlm+nsp (BERT's) is implemented, not '%s'",
                           o->objective);
    if (o->dropout != 0.0)
        return cli_usage("pretrain", "--dropout %g: dropout is not implemented; tfm trains with 0",
                           o->dropout);
    return 0;
}

/* The settings a resumed run takes from its checkpoint when the command line leaves them out. */
static int options_from_state(Options *o, const GoldenFile *gf)
{
    int64_t *const I[] = {&o->batch, &o->seq_len, &o->grad_accum, &o->warmup};
    static const char *const K[] = {"batch_size", "seq_len", "grad_accum", "warmup"};
    for (int i = 0; i < 4; i++) {
        const char *v = golden_meta(gf, K[i]);
        if (v && *I[i] < 0)
            *I[i] = strtoll(v, NULL, 10);
    }
    const char *seed = golden_meta(gf, "seed"), *lr = golden_meta(gf, "lr");
    if (seed && !o->seed_given)
        o->seed = strtoull(seed, NULL, 10);
    if (lr && o->lr < 0)
        o->lr = strtod(lr, NULL);
    return 0;
}

static void options_defaults(Options *o)
{
    if (o->batch < 0)
        o->batch = 32;
    if (o->grad_accum < 0)
        o->grad_accum = 1;
    if (o->lr < 0)
        o->lr = 5e-4;
    if (o->warmup < 0)
        o->warmup = o->steps / 10;
}

/* ------------------------------------------------------------------ the instance stream */

typedef struct {
    const PretrainInstances *in;
    uint64_t seed;
    int64_t epoch;        /* whose permutation `order` holds; -1: none yet */
    size_t *order;        /* [in->n] */
} Stream;

/* Epoch e's permutation: Fisher-Yates with the draws of (seed, e) (a stream of its own). */
static void stream_epoch(Stream *s, int64_t e)
{
    const size_t n = s->in->n;
    uint64_t st = tfm_rng_at(s->seed ^ 0x9e3779b97f4a7c15ull, (uint64_t)e);
    for (size_t i = 0; i < n; i++)
        s->order[i] = i;
    for (size_t i = n; i > 1; i--) {
        const size_t j = (size_t)(tfm_rng_uniform_next(&st) * (double)i);
        const size_t t = s->order[i - 1];
        s->order[i - 1] = s->order[j < i ? j : i - 1];
        s->order[j < i ? j : i - 1] = t;
    }
    s->epoch = e;
}

/* Micro-batch g of the stream, [B, T] (nsp [B]); returns 0 or -1 with err. */
static int stream_batch(Stream *s, int64_t g, int64_t *ids, int64_t *types, int64_t *mask,
                        int64_t *nsp, size_t B, size_t T, int64_t pad, char *err, size_t errlen)
{
    const size_t n = s->in->n;
    for (size_t b = 0; b < B; b++) {
        const uint64_t j = (uint64_t)g * B + b;
        const int64_t e = (int64_t)(j / n);
        if (e != s->epoch)
            stream_epoch(s, e);
        if (pretrain_batch_fill(ids + b * T, types + b * T, mask + b * T, nsp + b, s->in,
                                s->order, (size_t)(j % n), 1, T, pad, err, errlen))
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ progress */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void eta_str(char *buf, size_t len, double s)
{
    if (!(s >= 0) || s > 1e7)
        snprintf(buf, len, "?");
    else if (s >= 3600)
        snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)(fmod(s, 3600) / 60));
    else
        snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

/* ------------------------------------------------------------------ checkpoints */

typedef struct {
    char step[32], seed[32], batch[32], seq_len[32], grad_accum[32], instances[32];
    char lr[40], warmup[32];
} StateMeta;

static const char *const META_KEYS[] = {"step", "seed", "batch_size", "seq_len", "grad_accum",
                                        "instances", "lr", "warmup"};
#define N_META 8

static void meta_fill(StateMeta *m, int64_t step, const Options *o, size_t T, size_t n_inst)
{
    snprintf(m->step, sizeof m->step, "%lld", (long long)step);
    snprintf(m->seed, sizeof m->seed, "%llu", (unsigned long long)o->seed);
    snprintf(m->batch, sizeof m->batch, "%lld", (long long)o->batch);
    snprintf(m->seq_len, sizeof m->seq_len, "%zu", T);
    snprintf(m->grad_accum, sizeof m->grad_accum, "%lld", (long long)o->grad_accum);
    snprintf(m->instances, sizeof m->instances, "%zu", n_inst);
    snprintf(m->lr, sizeof m->lr, "%.17g", o->lr);
    snprintf(m->warmup, sizeof m->warmup, "%lld", (long long)o->warmup);
}

static void meta_values(const StateMeta *m, const char *v[N_META])
{
    v[0] = m->step, v[1] = m->seed, v[2] = m->batch, v[3] = m->seq_len;
    v[4] = m->grad_accum, v[5] = m->instances, v[6] = m->lr, v[7] = m->warmup;
}

static int remove_tree(const char *dir)
{
    /* a stale DIR.tmp holds at most the three files a checkpoint writes */
    static const char *const FILES[] = {"config.json", "model.safetensors",
                                        "trainer_state.safetensors"};
    char p[4200];
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, FILES[i]);
        remove(p);
    }
    return rmdir(dir) == 0 || errno == ENOENT ? 0 : -1;
}

static int save_checkpoint(const char *out, int64_t step, const BertPretrainLayout *lay,
                           const BertPretrainRun *r, const Options *o, size_t T, size_t n_inst,
                           char *err, size_t errlen)
{
    char dir[4096], tmp[4200];
    if ((size_t)snprintf(dir, sizeof dir, "%s/checkpoint-%lld", out, (long long)step) >=
            sizeof dir - 8 ||
        (size_t)snprintf(tmp, sizeof tmp, "%s.tmp", dir) >= sizeof tmp) {
        snprintf(err, errlen, "--out: path too long");
        return -1;
    }
    remove_tree(tmp);
    StateMeta m = {0};
    const char *vals[N_META];
    meta_fill(&m, step, o, T, n_inst);
    meta_values(&m, vals);
    if (pretrain_save_dir(tmp, lay, r->params, err, errlen) ||
        pretrain_save_state(tmp, lay, r->m, r->v, N_META, META_KEYS, vals, err, errlen))
        return -1;
    remove_tree(dir);                         /* an older run's checkpoint of the same step */
    if (rename(tmp, dir) != 0) {
        snprintf(err, errlen, "%.400s: cannot rename to %.400s: %s", tmp, dir,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* The resumed run must be the run that wrote the checkpoint: same data, same batches. */
static int check_meta(const GoldenFile *gf, const Options *o, size_t T, size_t n_inst,
                      int64_t *step, char *err, size_t errlen)
{
    StateMeta m = {0};
    const char *want[N_META];
    meta_fill(&m, 0, o, T, n_inst);
    meta_values(&m, want);
    for (int k = 1; k < N_META; k++) {
        const char *got = golden_meta(gf, META_KEYS[k]);
        if (!got || strcmp(got, want[k]) != 0) {
            snprintf(err, errlen, "%s: the checkpoint was written with %s = %s; this run has %s "
                     "(resume with the options of the run that wrote it)", gf->path,
                     META_KEYS[k], got ? got : "(none)", want[k]);
            return -1;
        }
    }
    const char *s = golden_meta(gf, "step");
    char *end;
    *step = s ? strtoll(s, &end, 10) : -1;
    if (!s || *end || *step < 0) {
        snprintf(err, errlen, "%s: no step in the checkpoint's metadata", gf->path);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ the command */

static int preset_config(BertConfig *cfg, size_t *T, const Options *o, size_t V)
{
    const char *name = o->config ? o->config : "tiny";
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
        if (strcmp(PRESETS[i].name, name) == 0) {
            const Preset *p = &PRESETS[i];
            BertConfig c = {V, p->E, p->L, p->H, p->I, 512, 2, 1e-12f, TFM_ACT_GELU, 0};
            *cfg = c;
            *T = p->T;
            return 0;
        }
    return cli_usage("pretrain", "--config: no preset '%s' (micro, tiny, small, base)", name);
}

int tfm_pretrain(int argc, char **argv)
{
    Options o;
    int rc = parse_options(&o, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (o.threads)
        omp_set_num_threads((int)o.threads);
    char err[TFM_ERR_LEN + 512], path[4096] = "", vpath[4096] = "", outbuf[4096] = "";
    Vocab vocab;
    PretrainCorpus corpus = {0};
    PretrainInstances inst = {0};
    BertPretrainLayout lay = {0};
    BertPretrainRun run = {0};
    float *params = NULL;
    int64_t *batch = NULL;
    size_t *order = NULL;
    FILE *log = NULL;
    GoldenFile state = {0};
    int vocab_loaded = 0, status = 1;

    if (!o.vocab)
        tok_data_path(vpath, sizeof vpath, TOK_DEFAULT_VOCAB);
    if (vocab_load(&vocab, o.vocab ? o.vocab : vpath, err, sizeof err) != 0) {
        cli_fail("pretrain", "%s%s", err, o.vocab ? "" : " (make deps installs it)");
        goto done;
    }
    vocab_loaded = 1;
    if (!o.corpus)
        tok_data_path(path, sizeof path, "austen/pretrain-train.txt");
    const char *corpus_path = o.corpus ? o.corpus : path;
    if (pretrain_corpus_load(&corpus, corpus_path, &vocab, err, sizeof err) != 0) {
        cli_fail("pretrain", "%s%s", err, o.corpus ? "" : " (make deps writes it)");
        goto done;
    }

    /* the model: a preset or a config file; from a checkpoint when resuming */
    BertConfig cfg;
    size_t T = 128;
    if (o.resume) {
        if (o.config || o.config_file) {
            cli_fail("pretrain", "--resume takes the model from the checkpoint: leave out --config");
            status = 2;
            goto done;
        }
        if (pretrain_load_state(&state, o.resume, err, sizeof err) != 0 ||
            pretrain_load_dir(&lay, &params, o.resume, err, sizeof err) != 0) {
            cli_fail("pretrain", "%s", err);
            goto done;
        }
        options_from_state(&o, &state);
        cfg = lay.cfg;
        T = o.seq_len > 0 ? (size_t)o.seq_len : 128;
    } else if (o.config_file) {
        char *json = NULL;
        if (golden_read_text(o.config_file, &json, err, sizeof err) != 0 ||
            tfm_bert_parse_config(&cfg, json, o.config_file, err, sizeof err) != 0) {
            free(json);
            cli_fail("pretrain", "%s", err);
            goto done;
        }
        free(json);
        T = o.seq_len > 0 ? (size_t)o.seq_len : 128;
    } else {
        if ((rc = preset_config(&cfg, &T, &o, vocab.n)) != 0) {
            status = rc;
            goto done;
        }
        if (o.seq_len > 0)
            T = (size_t)o.seq_len;
    }
    options_defaults(&o);
    if (cfg.vocab_size != vocab.n) {
        cli_fail("pretrain", "the model's vocab_size is %zu; the vocabulary has %zu entries", cfg.vocab_size,
             vocab.n);
        goto done;
    }
    if (T > cfg.max_position_embeddings) {
        cli_fail("pretrain", "--seq-len %zu is longer than the model's max_position_embeddings %zu", T,
             cfg.max_position_embeddings);
        goto done;
    }
    const PretrainSpecials sp = pretrain_specials(&vocab);
    if (pretrain_instances_build(&inst, &corpus, T, 0.1, 1, o.seed, &sp, err, sizeof err) != 0) {
        cli_fail("pretrain", "%s: %s", corpus_path, err);
        goto done;
    }
    if (!o.resume) {
        if (bert_pretrain_layout(&lay, &cfg, err, sizeof err) != 0 ||
            !(params = malloc(lay.n_params * sizeof(float) + 1))) {
            cli_fail("pretrain", "%s", params ? err : "out of memory for the parameters");
            goto done;
        }
        bert_pretrain_init(params, &lay, 0.02, o.seed);
    }
    const size_t B = (size_t)o.batch, BT = B * T;
    if (bert_pretrain_run_init(&run, &lay, params, B, T, err, sizeof err) != 0) {
        cli_fail("pretrain", "%s", err);
        goto done;
    }
    int64_t start = 0;
    if (o.resume) {
        if (pretrain_state_moments(run.m, run.v, &state, &lay, err, sizeof err) != 0 ||
            check_meta(&state, &o, T, inst.n, &start, err, sizeof err) != 0) {
            cli_fail("pretrain", "%s", err);
            goto done;
        }
        if (start >= o.steps) {
            cli_fail("pretrain", "%s is at step %lld; --steps %lld leaves nothing to do", o.resume,
                 (long long)start, (long long)o.steps);
            goto done;
        }
    }
    /* --out: given, or the checkpoint's parent when resuming, or build/pretrain/<config> */
    const char *out = o.out;
    if (!out && o.resume) {
        snprintf(outbuf, sizeof outbuf, "%s", o.resume);
        char *slash = strrchr(outbuf, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(outbuf, sizeof outbuf, ".");
        out = outbuf;
    } else if (!out) {
        snprintf(outbuf, sizeof outbuf, "build/pretrain/%s", o.config ? o.config : "tiny");
        out = outbuf;
    }
    if (o.log && !(log = fopen(o.log, o.resume ? "a" : "w"))) {
        cli_fail("pretrain", "%s: cannot open for writing: %s", o.log, strerror(errno));
        goto done;
    }

    /* the batches of one step, and the masking's buffers: one block, [5 k B T + k B] */
    const size_t k_acc = (size_t)o.grad_accum;
    batch = calloc(k_acc * (5 * BT + B) + 1, sizeof *batch);
    order = calloc(inst.n + 1, sizeof *order);
    PretrainBatch *mb = calloc(k_acc, sizeof *mb);
    if (!batch || !order || !mb) {
        free(mb);
        cli_fail("pretrain", "out of memory for the batches");
        goto done;
    }
    Stream stream = {&inst, o.seed, -1, order};
    const int64_t special[3] = {sp.cls, sp.sep, sp.pad};
    const TrainRecipe recipe = {o.steps, o.warmup, o.grad_accum, o.lr, o.max_grad_norm,
                                {0.9, 0.999, 1e-8, o.weight_decay}};
    const int tty = isatty(fileno(stderr));
    fprintf(stderr, CMD ": %zu layers, E %zu, %zu parameters; %zu instances of %zu tokens from "
            "%s; steps %lld..%lld, batch %zu x %lld, %d threads\n", cfg.num_hidden_layers,
            cfg.hidden_size, lay.n_params, inst.n, T, corpus_path, (long long)start + 1,
            (long long)o.steps, B, (long long)o.grad_accum, omp_get_max_threads());
    const double t0 = now();
    for (int64_t s = start; s < o.steps; s++) {
        const double ts = now();
        for (size_t k = 0; k < k_acc; k++) {
            int64_t *ids = batch + k * (5 * BT + B), *types = ids + BT, *mask = types + BT;
            int64_t *masked = mask + BT, *labels = masked + BT, *nsp = labels + BT;
            const int64_t g = s * o.grad_accum + (int64_t)k;
            if (stream_batch(&stream, g, ids, types, mask, nsp, B, T, sp.pad, err,
                             sizeof err) != 0) {
                free(mb);
                cli_fail("pretrain", "%s", err);
                goto done;
            }
            const MlmMaskConfig mc = {0.15, 0.8, 0.1, sp.mask, vocab.n, special, 3,
                                      tfm_rng_at(o.seed, (uint64_t)g)};
            mlm_mask(masked, labels, ids, &mc, BT);
            const PretrainBatch one = {masked, mask, types, labels, nsp};
            mb[k] = one;
        }
        StepStats st = {0};
        if ((o.naive ? bert_pretrain_step_naive : bert_pretrain_step_fast)(&run, &recipe, s, mb,
                                                                            &st) != 0) {
            if (tty)
                fputc('\n', stderr);
            free(mb);
            cli_fail("pretrain", "step %lld: the loss is %g (mlm %g, nsp %g), the gradient norm %g: stopped; "
                 "the last checkpoint is kept", (long long)s + 1, st.loss, st.mlm_loss,
                 st.nsp_loss, st.grad_norm);
            goto done;
        }
        const double dt = now() - ts, tps = (double)(BT * k_acc) / dt;
        const int64_t step = s + 1;
        if (log) {
            fprintf(log, "{\"step\": %lld, \"loss\": %.9g, \"mlm_loss\": %.9g, \"nsp_loss\": "
                    "%.9g, \"lr\": %.9g, \"grad_norm\": %.9g, \"tokens_per_s\": %.1f}\n",
                    (long long)step, st.loss, st.mlm_loss, st.nsp_loss, st.lr, st.grad_norm,
                    tps);
            fflush(log);
        }
        char eta[32];
        eta_str(eta, sizeof eta, (now() - t0) / (double)(step - start) * (double)(o.steps - step));
        if (tty)
            fprintf(stderr, "\rstep %lld/%lld  loss %.4f (mlm %.4f, nsp %.4f)  lr %.2e  "
                    "%.0f tok/s  ETA %s   ", (long long)step, (long long)o.steps, st.loss,
                    st.mlm_loss, st.nsp_loss, st.lr, tps, eta);
        else if (step % o.print_every == 0 || step == o.steps)
            fprintf(stderr, "step %lld/%lld loss %.4f mlm %.4f nsp %.4f lr %.3e tok/s %.0f "
                    "ETA %s\n", (long long)step, (long long)o.steps, st.loss, st.mlm_loss,
                    st.nsp_loss, st.lr, tps, eta);
        if (o.save_every && step % o.save_every == 0 && step < o.steps &&
            save_checkpoint(out, step, &lay, &run, &o, T, inst.n, err, sizeof err) != 0) {
            free(mb);
            cli_fail("pretrain", "%s", err);
            goto done;
        }
    }
    free(mb);
    if (tty)
        fputc('\n', stderr);
    if (pretrain_save_dir(out, &lay, params, err, sizeof err) != 0) {
        cli_fail("pretrain", "%s", err);
        goto done;
    }
    fprintf(stderr, CMD ": wrote %s (%.1f s)\n", out, now() - t0);
    status = 0;
done:
    if (log)
        fclose(log);
    golden_free(&state);
    free(batch);
    free(order);
    bert_pretrain_run_free(&run);
    free(params);
    bert_pretrain_layout_free(&lay);
    pretrain_instances_free(&inst);
    pretrain_corpus_free(&corpus);
    if (vocab_loaded)
        vocab_free(&vocab);
    return status;
}
