/* test_06_encoder.c — chapter 06: the feed-forward network and the encoder layer.
 *
 *   goldens      naive and fast against nn.TransformerEncoderLayer called as a whole (every
 *                case of oracle/golden/06-encoder.safetensors.gz, through the op table)
 *   fast/naive   fast against naive on fresh random shapes: both orders, both activations,
 *                masks, widths that are multiples of no block size
 *   erratum      article 003 §4.2's encoder layer, LayerNorm(x + MultiHead(x, x, x)), is only
 *                the layer's first half: computed in C it matches PyTorch's value of that
 *                formula, and differs from the real layer's output
 *   bad input    the op refuses what the module would
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder.h"
#include "layernorm.h"
#include "testutil.h"
#include "tolerances.h"

static const char *const CH = "06-encoder";

START_TEST(test_naive_vs_goldens) { tu_check_all_cases(CH, TFM_NAIVE); }
END_TEST

START_TEST(test_fast_vs_goldens) { tu_check_all_cases(CH, TFM_FAST); }
END_TEST

/* ---------------------------------------------------------------- fast vs naive */

typedef struct {
    size_t B, T, E, H, I;
    TfmActivation act;
    int norm_first, padded, causal;
} Shape;

/* Random parameters of the layer's scale (weights N(0, 1/fan_in), LayerNorm near 1 and 0). */
static float *normal(size_t n, float scale, float shift, TuRng *r)
{
    float *x = tu_malloc(n * sizeof(float));
    tu_fill_normal(x, n, r);
    for (size_t i = 0; i < n; i++)
        x[i] = shift + scale * x[i];
    return x;
}

static void run_layer(const Shape *s, uint64_t seed)
{
    TuRng r = {seed};
    const size_t B = s->B, T = s->T, E = s->E, I = s->I, n = B * T * E;
    float *src = normal(n, 1.0f, 0.0f, &r);
    float *w_in = normal(3 * E * E, 1.0f / sqrtf((float)E), 0.0f, &r), *b_in = normal(3 * E, 0.1f, 0.0f, &r);
    float *w_out = normal(E * E, 1.0f / sqrtf((float)E), 0.0f, &r), *b_out = normal(E, 0.1f, 0.0f, &r);
    float *w1 = normal(I * E, 1.0f / sqrtf((float)E), 0.0f, &r), *b1 = normal(I, 0.1f, 0.0f, &r);
    float *w2 = normal(E * I, 1.0f / sqrtf((float)I), 0.0f, &r), *b2 = normal(E, 0.1f, 0.0f, &r);
    float *g1 = normal(E, 0.1f, 1.0f, &r), *be1 = normal(E, 0.1f, 0.0f, &r);
    float *g2 = normal(E, 0.1f, 1.0f, &r), *be2 = normal(E, 0.1f, 0.0f, &r);
    const EncoderLayerParams p = {{w_in, b_in, w_out, b_out}, {w1, b1, w2, b2}, g1, be1, g2, be2};
    uint8_t *kpm = tu_malloc(B * T);
    for (size_t b = 0; b < B; b++)   /* batch row b: its last b tokens are padding */
        for (size_t t = 0; t < T; t++)
            kpm[b * T + t] = s->padded && t + b >= T && t > 0;
    AttnMask mask = {NULL, 0, 0, s->padded ? kpm : NULL, s->causal};
    float *ref = tu_malloc(n * sizeof(float)), *got = tu_malloc(n * sizeof(float));
    float *scratch = tu_malloc(encoder_layer_scratch_floats(B, T, E, I) * sizeof(float));
    encoder_layer_forward_naive(ref, scratch, src, &mask, &p, s->act, s->norm_first, 1e-5f, B, T,
                                E, s->H, I);
    encoder_layer_forward_fast(got, scratch, src, &mask, &p, s->act, s->norm_first, 1e-5f, B, T, E,
                               s->H, I);
    char label[160];
    snprintf(label, sizeof label, "fast vs naive B%zu T%zu E%zu H%zu I%zu act %d %s%s%s", B, T, E,
             s->H, I, (int)s->act, s->norm_first ? "pre-LN" : "post-LN", s->padded ? " padded" : "",
             s->causal ? " causal" : "");
    tu_assert_close_f32(label, got, ref, 3, (size_t[]){B, T, E}, TOL_06_ATOL, TOL_06_RTOL);
    float *arrays[] = {src, w_in, b_in, w_out, b_out, w1, b1, w2, b2, g1, be1, g2, be2, ref, got,
                       scratch};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        free(arrays[i]);
    free(kpm);
}

