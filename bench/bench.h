/* bench.h — the benchmark harness behind `tfm bench` and `make bench`.
 *
 * One run measures, on one machine and in one process: every op's naive and fast variant, a
 * reference implementation where one exists (OpenBLAS sgemm for the matmuls), and the machine's
 * ceilings (FP32 FMA peak, STREAM-style copy and triad bandwidth). PyTorch's timings come from
 * bench/torch_bench.py, run just before by the same make target on the same shapes and thread
 * counts, and are read back from its JSON files (--torch).
 *
 * A case is one row of the case table (bench/cases.c): an op at one shape. Adding a chapter is
 * one file of callbacks (bench/chNN_name.c, like bench/ch01_attention.c) plus its rows there.
 *
 * Method, for every (case, thread count, variant):
 *   - inputs are random and seeded: uniform in [-1, 1), weights scaled as a layer's
 *     initialization would (never zeros, which make every product exact and hide bugs);
 *   - the first run of fast (and of the reference) is compared with naive's output from the same
 *     run and the same inputs with compare_f32 and the chapter's tolerance; a variant that fails
 *     gets FAIL and no timing at all;
 *   - warm-up runs, then samples of one call each, timed with clock_gettime(CLOCK_MONOTONIC),
 *     until both a minimum count and a minimum time are reached; reported: median, min and max;
 *   - with 2+ threads a short FMA probe before each sample checks that every thread ran at
 *     single-core speed, i.e. that the vCPUs were really separate cores during that sample;
 *     median and range are taken over the samples that passed (the row says how many did).
 *   - naive variants are sequential code: they are timed on one thread only. On big shapes
 *     they run on a slice of the op (rows of a matmul, heads of attention) and their time is
 *     scaled up by the work ratio; the row says so ("naive: 83 of 2048 rows, x24.7").
 *   - full run: 3 warm-up calls, then >= 10 samples and >= 1 s per variant; naive >= 1 sample
 *     and 0.5 s, on at most 1 GFLOP of work. --quick (a smoke test, not for quoting): 1 warm-up,
 *     >= 3 samples and 0.1 s; naive: one sample after its first run, on at most 0.3 GFLOP;
 *     STREAM arrays of 256 MiB instead of 1 GiB.
 *
 * Dimension conventions of BenchCase.dims (also what bench/torch_bench.py reads, by op name):
 *   matmul    [M, K, N]              C[M,N] = A[M,K] B[K,N]
 *   linear    [M, K, N]              Y[M,N] = X[M,K] W[N,K]^T + bias[N]
 *   attention [B, H, T, D, causal]   softmax(Q K^T / sqrt(D) (+ causal mask)) V, Q,K,V [B,H,T,D]
 *   attention-backward [B, H, T, D, 0]   its gradients dQ, dK, dV (the forward outside the timing)
 *   mha       [B, T, E, H]           nn.MultiheadAttention(E, H) self-attention on x [B,T,E]
 *   pe        [T, E]                 the sinusoidal table PE[T,E]
 *   layernorm [N, E]                 LayerNorm over the last dimension of x [N,E]
 *   bert      [B, T, L, E, H, I]     BertModel's forward (V 30522, P 512), random weights
 *   encoder-layer [B, T, E, H, I]    nn.TransformerEncoderLayer(E, H, I, gelu, post-LN) on [B,T,E]
 *   encoder-layer-backward [B, T, E, H, I]   the same layer's forward and backward, one step
 *   mlm-loss  [N, V, keep_percent]   cross entropy of logits [N,V], keep_percent% of labels kept
 *   pretrain-steps [B, T, L, E, H, I]  one optimizer step of BertForPreTraining (V 30522, P 512,
 *                                    15% of the tokens masked): forward, both losses, backward,
 *                                    clipping, AdamW
 */
#ifndef TFM_BENCH_H
#define TFM_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "compare.h"

#define BENCH_MAX_DIMS 6
#define BENCH_MAX_THREADS 64

/* Which ceiling a case is compared with: the FMA peak (GFLOP/s) or the copy bandwidth (GB/s). */
typedef enum { BENCH_COMPUTE, BENCH_MEMORY } BenchBound;

/* What a case's setup made. The op's buffers live in `state`; the harness only needs to know
 * where fast's output and naive's output overlap, to compare them. */
