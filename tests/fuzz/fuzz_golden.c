/* fuzz_golden.c — libFuzzer target for the golden reader: the bytes of a safetensors file,
 * plain or gzip-compressed, as golden_load_bytes sees them from `tfm run`, `tfm inspect` and
 * `tfm check`.
 *
 * Beyond "no crash, no leak, no sanitizer report", every accepted file must keep the reader's
 * promises (golden.h): each tensor's numel is the product of its shape and its data is there;
 * names are unique; a rejected file leaves nothing behind and says why in one line. An accepted
 * file is also written back with golden_save and read again: the writer must reproduce it.
 *
 * Seeds: tests/fuzz/corpus/fuzz_golden/; run with `make fuzz`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "golden.h"

/* A broken promise is a crash, so that libFuzzer keeps the input. */
#define REQUIRE(cond)                                                                          \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz_golden: %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

static char roundtrip_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    /* A 32 KiB input inflates to at most 32 MiB; the limit keeps each run below that anyway. */
    golden_set_max_bytes((size_t)16 << 20);
    /* One scratch file per process, in memory where /dev/shm exists. */
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(roundtrip_path, sizeof roundtrip_path, "%s/tfm-fuzz-%ld.safetensors", dir, (long)getpid());
    return 0;
}

static void check_file(const GoldenFile *gf) {
    for (size_t i = 0; i < gf->n; i++) {
        const Tensor *t = &gf->tensors[i];
        int overflow;
        REQUIRE(gf->names[i] != NULL);
        REQUIRE(t->ndim >= 0 && t->ndim <= TFM_MAX_DIMS);
        REQUIRE(tfm_shape_numel(t->ndim, t->shape, &overflow) == t->numel && !overflow);
        REQUIRE(t->data != NULL && t->owns);
        REQUIRE(golden_find(gf, gf->names[i]) == t);   /* names are unique */
        char err[TFM_ERR_LEN];
        REQUIRE(golden_require(gf, gf->names[i], t->dtype, t->ndim, err, sizeof err) == t);
        /* Touch every byte: ASan catches a tensor that claims more than it holds. */
        const unsigned char *b = t->data;
        unsigned char x = 0;
        for (size_t k = 0; k < t->numel * tfm_dtype_size(t->dtype); k++) x ^= b[k];
        (void)x;
    }
    for (size_t i = 0; i < gf->n_meta; i++) REQUIRE(golden_meta(gf, gf->meta_keys[i]) != NULL);
    char **cases;
    size_t nc = golden_cases(gf, &cases);
    REQUIRE(nc <= gf->n);
    golden_free_cases(cases, nc);
}

static void check_roundtrip(const GoldenFile *gf) {
    char err[TFM_ERR_LEN];
    if (golden_save(roundtrip_path, gf->n, (const char *const *)gf->names, gf->tensors, gf->n_meta,
                    (const char *const *)gf->meta_keys, (const char *const *)gf->meta_values, err,
                    sizeof err) != 0)
        return;   /* e.g. /tmp full: not the reader's fault */
    GoldenFile back;
    int rc = golden_load(&back, roundtrip_path, err, sizeof err);
    unlink(roundtrip_path);
    if (rc != 0) fprintf(stderr, "fuzz_golden: re-reading the written file: %s\n", err);
    REQUIRE(rc == 0);
    REQUIRE(back.n == gf->n && back.n_meta <= gf->n_meta);
    for (size_t i = 0; i < gf->n; i++) {
        const Tensor *a = &gf->tensors[i], *b = golden_find(&back, gf->names[i]);
        REQUIRE(b != NULL && b->dtype == a->dtype && b->ndim == a->ndim && b->numel == a->numel);
        for (int d = 0; d < a->ndim; d++) REQUIRE(b->shape[d] == a->shape[d]);
        REQUIRE(memcmp(a->data, b->data, a->numel * tfm_dtype_size(a->dtype)) == 0);
    }
    golden_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    GoldenFile gf;
    char err[TFM_ERR_LEN] = "";
    if (golden_load_bytes(&gf, data, size, "fuzz.safetensors", err, sizeof err) != 0) {
        /* Refused: one line that names the file, and nothing left behind. */
        REQUIRE(strncmp(err, "fuzz.safetensors: ", 18) == 0 && strchr(err, '\n') == NULL);
        REQUIRE(gf.n == 0 && gf.tensors == NULL && gf.names == NULL && gf.path == NULL);
        return 0;
    }
    check_file(&gf);
    check_roundtrip(&gf);
    golden_free(&gf);
    return 0;
}
