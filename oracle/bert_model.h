/* bert_model.h — a BERT from a Hugging Face model directory (or a golden case), for chapter 06's
 * forward (bert.h).
 *
 * A model directory is what transformers' save_pretrained writes: config.json, with
 * BertConfig's field names (vocab_size, hidden_size, num_hidden_layers, num_attention_heads,
 * intermediate_size, hidden_act, max_position_embeddings, type_vocab_size, layer_norm_eps, ...),
 * and model.safetensors with the model's state_dict keys: BertForPreTraining's
 * ("bert.embeddings.word_embeddings.weight", "bert.encoder.layer.N.attention.self.query.weight",
 * ..., "cls.*" for the heads) or BertModel's (the same without "bert."). Both load. The heads'
 * "cls.*" tensors and the buffer "embeddings.position_ids" are passed over; any other tensor
 * is an error, as are a missing one, a misshapen one, and a config that disagrees with the
 * weights — each message names the tensor.
 *
 * Loading packs each layer's separate query, key and value weights into the [3E, E] in-
 * projection chapter 02's attention takes (one block for all layers, made once); every other
 * weight is used in place.
 */
#ifndef TFM_BERT_MODEL_H
#define TFM_BERT_MODEL_H

#include "bert.h"
#include "golden.h"

typedef struct {
    BertConfig cfg;
    BertWeights w;
    EncoderLayerParams *layers;  /* [L] */
    float *packed;               /* [L, 3E*E + 3E]: each layer's in_proj weight, then bias */
    GoldenFile file;             /* the weights, when loaded from a directory */
} TfmBert;

/* config.json's text -> cfg. label names the file in messages. */
int tfm_bert_parse_config(BertConfig *cfg, const char *json, const char *label, char *err,
                          size_t errlen);
/* The model from the tensors of gf under "<prefix>/" ("" for none) and a config's text. The
 * model points into gf, which must outlive it. */
int tfm_bert_from_tensors(TfmBert *m, const GoldenFile *gf, const char *prefix,
                          const char *config_json, char *err, size_t errlen);
/* The model of a Hugging Face directory: DIR/config.json and DIR/model.safetensors. */
int tfm_bert_load_dir(TfmBert *m, const char *dir, char *err, size_t errlen);
void tfm_bert_free(TfmBert *m);

/* 1 if `name` (without a case prefix) is one of the model's tensors, as a loader reads it:
 * it lies in the namespace "bert." / "cls." / "embeddings." / "encoder." / "pooler.". */
int tfm_bert_is_model_tensor(const char *name);

#endif
