/* tensor.c — allocation, shapes and dtypes of the one tensor type. */
#include "tensor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { TfmDType dt; const char *name; size_t size; } DTYPES[] = {
    {TFM_F32, "F32", 4}, {TFM_F64, "F64", 8}, {TFM_I64, "I64", 8}, {TFM_BOOL, "BOOL", 1},
    {TFM_U8, "U8", 1},
};
#define N_DTYPES (sizeof DTYPES / sizeof DTYPES[0])

size_t tfm_dtype_size(TfmDType dt) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (DTYPES[i].dt == dt) return DTYPES[i].size;
    return 0;
}

const char *tfm_dtype_name(TfmDType dt) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (DTYPES[i].dt == dt) return DTYPES[i].name;
    return "?";
}

int tfm_dtype_parse(const char *s, TfmDType *out) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(s, DTYPES[i].name) == 0) { *out = DTYPES[i].dt; return 0; }
    return -1;
}

size_t tfm_shape_numel(int ndim, const size_t *shape, int *overflow) {
    size_t n = 1;
    *overflow = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] != 0 && n > SIZE_MAX / shape[d]) { *overflow = 1; return 0; }
        n *= shape[d];
    }
    return n;
}

int tensor_alloc(Tensor *t, TfmDType dt, int ndim, const size_t *shape, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    size_t esize = tfm_dtype_size(dt);
    if (esize == 0) { snprintf(err, errlen, "unknown dtype %d", (int)dt); return -1; }
    if (ndim < 0 || ndim > TFM_MAX_DIMS) {
        snprintf(err, errlen, "rank %d is outside 0..%d", ndim, TFM_MAX_DIMS);
        return -1;
    }
    int overflow;
    size_t numel = tfm_shape_numel(ndim, shape, &overflow);
    if (overflow || numel > SIZE_MAX / esize) {
        char s[128];
        tfm_shape_str(s, sizeof s, ndim, shape);
        snprintf(err, errlen, "shape %s is too large to address", s);
        return -1;
    }
    /* calloc(…, 1) of 0 bytes may return NULL legitimately; ask for at least one byte. */
    void *data = calloc(numel ? numel : 1, esize);
    if (!data) { snprintf(err, errlen, "out of memory for %zu elements", numel); return -1; }
    t->dtype = dt;
    t->ndim = ndim;
    for (int d = 0; d < TFM_MAX_DIMS; d++) t->shape[d] = d < ndim ? shape[d] : 1;
    t->numel = numel;
    t->data = data;
    t->owns = 1;
    return 0;
}

Tensor tensor_view(TfmDType dt, void *data, int ndim, const size_t *shape) {
    Tensor t;
    memset(&t, 0, sizeof t);
    int overflow;
    t.dtype = dt;
    t.ndim = ndim;
    for (int d = 0; d < TFM_MAX_DIMS; d++) t.shape[d] = d < ndim ? shape[d] : 1;
    t.numel = tfm_shape_numel(ndim, shape, &overflow);
    t.data = data;
    t.owns = 0;
    return t;
}

void *tfm_xcalloc(size_t count, size_t size, const char *who) {
    void *p = (count && size) ? calloc(count, size) : calloc(1, 1);
    if (p == NULL) {
        fprintf(stderr, "%s: out of memory for %zu x %zu bytes\n", who, count, size);
        abort();
    }
    return p;
}

void *tfm_xrealloc(void *p, size_t count, size_t size, const char *who) {
    void *q = (count && size && count <= SIZE_MAX / size) ? realloc(p, count * size) : NULL;
    if (q == NULL) {
        fprintf(stderr, "%s: out of memory for %zu x %zu bytes\n", who, count, size);
        abort();
    }
    return q;
}

void tensor_free(Tensor *t) {
    if (t->owns) free(t->data);
    memset(t, 0, sizeof *t);
}

void tfm_shape_str(char *buf, size_t buflen, int ndim, const size_t *shape) {
    size_t used = 0;
    int w = snprintf(buf, buflen, "[");
    if (w > 0) used = (size_t)w;
    for (int d = 0; d < ndim && used < buflen; d++) {
        w = snprintf(buf + used, buflen - used, d ? ", %zu" : "%zu", shape[d]);
        if (w > 0) used += (size_t)w;
    }
    if (used < buflen) snprintf(buf + used, buflen - used, "]");
}

void tfm_index_str(char *buf, size_t buflen, int ndim, const size_t *shape, size_t i) {
    size_t idx[TFM_MAX_DIMS] = {0};
    for (int d = ndim - 1; d >= 0; d--) {
        size_t s = shape[d] ? shape[d] : 1;
        idx[d] = i % s;
        i /= s;
    }
    tfm_shape_str(buf, buflen, ndim, idx);
}

int tfm_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}
