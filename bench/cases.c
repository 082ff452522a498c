/* cases.c — the case table of `tfm bench`: one row per op and shape.
 *
 * A row names its chapter, op and shape, its dimensions (conventions in bench.h, shared with
 * bench/torch_bench.py), the useful flops and compulsory bytes of one run, and the callbacks
 * that set it up and run each variant. `tfm bench --list` prints the rows for torch_bench.py, so
 * PyTorch is always timed on exactly these shapes.
 */
#include "bench.h"

#include <stdio.h>

/* Flops of C[M,N] = A[M,K] B[K,N]: one multiply and one add per (i, j, k). Bytes: A, B and C
 * once each (the bias of linear is N floats: negligible). */
#define GEMM_FLOPS(M, K, N) (2.0 * (M) * (K) * (N))
#define GEMM_BYTES(M, K, N) (4.0 * ((double)(M) * (K) + (double)(K) * (N) + (double)(M) * (N)))

#define MATMUL(M, K, N, BIG)                                                                     \
    {.chapter = 0, .op = "matmul", .shape = #M "x" #K "x" #N, .dims = {M, K, N},                 \
     .flops = GEMM_FLOPS(M, K, N), .bytes = GEMM_BYTES(M, K, N), .bound = BENCH_COMPUTE,         \
     .big = BIG, .ref_name = "openblas", .setup = bench_matmul_setup,                             \
     .run_naive = bench_matmul_naive, .run_fast = bench_matmul_fast,                              \
     .run_ref = bench_matmul_openblas, .teardown = bench_matmul_teardown}

#define LINEAR(M, K, N, BIG)                                                                     \
    {.chapter = 0, .op = "linear", .shape = #M "x" #K "x" #N, .dims = {M, K, N},                 \
     .flops = GEMM_FLOPS(M, K, N), .bytes = GEMM_BYTES(M, K, N), .bound = BENCH_COMPUTE,         \
     .big = BIG, .ref_name = "openblas", .setup = bench_linear_setup,                             \
     .run_naive = bench_linear_naive, .run_fast = bench_linear_fast,                              \
     .run_ref = bench_linear_openblas, .teardown = bench_matmul_teardown}

/* Attention over PAIRS (query, key) pairs: 2D flops for the score, 2D for its share of P V.
 * Bytes: Q, K, V read and out written once. */
#define ATTN_FLOPS(B, H, D, PAIRS) (4.0 * (B) * (H) * (D) * (PAIRS))
#define ATTN_BYTES(B, H, T, D) (16.0 * (B) * (H) * (T) * (D))

#define ATTENTION(B, H, T, D, BIG)                                                               \
    {.chapter = 1, .op = "attention", .shape = "B" #B " H" #H " T" #T " D" #D,                   \
     .dims = {B, H, T, D, 0}, .flops = ATTN_FLOPS(B, H, D, (double)(T) * (T)),                    \
     .bytes = ATTN_BYTES(B, H, T, D), .bound = BENCH_COMPUTE, .big = BIG,                         \
     .setup = bench_attention_setup, .run_naive = bench_attention_naive,                          \
     .run_fast = bench_attention_fast, .teardown = bench_attention_teardown}

/* Causal: T(T+1)/2 pairs; vs_prev prints its time against the unmasked row before it. */
#define ATTENTION_CAUSAL(B, H, T, D, BIG)                                                        \
    {.chapter = 1, .op = "attention", .shape = "B" #B " H" #H " T" #T " D" #D " causal",         \
     .dims = {B, H, T, D, 1}, .flops = ATTN_FLOPS(B, H, D, (double)(T) * ((T) + 1) / 2.0),        \
     .bytes = ATTN_BYTES(B, H, T, D), .bound = BENCH_COMPUTE, .big = BIG, .vs_prev = 1,           \
     .setup = bench_attention_setup, .run_naive = bench_attention_naive,                          \
     .run_fast = bench_attention_fast, .teardown = bench_attention_teardown}