typedef struct {
    void *state;              /* the case's buffers, freed by its teardown */
    const float *out;         /* [n_check] fast's output (the reference writes the same buffer):
                                 the part that naive also computes */
    const float *naive_out;   /* [n_check] naive's output */
    size_t n_check;
    int ndim;                 /* shape of the checked part, for compare's worst-element index */
    size_t shape[4];          /* [ndim] */
    double naive_share;       /* fraction of the op's work naive does: 1, or less on big shapes */
    char naive_note[96];      /* how naive was cut down ("" when it runs the whole op) */
} BenchInstance;

typedef struct BenchCase BenchCase;
struct BenchCase {
    int chapter;              /* 0, 1, ...: also selects the tolerance (oracle/tolerances.h) */
    const char *op;           /* an op of the op table (oracle/ops.c): its tolerance, its kernels;
                                 also torch_bench.py's name for the op */
    const char *shape;        /* as the table prints it; "<op> <shape>" is the PyTorch key */
    size_t dims[BENCH_MAX_DIMS]; /* the op's dimensions, conventions above */
    double flops;             /* useful floating-point operations of one run */
    double bytes;             /* compulsory memory traffic of one run (inputs read, output written) */
    BenchBound bound;
    int big;                  /* a large shape: the 2-thread target (>= 1.7x) applies */
    int vs_prev;              /* 1: print this row's time relative to the previous case's
                                 (causal attention vs the unmasked row just before it) */
    const char *ref_name;     /* name of the reference variant ("openblas"), NULL if none */
    const char *remark;       /* printed with the fast row: what to keep in mind, or NULL */
    /* seed: inputs; naive_flop_budget: the most work naive may do, in flops (it gets a slice of
     * the op beyond that). Returns 0, or -1 with a message in err (e.g. out of memory). */
    int (*setup)(BenchInstance *in, const BenchCase *c, uint64_t seed, double naive_flop_budget,
                 char *err, size_t errlen);
    void (*run_naive)(void *state);
    void (*run_fast)(void *state);   /* with omp_get_max_threads() threads */
    void (*run_ref)(void *state);    /* NULL if ref_name is NULL */
    void (*teardown)(void *state);
};

/* The case table (bench/cases.c). */
const BenchCase *bench_cases(size_t *n);
/* "<op> <shape>", the key of the case in torch_bench.py's JSON. */
void bench_case_key(char *buf, size_t buflen, const BenchCase *c);

/* A peak-memory measurement that is not a timing (attention's streaming path at a long sequence). */
typedef struct {
    char op[32];
    char shape[64];
    char variant[32];
    double inputs_bytes;      /* inputs and output, allocated and touched before the measurement */
    double growth_bytes;      /* peak resident set growth during the op; < 0 if unavailable */
    double quadratic_bytes;   /* what the n x n scores alone would take */
    char method[64];          /* how growth was measured */
} BenchMemory;

typedef struct {
    int chapter;
    int (*run)(BenchMemory *m, int threads, char *err, size_t errlen);
} BenchMemoryProbe;
const BenchMemoryProbe *bench_memory_probes(size_t *n);

/* ---- chapter callbacks (bench/chNN_*.c) ------------------------------------------------- */

int bench_matmul_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                       char *err, size_t errlen);
int bench_linear_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                       char *err, size_t errlen);
void bench_matmul_naive(void *state);
void bench_matmul_fast(void *state);
void bench_matmul_openblas(void *state);
void bench_linear_naive(void *state);
void bench_linear_fast(void *state);
void bench_linear_openblas(void *state);
void bench_matmul_teardown(void *state);
/* OpenBLAS's thread count for the reference rows, and the kernel it picked for this CPU. */
void bench_openblas_threads(int n);
const char *bench_openblas_core(void);

int bench_attention_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                          char *err, size_t errlen);
void bench_attention_naive(void *state);
void bench_attention_fast(void *state);
void bench_attention_teardown(void *state);
int bench_attention_memory(BenchMemory *m, int threads, char *err, size_t errlen);
int bench_attention_backward_setup(BenchInstance *in, const BenchCase *c, uint64_t seed,
                                   double budget, char *err, size_t errlen);
void bench_attention_backward_naive(void *state);
void bench_attention_backward_fast(void *state);
void bench_attention_backward_teardown(void *state);
int bench_attention_backward_memory(BenchMemory *m, int threads, char *err, size_t errlen);

int bench_multihead_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                          char *err, size_t errlen);
void bench_multihead_naive(void *state);
void bench_multihead_fast(void *state);
void bench_multihead_teardown(void *state);

int bench_positional_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                           char *err, size_t errlen);
void bench_positional_naive(void *state);
void bench_positional_fast(void *state);
void bench_positional_teardown(void *state);

