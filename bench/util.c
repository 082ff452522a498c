/* util.c — what every benchmark callback shares: aligned buffers, random inputs, the clock, and
 * the process's resident memory. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rng.h"

float *bench_alloc(size_t n)
{
    /* 64 bytes: one cache line, one AVX-512 vector. aligned_alloc wants a multiple of it. */
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    return aligned_alloc(64, bytes ? bytes : 64);
}

/* The values come from tfm's one generator, tfm_rng_at (chapters/00-tensors/rng.h): its n-th
 * draw is a pure function of (seed, n), so the array can be filled in parallel and still not
 * depend on the thread count. */
void bench_fill_uniform(float *x, size_t n, uint64_t seed, float amplitude)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        /* the top 24 bits: a float in [0, 1) with every value exactly representable */
        const float u = (float)(tfm_rng_at(seed, i) >> 40) * 0x1.0p-24f;
        x[i] = amplitude * (2.0f * u - 1.0f);
    }
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One "Key:   123 kB" line of /proc/self/status, in bytes; -1 if absent. */
static double status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1.0;
    char line[256];
    double v = -1.0;
    const size_t klen = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = 1024.0 * strtod(line + klen + 1, NULL);
            break;
        }
    }
    fclose(f);
    return v;
}

double bench_rss_bytes(void) { return status_kb("VmRSS"); }
double bench_peak_rss_bytes(void) { return status_kb("VmHWM"); }

int bench_reset_peak_rss(void)
{
    /* "5" resets VmHWM to the current VmRSS (proc(5), since Linux 4.0). */
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

size_t bench_naive_batches(BenchInstance *in, size_t B, double batch_flops, double budget)
{
    if ((double)B * batch_flops <= budget) return B;
    size_t n = (size_t)(budget / batch_flops);
    if (n < 1) n = 1;
    if (n < B)
        snprintf(in->naive_note, sizeof in->naive_note, "naive: %zu of %zu batch elements, x%.1f",
                 n, B, (double)B / (double)n);
    return n;
}
