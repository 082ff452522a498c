/* pretrain_data.h — chapter 09's data: a corpus of documents made of sentences, cut into
 * BERT's pretraining instances [CLS] A [SEP] B [SEP] with a next-sentence label, and padded
 * batches of them.
 *
 * Dimensions: B batch (instances per step), T tokens per instance (max_seq_length),
 *             n instances, n_docs documents, n_sent sentences, n_ids word-piece ids.
 *
 * The corpus file (--corpus) is the input format of google-research/bert's
 * create_pretraining_data.py: UTF-8, one sentence per line, a blank line (or several) between
 * documents. tools/austen-sentences.py writes Jane Austen's chapters in it (make deps:
 * $TFM_DATA/austen/pretrain-train.txt and pretrain-eval.txt). Each line is tokenized by chapter
 * 08 (tokenize_fast, no special tokens); a line that gives no word piece is no sentence, and an
 * empty document is dropped, as there.
 *
 * Instances, as create_instances_from_document does it, for each pass (dupe_factor of them) and
 * each document in turn:
 *   max_num_tokens = T - 3 (room for [CLS], [SEP], [SEP]);
 *   target = max_num_tokens, or with probability short_seq_prob a uniform integer in
 *            [2, max_num_tokens] (drawn once per document and pass, as there);
 *   sentences are added to a chunk until its length reaches target or the document ends; then
 *   a_end  = uniform in [1, len(chunk) - 1] (1 for a chunk of one sentence), A = chunk[:a_end];
 *   B      = with probability 1/2, and always for a chunk of one sentence, "random": the
 *            sentences of a uniformly chosen other document, from a uniformly chosen one of
 *            them on, added until B reaches target - len(A) (at least one), and the chunk's
 *            unused sentences chunk[a_end:] go back to the document, to start the next chunk;
 *            otherwise B = chunk[a_end:], the true continuation;
 *   truncate_seq_pair: while len(A) + len(B) > max_num_tokens, drop one token of the longer
 *            (B when equal), from its front or its back with probability 1/2 each;
 *   emit [CLS] A [SEP] B [SEP], token types 0 for [CLS] A [SEP] and 1 for B [SEP], and the
 *            label 0 when B is the continuation (IsNext), 1 when it is random: the convention of
 *            Hugging Face's next_sentence_label.
 * So the labels are not quite half and half: a sentence longer than the target is a chunk of its
 * own, and its B is random without a coin (on Austen's train set, 54% random at T = 128, 61% at
 * T = 64; n_single counts them). Finally the instances are shuffled. Every draw comes from one
 * stream of tfm's generator (tfm_rng_next from the seed, rng.h), in the order written above, so
 * the instances are a function of (corpus, T, short_seq_prob, dupe_factor, seed).
 *
 * Where tfm differs from create_pretraining_data.py:
 *   - no masking here: its create_masked_lm_predictions fixes the masked positions once per
 *     instance (static masking, which dupe_factor then repeats with other draws). tfm masks
 *     each batch at each step with chapter 05's mlm_mask, as RoBERTa and Hugging Face's
 *     DataCollatorForLanguageModeling do (dynamic masking), so dupe_factor = 1 is enough;
 *   - the random document is drawn uniformly among the n_docs - 1 others (one draw, never the
 *     same document); the original tries 10 times and then keeps whatever it drew;
 *   - a corpus of one document has no other document: a "random" B is then the rest of the
 *     chunk, a true continuation with label 0;
 *   - a pair whose A or B is empty (only possible in a one-document corpus, for a chunk of one
 *     sentence) is skipped and counted, where the original asserts;
 *   - the documents are taken in file order, not shuffled first (the final shuffle mixes the
 *     instances anyway; the random documents are drawn by index, uniformly, either way);
 *   - the draws are splitmix64's, not Python's Mersenne Twister: the same distributions, other
 *     instances.
 */
#ifndef TFM_PRETRAIN_DATA_H
#define TFM_PRETRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* ---------------------------------------------------------------- the corpus */

