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

#include <sys/stat.h>
#include <unistd.h>

#include "bert_model.h"
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
    encoder_layer_forward_naive(ref, NULL, scratch, src, &mask, &p, s->act, s->norm_first, 1e-5f, B, T,
                                E, s->H, I);
    encoder_layer_forward_fast(got, NULL, scratch, src, &mask, &p, s->act, s->norm_first, 1e-5f, B, T, E,
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

/* ---------------------------------------------------------------- BERT from a directory */

/* Writes the model of golden case `c` as a Hugging Face directory: config.json and
 * model.safetensors, the weights under their names with `ns` in front of "embeddings." etc.
 * ("bert." as BertForPreTraining saves them, "" as BertModel does), plus `extra` (a tensor
 * name, or NULL) and without `skip` (or NULL). Returns the directory (static storage). */
static const char *write_model_dir(const GoldenFile *gf, const char *c, const char *ns,
                                   const char *skip, const char *extra)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/tfm-bert-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[128], key[128], err[TFM_ERR_LEN];
    snprintf(key, sizeof key, "%s/config", c);
    const char *config = golden_meta(gf, key);
    ck_assert_msg(config != NULL, "case %s has no config", c);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(config, f);
    ck_assert_int_eq(fclose(f), 0);
    const char *names[256];
    static char storage[256][160];
    Tensor tensors[256];
    size_t n = 0, len = strlen(c);
    for (size_t t = 0; t < gf->n && n < 255; t++) {
        const char *name = gf->names[t];
        if (strncmp(name, c, len) != 0 || name[len] != '/' || strncmp(name + len + 1, "bert.", 5))
            continue;
        const char *rest = name + len + 1 + 5;   /* after "bert." */
        if (skip && strcmp(rest, skip) == 0) continue;
        snprintf(storage[n], sizeof storage[n], "%s%s", ns, rest);
        names[n] = storage[n];
        tensors[n++] = gf->tensors[t];
    }
    const float one = 1.0f;
    if (extra) {
        names[n] = extra;
        tensors[n++] = tensor_view(TFM_F32, (void *)(uintptr_t)&one, 1, (size_t[]){1});
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ck_assert_msg(golden_save(path, n, names, tensors, 0, NULL, NULL, err, sizeof err) == 0, "%s", err);
    return dir;
}

static void remove_dir(const char *dir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
}

/* A directory as transformers writes it loads, with BertForPreTraining's keys ("bert.") and
 * with BertModel's (none), and gives the golden's last_hidden_state; what is wrong with a
 * directory is named. */
START_TEST(test_bert_model_directory)
{
    GoldenFile gf;
    const TfmChapter *ch;
    tu_load_chapter(&gf, &ch, CH);
    const char *c = "bert_tiny_no_mask";
    const Tensor *ids = tu_case_tensor(&gf, c, "input_ids", TFM_I64);
    const Tensor *want = tu_case_tensor(&gf, c, "last_hidden_state", TFM_F32);
    TuMemFile in;
    tu_mem_init(&in);
    tu_mem_put(&in, "input_ids", TFM_I64, ids->data, 2, ids->shape);
    static const char *const NS[2] = {"bert.", ""};
    for (int k = 0; k < 2; k++) {
        const char *dir = write_model_dir(&gf, c, NS[k], NULL, NS[k][0] ? "cls.predictions.bias" : NULL);
        TfmBert m;
        char err[TFM_ERR_LEN];
        ck_assert_msg(tfm_bert_load_dir(&m, dir, err, sizeof err) == 0, "%s", err);
        TfmModelSource src = {&m.file, "", NULL};
        char cfgpath[128], *cfg;
        snprintf(cfgpath, sizeof cfgpath, "%s/config.json", dir);
        ck_assert_msg(golden_read_text(cfgpath, &cfg, err, sizeof err) == 0, "%s", err);
        src.config_json = cfg;
        for (int v = TFM_NAIVE; v <= TFM_FAST; v++) {
            OpOutputs out;
            ck_assert_msg(tfm_op_run_model(&out, tfm_op_find("bert"), &in.gf, "", NULL, &src,
                                           (TfmVariant)v, 0, err, sizeof err) == 0, "%s", err);
            tu_assert_close(NS[k][0] ? "directory (bert.*) vs golden" : "directory (BertModel keys) vs golden",
                            tensor_f32(&out.tensors[0]), out.tensors[0].numel, want, TOL_06_ATOL, TOL_06_RTOL);
            op_outputs_free(&out);
        }
        free(cfg);
        tfm_bert_free(&m);
        remove_dir(dir);
    }
    /* Bad directories: each message names what is wrong. */
    static const struct { const char *skip, *extra, *needle; } BAD[] = {
        {"encoder.layer.1.output.dense.bias", NULL, "tensor 'bert.encoder.layer.1.output.dense.bias' is missing"},
        {NULL, "bert.encoder.layer.2.output.dense.bias", "'bert.encoder.layer.2.output.dense.bias' is not a parameter of a BERT with this config (2 layers)"},
        {NULL, "bert.embeddings.word_embeddings.weight", "appears twice"},
    };
    for (size_t b = 0; b < sizeof BAD / sizeof BAD[0]; b++) {
        const char *dir = write_model_dir(&gf, c, "bert.", BAD[b].skip, BAD[b].extra);
        TfmBert m;
        char err[TFM_ERR_LEN] = "";
        ck_assert_msg(tfm_bert_load_dir(&m, dir, err, sizeof err) == -1, "bad directory %zu loaded", b);
        ck_assert_msg(strstr(err, BAD[b].needle), "error '%s' does not mention '%s'", err, BAD[b].needle);
        remove_dir(dir);
    }
    /* A config that disagrees with the weights, and configs that are not BERT's. */
    BertConfig cfg;
    char err[TFM_ERR_LEN];
    ck_assert_int_eq(tfm_bert_parse_config(&cfg, "{\"hidden_size\": 32}", "c.json", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "config has no \"vocab_size\""), "%s", err);
    ck_assert_int_eq(tfm_bert_parse_config(&cfg, "{\"model_type\": \"gpt2\"}", "c.json", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "tfm reads BERT"), "%s", err);
    ck_assert_int_eq(tfm_bert_parse_config(&cfg, "[1]", "c.json", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "not a JSON object"), "%s", err);
    ck_assert_int_eq(tfm_bert_parse_config(&cfg, "{\"vocab_size\": 99, \"hidden_size\": 30, "
                     "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 64}",
                     "c.json", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "hidden_size 30 is not a multiple of num_attention_heads 4"), "%s", err);
    char key[128];
    snprintf(key, sizeof key, "%s/config", c);
    char *wrong = strdup(golden_meta(&gf, key));
    char *at = strstr(wrong, "\"intermediate_size\":");
    ck_assert_ptr_nonnull(at);
    at += strlen("\"intermediate_size\":");
    while (*at == ' ') at++;
    *at = '7';   /* 64 -> 74: the weights say otherwise */
    TfmBert m;
    ck_assert_int_eq(tfm_bert_from_tensors(&m, &gf, c, wrong, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "intermediate.dense.weight' is F32 [64, 32]; the config says F32 [74, 32]"), "%s", err);
    free(wrong);
    /* --model missing, and a bad attention_mask */
    OpOutputs out;
    ck_assert_int_eq(tfm_op_run(&out, tfm_op_find("bert"), &in.gf, "", NULL, TFM_FAST, 0, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "op 'bert' reads a model: give --model DIR"), "%s", err);
    golden_free(&gf);
}
END_TEST

/* Hugging Face's additive mask on a fully padded row gives finite outputs (uniform attention
 * over all keys), where key_padding_mask's -inf gives NaN (chapter 01). tfm's outputs are
 * finite on that row, and its attention there is uniform, 1/T on every key. */
START_TEST(test_bert_fully_padded_row_is_finite)
{
    GoldenFile gf;
    const TfmChapter *ch;
    tu_load_chapter(&gf, &ch, CH);
    const char *c = "bert_fully_padded";
    const Tensor *am = tu_case_tensor(&gf, c, "attention_mask", TFM_I64);
    const size_t B = am->shape[0], T = am->shape[1];
    size_t padded = B;
    for (size_t b = 0; b < B; b++) {
        int any = 0;
        for (size_t t = 0; t < T; t++) any |= tensor_i64(am)[b * T + t] != 0;
        if (!any) padded = b;
    }
    ck_assert_msg(padded < B, "case %s has no fully padded row", c);
    TuMemFile m;
    tu_mem_from_case(&m, &gf, c, "c", NULL);
    tu_mem_meta(&m, "c/params", "output_attentions=1");
    for (int v = TFM_NAIVE; v <= TFM_FAST; v++) {
        OpOutputs out;
        char err[TFM_ERR_LEN];
        ck_assert_msg(tu_run_op("bert", &out, &m.gf, "c", (TfmVariant)v, err, sizeof err) == 0, "%s", err);
        const Tensor *h = &out.tensors[0], *att = &out.tensors[2];
        ck_assert_str_eq(out.names[2], "attentions");
        const size_t E = h->shape[2], L = att->shape[0], H = att->shape[2];
        for (size_t i = 0; i < T * E; i++)
            ck_assert_msg(isfinite(tensor_f32(h)[padded * T * E + i]), "%s: row %zu not finite",
                          tfm_variant_name((TfmVariant)v), padded);
        for (size_t l = 0; l < L; l++)
            for (size_t k = 0; k < H * T * T; k++) {
                const float p = tensor_f32(att)[((l * B + padded) * H) * T * T + k];
                ck_assert_msg(fabsf(p - 1.0f / (float)T) < 1e-6f, "%s: layer %zu prob %g, not 1/T",
                              tfm_variant_name((TfmVariant)v), l, (double)p);
            }
        op_outputs_free(&out);
    }
    golden_free(&gf);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("06-encoder");
    TCase *gold = tcase_create("goldens");
    tcase_set_tags(gold, "goldens");    /* make valgrind leaves these to `tfm check` */
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
    TCase *bert = tcase_create("BERT");
    tcase_set_timeout(bert, 120);
    tcase_add_test(bert, test_bert_model_directory);
    tcase_add_test(bert, test_bert_fully_padded_row_is_finite);
    suite_add_tcase(s, bert);
    TCase *bad = tcase_create("bad input");
    tcase_add_test(bad, test_refuses_bad_input);
    suite_add_tcase(s, bad);
    return s;
}

int main(void) { return tu_run(suite()); }