/* Attention's backward (chapter 07): the four products of the gradient, dV = P^T dO, dP = dO V^T,
 * dQ = dS K, dK = dS^T Q, 2 D flops each per (query, key) pair (the fast one's recomputed
 * scores are its own overhead, not counted). Bytes: q, k, v, dout, out read, dq, dk, dv written. */
#define ATTENTION_BACKWARD(B, H, T, D, BIG)                                                      \
    {.chapter = 7, .op = "attention-backward", .shape = "B" #B " H" #H " T" #T " D" #D,         \
     .dims = {B, H, T, D, 0}, .flops = 8.0 * (B) * (H) * (D) * (double)(T) * (T),                 \
     .bytes = 32.0 * (B) * (H) * (T) * (D), .bound = BENCH_COMPUTE, .big = BIG,                   \
     .setup = bench_attention_backward_setup, .run_naive = bench_attention_backward_naive,       \
     .run_fast = bench_attention_backward_fast, .teardown = bench_attention_backward_teardown}

/* Self-attention through nn.MultiheadAttention's layers: 8 B T E^2 (projections) + 4 B T^2 E
 * (attention). Bytes: x, the 4 E^2 weights, out. */
#define MULTIHEAD(B, T, E, H, BIG)                                                               \
    {.chapter = 2, .op = "mha", .shape = "B" #B " T" #T " E" #E " H" #H,                    \
     .dims = {B, T, E, H}, .flops = 8.0 * (B) * (T) * (double)(E) * (E) + 4.0 * (B) * (double)(T) * (T) * (E), \
     .bytes = 4.0 * (2.0 * (B) * (T) * (E) + 4.0 * (double)(E) * (E)), .bound = BENCH_COMPUTE,  \
     .big = BIG, .setup = bench_multihead_setup, .run_naive = bench_multihead_naive,             \
     .run_fast = bench_multihead_fast, .teardown = bench_multihead_teardown}

/* The sinusoidal table: memory-bound, T E floats written. */
#define POSITIONAL(T, E, BIG)                                                                    \
    {.chapter = 3, .op = "pe", .shape = #T "x" #E, .dims = {T, E},                       \
     .bytes = 4.0 * (T) * (E), .bound = BENCH_MEMORY, .big = BIG,                                 \
     .setup = bench_positional_setup, .run_naive = bench_positional_naive,                        \
     .run_fast = bench_positional_fast, .teardown = bench_positional_teardown}

/* LayerNorm: memory-bound, x read and out written once (8 N E bytes). */
#define LAYERNORM(N, E, BIG, REMARK)                                                             \
    {.chapter = 4, .op = "layernorm", .shape = #N "x" #E, .dims = {N, E},                        \
     .bytes = 8.0 * (N) * (E), .bound = BENCH_MEMORY, .big = BIG, .remark = REMARK,               \
     .setup = bench_layernorm_setup, .run_naive = bench_layernorm_naive,                          \
     .run_fast = bench_layernorm_fast, .teardown = bench_layernorm_teardown}

/* MLM loss: memory-bound, the floor(N KEEP / 100) kept rows of logits read once. */
#define MLM_LOSS(N, V, KEEP, BIG)                                                                \
    {.chapter = 5, .op = "mlm-loss", .shape = #N "x" #V " keep" #KEEP, .dims = {N, V, KEEP},     \
     .bytes = 4.0 * (double)((N) * (KEEP) / 100) * (V), .bound = BENCH_MEMORY, .big = BIG,        \
     .setup = bench_mlm_loss_setup, .run_naive = bench_mlm_loss_naive,                            \
     .run_fast = bench_mlm_loss_fast, .teardown = bench_mlm_loss_teardown}

/* The encoder layer: chapter 02's attention block plus the feed-forward network,
 * 2 B T (4 E^2 + 2 E I) + 4 B T^2 E. Bytes: x and out, the weights (4 E^2 + 2 E I). */
