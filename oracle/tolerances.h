/* tolerances.h — the tolerance of every chapter, in one place.
 *
 * A tfm result passes against a golden when |got - want| <= atol + rtol*|want| everywhere.
 * The numbers are as tight as the measured errors allow (book.md, "How tfm checks itself"):
 * float32 kernels that sum in a different order than PyTorch land within a few ulps of it,
 * i.e. around 1e-6 relative; the margin above the measured worst case is stated next to each.
 * Never loosen one to make a test pass: find the bug.
 */
#ifndef TFM_TOLERANCES_H
#define TFM_TOLERANCES_H

/* Chapter 00: a length-K float32 dot product carries an absolute rounding error that grows
 * like eps * sqrt(K) * (typical |x_k w_k|) whatever the size of the result, so near-zero outputs
 * need an absolute floor, not a relative one. Measured worst: 1.3e-4 absolute at K = 768
 * (linear_bert, naive's sequential sum; its relative Frobenius error against the float64 truth
 * is 5e-7, PyTorch's 3e-7). */
#define TOL_00_ATOL 2e-4
#define TOL_00_RTOL 1e-5

/* Chapter 00's row-wise and elementwise functions (softmax, log-softmax, GELU): no long dot
 * products, so a few float32 ulps of each output; the atol covers probabilities and
 * log-probabilities near 0 and GELU near its zero. Measured worst against PyTorch's float32:
 * 6.6e-7 absolute on softmax (softmax_bert_vocab, a 30522-wide row), 4.8e-7 on GELU
 * (gelu_bert_ffn: PyTorch's own float32 GELU is a polynomial 1.5e-7 from the truth), 1.9e-6 on
 * log-softmax values near -10 (log_softmax_bert_vocab, within rtol). */
#define TOL_00_FN_ATOL 1e-6
#define TOL_00_FN_RTOL 1e-5

/* Chapter 01: probabilities lie in [0, 1] and outputs are averages of N(0,1) values; measured
 * worst 5.96e-7 absolute (medium/out, fast; 3.8e-6 on the errata case, whose outputs reach 20:
 * 1.6e-7 relative). */
#define TOL_01_ATOL 1e-6
#define TOL_01_RTOL 1e-5

/* Chapter 02: outputs are out-projections (length-E dot products) of head averages, of order 1.
 * Measured worst: 4.1e-6 absolute, at E = 768 (bert_base, naive's sequential sums), where the
 * rtol term covers all but 1.6e-6 of it; everywhere else at most 5.7e-7 beyond rtol. Relative
 * Frobenius error against the float64 truth: 7.8e-7 naive, 4.7e-7 fast, 3.4e-7 PyTorch. */
#define TOL_02_ATOL 3e-6
#define TOL_02_RTOL 1e-5

/* Chapter 03: the golden PE tables are PyTorch's usual float32 construction, which rounds the
 * angle p * w_i to float32 and so is off by up to ~p * 7e-8: measured worst 5.47e-4 absolute at
 * positions up to 8192 (pe_long, E = 768). tfm computes the angle in double, so |tfm - PyTorch|
 * is PyTorch's own error, hence ATOL. The embedding sums match PyTorch bit for bit (0 error).
 * TRUTH_ATOL holds both PE variants to the float64 truth instead: they round a value within
 * ~1e-14 of it to float32, an error of at most 2^-25 = 2.98e-8 below 1 in size; measured worst
 * 2.98e-8 on every stored row from 0 to 8192 (tests/test_03_positional.c). */
#define TOL_03_ATOL 6e-4
#define TOL_03_RTOL 1e-6
#define TOL_03_TRUTH_ATOL 3e-8

/* Chapter 04: normalized outputs are O(1) and both variants land within a few float32 ulps of
 * PyTorch. Measured worst: 9.5e-7 absolute on pre_ln/out (an output near 0 after the Linear
 * sublayer's 64-term dot product: the same absolute floor as chapter 00), 1.9e-6 absolute on
 * residual/out (on outputs near 10: 2e-7 relative), and 3.7e-7 relative Frobenius on
 * overflow_2e19/mean, a mean that cancels to 1.4% of its row's scale (PyTorch's own error
 * there is 3.5e-7). Rows with |mean|/std = 1e4 (offset_1e4_raw) and the 1e18 rows are held to
 * the float64 truth instead (metadata against=truth): PyTorch's float32 is 1e-3 off there. */
#define TOL_04_ATOL 1e-6
#define TOL_04_RTOL 1e-6

/* Chapter 05: losses of order 1..1e4 and prediction scores, dot products of width E, of order 1.
 * Measured worst, at rtol 1e-6: 1.9e-6 absolute on heads_medium/masked_logits (E = 128, naive's
 * sequential dot product; PyTorch's own float32 scores are 3.2e-7 relative Frobenius from the
 * float64 truth, ours 3.4e-7). Losses stay within 2.2e-7 relative, 1e4-scale ones included. */
