/* pretrain_model.c — BertForPreTraining's parameters to and from files (pretrain_model.h). */
#include "pretrain_model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bert_model.h"

/* The tied copies a file may hold: each must equal the tensor it is tied to. */
static const char *const TIED[][2] = {
    {"cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"},
    {"cls.predictions.decoder.bias", "cls.predictions.bias"},
};

int pretrain_params_from_tensors(float *params, const BertPretrainLayout *lay,
                                 const GoldenFile *gf, const char *prefix, char *err,
                                 size_t errlen)
{
    const size_t plen = prefix[0] ? strlen(prefix) + 1 : 0;
    char name[TFM_PRETRAIN_NAME + 256];
    /* every table entry, present, F32, of its shape */
    for (size_t k = 0; k < lay->n_tensors; k++) {
        const BertPretrainTensor *t = &lay->tensors[k];
        snprintf(name, sizeof name, "%s%s%s", prefix, plen ? "/" : "", t->name);
        const Tensor *x = golden_find(gf, name);
        if (!x)
            return tfm_fail(err, errlen, "%s: tensor '%s' is missing (a BertForPreTraining "
                        "checkpoint has the heads' cls.* tensors too)", gf->path, t->name);
        const size_t want = t->shape[0] * t->shape[1];
        if (x->dtype != TFM_F32 || x->ndim != t->ndim || x->numel != want ||
            x->shape[0] != t->shape[0]) {
            char got[96], exp[96];
            tfm_shape_str(got, sizeof got, x->ndim, x->shape);
            tfm_shape_str(exp, sizeof exp, t->ndim, t->shape);
            return tfm_fail(err, errlen, "%s: tensor '%s' is %s %s; the config makes it F32 %s",
                        gf->path, t->name, tfm_dtype_name(x->dtype), got, exp);
        }
        memcpy(params + t->offset, x->data, want * sizeof(float));
    }
    /* nothing else, but the tied copies (equal) and the position_ids buffer */
    for (size_t i = 0; i < gf->n; i++) {
        const char *n = gf->names[i];
        if (plen && (strncmp(n, prefix, plen - 1) != 0 || n[plen - 1] != '/'))
            continue;                                    /* another case's tensor */
        n += plen;
        if (!tfm_bert_is_model_tensor(n) || bert_pretrain_find(lay, n) ||
            strcmp(n, "bert.embeddings.position_ids") == 0)
            continue;
        int tied = 0;
        for (size_t j = 0; j < sizeof TIED / sizeof TIED[0]; j++)
            if (strcmp(n, TIED[j][0]) == 0) {
                const BertPretrainTensor *t = bert_pretrain_find(lay, TIED[j][1]);
                const Tensor *x = &gf->tensors[i];
                if (x->dtype != TFM_F32 || x->numel != t->shape[0] * t->shape[1] ||
                    memcmp(x->data, params + t->offset, x->numel * sizeof(float)) != 0)
                    return tfm_fail(err, errlen, "%s: '%s' differs from '%s'; BERT ties the two "
                                "(the MLM decoder is the word embeddings)", gf->path, n,
                                TIED[j][1]);
                tied = 1;
            }
        if (!tied)
            return tfm_fail(err, errlen, "%s: tensor '%s' is not one of BertForPreTraining's",
                        gf->path, n);
    }
    return 0;
}

static int join(char *buf, size_t len, const char *dir, const char *file, char *err,
                size_t errlen)
{
    if ((size_t)snprintf(buf, len, "%s/%s", dir, file) >= len)
        return tfm_fail(err, errlen, "%s: path too long", dir);
    return 0;
}