#define ENCODER(B, T, E, H, I, BIG)                                                              \
    {.chapter = 6, .op = "encoder-layer", .shape = "B" #B " T" #T " E" #E " H" #H " I" #I,     \
     .dims = {B, T, E, H, I},                                                                     \
     .flops = 2.0 * (B) * (T) * (4.0 * (double)(E) * (E) + 2.0 * (double)(E) * (I)) +            \
              4.0 * (B) * (double)(T) * (T) * (E),                                                \
     .bytes = 4.0 * (2.0 * (B) * (T) * (E) + 4.0 * (double)(E) * (E) + 2.0 * (double)(E) * (I)), \
     .bound = BENCH_COMPUTE, .big = BIG, .setup = bench_encoder_setup,                           \
     .run_naive = bench_encoder_naive, .run_fast = bench_encoder_fast,                           \
     .teardown = bench_encoder_teardown}

/* The layer's training step (chapter 07): its forward, then the backward's two products per
 * forward product (and the attention's four per pair, against two): three times the forward's
 * flops. Bytes: as the forward, twice (the gradients of the weights are written). */
#define ENCODER_TRAIN(B, T, E, H, I, BIG)                                                        \
    {.chapter = 7, .op = "encoder-layer-backward",                                               \
     .shape = "B" #B " T" #T " E" #E " H" #H " I" #I " fwd+bwd", .dims = {B, T, E, H, I},      \
     .flops = 3.0 * (2.0 * (B) * (T) * (4.0 * (double)(E) * (E) + 2.0 * (double)(E) * (I)) +     \
                     4.0 * (B) * (double)(T) * (T) * (E)),                                        \
     .bytes = 8.0 * (2.0 * (B) * (T) * (E) + 4.0 * (double)(E) * (E) + 2.0 * (double)(E) * (I)), \
     .bound = BENCH_COMPUTE, .big = BIG, .setup = bench_encoder_train_setup,                     \
     .run_naive = bench_encoder_train_naive, .run_fast = bench_encoder_train_fast,               \
     .teardown = bench_encoder_teardown}

/* BERT's forward: L encoder layers, the embeddings (memory) and the pooler (2 B E^2). */
#define BERT(B, T, L, E, H, I)                                                                   \
    {.chapter = 6, .op = "bert", .shape = "B" #B " T" #T " L" #L " E" #E,                      \
     .dims = {B, T, L, E, H, I},                                                                  \
     .flops = (L) * (2.0 * (B) * (T) * (4.0 * (double)(E) * (E) + 2.0 * (double)(E) * (I)) +     \
                     4.0 * (B) * (double)(T) * (T) * (E)) + 2.0 * (B) * (double)(E) * (E),       \
     .bytes = 4.0 * (L) * (4.0 * (double)(E) * (E) + 2.0 * (double)(E) * (I)),                  \
     .bound = BENCH_COMPUTE, .big = 1, .setup = bench_bert_setup,                                \
     .run_naive = bench_bert_naive, .run_fast = bench_bert_fast, .teardown = bench_bert_teardown}

/* A training step of BertForPreTraining (chapter 09): the encoder's forward and backward
 * (three times the forward's flops), the MLM head on the 15% masked rows (tfm scores only
 * those; Hugging Face's head scores every row, 6.7 times the work) and AdamW (memory). */