#define TOL_05_ATOL 3e-6
#define TOL_05_RTOL 1e-6

/* Chapter 06: an encoder layer's output is LayerNorm'd (O(1)) after sums of length E and I
 * (768 and 3072 at BERT-base width): the absolute floor of chapter 02's attention output plus
 * the feed-forward's longer dot products. Measured worst: 6.9e-6 absolute on bert_base/out (naive's
 * sequential sums of length 3072; PyTorch's own float32 is 1.9e-7 relative Frobenius from the
 * truth, naive 7.7e-7, fast 3.1e-7), and 2.4e-4 on large_activations_pre, whose outputs reach
 * 2.6e3 (9e-8 relative). */
#define TOL_06_ATOL 1e-5
#define TOL_06_RTOL 1e-5

/* Chapter 07, the gradients, one tolerance per kind of op, against torch.autograd's float32.
 * MATMUL (matmul-, linear-backward): a gradient is a product like chapter 00's; the weights'
 * reduce over the M tokens. Measured worst: 3.8e-5 absolute on linear_blocks/grad_w (naive, sums
 * of 300 products; relative Frobenius error against the float64 truth 3.1e-7, PyTorch's own
 * 3.05e-7). FN (softmax-, log-softmax-, gelu-, cross-entropy-, embeddings-backward): a probability
 * times a difference of O(1) values, or GELU's O(1) derivative. Measured worst: 3.8e-6 absolute on
 * log_softmax_odd (fast, within the rtol term). LN (layernorm-backward): dx's three terms cancel
 * and are multiplied by rstd; grad_gamma sums over rows (add-norm-backward: the same, twice).
 * Measured worst: 7.6e-6 absolute on layernorm_bert/grad_gamma (within the rtol term), 7.3e-6 on
 * layernorm_offset against the truth. ATTN (attention-, mha-backward): softmax's gradient through
 * two more products of width Dk and Dv; multi-head attention adds the projections' gradients,
 * reduced over B*T tokens. Measured worst: 9.5e-7 absolute on attention_causal/grad_k, 6.7e-6 on
 * mha_wide/grad_in_proj_bias (a sum over 80 tokens; relative Frobenius error against the float64
 * truth 4.4e-7 fast, 4.3e-7 naive, PyTorch's own 3.3e-7). LAYER (encoder-layer-, feedforward-,
 * pretraining-heads-, bert-backward): every step above in sequence, the weights' gradients reduced
 * over the tokens. Measured worst: 1.24e-5 absolute on encoder_wide/grad_norm2.weight (fast;
 * relative Frobenius 3.5e-7, PyTorch's 3.0e-7); the largest relative error, 8.2e-7, is naive's
 * grad_self_attn.in_proj_bias on encoder_post_gelu (PyTorch's 3.3e-7). feedforward-backward:
 * 7.6e-6 on ffn_wide/grad_linear2.weight; add-norm-backward: 2.4e-6 on add_norm_bert/grad_gamma.
 * pretraining-heads-backward: 2.4e-7 on heads_wide; cross-entropy-backward: 1.2e-7;
 * embeddings-backward: exact (the same sums in the same order as PyTorch). bert-backward: 3.05e-5
 * absolute on bert_micro/grad_embeddings.position_embeddings.weight (within the rtol term: entries
 * sum a whole batch; relative Frobenius 2.0e-7, PyTorch's 1.2e-7). */
#define TOL_07_MATMUL_ATOL 5e-5
#define TOL_07_MATMUL_RTOL 1e-5
#define TOL_07_FN_ATOL 1e-6
#define TOL_07_FN_RTOL 1e-5
#define TOL_07_ATTN_ATOL 1e-5
#define TOL_07_ATTN_RTOL 1e-5
#define TOL_07_LAYER_ATOL 3e-5
#define TOL_07_LAYER_RTOL 1e-5
#define TOL_07_LN_ATOL 1e-5
#define TOL_07_LN_RTOL 1e-5
/* The chapter as a whole (its row in oracle/cases.c, and oracle/verify.py's bound on a
 * regenerated golden): the widest of the three, MATMUL's. */
#define TOL_07_ATOL 5e-5
#define TOL_07_RTOL 1e-5


/* Chapter 09: training steps (pretrain-steps): the losses, learning rates and gradient norms of
 * every step and every parameter after step 2 and after the last, against PyTorch's float32 run
 * of the same recipe from the same weights and batches. Measured: parameters within 5.9e-7 of
 * PyTorch's (as far from the float64 run as PyTorch's float32 run is), losses within 9.5e-7
 * of 7.6; the widest is grad_norm, 2.3e-5 on 3.6 (6.5e-6 relative) --
 * PyTorch's float32 norm is 2.7e-6 from its float64 one, tfm's (summed in double) 5e-8. */
#define TOL_09_ATOL 1e-6
#define TOL_09_RTOL 1e-5

#endif
