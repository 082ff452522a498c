/* pretraining_mask.c — the MLM masking of Hugging Face's DataCollatorForLanguageModeling, drawing
 * from tfm's one random-number generator (splitmix64, chapters/00-tensors/rng.h).
 *
 * Dimension legend: n < N token positions (a batch [B, T] flattened, N = B*T), V vocabulary.
 *
 * The procedure (transformers' torch_mask_tokens), for each position n with id x_n:
 *
 *   selected_n = x_n is not special  and  u0 < mlm_probability                    (0.15)
 *   label_n    = selected_n ? x_n : -100
 *   masked_n   = [MASK]      if selected_n and u1 < mask_replace_prob             (0.8)
 *              = random id   if selected_n, not the above, and
 *                            u2 < random_replace_prob / (1 - mask_replace_prob)  (0.1/0.2 = 0.5)
 *              = x_n         otherwise
 *
 * so a selected token becomes [MASK] 80% of the time, a random id 10%, and stays itself 10%
 * (the model must predict every selected token, also the ones it can see). u0, u1, u2 are
 * independent uniforms in [0, 1) and the random id is uniform in [0, V), as in the collator,
 * which draws one Bernoulli per position and per decision from torch's generator.
 *
 * tfm cannot reproduce torch's random stream, so there is no PyTorch golden for this step:
 * tests/test_05_pretraining.c checks the proportions statistically and the determinism per seed.
 *
 * There is one variant: the work is a handful of integer operations per token, nothing next to
 * the heads that follow. Having every draw be a function of (seed, position) instead of a
 * sequential stream is what would let it run in parallel without changing a single result.
 */
#include "pretraining.h"

#include "rng.h"

static int is_special(int64_t id, const MlmMaskConfig *cfg)
{
    for (size_t k = 0; k < cfg->n_special; k++)
        if (cfg->special_ids[k] == id)
            return 1;
    return 0;
}

/* Draws per position: u0 select, u1 [MASK], u2 random, r the random id. */
enum { DRAWS = 4 };

void mlm_mask(int64_t *masked, int64_t *labels, const int64_t *ids, const MlmMaskConfig *cfg,
              size_t N)
{
    /* Of the selected tokens that did not become [MASK], the share that becomes random. */
    const double random_given_not_mask =
        cfg->random_replace_prob / (1.0 - cfg->mask_replace_prob);

    for (size_t n = 0; n < N; n++) {
        const int64_t x = ids[n];
        const uint64_t d = (uint64_t)n * DRAWS;
        const double u0 = tfm_rng_uniform_at(cfg->seed, d);
        const double u1 = tfm_rng_uniform_at(cfg->seed, d + 1);
        const double u2 = tfm_rng_uniform_at(cfg->seed, d + 2);
        /* A 64-bit draw mod V is uniform up to a bias below V / 2^64 (1.7e-15 at V = 30522):
         * negligible, and it keeps exactly four draws per position. */
        const int64_t r = (int64_t)(tfm_rng_at(cfg->seed, d + 3) % cfg->vocab_size);

        const int selected = !is_special(x, cfg) && u0 < cfg->mlm_probability;
        labels[n] = selected ? x : TFM_IGNORE_INDEX;
        if (!selected)
            masked[n] = x;
        else if (u1 < cfg->mask_replace_prob)
            masked[n] = cfg->mask_token_id;
        else if (u2 < random_given_not_mask)
            masked[n] = r;
        else
            masked[n] = x;
    }
}
