/* evaluate.c — what a pretrained BERT learned (chapter 09):
 *
 *   tfm evaluate --model DIR   held-out MLM accuracy and perplexity and NSP accuracy, next to
 *                              two baselines that know no context: the most frequent token of
 *                              the training corpus (its accuracy) and the unigram distribution
 *                              of the training corpus (its perplexity, add-one smoothed)
 *   tfm fill-mask --model DIR TEXT...   the top-k tokens for each [MASK], with probabilities,
 *                              as transformers' pipeline("fill-mask") prints them
 *
 * The held-out data is made as the training data is (pretrain_data.h) from the held-out
 * chapters ($TFM_DATA/austen/pretrain-eval.txt), with a fixed seed for the instances and for
 * the masking, so two models are scored on the same masked tokens.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pretrain.h"
#include "pretrain_data.h"
#include "pretrain_model.h"
#include "pretraining.h"
#include "rng.h"
#include "tokenizer.h"

int tfm_evaluate(int argc, char **argv);
int tfm_fill_mask(int argc, char **argv);

/* s as a JSON string (quotes, backslashes and control characters escaped). */
static void put_json(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

/* The model and the vocabulary, shared by both commands. */
typedef struct {
    Vocab vocab;
    int vocab_loaded;
    BertPretrainLayout lay;
    float *params;
    BertPretrainRun run;
} Loaded;

static int load(Loaded *l, const char *cmd, const char *model, const char *vocab, size_t B,
                size_t T)
{
    char err[TFM_ERR_LEN + 512], vpath[4096] = "";
    memset(l, 0, sizeof *l);
    if (!vocab)
        tok_data_path(vpath, sizeof vpath, TOK_DEFAULT_VOCAB);
    if (vocab_load(&l->vocab, vocab ? vocab : vpath, err, sizeof err) != 0)
        return cli_fail(cmd, "%s%s", err, vocab ? "" : " (make deps installs it)");
    l->vocab_loaded = 1;
    if (pretrain_load_dir(&l->lay, &l->params, model, err, sizeof err) != 0)
        return cli_fail(cmd, "%s", err);
    if (l->lay.cfg.vocab_size != l->vocab.n)
        return cli_fail(cmd, "%s: vocab_size %zu, but the vocabulary has %zu entries", model,
                    l->lay.cfg.vocab_size, l->vocab.n);
    if (T > l->lay.cfg.max_position_embeddings)
        return cli_fail(cmd, "%zu tokens: the model has max_position_embeddings %zu", T,
                    l->lay.cfg.max_position_embeddings);
    if (bert_pretrain_run_init(&l->run, &l->lay, l->params, B, T, err, sizeof err) != 0)
        return cli_fail(cmd, "%s", err);
    return 0;
}

static void unload(Loaded *l)
{
    bert_pretrain_run_free(&l->run);
    free(l->params);
    bert_pretrain_layout_free(&l->lay);
    if (l->vocab_loaded)
        vocab_free(&l->vocab);
}

/* ------------------------------------------------------------------ evaluate */

static void evaluate_help(void)
{
    printf("usage: tfm evaluate --model DIR [--corpus FILE] [--train-corpus FILE] [--seq-len T]\n"
           "                    [--batch-size B] [--max-batches N] [--seed S] [--format text|json]\n"
           "Held-out MLM accuracy and perplexity and NSP accuracy of a BertForPreTraining\n"
           "directory, beside the most-frequent-token and unigram baselines of the training\n"
           "corpus. Defaults: the held-out chapters of make deps, the training chapters for the\n"
           "baselines, T 128, B 32, every batch, seed 1234 (instances and masking).\n");
}

int tfm_evaluate(int argc, char **argv)
{
    const char *model = NULL, *corpus = NULL, *train = NULL, *format = "text", *vocab = NULL;
    size_t T = 128, B = 32, max_batches = 0, seed = 1234;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            evaluate_help();
            return 0;
        }
        if (i + 1 >= argc)
            return cli_usage("evaluate", "'%s' needs a value, or is not an option", a);
        const char *v = argv[++i];
        int bad = 0;
        if (strcmp(a, "--model") == 0) model = v;
        else if (strcmp(a, "--corpus") == 0) corpus = v;
        else if (strcmp(a, "--train-corpus") == 0) train = v;
        else if (strcmp(a, "--vocab") == 0) vocab = v;
        else if (strcmp(a, "--format") == 0) format = v;
        else if (strcmp(a, "--seq-len") == 0) bad = cli_size(&T, "evaluate", a, v, 5);
        else if (strcmp(a, "--batch-size") == 0) bad = cli_size(&B, "evaluate", a, v, 1);
        else if (strcmp(a, "--max-batches") == 0) bad = cli_size(&max_batches, "evaluate", a, v, 0);
        else if (strcmp(a, "--seed") == 0) bad = cli_size(&seed, "evaluate", a, v, 0);
        else return cli_usage("evaluate", "unknown option '%s'", a);
        if (bad)
            return bad;
    }
    if (!model)
        return cli_usage("evaluate", "needs --model DIR");
    if (strcmp(format, "text") != 0 && strcmp(format, "json") != 0)
        return cli_usage("evaluate", "--format is text or json, not '%s'", format);
    char err[TFM_ERR_LEN + 512], epath[4096] = "", tpath[4096] = "";
    if (!corpus)
        tok_data_path(epath, sizeof epath, "austen/pretrain-eval.txt");
    if (!train)
        tok_data_path(tpath, sizeof tpath, "austen/pretrain-train.txt");
    Loaded l;
    PretrainCorpus ec = {0}, tc = {0};
    PretrainInstances in = {0};
    int64_t *buf = NULL;
    float *logits = NULL;
    double *unigram = NULL;
    int status = 1;
    if (load(&l, "evaluate", model, vocab, B, T) != 0)
        goto done;
    const size_t V = l.vocab.n, BT = B * T;
    if (pretrain_corpus_load(&ec, corpus ? corpus : epath, &l.vocab, err, sizeof err) != 0 ||
        pretrain_corpus_load(&tc, train ? train : tpath, &l.vocab, err, sizeof err) != 0) {
        cli_fail("evaluate", "%s", err);
        goto done;
    }
    const PretrainSpecials sp = pretrain_specials(&l.vocab);
    if (pretrain_instances_build(&in, &ec, T, 0.1, 1, seed, &sp, err, sizeof err) != 0) {
        cli_fail("evaluate", "%s", err);
        goto done;
    }
    /* the baselines: unigram counts of the training corpus, add-one smoothed */
    unigram = calloc(V, sizeof *unigram);
    buf = calloc(6 * BT + B + 1, sizeof *buf);
    size_t logits_rows = 0;                     /* grown to the largest batch's S */
    if (!unigram || !buf) {
        cli_fail("evaluate", "out of memory");
        goto done;
    }
    const size_t n_ids = tc.sent_offset[tc.n_sent];
    for (size_t i = 0; i < n_ids; i++)
        unigram[tc.ids[i]] += 1.0;
    size_t top = 0;
    for (size_t v = 0; v < V; v++)
        if (unigram[v] > unigram[top])
            top = v;
    for (size_t v = 0; v < V; v++)
        unigram[v] = (unigram[v] + 1.0) / ((double)n_ids + (double)V);

    int64_t *ids = buf, *types = ids + BT, *mask = types + BT, *masked = mask + BT;
    int64_t *labels = masked + BT, *nsp = labels + BT;
    const int64_t special[3] = {sp.cls, sp.sep, sp.pad};
    size_t n_batches = in.n / B, n_mlm = 0, mlm_hit = 0, top_hit = 0, n_nsp = 0, nsp_hit = 0;
    double nll = 0.0, uni_nll = 0.0;
    if (max_batches && max_batches < n_batches)
        n_batches = max_batches;
    if (n_batches == 0) {
        cli_fail("evaluate", "%zu held-out instances: fewer than one batch of %zu", in.n, B);
        goto done;
    }
    for (size_t bi = 0; bi < n_batches; bi++) {
        if (pretrain_batch_fill(ids, types, mask, nsp, &in, NULL, bi * B, B, T, sp.pad, err,
                                sizeof err) != 0) {
            cli_fail("evaluate", "%s", err);
            goto done;
        }
        const MlmMaskConfig mc = {0.15, 0.8, 0.1, sp.mask, V, special, 3,
                                  tfm_rng_at(seed, (uint64_t)bi)};
        mlm_mask(masked, labels, ids, &mc, BT);
        const size_t S = mlm_count_selected(labels, BT);
        if (S > logits_rows) {
            float *grown = realloc(logits, S * V * sizeof *logits);
            if (!grown) {
                cli_fail("evaluate", "out of memory for %zu x %zu scores", S, V);
                goto done;
            }
            logits = grown, logits_rows = S;
        }
        float lm, ln;
        bert_pretrain_forward(&l.run, TFM_PRETRAIN_FAST, &lm, &ln, S ? logits : NULL, masked,
                              mask, types, labels, nsp);
        /* the labelled rows, in row order, are the rows of logits */
        size_t s = 0;
        for (size_t n = 0; n < BT; n++) {
            if (labels[n] == TFM_IGNORE_INDEX)
                continue;
            const float *z = logits + s++ * V;
            size_t arg = 0;
            for (size_t v = 1; v < V; v++)
                if (z[v] > z[arg])
                    arg = v;
            const double mx = z[arg];
            double sum = 1.0;                       /* the max's own term, exp(0) */
            for (size_t v = 0; v < V; v++)
                if (v != arg)
                    sum += exp((double)z[v] - mx);
            nll += -((double)z[labels[n]] - mx - log(sum));
            uni_nll += -log(unigram[labels[n]]);
            mlm_hit += (int64_t)arg == labels[n];
            top_hit += (int64_t)top == labels[n];
            n_mlm++;
        }
        for (size_t b = 0; b < B; b++) {
            const float *z = l.run.nsp_logits + 2 * b;
            nsp_hit += (z[1] > z[0]) == (nsp[b] == 1);
            n_nsp++;
        }
    }
    const double acc = (double)mlm_hit / (double)n_mlm, ppl = exp(nll / (double)n_mlm);
    const double top_acc = (double)top_hit / (double)n_mlm;
    const double uni_ppl = exp(uni_nll / (double)n_mlm), nsp_acc = (double)nsp_hit / (double)n_nsp;
    if (strcmp(format, "json") == 0)
    {
        printf("{\"model\": ");
        put_json(model);
        printf(", \"masked_tokens\": %zu, \"sequences\": %zu, \"mlm_accuracy\": %.6f, "
               "\"mlm_perplexity\": %.4f, \"nsp_accuracy\": %.6f, "
               "\"most_frequent_accuracy\": %.6f, \"most_frequent_token\": ", n_mlm, n_nsp, acc,
               ppl, nsp_acc, top_acc);
        put_json(l.vocab.token[top]);
        printf(", \"unigram_perplexity\": %.4f}\n", uni_ppl);
    }
    else
        printf("held-out: %zu masked tokens, %zu sequences of %zu tokens (%s)\n"
               "                      MLM accuracy   MLM perplexity   NSP accuracy\n"
               "model                 %11.2f%%   %14.1f   %11.2f%%\n"
               "most frequent ('%s') %*.2f%%\n"
               "unigram                                %14.1f\n"
               "chance                                                   50.00%%\n",
               n_mlm, n_nsp, T, model, 100 * acc, ppl, 100 * nsp_acc, l.vocab.token[top],
               (int)(17 - strlen(l.vocab.token[top]) > 0 ? 17 - strlen(l.vocab.token[top]) : 1),
               100 * top_acc, uni_ppl);
    status = 0;