int bench_layernorm_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                          char *err, size_t errlen);
void bench_layernorm_naive(void *state);
void bench_layernorm_fast(void *state);
void bench_layernorm_teardown(void *state);

int bench_mlm_loss_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                         char *err, size_t errlen);
void bench_mlm_loss_naive(void *state);
void bench_mlm_loss_fast(void *state);
void bench_mlm_loss_teardown(void *state);

int bench_encoder_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                        char *err, size_t errlen);
void bench_encoder_naive(void *state);
void bench_encoder_fast(void *state);
void bench_encoder_teardown(void *state);
int bench_encoder_train_setup(BenchInstance *in, const BenchCase *c, uint64_t seed,
                              double budget, char *err, size_t errlen);
void bench_encoder_train_naive(void *state);
void bench_encoder_train_fast(void *state);
int bench_bert_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                     char *err, size_t errlen);
void bench_bert_naive(void *state);
void bench_bert_fast(void *state);
void bench_bert_teardown(void *state);

/* ---- shared by the callbacks (bench/util.c) --------------------------------------------- */

/* 64-byte aligned, uninitialized; NULL on failure. Free with free(). */
float *bench_alloc(size_t n);
/* Fills x[0..n) with uniform values in [-amplitude, amplitude), the i-th from draw i of
 * tfm_rng_at(seed, .): the values depend on seed alone, not on the thread count. */
void bench_fill_uniform(float *x, size_t n, uint64_t seed, float amplitude);
/* How many of B independent batch elements, each of batch_flops, naive computes within its
 * flop budget (at least 1); when fewer than B, says so in in->naive_note. */
size_t bench_naive_batches(BenchInstance *in, size_t B, double batch_flops, double budget);
/* Monotonic seconds. */
double bench_now(void);
/* Resident set now and its peak ("high water mark") in bytes, from /proc/self/status; -1 if
 * unavailable. bench_reset_peak_rss resets the peak to the current size (Linux >= 4.0,
 * /proc/self/clear_refs); returns 0 on success. */
double bench_rss_bytes(void);
double bench_peak_rss_bytes(void);
int bench_reset_peak_rss(void);

/* ---- ceilings (bench/ceilings.c) -------------------------------------------------------- */

/* Which FMA kernel this build uses ("avx512f", "avx2+fma", "portable mul+add"). */
const char *bench_fma_kernel(void);

typedef struct {
    double best, median, min, max;   /* over samples; `best` is the ceiling used (see .c) */
    size_t samples;
} BenchRate;

/* FP32 FLOP/s of the FMA kernel on `threads` threads, in GFLOP/s (all threads together). */
BenchRate bench_fma_peak(int threads, int quick);
/* STREAM-style copy (a = b) and triad (a = b + s c) on arrays of `bytes` bytes each, in GB/s
 * (1e9 bytes/s), counting each array read or written once (STREAM's convention). The arrays are
 * allocated and first touched inside; returns -1 in .best if allocation failed. */
void bench_stream(BenchRate *copy, BenchRate *triad, size_t bytes, int threads, int quick);

/* Two-core probe: every thread runs the same short FMA loop; returns the slowest thread's rate
 * divided by the single-thread peak (about 1 when each thread had a core of its own, about 0.5
 * when two vCPUs shared one). bench_probe_init takes the 1-thread peak in GFLOP/s. */
void bench_probe_init(double peak1_gflops);
double bench_probe(int threads);
#define BENCH_PROBE_OK 0.75   /* at or above: the threads had cores of their own */

/* ---- timing (bench/timing.c) ------------------------------------------------------------ */

typedef struct {
    size_t warmup;            /* untimed calls before the samples */
    size_t min_samples, max_samples;
    double min_seconds;       /* keep sampling until this much time was spent (and min_samples) */
    double settle_seconds;    /* pause between the probe and the sample (threads > 1): lets
                                 OpenMP's spinning workers go to sleep before OpenBLAS's own
                                 threads need the cores */
} BenchPlan;

typedef struct {
    size_t samples;           /* samples taken */
    size_t kept;              /* samples the statistics are over (those with cores of their own,
                                 or all of them when none had) */
    size_t shared;            /* samples where the two-core probe failed (threads > 1) */
    double median_ms, min_ms, max_ms;
} BenchTiming;

/* Runs fn(state) plan->warmup times, then times samples. threads > 1 probes before each. */
void bench_time(BenchTiming *t, void (*fn)(void *), void *state, int threads,
                const BenchPlan *plan);

/* Median of x[0..n) (sorts x). */
double bench_median(double *x, size_t n);

