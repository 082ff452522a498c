/* arena.h — the fast kernels' scratch memory: one buffer per (slot, thread), made once, reused.
 *
 * What it is for. Most fast kernels need working memory that lives only for the call: the packed
 * panels of matmul_fast, the transposed query block and the accumulator of each attention
 * thread, the projections of a multi-head attention chunk. A training loop calls every kernel
 * once per layer and step, a million times in a run, at the same few shapes. The arena hands
 * each call the buffer the previous call at that shape used, so after the first call at the
 * largest shape no kernel allocates at all.
 *
 * Why not malloc and free per call. A fresh block costs more than the allocation itself: glibc
 * serves large blocks (above its mmap threshold) with new pages from the kernel and gives them
 * back on free, and trims the top of the heap on free, so each call's buffers are fresh pages
 * again, one page fault per 4 KiB on first touch (matmul_fast.c's fixed cost of 0.05 us per
 * small product is possible only without them; multihead_fast.c F6 measures what they cost a
 * large pass). calloc also zeroes memory the kernel is about to overwrite.
 *
 * The rules.
 *  1. One slot per buffer. Every scratch buffer of every kernel has its own TfmScratchSlot
 *     below. A kernel that calls another (multihead_fast calls linear_fast and attention; the MLM
 *     head calls linear_fast, layernorm_fast and cross_entropy_fast) keeps its own buffers while
 *     the callee uses its own, and no memory is handed out twice because their slots differ. A
 *     new buffer gets a new enumerator; never use one slot for two buffers that live at once.
 *  2. Per thread. A buffer is indexed by slot and by the calling thread's OpenMP thread number,
 *     so the threads of a parallel region each get their own (attention asks inside its region,
 *     matmul once before it, for the whole team). In a nested region the number is the thread's
 *     place in the tree of teams, omp_get_thread_num() of each level read as the digits of a
 *     mixed-radix number (arena.c), so that the inactive one-thread team a kernel opens when
 *     it is called from each thread of a caller's region does not make all of them thread 0.
 *     Threads that OpenMP does not know about (pthreads, C11 threads) are all thread 0: run tfm
 *     kernels concurrently only from OpenMP threads. At most TFM_ARENA_MAX_THREADS numbers;
 *     beyond that the request aborts with a message.
 *  3. Not zeroed. A buffer holds whatever the last user left in it (or indeterminate bytes when
 *     it is new). A kernel that needs zeros writes them itself, over exactly what it reads.
 *  4. Valid until the same thread asks for the same slot again, or until tfm_arena_release.
 *     Contents are not kept across a growth.
 *  5. Release. tfm_arena_release() frees every buffer of every thread; call it only while no
 *     kernel runs. It is registered with atexit() on first use, so a program (or a valgrind
 *     run) ends with nothing of tfm's still reachable. A kernel called after a release simply
 *     allocates again.
 *
 * Growth: a buffer is reallocated only when a request is larger than its capacity, to exactly
 * the request (rounded up to 64 bytes), and is 64-byte aligned (one cache line, one AVX-512
 * vector). tfm_arena_grows() counts those allocations, tfm_arena_bytes() the capacity held, so a
 * test can hold "no allocation after the first call" (tests/test_arena.c). The price: each buffer
 * keeps the largest size it was ever asked for, until a release (a one-off large call can be
 * followed by tfm_arena_release() to give that memory back). And memory checkers see less: a
 * read of what an earlier call left, or a write into a buffer's rounding, is not reported by
 * valgrind or AddressSanitizer; the first call at each shape is the one they check fully.
 */
#ifndef TFM_ARENA_H
#define TFM_ARENA_H

#include <stddef.h>

/* OpenMP thread numbers the arena serves (0 .. TFM_ARENA_MAX_THREADS - 1). */
#define TFM_ARENA_MAX_THREADS 256
/* Alignment of every buffer, in bytes. */
#define TFM_ARENA_ALIGN 64