START_TEST(test_fast_vs_naive_random)
{
    static const Shape SHAPES[] = {
        {1, 1, 4, 1, 8, TFM_ACT_RELU, 0, 0, 0},
        {2, 7, 10, 2, 24, TFM_ACT_GELU, 0, 1, 0},
        {3, 13, 36, 6, 100, TFM_ACT_RELU, 1, 1, 0},
        {2, 33, 64, 4, 257, TFM_ACT_GELU, 1, 0, 1},
        {1, 70, 96, 8, 384, TFM_ACT_GELU, 0, 1, 1},
    };
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
        run_layer(&SHAPES[i], 0x06e0 + i);
}
END_TEST

/* ---------------------------------------------------------------- erratum 003 §4.2 */

/* Article 003 §4.2 writes the encoder layer as LayerNorm(x + MultiHead(x, x, x)): the attention
 * sublayer with its Add & Norm, and nothing after it. nn.TransformerEncoderLayer (and BERT) then
 * applies the position-wise feed-forward network with its own residual and LayerNorm. The case
 * "errata_003_4_2" is the real layer's output (compared by the goldens test above); the pin case
 * "errata_003_4_2_article" holds PyTorch's value of the article's formula on the same inputs.
 * Computed in C from the case's tensors, the article's formula matches PyTorch's value of it, so
 * the distance between the two is in the formulas, not in an implementation. */
START_TEST(test_errata_003_4_2)
{
    GoldenFile gf;
    const TfmChapter *ch;
    tu_load_chapter(&gf, &ch, CH);
    const char *c = "errata_003_4_2";
    const Tensor *src = tu_case_tensor(&gf, c, "src", TFM_F32);
    const size_t B = src->shape[0], T = src->shape[1], E = src->shape[2];
    const size_t H = (size_t)tu_case_param(&gf, c, "nhead");
    const MhaParams mp = {tensor_f32(tu_case_tensor(&gf, c, "self_attn.in_proj_weight", TFM_F32)),
                          tensor_f32(tu_case_tensor(&gf, c, "self_attn.in_proj_bias", TFM_F32)),
                          tensor_f32(tu_case_tensor(&gf, c, "self_attn.out_proj.weight", TFM_F32)),
                          tensor_f32(tu_case_tensor(&gf, c, "self_attn.out_proj.bias", TFM_F32))};
    const float *g1 = tensor_f32(tu_case_tensor(&gf, c, "norm1.weight", TFM_F32));
    const float *b1 = tensor_f32(tu_case_tensor(&gf, c, "norm1.bias", TFM_F32));
    const Tensor *article = tu_case_tensor(&gf, "errata_003_4_2_article", "out_article", TFM_F32);
    const Tensor *layer = tu_case_tensor(&gf, c, "out", TFM_F32);
    const size_t n = B * T * E;
    ck_assert_uint_eq(article->numel, n);
    ck_assert_uint_eq(layer->numel, n);
    float *sa = tu_malloc(n * sizeof(float)), *half = tu_malloc(n * sizeof(float));
    const float *x = tensor_f32(src);
    for (int v = TFM_NAIVE; v <= TFM_FAST; v++) {
        /* LN1(x + SA(x)): chapter 02's attention, chapter 04's Add & Norm */
        (v ? multihead_forward_fast : multihead_forward_naive)(sa, NULL, x, x, x, &mp, NULL, 1, B,
                                                                H, T, T, E);
        (v ? add_norm_forward_fast : add_norm_forward_naive)(half, NULL, NULL, x, sa, g1, b1, 1e-5f,
                                                              B * T, E);
        tu_assert_close(v ? "fast: C article formula vs PyTorch's" : "naive: C article formula vs PyTorch's",
                        half, n, article, TOL_06_ATOL, TOL_06_RTOL);
        CompareResult r = compare_f32(half, n, layer, TOL_06_ATOL, TOL_06_RTOL);
        fprintf(stderr, "erratum 003 §4.2 (%s): ||LN(x + MHA(x)) - layer(x)|| / ||layer(x)|| = %.3f\n",
                tfm_variant_name((TfmVariant)v), r.rel_fro);
        ck_assert_msg(r.rel_fro > 0.1, "the first half alone equals the whole layer (%.3g)", r.rel_fro);
    }
    free(sa);
    free(half);
    golden_free(&gf);
}
END_TEST