int pretrain_load_dir(BertPretrainLayout *lay, float **params, const char *dir, char *err,
                      size_t errlen)
{
    char path[4096];
    char *json = NULL;
    GoldenFile gf = {0};
    BertConfig cfg;
    *params = NULL;
    memset(lay, 0, sizeof *lay);
    if (join(path, sizeof path, dir, "config.json", err, errlen) ||
        golden_read_text(path, &json, err, errlen))
        return -1;
    int rc = tfm_bert_parse_config(&cfg, json, path, err, errlen);
    free(json);
    if (rc || bert_pretrain_layout(lay, &cfg, err, errlen))
        return -1;
    if (join(path, sizeof path, dir, "model.safetensors", err, errlen) ||
        golden_load(&gf, path, err, errlen))
        goto fail;
    *params = malloc(lay->n_params * sizeof(float) + 1);
    if (!*params) {
        tfm_fail(err, errlen, "%s: out of memory for %zu parameters", path, lay->n_params);
        goto fail;
    }
    if (pretrain_params_from_tensors(*params, lay, &gf, "", err, errlen))
        goto fail;
    golden_free(&gf);
    return 0;
fail:
    golden_free(&gf);
    free(*params);
    *params = NULL;
    bert_pretrain_layout_free(lay);
    return -1;
}