#define PRETRAIN(B, T, L, E, H, I)                                                               \
    {.chapter = 9, .op = "pretrain-steps",                                                       \
     .shape = "B" #B " T" #T " L" #L " E" #E " H" #H " I" #I " step", .dims = {B, T, L, E, H, I}, \
     .flops = 3.0 * ((L) * (2.0 * (B) * (T) * (4.0 * (double)(E) * (E) + 2.0 * (double)(E) * (I)) + \
                            4.0 * (B) * (double)(T) * (T) * (E)) +                                \
                     2.0 * 0.15 * (B) * (T) * ((double)(E) * (E) + 30522.0 * (E))),              \
     .bytes = 28.0 * ((30522.0 + 512) * (E) + (L) * (4.0 * (double)(E) * (E) + 2.0 * (E) * (I))), \
     .bound = BENCH_COMPUTE, .big = 1, .setup = bench_pretrain_setup,                            \
     .run_naive = bench_pretrain_naive, .run_fast = bench_pretrain_fast,                         \
     .teardown = bench_pretrain_teardown}

static const BenchCase CASES[] = {
    /* chapter 00: a BERT-base Linear (512 tokens, 768 -> 768), and a square 2048^3 */
    LINEAR(512, 768, 768, 0),
    MATMUL(2048, 2048, 2048, 1),
    LINEAR(2048, 2048, 2048, 1),
    /* chapter 01: BERT-base heads (12 x 64) at three sequence lengths, each unmasked then causal */
    ATTENTION(1, 12, 128, 64, 0),
    ATTENTION_CAUSAL(1, 12, 128, 64, 0),
    ATTENTION(1, 12, 512, 64, 1),
    ATTENTION_CAUSAL(1, 12, 512, 64, 1),
    ATTENTION(1, 12, 2048, 64, 1),
    ATTENTION_CAUSAL(1, 12, 2048, 64, 1),
    /* chapter 07: attention's backward, BERT-base heads at 512 and 2048 tokens */
    ATTENTION_BACKWARD(1, 12, 512, 64, 1),
    ATTENTION_BACKWARD(1, 12, 2048, 64, 1),
    /* chapter 02: BERT-base self-attention at 512 tokens, one sequence and a batch of 8 */
    MULTIHEAD(1, 512, 768, 12, 1),
    MULTIHEAD(8, 512, 768, 12, 1),
    /* chapter 03: a long table at BERT-base width */
    POSITIONAL(8192, 768, 1),
    /* chapter 04: BERT-base width, a batch of 8 x 512 tokens and a cache-busting 65536 rows */
    LAYERNORM(4096, 768, 0, "x and out (25 MB) can stay in a large last-level cache: ceil > 100%"),
    LAYERNORM(65536, 768, 1, NULL),
    /* chapter 05: 512 tokens over BERT's vocabulary, 15% of the labels kept (masking) or all */
    MLM_LOSS(512, 30522, 15, 1),
    MLM_LOSS(512, 30522, 100, 1),
    /* chapter 06: BERT-base's layer on a batch of 8 x 128 tokens, and the tiny preset's layer */
    ENCODER(8, 128, 768, 12, 3072, 1),
    ENCODER(32, 128, 256, 4, 1024, 1),
    /* chapter 07: the same two layers' training step, forward and backward */
    ENCODER_TRAIN(8, 128, 768, 12, 3072, 1),
    ENCODER_TRAIN(32, 128, 256, 4, 1024, 1),
    /* chapter 06: bert-base's 12 layers on one sequence of 128 tokens (latency) */
    BERT(1, 128, 12, 768, 12, 3072),
    /* chapter 09: a training step of the tiny preset, the throughput case */
    PRETRAIN(32, 128, 4, 256, 4, 1024),
};

const BenchCase *bench_cases(size_t *n)
{
    *n = sizeof CASES / sizeof CASES[0];
    return CASES;
}

void bench_case_key(char *buf, size_t buflen, const BenchCase *c)
{
    snprintf(buf, buflen, "%s %s", c->op, c->shape);
}

static const BenchMemoryProbe PROBES[] = {
    {1, bench_attention_memory},
    {7, bench_attention_backward_memory},
};

const BenchMemoryProbe *bench_memory_probes(size_t *n)
{
    *n = sizeof PROBES / sizeof PROBES[0];
    return PROBES;
}