done:
    free(buf);
    free(logits);
    free(unigram);
    pretrain_instances_free(&in);
    pretrain_corpus_free(&ec);
    pretrain_corpus_free(&tc);
    unload(&l);
    return status;
}

/* ------------------------------------------------------------------ fill-mask */

static void fill_help(void)
{
    printf("usage: tfm fill-mask --model DIR [--top-k K] [--format text|json] TEXT...\n"
           "For each [MASK] of each TEXT (stdin lines when no TEXT), the K most probable tokens\n"
           "and their probabilities under the model's MLM head, as pipeline(\"fill-mask\").\n");
}

typedef struct {
    float p;
    int32_t id;
} Scored;

static int by_p(const void *a, const void *b)
{
    const Scored *x = a, *y = b;
    return x->p < y->p ? 1 : x->p > y->p ? -1 : (x->id > y->id) - (x->id < y->id);
}

static int fill_one(Loaded *l, const char *text, size_t top_k, int json, TokIds *tk,
                    TokScratch *sc, Scored *sorted, float *logits)
{
    TokError te;
    const Vocab *v = &l->vocab;
    tk->len = 0;
    if (tokenize_fast(tk, v, text, strlen(text), sc, &te) != 0)
        return cli_fail("fill-mask", "invalid UTF-8 at byte %zu of \"%s\"", te.offset, text);
    const size_t T = tk->len + 2;
    if (T > l->lay.cfg.max_position_embeddings)
        return cli_fail("fill-mask", "\"%s\" is %zu tokens; the model takes %zu", text, T,
                    l->lay.cfg.max_position_embeddings);
    char err[TFM_ERR_LEN];
    bert_pretrain_run_free(&l->run);
    if (bert_pretrain_run_init(&l->run, &l->lay, l->params, 1, T, err, sizeof err) != 0)
        return cli_fail("fill-mask", "%s", err);
    int64_t *buf = calloc(4 * T + 1, sizeof *buf);
    if (!buf)
        return cli_fail("fill-mask", "out of memory");
    int64_t *ids = buf, *mask = ids + T, *types = mask + T, *labels = types + T, nsp = 0;
    size_t n_mask = 0;
    ids[0] = v->cls_id, ids[T - 1] = v->sep_id;
    for (size_t i = 0; i < tk->len; i++)
        ids[i + 1] = tk->ids[i];
    for (size_t i = 0; i < T; i++) {
        mask[i] = 1;
        labels[i] = ids[i] == v->mask_id ? 0 : TFM_IGNORE_INDEX;   /* any id: only scored */
        n_mask += ids[i] == v->mask_id;
    }
    if (n_mask == 0) {
        free(buf);
        return cli_fail("fill-mask", "no [MASK] in \"%s\"", text);
    }
    float lm, ln;
    bert_pretrain_forward(&l->run, TFM_PRETRAIN_FAST, &lm, &ln, logits, ids, mask, types, labels,
                          &nsp);
    const size_t V = v->n;
    if (json) {
        printf("{\"text\": ");
        put_json(text);
        printf(", \"masks\": [");
    }
    for (size_t m = 0; m < n_mask; m++) {
        const float *z = logits + m * V;
        float mx = z[0];
        double sum = 0.0;
        for (size_t i = 1; i < V; i++)
            mx = z[i] > mx ? z[i] : mx;
        for (size_t i = 0; i < V; i++)
            sum += exp((double)(z[i] - mx));
        for (size_t i = 0; i < V; i++) {
            sorted[i].p = (float)(exp((double)(z[i] - mx)) / sum);
            sorted[i].id = (int32_t)i;
        }
        qsort(sorted, V, sizeof *sorted, by_p);
        if (!json)
            printf("%s%s\n", m == 0 ? "" : "\n", text);
        else
            printf("%s[", m ? ", " : "");
        for (size_t k = 0; k < top_k && k < V; k++) {
            if (json) {
                printf("%s{\"token_str\": ", k ? ", " : "");
                put_json(v->token[sorted[k].id]);
                printf(", \"token\": %d, \"score\": %.6f}", sorted[k].id, (double)sorted[k].p);
            }
            else
                printf("  %-16s %8.4f\n", v->token[sorted[k].id], (double)sorted[k].p);
        }
        if (json)
            printf("]");
    }
    if (json)
        printf("]}\n");
    free(buf);
    return 0;
}

