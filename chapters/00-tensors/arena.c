/* arena.c — the fast kernels' scratch buffers (arena.h has the rules).
 *
 * The registry is one static 2-D array of {pointer, capacity}, indexed by thread number and
 * slot. An entry is only ever touched by the thread that currently has its number (and by
 * tfm_arena_release, which runs while no kernel does), so neither a
 * request nor a growth takes a lock, and two threads that ask for their first buffers at the
 * same moment write different entries. Only the two counters and the atexit registration are
 * shared between threads, and they are touched on growth only, never on the hot path.
 */
#include "arena.h"

#include <omp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    void *p;      /* [cap] bytes, TFM_ARENA_ALIGN-aligned; NULL while cap == 0 */
    size_t cap;   /* bytes */
} ArenaBuf;

/* [TFM_ARENA_MAX_THREADS][TFM_SCRATCH_SLOTS]: one thread's slots side by side, so that a
 * thread's growth writes its own cache lines, not those its neighbours read. */
static ArenaBuf arena[TFM_ARENA_MAX_THREADS][TFM_SCRATCH_SLOTS];
static atomic_size_t bytes_held;     /* sum of every cap */
static atomic_size_t grow_count;     /* (re)allocations so far */
static atomic_flag release_registered = ATOMIC_FLAG_INIT;

/* [TFM_SCRATCH_SLOTS]: the enumerators' names, in enum order, for messages. */
static const char *const SLOT_NAMES[] = {
    "MATMUL_PACK", "ATTN_ACC",   "ATTN_QT",    "ATTN_KT",    "ATTN_DQT",   "MHA_QKV",
    "MHA_CTX",     "MHA_PROBS",  "MHA_DCTX",   "MHA_DQKV",   "LN_SUM",     "LN_DROW",
    "PE_FREQ",     "PE_STATE",   "CE_LOSS",    "MLM_HIDDEN", "MLM_DENSE",  "MLM_NORM",
    "MLM_LOGITS",  "MLM_LABELS", "MLM_PRE",    "MLM_DLOGITS", "MLM_DROWS", "NSP_CLS",
    "NSP_POOLED",  "NSP_D",
};
_Static_assert(sizeof SLOT_NAMES / sizeof SLOT_NAMES[0] == TFM_SCRATCH_SLOTS,
               "one name per TfmScratchSlot");

/* The calling thread's number (arena.h, rule 2). Outside any parallel region it is 0; in one
 * region, omp_get_thread_num(); in nested regions, the thread numbers of the enclosing levels
 * (outermost first) as the digits of a mixed-radix number whose radices are the team sizes.
 * Two threads that run at the same time at the same nesting level never share it: a kernel
 * called from each thread of a caller's region, which opens its own (inactive, one-thread)
 * region, is thread t of the outer team there, not thread 0 of every inner one. */
static size_t thread_number(const char *who)
{
    const int level = omp_get_level();
    size_t t = 0;
    for (int l = 1; l <= level; l++) {
        t = t * (size_t)omp_get_team_size(l) + (size_t)omp_get_ancestor_thread_num(l);
        if (t >= TFM_ARENA_MAX_THREADS) {
            fprintf(stderr,
                    "%s: OpenMP thread number %zu (nesting level %d of %d) is beyond the scratch "
                    "arena's %d threads (TFM_ARENA_MAX_THREADS in arena.h); run with fewer "
                    "threads (OMP_NUM_THREADS)\n",
                    who, t, l, level, TFM_ARENA_MAX_THREADS);
            abort();
        }
    }
    return t;
}

void *tfm_arena_get(TfmScratchSlot slot, size_t count, size_t size, const char *who)
{
    const size_t t = thread_number(who);
    ArenaBuf *b = &arena[t][slot];
    if (size != 0 && count > SIZE_MAX / size) {
        fprintf(stderr, "%s: scratch %s of %zu x %zu bytes overflows size_t\n", who,
                SLOT_NAMES[slot], count, size);
        abort();
    }
    const size_t want = count * size;
    if (want <= b->cap && b->p)
        return b->p;

    /* Grow: the old contents are not kept (rule 4), so free first and allocate the new size,
     * rounded up to a whole number of alignment units as aligned_alloc requires (and at least
     * one, so that 0 bytes still give a valid pointer). */
    if (want > SIZE_MAX - (TFM_ARENA_ALIGN - 1)) {
        fprintf(stderr, "%s: scratch %s of %zu bytes overflows size_t\n", who, SLOT_NAMES[slot],
                want);
        abort();
    }
    size_t cap = (want + TFM_ARENA_ALIGN - 1) / TFM_ARENA_ALIGN * TFM_ARENA_ALIGN;
    if (cap == 0)
        cap = TFM_ARENA_ALIGN;
    free(b->p);
    atomic_fetch_sub(&bytes_held, b->cap);
    b->p = NULL;
    b->cap = 0;
    void *p = aligned_alloc(TFM_ARENA_ALIGN, cap);
    if (p == NULL) {
        fprintf(stderr, "%s: out of memory for %zu x %zu bytes (scratch %s, thread %zu)\n", who,
                count, size, SLOT_NAMES[slot], t);
        abort();
    }
    b->p = p;
    b->cap = cap;
    atomic_fetch_add(&bytes_held, cap);
    atomic_fetch_add(&grow_count, 1);
    if (!atomic_flag_test_and_set(&release_registered))
        atexit(tfm_arena_release);   /* once: nothing of tfm's is still reachable at exit */
    return p;
}

void tfm_arena_release(void)
{
    for (size_t t = 0; t < TFM_ARENA_MAX_THREADS; t++)
        for (size_t s = 0; s < TFM_SCRATCH_SLOTS; s++) {
            free(arena[t][s].p);
            arena[t][s].p = NULL;
            arena[t][s].cap = 0;
        }
    atomic_store(&bytes_held, 0);
}

size_t tfm_arena_bytes(void) { return atomic_load(&bytes_held); }

size_t tfm_arena_grows(void) { return atomic_load(&grow_count); }