/* Documents of sentences of word-piece ids, back to back: document d is sentences
 * [doc_offset[d], doc_offset[d+1]), sentence s is ids [sent_offset[s], sent_offset[s+1]).
 * No sentence and no document is empty; no special token is added. */
typedef struct {
    size_t n_docs;
    size_t *doc_offset;      /* [n_docs + 1] into the sentences */
    size_t n_sent;
    size_t *sent_offset;     /* [n_sent + 1] into ids */
    int32_t *ids;            /* [n_ids] = [sent_offset[n_sent]] */
} PretrainCorpus;

/* Reads a corpus file (see the top) and tokenizes it with v. A line that is empty or only ASCII
 * whitespace ends a document (a final "\r" is ignored, so CRLF files read the same). Returns 0, or
 * -1 with the reason in err and c zeroed: "PATH: cannot open: ...", "PATH: line N: invalid UTF-8
 * at byte K of the line" (N from 1, K from 0), "PATH: no sentence ...", "... out of memory". */
int pretrain_corpus_load(PretrainCorpus *c, const char *path, const Vocab *v, char *err,
                         size_t errlen);
void pretrain_corpus_free(PretrainCorpus *c);

/* ---------------------------------------------------------------- instances */

/* The ids the instances and the batches use, from the vocabulary ([CLS] 101, [SEP] 102,
 * [PAD] 0, [MASK] 103 in bert-base-uncased). */
typedef struct { int32_t cls, sep, pad, mask; } PretrainSpecials;
PretrainSpecials pretrain_specials(const Vocab *v);

/* Instances back to back: instance i is [offset[i], offset[i+1]) of ids and type. */
typedef struct {
    size_t n;
    size_t *offset;          /* [n + 1] */
    int32_t *ids;            /* [offset[n]] [CLS] A [SEP] B [SEP] */
    uint8_t *type;           /* [offset[n]] token_type_ids: 0 for [CLS] A [SEP], 1 for B [SEP] */
    uint8_t *nsp_label;      /* [n] 0: B follows A in its document (IsNext); 1: B is random */
    size_t max_len;          /* the longest instance, <= T */
    size_t n_single;         /* instances whose chunk was one sentence: B random by necessity
                                (label 1 without a coin; the others' coin is fair) */
    size_t n_skipped;        /* pairs dropped because A or B was empty (one-document corpora) */
} PretrainInstances;

/* Builds the instances of c (see the top) for sequences of at most T tokens. Returns 0, or -1
 * with the reason in err and out zeroed: T below 5 (A and B need a token each after the three
 * special tokens), short_seq_prob outside [0, 1], dupe_factor 0, an empty corpus, no instance
 * at all, out of memory. */
int pretrain_instances_build(PretrainInstances *out, const PretrainCorpus *c, size_t T,
                             double short_seq_prob, size_t dupe_factor, uint64_t seed,
                             const PretrainSpecials *sp, char *err, size_t errlen);
void pretrain_instances_free(PretrainInstances *in);

/* ---------------------------------------------------------------- batches */

/* Copies B instances into a padded batch: row b is instance order[(first + b) mod n], or
 * (first + b) mod n when order is NULL (the instances are already shuffled), so that a training
 * loop can step through them epoch after epoch. Each row is the instance, then pad_id with type
 * 0 and attention mask 0 up to T; the mask is 1 on the instance's tokens. The four arrays are
 * the tensors BertForPreTraining takes (input_ids, token_type_ids, attention_mask,
 * next_sentence_label); the MLM labels come from masking input_ids (chapter 05's mlm_mask).
 * Returns 0, or -1 with the reason in err (no instance, B = 0 or T = 0, an order entry >= n, an
 * instance longer than T); the outputs are then unspecified. */
int pretrain_batch_fill(int64_t *input_ids,          /* [B, T] */
                        int64_t *token_type_ids,     /* [B, T] */
                        int64_t *attention_mask,     /* [B, T] */
                        int64_t *nsp_label,          /* [B] */
                        const PretrainInstances *in,
                        const size_t *order,         /* [in->n] a permutation, or NULL */
                        size_t first, size_t B, size_t T, int64_t pad_id, char *err,
                        size_t errlen);

#endif
