/* timing.c — warm-up, samples, median and range, and the two-core check of each sample. */
#include "bench.h"

#include <stdlib.h>
#include <time.h>

static void pause_for(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *x, size_t n)
{
    if (n == 0) return 0.0;
    qsort(x, n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

void bench_time(BenchTiming *t, void (*fn)(void *), void *state, int threads,
                const BenchPlan *plan)
{
    const size_t cap = plan->max_samples ? plan->max_samples : 1;
    double *all = malloc(cap * sizeof *all);      /* every sample, ms */
    double *kept = malloc(cap * sizeof *kept);    /* samples whose probe passed */
    *t = (BenchTiming){0};
    if (!all || !kept) {
        free(all);
        free(kept);
        return;
    }
    for (size_t w = 0; w < plan->warmup; w++) fn(state);

    const double start = bench_now();
    size_t n = 0, nk = 0;
    while (n < cap) {
        /* The probe runs right before the sample, on the same OpenMP team: if one of the two
         * vCPUs is being shared with another guest's (or process's) work now, the slowest
         * thread of the probe runs at about half speed, and this sample is set aside. */
        int own_cores = threads <= 1 || bench_probe(threads) >= BENCH_PROBE_OK;
        if (threads > 1 && plan->settle_seconds > 0.0) pause_for(plan->settle_seconds);
        const double t0 = bench_now();
        fn(state);
        const double ms = 1e3 * (bench_now() - t0);
        all[n++] = ms;
        if (own_cores) kept[nk++] = ms;
        if (n >= plan->min_samples && bench_now() - start >= plan->min_seconds) break;
    }
    t->samples = n;
    t->shared = n - nk;
    /* Statistics over the clean samples; if none was clean, over all of them (the row then
     * reports every sample as shared, and its numbers are those of a contended machine). */
    double *use = nk ? kept : all;
    size_t nu = nk ? nk : n;
    t->kept = nu;
    t->median_ms = bench_median(use, nu);   /* sorts: min and max are the ends */
    t->min_ms = use[0];
    t->max_ms = use[nu - 1];
    free(all);
    free(kept);
}