/* One slot per scratch buffer of a fast kernel (rule 1), with the buffer's shape. */
typedef enum {
    TFM_SCRATCH_MATMUL_PACK,   /* matmul_fast.c: B~ block [kc, NC], A blocks [threads][mc, kc] */
    TFM_SCRATCH_ATTN_ACC,      /* attention_fast.c, streaming, per thread: [Dv, BQ] sum of p v;
                                  backward: [Dv, BQ] dO^T */
    TFM_SCRATCH_ATTN_QT,       /* attention_fast.c, streaming and backward, per thread:
                                  [Dk, BQ] queries^T */
    TFM_SCRATCH_ATTN_KT,       /* attention_fast.c, with probs, per thread: [Dk, BK] keys^T */
    TFM_SCRATCH_ATTN_DQT,      /* attention_fast.c, backward, per thread: [Dk, BQ] dq^T */
    TFM_SCRATCH_MHA_QKV,       /* multihead_fast.c: [nb, Tq + 2 Tk, E] the chunk's projections */
    TFM_SCRATCH_MHA_CTX,       /* multihead_fast.c: [nb, Tq, E] the chunk's concatenated heads */
    TFM_SCRATCH_MHA_PROBS,     /* multihead_fast.c: [nb, H, Tq, Tk] per-head weights to average */
    TFM_SCRATCH_MHA_DCTX,      /* multihead_fast.c, backward: [B, T, E] d ctx */
    TFM_SCRATCH_MHA_DQKV,      /* multihead_fast.c, backward: [B, T, 3E] d of the projections
                                  (the general case: dq [B, Tq, E], dk and dv [B, Tk, E]) */
    TFM_SCRATCH_LN_SUM,        /* layernorm_fast.c, Add & Norm backward: [N, E] x + s */
    TFM_SCRATCH_LN_DROW,       /* layernorm_fast.c, Add & Norm backward, per thread: [E] dy */
    TFM_SCRATCH_PE_FREQ,       /* positional_fast.c: [ceil(E/2)] frequencies w_i (double) */
    TFM_SCRATCH_PE_STATE,      /* positional_fast.c, per thread: [4, ceil(E/2)] s, c, rc, rs */
    TFM_SCRATCH_CE_LOSS,       /* pretraining_fast.c cross entropy: [N] row losses */
    TFM_SCRATCH_MLM_HIDDEN,    /* pretraining_fast.c MLM head: [S, E] the labelled rows */
    TFM_SCRATCH_MLM_DENSE,     /* pretraining_fast.c MLM head: [S, E] GELU(dense) */
    TFM_SCRATCH_MLM_NORM,      /* pretraining_fast.c MLM head: [S, E] LayerNorm of it */
    TFM_SCRATCH_MLM_LOGITS,    /* pretraining_fast.c MLM head: [S, V] decoder output */
    TFM_SCRATCH_MLM_LABELS,    /* pretraining_fast.c MLM head: [S] the labels (int64) */
    TFM_SCRATCH_MLM_PRE,       /* pretraining_fast.c MLM backward: [S, E] dense's output */
    TFM_SCRATCH_MLM_DLOGITS,   /* pretraining_fast.c MLM backward: [S, V] d logits */
    TFM_SCRATCH_MLM_DROWS,     /* pretraining_fast.c MLM backward: [3 S E + 2 S] d rows, stats */
    TFM_SCRATCH_NSP_CLS,       /* pretraining_fast.c NSP head: [B, E] the [CLS] rows */
    TFM_SCRATCH_NSP_POOLED,    /* pretraining_fast.c NSP head: [B, E] tanh(pooler) */
    TFM_SCRATCH_NSP_D,         /* pretraining_fast.c NSP backward: [2 B E + 4 B] */
    TFM_SCRATCH_SLOTS          /* the number of slots */
} TfmScratchSlot;

/* The calling thread's buffer for `slot`, at least count * size bytes, 64-byte aligned, NOT
 * zeroed, never NULL (also for 0 bytes). Allocates only when the request exceeds what the buffer
 * holds. Out of memory, a count * size that overflows, or a thread number beyond
 * TFM_ARENA_MAX_THREADS: a message naming `who` on stderr, then abort(), like tfm_xcalloc. */
void *tfm_arena_get(TfmScratchSlot slot, size_t count, size_t size, const char *who);

/* Frees every buffer of every thread (capacity 0 again). Only while no kernel is running.
 * Registered with atexit() the first time a buffer is allocated. */
void tfm_arena_release(void);

/* Total capacity held by all buffers of all threads, in bytes. */
size_t tfm_arena_bytes(void);

/* How many times any buffer has been (re)allocated since the program started (a release does
 * not reset it). Unchanged across a call: that call allocated nothing. */
size_t tfm_arena_grows(void);

#endif
