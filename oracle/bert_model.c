/* bert_model.c — reading a BERT (bert_model.h): the config, then every tensor by its
 * Hugging Face name, checked against the shape the config implies. */
#include "bert_model.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A positive whole number field; absent: `def` (0: required). */
static int size_field(size_t *out, const cJSON *root, const char *name, size_t def,
                      const char *label, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v) {
        if (!def)
            return tfm_fail(err, errlen, "%s: config has no \"%s\" (BertConfig's field)", label, name);
        *out = def;
        return 0;
    }
    const double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
    if (!(d >= 1.0 && d <= 1e9) || d != (double)(size_t)d)
        return tfm_fail(err, errlen, "%s: config field \"%s\" must be a positive whole number", label,
                    name);
    *out = (size_t)d;
    return 0;
}

int tfm_bert_parse_config(BertConfig *cfg, const char *json, const char *label, char *err,
                          size_t errlen)
{
    memset(cfg, 0, sizeof *cfg);
    cJSON *root = cJSON_Parse(json);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return tfm_fail(err, errlen, "%s: not a JSON object", label);
    }
    int rc = -1;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "bert") != 0)) {
        tfm_fail(err, errlen, "%s: model_type is %s; tfm reads BERT (\"bert\")", label,
             cJSON_IsString(mt) ? mt->valuestring : "not a string");
        goto done;
    }
    if (size_field(&cfg->vocab_size, root, "vocab_size", 0, label, err, errlen) ||
        size_field(&cfg->hidden_size, root, "hidden_size", 0, label, err, errlen) ||
        size_field(&cfg->num_hidden_layers, root, "num_hidden_layers", 0, label, err, errlen) ||
        size_field(&cfg->num_attention_heads, root, "num_attention_heads", 0, label, err,
                   errlen) ||
        size_field(&cfg->intermediate_size, root, "intermediate_size", 0, label, err, errlen) ||
        size_field(&cfg->max_position_embeddings, root, "max_position_embeddings", 512, label,
                   err, errlen) ||
        size_field(&cfg->type_vocab_size, root, "type_vocab_size", 2, label, err, errlen))
        goto done;
    if (cfg->hidden_size % cfg->num_attention_heads != 0) {
        tfm_fail(err, errlen, "%s: hidden_size %zu is not a multiple of num_attention_heads %zu",
             label, cfg->hidden_size, cfg->num_attention_heads);
        goto done;
    }
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(root, "layer_norm_eps");
    cfg->layer_norm_eps = 1e-12f;   /* BertConfig's default */
    if (eps) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble >= 0.0 && eps->valuedouble <= 1.0)) {
            tfm_fail(err, errlen, "%s: layer_norm_eps must be a number in [0, 1]", label);
            goto done;
        }
        cfg->layer_norm_eps = (float)eps->valuedouble;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    const char *a = cJSON_IsString(act) ? act->valuestring : act ? "" : "gelu";
    if (strcmp(a, "gelu") == 0)
        cfg->hidden_act = TFM_ACT_GELU;   /* transformers' "gelu" is the exact erf form */
    else if (strcmp(a, "gelu_new") == 0 || strcmp(a, "gelu_pytorch_tanh") == 0)
        cfg->hidden_act = TFM_ACT_GELU_TANH;
    else if (strcmp(a, "relu") == 0)
        cfg->hidden_act = TFM_ACT_RELU;
    else {
        tfm_fail(err, errlen, "%s: hidden_act \"%s\" is not one tfm has (gelu, gelu_new, relu)", label,
             a);
        goto done;
    }
    const cJSON *pad = cJSON_GetObjectItemCaseSensitive(root, "pad_token_id");
    cfg->pad_token_id = 0;   /* BertConfig's default */
    if (pad && !cJSON_IsNull(pad)) {
        if (!cJSON_IsNumber(pad) || pad->valuedouble != (double)(int64_t)pad->valuedouble ||
            pad->valuedouble < 0 || pad->valuedouble >= (double)cfg->vocab_size) {
            tfm_fail(err, errlen, "%s: pad_token_id must be an integer in [0, vocab_size) or null",
                 label);
            goto done;
        }
        cfg->pad_token_id = (int64_t)pad->valuedouble;
    } else if (pad) {
        cfg->pad_token_id = -1;   /* null: no padding row */
    }
    const cJSON *pet = cJSON_GetObjectItemCaseSensitive(root, "position_embedding_type");
    if (pet && (!cJSON_IsString(pet) || strcmp(pet->valuestring, "absolute") != 0)) {
        tfm_fail(err, errlen, "%s: position_embedding_type must be \"absolute\" (learned positions)",
             label);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

int tfm_bert_is_model_tensor(const char *name)
{
    static const char *const spaces[] = {"bert.", "cls.", "embeddings.", "encoder.", "pooler."};
    for (size_t i = 0; i < sizeof spaces / sizeof spaces[0]; i++)
        if (strncmp(name, spaces[i], strlen(spaces[i])) == 0)
            return 1;
    return 0;
}

/* The tensors a loader looks up, to find the ones nobody asked for. */
typedef struct {
    const GoldenFile *gf;
    const char *prefix;   /* "<case>/" or "" */
    const char *ns;       /* "bert." or "" */
    unsigned char *used;  /* [gf->n] */
    char *err;
    size_t errlen;
} Lookup;

/* The F32 tensor <ns><name> of shape [d0] or [d0, d1]. */
static const float *get(Lookup *lk, const char *name, int nd, size_t d0, size_t d1)
{
    char full[320];
    snprintf(full, sizeof full, "%s%s%s", lk->prefix, lk->ns, name);
    for (size_t t = 0; t < lk->gf->n; t++) {
        if (strcmp(lk->gf->names[t], full) != 0)
            continue;
        const Tensor *x = &lk->gf->tensors[t];
        const size_t want[2] = {d0, d1};
        int same = x->dtype == TFM_F32 && x->ndim == nd;
        for (int d = 0; same && d < nd; d++)
            same = x->shape[d] == want[d];
        if (!same) {
            char got[96], exp[96];
            tfm_shape_str(got, sizeof got, x->ndim, x->shape);
            tfm_shape_str(exp, sizeof exp, nd, want);
            tfm_fail(lk->err, lk->errlen, "%s: tensor '%s' is %s %s; the config says F32 %s",
                 lk->gf->path ? lk->gf->path : "(model)", full, tfm_dtype_name(x->dtype), got,
                 exp);
            return NULL;
        }
        lk->used[t] = 1;
        return tensor_f32(x);
    }
    tfm_fail(lk->err, lk->errlen, "%s: tensor '%s' is missing (a BERT with this config has it)",
         lk->gf->path ? lk->gf->path : "(model)", full);
    return NULL;
}

int tfm_bert_from_tensors(TfmBert *m, const GoldenFile *gf, const char *prefix,
                          const char *config_json, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    char pre[256], probe[320];
    snprintf(pre, sizeof pre, "%s%s", prefix, prefix[0] ? "/" : "");
    if (tfm_bert_parse_config(&m->cfg, config_json, "config.json", err, errlen) != 0)
        return -1;
    const BertConfig *c = &m->cfg;
    const size_t E = c->hidden_size, I = c->intermediate_size, L = c->num_hidden_layers;
    snprintf(probe, sizeof probe, "%sbert.embeddings.word_embeddings.weight", pre);
    Lookup lk = {gf, pre, golden_find(gf, probe) ? "bert." : "", calloc(gf->n + 1, 1), err,
                 errlen};
    m->layers = calloc(L, sizeof *m->layers);
    m->packed = malloc(L * (3 * E * E + 3 * E) * sizeof(float));
    if (!lk.used || !m->layers || !m->packed) {
        free(lk.used);
        tfm_bert_free(m);
        return tfm_fail(err, errlen, "out of memory for a model of %zu layers", L);
    }
    BertWeights *w = &m->w;
    int ok = (w->word_embeddings = get(&lk, "embeddings.word_embeddings.weight", 2, c->vocab_size, E)) &&
             (w->position_embeddings = get(&lk, "embeddings.position_embeddings.weight", 2,
                                           c->max_position_embeddings, E)) &&
             (w->token_type_embeddings = get(&lk, "embeddings.token_type_embeddings.weight", 2,
                                             c->type_vocab_size, E)) &&
             (w->emb_ln_w = get(&lk, "embeddings.LayerNorm.weight", 1, E, 0)) &&
             (w->emb_ln_b = get(&lk, "embeddings.LayerNorm.bias", 1, E, 0)) &&
             (w->pooler_w = get(&lk, "pooler.dense.weight", 2, E, E)) &&
             (w->pooler_b = get(&lk, "pooler.dense.bias", 1, E, 0));
    for (size_t l = 0; ok && l < L; l++) {
        char n[128];
#define GET(dst, suffix, nd, d0, d1) \
    (snprintf(n, sizeof n, "encoder.layer.%zu.%s", l, suffix), ((dst) = get(&lk, n, nd, d0, d1)) != NULL)
        const float *q, *k, *v, *qb, *kb, *vb;
        EncoderLayerParams *p = &m->layers[l];
        ok = GET(q, "attention.self.query.weight", 2, E, E) && GET(qb, "attention.self.query.bias", 1, E, 0) &&
             GET(k, "attention.self.key.weight", 2, E, E) && GET(kb, "attention.self.key.bias", 1, E, 0) &&
             GET(v, "attention.self.value.weight", 2, E, E) && GET(vb, "attention.self.value.bias", 1, E, 0) &&
             GET(p->self_attn.out_proj_weight, "attention.output.dense.weight", 2, E, E) &&
             GET(p->self_attn.out_proj_bias, "attention.output.dense.bias", 1, E, 0) &&
             GET(p->norm1_w, "attention.output.LayerNorm.weight", 1, E, 0) &&
             GET(p->norm1_b, "attention.output.LayerNorm.bias", 1, E, 0) &&
             GET(p->ffn.w1, "intermediate.dense.weight", 2, I, E) &&
             GET(p->ffn.b1, "intermediate.dense.bias", 1, I, 0) &&
             GET(p->ffn.w2, "output.dense.weight", 2, E, I) &&
             GET(p->ffn.b2, "output.dense.bias", 1, E, 0) &&
             GET(p->norm2_w, "output.LayerNorm.weight", 1, E, 0) &&
             GET(p->norm2_b, "output.LayerNorm.bias", 1, E, 0);
#undef GET
        if (!ok)
            break;
        /* in_proj = [W_q; W_k; W_v] and [b_q; b_k; b_v], as nn.MultiheadAttention stores them */
        float *pw = m->packed + l * (3 * E * E + 3 * E), *pb = pw + 3 * E * E;
        const float *ws[3] = {q, k, v}, *bs[3] = {qb, kb, vb};
        for (int t = 0; t < 3; t++) {
            memcpy(pw + (size_t)t * E * E, ws[t], E * E * sizeof(float));
            memcpy(pb + (size_t)t * E, bs[t], E * sizeof(float));
        }
        p->self_attn.in_proj_weight = pw;
        p->self_attn.in_proj_bias = pb;
    }
    /* Anything else in the model's namespace is a tensor this BERT does not have. */
    for (size_t t = 0; ok && t < gf->n; t++) {
        const char *name = gf->names[t];
        if (lk.used[t] || strncmp(name, pre, strlen(pre)) != 0)
            continue;
        name += strlen(pre);
        if (!tfm_bert_is_model_tensor(name) || strncmp(name, "cls.", 4) == 0)
            continue;   /* an op's input (input_ids, ...) or the pretraining heads */
        const char *rest = name + strlen(lk.ns);
        if (strcmp(rest, "embeddings.position_ids") == 0)
            continue;   /* a buffer older transformers save: 0..P-1 */
        tfm_fail(err, errlen, "%s: tensor '%s' is not a parameter of a BERT with this config (%zu "
             "layers)", gf->path ? gf->path : "(model)", gf->names[t], L);
        ok = 0;
    }
    free(lk.used);
    w->layers = m->layers;
    if (!ok) {
        tfm_bert_free(m);
        return -1;
    }
    return 0;
}

int tfm_bert_load_dir(TfmBert *m, const char *dir, char *err, size_t errlen)
{
    char path[1024];
    char *json = NULL;
    GoldenFile gf;
    memset(m, 0, sizeof *m);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (golden_read_text(path, &json, err, errlen) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (golden_load(&gf, path, err, errlen) != 0) {
        free(json);
        return -1;
    }
    int rc = tfm_bert_from_tensors(m, &gf, "", json, err, errlen);
    free(json);
    if (rc != 0) {
        golden_free(&gf);
        return -1;
    }
    m->file = gf;   /* the weights point into it */
    return 0;
}

void tfm_bert_free(TfmBert *m)
{
    free(m->layers);
    free(m->packed);
    golden_free(&m->file);
    memset(m, 0, sizeof *m);
}
