/* pe_similarity.c — the data of the PE(p) . PE(q) figure (plots/03-positional.mk).
 *
 *   pe_similarity IN.safetensors OUT.safetensors
 *
 * Reads the table "out" [T, E] that `tfm run pe` wrote and writes "sim" [T, T] with
 * sim[p][q] = PE(p) . PE(q), computed by chapter 00's linear (x w^T with x = w = the table),
 * for `tfm slice` to turn into a gnuplot matrix. */
#include <stdio.h>

#include "cases.h"
#include "matmul.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: pe_similarity IN.safetensors OUT.safetensors\n");
        return 2;
    }
    char err[TFM_ERR_LEN];
    GoldenFile gf;
    if (golden_load(&gf, argv[1], err, sizeof err) != 0) {
        fprintf(stderr, "pe_similarity: %s\n", err);
        return 1;
    }
    int rc = 1;
    const Tensor *pe = golden_require(&gf, "out", TFM_F32, 2, err, sizeof err);
    Tensor sim;
    const size_t T = pe ? pe->shape[0] : 0, E = pe ? pe->shape[1] : 0, shape[2] = {T, T};
    if (!pe || tensor_alloc(&sim, TFM_F32, 2, shape, err, sizeof err) != 0) {
        fprintf(stderr, "pe_similarity: %s\n", err);
    } else {
        linear_fast(tensor_f32(&sim), tensor_f32(pe), tensor_f32(pe), NULL, T, E, T);
        const char *name = "sim";
        if (golden_save(argv[2], 1, &name, &sim, 0, NULL, NULL, err, sizeof err) != 0)
            fprintf(stderr, "pe_similarity: %s\n", err);
        else
            rc = 0;
        tensor_free(&sim);
    }
    golden_free(&gf);
    return rc;
}
