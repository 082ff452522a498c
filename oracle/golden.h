/* golden.h — reading and writing safetensors files, plain or gzip-compressed.
 *
 * The safetensors layout (Hugging Face's format):
 *   bytes 0..8       N, the header length, unsigned 64-bit little-endian
 *   bytes 8..8+N     a JSON object: "name": {"dtype": "F32", "shape": [2,3], "data_offsets": [b, e]}
 *                    for each tensor, plus an optional "__metadata__": {"key": "string", ...}
 *   bytes 8+N..      the data section; a tensor's bytes are data[b..e), little-endian, row-major
 *
 * Golden files are that, gzip-compressed (oracle/golden/NN-chapter.safetensors.gz). The reader
 * takes either form (it looks for gzip's magic bytes) and checks everything before it hands out a
 * single tensor: header length inside the file, JSON well formed, dtypes known, shape product x
 * dtype size equal to the byte range, ranges inside the data section and not overlapping. Any
 * violation fails the whole load with one line naming the file and the problem.
 */
#ifndef TFM_GOLDEN_H
#define TFM_GOLDEN_H

#include <stddef.h>
#include "tensor.h"

#define TFM_ERR_LEN 512

typedef struct {
    char *path;          /* the file it was read from */
    size_t n;            /* number of tensors */
    char **names;        /* [n] tensor names, in file order */
    Tensor *tensors;     /* [n] owned tensors, same order */
    size_t n_meta;       /* number of __metadata__ entries */
    char **meta_keys;    /* [n_meta] */
    char **meta_values;  /* [n_meta] */
} GoldenFile;

/* Files larger than this, and gzip files that inflate to more, are refused ("file is larger
 * than N bytes", "inflates to more than N bytes"): goldens are a few MB, and a gzip bomb (4 MB
 * can inflate to 4 GB) must not take the machine's memory. golden_set_max_bytes changes the
 * limit (the fuzzers and tests lower it) and returns the previous one. */
#define GOLDEN_MAX_BYTES ((size_t)1 << 32)
size_t golden_set_max_bytes(size_t n);

/* Loads a whole file. Returns 0, or -1 with "PATH: what is wrong" in err; on error gf is empty. */
int golden_load(GoldenFile *gf, const char *path, char *err, size_t errlen);
/* Loads from memory (the bytes of a file, gzip or not); `label` names it in error messages. */
int golden_load_bytes(GoldenFile *gf, const unsigned char *bytes, size_t len, const char *label,
                      char *err, size_t errlen);
void golden_free(GoldenFile *gf);
/* Reads a whole text file (a model's config.json) into a malloc'd NUL-terminated string, with
 * the same size limit and messages as golden_load. Returns 0, or -1 with "PATH: ..." in err. */
int golden_read_text(const char *path, char **text, char *err, size_t errlen);

/* The tensor called `name`, or NULL. */
const Tensor *golden_find(const GoldenFile *gf, const char *name);
/* The tensor called `name`, required to have dtype dt and ndim dims (ndim < 0: any).
 * Returns NULL with "PATH: tensor 'name' ..." in err if missing or of another dtype/rank. */
const Tensor *golden_require(const GoldenFile *gf, const char *name, TfmDType dt, int ndim,
                             char *err, size_t errlen);
/* Value of a __metadata__ key, or NULL. */
const char *golden_meta(const GoldenFile *gf, const char *key);

/* Case names: the distinct prefixes before '/' of the tensor names, in first-seen order.
 * Returns the count; *cases is a malloc'd array of malloc'd strings (free with golden_free_cases). */
size_t golden_cases(const GoldenFile *gf, char ***cases);
void golden_free_cases(char **cases, size_t n);

/* Writes tensors to path, gzip-compressed if the path ends in ".gz". The file is written to a
 * temporary name beside it and renamed, so a failed write leaves no partial file behind.
 * meta_keys/meta_values may be NULL when n_meta is 0. Returns 0, or -1 with a message in err. */
int golden_save(const char *path, size_t n, const char *const *names, const Tensor *tensors,
                size_t n_meta, const char *const *meta_keys, const char *const *meta_values,
                char *err, size_t errlen);

#endif