/* ---- results and reports (bench/report.c) ----------------------------------------------- */

typedef enum { BENCH_ROW_OK, BENCH_ROW_FAIL, BENCH_ROW_ERROR } BenchStatus;

/* One line of a table: a variant of a case at a thread count. */
typedef struct {
    const BenchCase *c;
    int threads;
    char variant[24];         /* "naive", "fast", "openblas", "torch shipped", "torch tuned" */
    BenchStatus status;       /* FAIL: wrong result (no timing); ERROR: could not run */
    BenchTiming t;            /* naive: already multiplied by `scale` */
    double scale;             /* naive on a slice: 1 / naive_share; 1 otherwise */
    int probed;               /* 1 if the two-core probe ran before each sample */
    int checked;              /* 1 if compared with naive (fast, reference) */
    CompareResult check;
    char note[128];
} BenchRow;

/* Chapter 08's benchmark (bench/ch08_tokenizer.c): not a case of the table (text, not flops). */
typedef struct {
    int have;                 /* 1 once measured */
    size_t bytes, lines, ids; /* the corpus (Austen's six novels) and the ids it gives */
    BenchStatus status;       /* FAIL: fast's ids differ from naive's */
    char note[128];
    BenchTiming naive;        /* one thread */
    BenchTiming fast[8];      /* [nthreads] of the report */
    BenchTiming copies[8];    /* [nthreads] that many independent copies at once (threads > 1) */
    int have_peer;
    BenchTiming peer;         /* tokenizers.js, one thread, from --peer */
    char peer_name[96];
} BenchTokenizer;

#define BENCH_MAX_TORCH 4
#define BENCH_MAX_MEMORY 8

typedef struct {
    int quick;
    size_t nthreads;
    int threads[8];                   /* [nthreads] thread counts of the tables */
    BenchRate peak[8];                /* [nthreads] FMA GFLOP/s */
    BenchRate copy[8], triad[8];      /* [nthreads] GB/s */
    double stream_bytes;              /* bytes per STREAM array */
    int have_ceilings;
    BenchRow *rows;                   /* [nrows] */
    size_t nrows, cap;
    BenchMemory mem[BENCH_MAX_MEMORY];  /* [nmem] */
    size_t nmem;
    size_t ntorch;                    /* PyTorch files read (--torch) */
    char torch_config[BENCH_MAX_TORCH][32];   /* "shipped", "tuned" */
    char torch_path[BENCH_MAX_TORCH][256];
    void *torch_json[BENCH_MAX_TORCH];        /* parsed files (cJSON *), kept for the report */
    BenchTokenizer tok;
} BenchReport;

/* Appends a row (zeroed, case/threads/variant filled in); NULL if out of memory. */
BenchRow *bench_add_row(BenchReport *r, const BenchCase *c, int threads, const char *variant);
/* Reads one torch_bench.py JSON file and adds a "torch <config>" row for every selected case and
 * thread count it has. Returns 0, or -1 with a message in err. */
int bench_load_torch(BenchReport *r, const char *path, const BenchCase *const *cases,
                     size_t ncases, char *err, size_t errlen);
/* The tables, one per chapter and thread count, on f. */
void bench_print(FILE *f, const BenchReport *r, const BenchCase *const *cases, size_t ncases);
/* The JSON report (cJSON), and the data of the ratio chart (bench/ratios.gp). 0 or -1. */
int bench_write_json(const char *path, const BenchReport *r, const BenchCase *const *cases,
                     size_t ncases, char *err, size_t errlen);
int bench_write_dat(const char *path, const BenchReport *r, const BenchCase *const *cases,
                    size_t ncases, char *err, size_t errlen);
void bench_report_free(BenchReport *r);

/* Chapter 08: measures r->tok (peer_path: tokenizers_js_bench.mjs's JSON, or NULL); prints its
 * table; adds its "tokenizer" object to the JSON report's root (a cJSON *). 0 or -1. */
int bench_tokenizer(BenchReport *r, const char *peer_path, char *err, size_t errlen);
void bench_tokenizer_print(FILE *f, const BenchReport *r);
void bench_tokenizer_json(void *root_json, const BenchReport *r);

/* Machine and build, for the report header and the JSON. */
const char *bench_cpu_model(void);
const char *bench_compiler(void);
const char *bench_cflags(void);
const char *bench_fast_cflags(void);

int bench_pretrain_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                         char *err, size_t errlen);
void bench_pretrain_naive(void *state);
void bench_pretrain_fast(void *state);
void bench_pretrain_teardown(void *state);

#endif