int tfm_fill_mask(int argc, char **argv)
{
    const char *model = NULL, *format = "text", *vocab = NULL;
    size_t top_k = 5;
    int first_text = argc;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fill_help();
            return 0;
        }
        if (a[0] != '-' || strcmp(a, "--") == 0) {
            first_text = i + (strcmp(a, "--") == 0);
            break;
        }
        if (i + 1 >= argc)
            return cli_usage("fill-mask", "'%s' needs a value", a);
        const char *v = argv[++i];
        if (strcmp(a, "--model") == 0) model = v;
        else if (strcmp(a, "--format") == 0) format = v;
        else if (strcmp(a, "--vocab") == 0) vocab = v;
        else if (strcmp(a, "--top-k") == 0) {
            if (cli_size(&top_k, "fill-mask", a, v, 1))
                return 2;
        } else return cli_usage("fill-mask", "unknown option '%s'", a);
    }
    if (!model)
        return cli_usage("fill-mask", "needs --model DIR");
    if (strcmp(format, "text") != 0 && strcmp(format, "json") != 0)
        return cli_usage("fill-mask", "--format is text or json, not '%s'", format);
    Loaded l;
    if (load(&l, "fill-mask", model, vocab, 1, 2) != 0) {
        unload(&l);
        return 1;
    }
    const size_t V = l.vocab.n, P = l.lay.cfg.max_position_embeddings;
    Scored *sorted = malloc(V * sizeof *sorted + 1);
    float *logits = malloc(P * V * sizeof *logits + 1);      /* [masks <= P, V] */
    TokIds tk = {0};
    TokScratch sc = {0};
    int status = 0;
    if (!sorted || !logits) {
        status = cli_fail("fill-mask", "out of memory");
    } else if (first_text < argc) {
        for (int i = first_text; i < argc && status == 0; i++)
            status = fill_one(&l, argv[i], top_k, format[0] == 'j', &tk, &sc, sorted, logits);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        int any = 0;
        while (status == 0 && (n = getline(&line, &cap, stdin)) >= 0) {
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = '\0';
            if (n == 0)
                continue;
            any = 1;
            status = fill_one(&l, line, top_k, format[0] == 'j', &tk, &sc, sorted, logits);
        }
        free(line);
        if (!any && status == 0)
            status = cli_fail("fill-mask", "no text: give TEXT arguments or lines on stdin");
    }
    free(sorted);
    free(logits);
    tok_ids_free(&tk);
    tok_scratch_free(&sc);
    unload(&l);
    return status;
}
