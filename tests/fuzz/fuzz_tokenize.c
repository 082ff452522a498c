/* fuzz_tokenize.c — libFuzzer target for chapter 08's tokenizer: any bytes, as a line of text.
 *
 * Both kernels run on the input with bert-base-uncased's vocabulary (loaded once from where
 * make deps put it, $TFM_DATA). Either both refuse it, at the same byte, as invalid UTF-8, or
 * both give the same ids, every one of them in [0, V); the ids then decode without error, and
 * the input split at its first TAB encodes as a pair with token types 0 then 1. No crash, no
 * leak, no undefined behaviour (the build has ASan and UBSan).
 *
 * Seeds: tests/fuzz/corpus/fuzz_tokenize/; run with `make fuzz`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

#define REQUIRE(cond)                                                                          \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz_tokenize: %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static Vocab V;
static TokScratch S1, S2;
static TokIds A, B;

static void release(void) {
    vocab_free(&V);
    tok_scratch_free(&S1);
    tok_scratch_free(&S2);
    tok_ids_free(&A);
    tok_ids_free(&B);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char path[4096], err[TFM_TOK_ERR];
    tok_data_path(path, sizeof path, TOK_DEFAULT_VOCAB);
    if (vocab_load(&V, path, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_tokenize: %s (run make deps; TFM_DATA says where)\n", err);
        exit(1);
    }
    atexit(release);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    TokError e1 = {0}, e2 = {0};
    A.len = B.len = 0;
    const int r1 = tokenize_naive(&A, &V, text, size, &S1, &e1);
    const int r2 = tokenize_fast(&B, &V, text, size, &S2, &e2);
    REQUIRE(r1 == r2);
    if (r1 != 0) {
        REQUIRE(e1.offset == e2.offset && e1.offset < size);
        REQUIRE(A.len == 0 && B.len == 0);
        return 0;
    }
    REQUIRE(A.len == B.len);
    REQUIRE(A.len == 0 || memcmp(A.ids, B.ids, A.len * sizeof *A.ids) == 0);
    int64_t *ids = malloc((A.len + 1) * sizeof *ids);
    REQUIRE(ids != NULL);
    for (size_t i = 0; i < A.len; i++) {
        REQUIRE(A.ids[i] >= 0 && (size_t)A.ids[i] < V.n);
        ids[i] = A.ids[i];
    }
    char err[TFM_TOK_ERR];
    char *s = tok_decode(&V, ids, A.len, 0, err, sizeof err);
    REQUIRE(s != NULL);
    free(s);
    free(ids);

    /* as a pair, split at the first TAB, truncated to 16 and padded to it */
    const char *tab = memchr(text, '\t', size);
    const char *a = text, *b = tab ? tab + 1 : text + size;
    const size_t na = tab ? (size_t)(tab - text) : size, nb = tab ? size - na - 1 : 0;
    TokOptions o = tok_default_options();
    o.max_length = 16;
    o.truncation = TOK_TRUNC_LONGEST_FIRST;
    o.padding = TOK_PAD_MAX_LENGTH;
    TokBatch batch = {0};
    size_t bad;
    /* A and B are valid UTF-8 (the whole input is, and a TAB is ASCII): the batch must encode */
    REQUIRE(tok_encode_batch(&batch, &a, &na, &b, &nb, 1, &V, tokenize_fast, &o, &bad, err, sizeof err) == 0);
    {
        REQUIRE(batch.n == 1 && tok_batch_len(&batch, 0) == 16);
        int seen_b = 0;
        for (size_t k = 0; k < 16; k++) {
            REQUIRE(batch.input_ids[k] >= 0 && (size_t)batch.input_ids[k] < V.n);
            REQUIRE(batch.token_type_ids[k] == 0 || batch.token_type_ids[k] == 1);
            if (batch.token_type_ids[k]) seen_b = 1;
            else REQUIRE(!seen_b || batch.attention_mask[k] == 0);   /* 0s, then 1s, then pads */
        }
        REQUIRE(batch.input_ids[0] == V.cls_id);
    }
    tok_batch_free(&batch);
    return 0;
}