static int make_dir(const char *dir, char *err, size_t errlen)
{
    char buf[4096];
    if (strlen(dir) >= sizeof buf)
        return tfm_fail(err, errlen, "%s: path too long", dir);
    strcpy(buf, dir);
    for (char *p = buf + 1; *p; p++)         /* mkdir -p */
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return tfm_fail(err, errlen, "%s: cannot create: %s", buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return tfm_fail(err, errlen, "%s: cannot create: %s", buf, strerror(errno));
    return 0;
}

char *pretrain_config_json(const BertConfig *c)
{
    cJSON *root = cJSON_CreateObject(), *arch = cJSON_CreateArray();
    const char *act = c->hidden_act == TFM_ACT_GELU ? "gelu"
                      : c->hidden_act == TFM_ACT_RELU ? "relu" : "gelu_new";
    cJSON_AddItemToArray(arch, cJSON_CreateString("BertForPreTraining"));
    cJSON_AddItemToObject(root, "architectures", arch);
    cJSON_AddNumberToObject(root, "attention_probs_dropout_prob", 0.0);
    cJSON_AddStringToObject(root, "hidden_act", act);
    cJSON_AddNumberToObject(root, "hidden_dropout_prob", 0.0);
    cJSON_AddNumberToObject(root, "hidden_size", (double)c->hidden_size);
    cJSON_AddNumberToObject(root, "initializer_range", 0.02);
    cJSON_AddNumberToObject(root, "intermediate_size", (double)c->intermediate_size);
    char eps[32];                  /* the float's shortest decimal: 1e-12, not 9.99999996e-13 */
    snprintf(eps, sizeof eps, "%.9g", (double)c->layer_norm_eps);
    for (int d = 1; d < 9; d++) {
        char t[32];
        snprintf(t, sizeof t, "%.*g", d, (double)c->layer_norm_eps);
        if ((float)strtod(t, NULL) == c->layer_norm_eps) {
            snprintf(eps, sizeof eps, "%s", t);
            break;
        }
    }
    cJSON_AddRawToObject(root, "layer_norm_eps", eps);
    cJSON_AddNumberToObject(root, "max_position_embeddings", (double)c->max_position_embeddings);
    cJSON_AddStringToObject(root, "model_type", "bert");
    cJSON_AddNumberToObject(root, "num_attention_heads", (double)c->num_attention_heads);
    cJSON_AddNumberToObject(root, "num_hidden_layers", (double)c->num_hidden_layers);
    if (c->pad_token_id >= 0)
        cJSON_AddNumberToObject(root, "pad_token_id", (double)c->pad_token_id);
    else
        cJSON_AddNullToObject(root, "pad_token_id");
    cJSON_AddStringToObject(root, "position_embedding_type", "absolute");
    cJSON_AddStringToObject(root, "torch_dtype", "float32");
    cJSON_AddNumberToObject(root, "type_vocab_size", (double)c->type_vocab_size);
    cJSON_AddNumberToObject(root, "vocab_size", (double)c->vocab_size);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

/* path's text, through a temporary file and a rename: the old file stays whole on failure. */
static int write_text_atomic(const char *path, const char *text, char *err, size_t errlen)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return tfm_fail(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
    const size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF && fflush(f) == 0 &&
             fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        tfm_fail(err, errlen, "%s: cannot write: %s", path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}

/* Views of every table tensor of block, named prefix + key. */
static int save_block(const char *path, const BertPretrainLayout *lay, const float *const *blocks,
                      const char *const *prefixes, size_t n_blocks, size_t n_meta,
                      const char *const *keys, const char *const *values, char *err,
                      size_t errlen)
{
    const size_t n = lay->n_tensors * n_blocks;
    Tensor *ts = calloc(n + 1, sizeof *ts);
    char **names = calloc(n + 1, sizeof *names);
    char *store = calloc(n + 1, 2 * TFM_PRETRAIN_NAME);
    int rc = -1;
    if (!ts || !names || !store) {
        tfm_fail(err, errlen, "%s: out of memory", path);
        goto done;
    }
    for (size_t b = 0; b < n_blocks; b++)
        for (size_t k = 0; k < lay->n_tensors; k++) {
            const BertPretrainTensor *t = &lay->tensors[k];
            const size_t i = b * lay->n_tensors + k;
            names[i] = store + i * 2 * TFM_PRETRAIN_NAME;
            snprintf(names[i], 2 * TFM_PRETRAIN_NAME, "%s%s", prefixes[b], t->name);
            ts[i] = tensor_view(TFM_F32, (void *)(blocks[b] + t->offset), t->ndim, t->shape);
        }
    rc = golden_save(path, n, (const char *const *)names, ts, n_meta, keys, values, err,
                     errlen);
done:
    free(ts);
    free(names);
    free(store);
    return rc;
}

int pretrain_save_dir(const char *dir, const BertPretrainLayout *lay, const float *params,
                      char *err, size_t errlen)
{
    char path[4096];
    if (make_dir(dir, err, errlen) ||
        join(path, sizeof path, dir, "model.safetensors", err, errlen))
        return -1;
    static const char *const KEYS[] = {"format"}, *const VALUES[] = {"pt"};
    const char *const prefixes[] = {""};
    if (save_block(path, lay, &params, prefixes, 1, 1, KEYS, VALUES, err, errlen))
        return -1;
    char *json = pretrain_config_json(&lay->cfg);
    if (!json)
        return tfm_fail(err, errlen, "%s: out of memory", dir);
    int rc = join(path, sizeof path, dir, "config.json", err, errlen) ||
             write_text_atomic(path, json, err, errlen);
    free(json);
    return rc ? -1 : 0;
}

int pretrain_save_state(const char *dir, const BertPretrainLayout *lay, const float *m,
                        const float *v, size_t n_meta, const char *const *keys,
                        const char *const *values, char *err, size_t errlen)
{
    char path[4096];
    if (make_dir(dir, err, errlen) ||
        join(path, sizeof path, dir, "trainer_state.safetensors", err, errlen))
        return -1;
    const float *blocks[] = {m, v};
    const char *const prefixes[] = {"exp_avg.", "exp_avg_sq."};
    return save_block(path, lay, blocks, prefixes, 2, n_meta, keys, values, err, errlen);
}

int pretrain_load_state(GoldenFile *gf, const char *dir, char *err, size_t errlen)
{
    char path[4096];
    return join(path, sizeof path, dir, "trainer_state.safetensors", err, errlen) ||
                   golden_load(gf, path, err, errlen)
               ? -1
               : 0;
}

int pretrain_state_moments(float *m, float *v, const GoldenFile *gf,
                           const BertPretrainLayout *lay, char *err, size_t errlen)
{
    char name[2 * TFM_PRETRAIN_NAME];
    if (gf->n != 2 * lay->n_tensors)
        return tfm_fail(err, errlen, "%s: %zu tensors; a checkpoint of this model has %zu",
                    gf->path, gf->n, 2 * lay->n_tensors);
    for (int b = 0; b < 2; b++)
        for (size_t k = 0; k < lay->n_tensors; k++) {
            const BertPretrainTensor *t = &lay->tensors[k];
            snprintf(name, sizeof name, "%s%s", b ? "exp_avg_sq." : "exp_avg.", t->name);
            const Tensor *x = golden_find(gf, name);
            if (!x || x->dtype != TFM_F32 || x->numel != t->shape[0] * t->shape[1])
                return tfm_fail(err, errlen, "%s: '%s' is missing or misshapen for this model",
                            gf->path, name);
            memcpy((b ? v : m) + t->offset, x->data, x->numel * sizeof(float));
        }
    return 0;
}
