/* pretrain_model.h — BertForPreTraining's parameter block (chapter 09, pretrain.h) to and
 * from files: Hugging Face model directories and tfm's training checkpoints.
 *
 * A model directory is what transformers' save_pretrained writes for BertForPreTraining:
 *   config.json         BertConfig's fields, "architectures": ["BertForPreTraining"]
 *   model.safetensors   every tensor of the parameter table by its key ("bert.*", "cls.*"),
 *                       F32; the tied decoder is not stored (save_pretrained drops it too)
 * so `BertForPreTraining.from_pretrained(DIR)` in PyTorch reads it, and a directory PyTorch
 * wrote loads here. Reading also takes "cls.predictions.decoder.weight" and
 * "cls.predictions.decoder.bias" when they equal the word embeddings and cls.predictions.bias
 * (a file that stores the tie twice), and passes over the buffer "bert.embeddings.position_ids".
 * Any other tensor, a missing or misshapen one, is an error naming it.
 *
 * A checkpoint is a model directory plus trainer_state.safetensors: AdamW's moments by the
 * same keys ("exp_avg.<key>", "exp_avg_sq.<key>", as torch's optimizer state calls them), and
 * in its metadata the step, the data position and the run's settings (what resuming needs).
 * Every file is written under a temporary name and renamed (golden_save), so a kill at any
 * moment leaves the previous file whole.
 */
#ifndef TFM_PRETRAIN_MODEL_H
#define TFM_PRETRAIN_MODEL_H

#include "golden.h"
#include "pretrain.h"

/* The parameters under "<prefix>/" of gf ("" for none) into params [lay->n_params]. */
int pretrain_params_from_tensors(float *params, const BertPretrainLayout *lay,
                                 const GoldenFile *gf, const char *prefix, char *err,
                                 size_t errlen);

/* DIR/config.json and DIR/model.safetensors: the layout (from the config) and the
 * parameters (malloc'd, *params). */
int pretrain_load_dir(BertPretrainLayout *lay, float **params, const char *dir, char *err,
                      size_t errlen);

/* Writes DIR/config.json and DIR/model.safetensors (DIR is created if missing). */
int pretrain_save_dir(const char *dir, const BertPretrainLayout *lay, const float *params,
                      char *err, size_t errlen);

/* config.json's text for cfg, as save_pretrained writes BertForPreTraining's (malloc'd). */
char *pretrain_config_json(const BertConfig *cfg);

/* The trainer's state beside a model directory: the moments and key=value metadata. */
int pretrain_save_state(const char *dir, const BertPretrainLayout *lay, const float *m,
                        const float *v, size_t n_meta, const char *const *keys,
                        const char *const *values, char *err, size_t errlen);
/* Reads DIR/trainer_state.safetensors into *gf (its metadata: golden_meta; the caller frees
 * it), then its moments into m, v (n_params each) for the layout. */
int pretrain_load_state(GoldenFile *gf, const char *dir, char *err, size_t errlen);
int pretrain_state_moments(float *m, float *v, const GoldenFile *gf,
                           const BertPretrainLayout *lay, char *err, size_t errlen);

#endif
