/* tensor.h — the one tensor type of tfm.
 *
 * A Tensor is a contiguous, row-major block of up to eight dimensions (torch.matmul and
 * nn.LayerNorm inputs of any rank a reader brings). The compute kernels of every
 * chapter take plain `float *` pointers plus dimensions (that is what the formulas index); a Tensor
 * is what carries an array between a file, a test and a kernel, so that it always knows its own
 * dtype and shape.
 *
 * Dtypes follow safetensors' names. F32 is the compute dtype; F64 holds PyTorch's float64 "truth";
 * I64 holds token ids and integer parameters; BOOL holds masks (one byte, 0 or 1); U8 holds
 * bytes (the UTF-8 text of the tokenizer goldens).
 *
 * Offsets are size_t everywhere: a 32-bit int product wraps at 2^31, which the scores of a
 * [16, 12, 2048, 2048] batch (805M elements, 3.2 GB of float32) already pass in bytes, long
 * before memory runs out.
 */
#ifndef TFM_TENSOR_H
#define TFM_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define TFM_MAX_DIMS 8

typedef enum { TFM_F32, TFM_F64, TFM_I64, TFM_BOOL, TFM_U8 } TfmDType;

typedef struct {
    TfmDType dtype;
    int ndim;                      /* 0..TFM_MAX_DIMS; 0 is a scalar holding one element */
    size_t shape[TFM_MAX_DIMS];    /* [ndim], unused entries are 1 */
    size_t numel;                  /* product of shape[0..ndim) (1 for a scalar) */
    void *data;                    /* [numel] elements of dtype, row-major; owned unless a view */
    int owns;                      /* 1: tensor_free releases data; 0: a view of someone's memory */
} Tensor;

/* Size in bytes of one element; 0 for an unknown dtype. */
size_t tfm_dtype_size(TfmDType dt);
/* "F32", "F64", "I64", "BOOL", "U8". */
const char *tfm_dtype_name(TfmDType dt);
/* Parses a safetensors dtype string; returns 0 on success, -1 if unknown. */
int tfm_dtype_parse(const char *s, TfmDType *out);

/* Allocates a zero-filled tensor. Returns 0, or -1 (message in err) on a bad shape or no memory. */
int tensor_alloc(Tensor *t, TfmDType dt, int ndim, const size_t *shape, char *err, size_t errlen);
/* A non-owning tensor over existing memory (for comparing a plain buffer against a golden). */
Tensor tensor_view(TfmDType dt, void *data, int ndim, const size_t *shape);
void tensor_free(Tensor *t);

/* Zeroed memory for count elements of size bytes, or a message naming `who` on stderr and
 * abort(). For kernels, whose signatures have no error path (the runners check sizes before they
 * call one); never returns NULL, never allocates 0 bytes, and count * size cannot overflow. */
void *tfm_xcalloc(size_t count, size_t size, const char *who);

/* realloc to count elements of size bytes (contents kept), or a message naming `who` on stderr
 * and abort(), as tfm_xcalloc: for buffers a kernel grows by doubling (chapter 08's). */
void *tfm_xrealloc(void *p, size_t count, size_t size, const char *who);

/* The error path of every loader and parser: the message formatted into err (errlen bytes; err
 * may be NULL), and -1, the value such a function returns, so that `return tfm_fail(...)` reads
 * as what it does. */
int tfm_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* numel for a shape, or 0 and *overflow = 1 if the product does not fit in size_t. */
size_t tfm_shape_numel(int ndim, const size_t *shape, int *overflow);
/* Writes "[2, 3, 4]" into buf. */
void tfm_shape_str(char *buf, size_t buflen, int ndim, const size_t *shape);
/* Writes the multi-index of flat offset i as "[0, 1, 2]". */
void tfm_index_str(char *buf, size_t buflen, int ndim, const size_t *shape, size_t i);

static inline float *tensor_f32(const Tensor *t) { return (float *)t->data; }
static inline double *tensor_f64(const Tensor *t) { return (double *)t->data; }
static inline int64_t *tensor_i64(const Tensor *t) { return (int64_t *)t->data; }
static inline uint8_t *tensor_bool(const Tensor *t) { return (uint8_t *)t->data; }

#endif
