/* binds.h — the bind function of every op in the table (ops.h): the few lines between the
 * table's generic checks and the kernel, one file per chapter (oracle/ops_NN_name.c). */
#ifndef TFM_BINDS_H
#define TFM_BINDS_H

#include "ops.h"

int bind_matmul(OpCall *c);             /* ops_00_tensors.c */
int bind_linear(OpCall *c);
int bind_softmax(OpCall *c);
int bind_log_softmax(OpCall *c);
int bind_gelu(OpCall *c);
int bind_matmul_backward(OpCall *c);    /* chapter 07's backward ops, beside their forwards */
int bind_linear_backward(OpCall *c);
int bind_softmax_backward(OpCall *c);
int bind_log_softmax_backward(OpCall *c);
int bind_gelu_backward(OpCall *c);
int bind_attention(OpCall *c);          /* ops_01_attention.c */
int bind_self_attention(OpCall *c);
int bind_attention_backward(OpCall *c);
int bind_mha(OpCall *c);                /* ops_02_multihead.c */
int bind_mha_backward(OpCall *c);
int bind_pe(OpCall *c);                 /* ops_03_positional.c */
int bind_embeddings(OpCall *c);
int bind_embeddings_backward(OpCall *c);
int bind_layernorm(OpCall *c);          /* ops_04_layernorm.c */
int bind_add_norm(OpCall *c);
int bind_pre_norm(OpCall *c);
int bind_layernorm_backward(OpCall *c);
int bind_add_norm_backward(OpCall *c);
int bind_mlm_mask(OpCall *c);           /* ops_05_pretraining.c */
int bind_mlm_loss(OpCall *c);
int bind_nsp_loss(OpCall *c);
int bind_pretraining_heads(OpCall *c);
int bind_pretraining_heads_backward(OpCall *c);
int bind_cross_entropy(OpCall *c);
int bind_cross_entropy_backward(OpCall *c);
int bind_feedforward(OpCall *c);        /* ops_06_encoder.c */
int bind_encoder_layer(OpCall *c);
int bind_encoder_layer_backward(OpCall *c);
int bind_feedforward_backward(OpCall *c);
int bind_bert(OpCall *c);
int bind_bert_backward(OpCall *c);

int bind_pretrain_steps(OpCall *c);      /* ops_09_pretraining.c */

/* What several binds check (ops_05_pretraining.c): every one of the N labels is -100 (ignored)
 * or a class in [0, V); 0, or op_fail's -1 naming the tensor `name` and the element. */
int bind_check_labels(OpCall *c, const char *name, const int64_t *labels, size_t N, size_t V);
#endif