/* ---------------------------------------------------------------- bad input */

static const float POOL[4096];
static const uint8_t POOL_BOOL[256];

START_TEST(test_refuses_bad_input)
{
    GoldenFile gf;
    const TfmChapter *ch;
    tu_load_chapter(&gf, &ch, CH);
    const char *base = "odd_post_relu";   /* B=2, T=7, E=10, H=2, I=24 */
    TuMemFile m;
    tu_mem_from_case(&m, &gf, base, "c", NULL);
    OpOutputs out;
    char err[TFM_ERR_LEN];
    ck_assert_msg(tu_run_op("encoder-layer", &out, &m.gf, "c", TFM_FAST, err, sizeof err) == 0, "%s", err);
    op_outputs_free(&out);
    tu_mem_meta(&m, "c/params", "nhead=3");
    tu_expect_refused("encoder-layer", &m.gf, "c", "nhead is 3; it must be a positive divisor");
    tu_mem_meta(&m, "c/params", "nhead=2 activation=tanh");
    tu_expect_refused("encoder-layer", &m.gf, "c", "activation=tanh is not one of relu|gelu");
    tu_mem_from_case(&m, &gf, base, "c", "linear1.weight");
    tu_expect_refused("encoder-layer", &m.gf, "c", "tensor 'c/linear1.weight' is missing");
    tu_mem_from_case(&m, &gf, base, "c", NULL);
    tu_mem_put(&m, "c/linear2.weight", TFM_F32, POOL, 2, (size_t[]){10, 23});
    tu_expect_refused("encoder-layer", &m.gf, "c", "linear2.weight is [10, 23]; it must be [10, 24]");
    tu_mem_from_case(&m, &gf, base, "c", NULL);
    tu_mem_put(&m, "c/norm2.bias", TFM_F32, POOL, 1, (size_t[]){11});
    tu_expect_refused("encoder-layer", &m.gf, "c", "norm2.bias is [11]; it must be [10]");
    tu_mem_from_case(&m, &gf, base, "c", NULL);
    tu_mem_put(&m, "c/src_mask", TFM_BOOL, POOL_BOOL, 2, (size_t[]){7, 6});
    tu_expect_refused("encoder-layer", &m.gf, "c", "src_mask is [7, 6]; it must be [T, T] = [7, 7]");
    tu_mem_from_case(&m, &gf, base, "c", NULL);
    tu_mem_put(&m, "c/src_key_padding_mask", TFM_BOOL, POOL_BOOL, 2, (size_t[]){7, 2});
    tu_expect_refused("encoder-layer", &m.gf, "c", "src_key_padding_mask is [7, 2]");
    tu_mem_from_case(&m, &gf, base, "c", NULL);
    tu_mem_put(&m, "c/self_attn.in_proj_weight", TFM_F32, POOL, 2, (size_t[]){10, 10});
    tu_expect_refused("encoder-layer", &m.gf, "c", "self_attn.in_proj_weight is [10, 10]; it must be [30, 10]");
    tu_mem_from_case(&m, &gf, base, "c", NULL);   /* a module parameter this layer does not have */
    tu_mem_put(&m, "c/self_attn.bias_k", TFM_F32, POOL, 1, (size_t[]){10});
    tu_expect_refused("encoder-layer", &m.gf, "c", "tensor 'c/self_attn.bias_k' is not an input of op 'encoder-layer'");
    golden_free(&gf);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("06-encoder");
    TCase *gold = tcase_create("goldens");
    tcase_set_timeout(gold, 120);
    tcase_add_test(gold, test_naive_vs_goldens);
    tcase_add_test(gold, test_fast_vs_goldens);
    suite_add_tcase(s, gold);
    TCase *fast = tcase_create("fast vs naive");
    tcase_set_timeout(fast, 120);
    tcase_add_test(fast, test_fast_vs_naive_random);
    suite_add_tcase(s, fast);
    TCase *err = tcase_create("errata");
    tcase_add_test(err, test_errata_003_4_2);
    suite_add_tcase(s, err);
    TCase *bad = tcase_create("bad input");
    tcase_add_test(bad, test_refuses_bad_input);
    suite_add_tcase(s, bad);
    return s;
}

int main(void) { return tu_run(suite()); }
