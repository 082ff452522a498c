/* tokenize.c — `tfm tokenize` and `tfm detokenize`: chapter 08's tokenizer on lines of text.
 *
 *   tfm tokenize [--vocab FILE] [--no-special] [--format ids|tokens|json] [--pair]
 *                [--max-length N] [--truncation STRATEGY] [--padding STRATEGY]
 *                [--variant naive|fast] [FILE...]
 *   tfm detokenize [--vocab FILE] [--skip-special] [FILE...]
 *
 * One output line per input line, in order; all input lines are one batch (encoded on every
 * thread; padding 'longest' pads to the longest of them, as tokenizer(texts, padding=True)
 * does). Errors name the file and line; the exit status is 1 for bad input, 2 for bad usage,
 * and nothing is written to stdout when the input is refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

int tfm_tokenize(int argc, char **argv);
int tfm_detokenize(int argc, char **argv);

static int uerr(const char *cmd, const char *msg, const char *arg) {
    fprintf(stderr, "tfm %s: ", cmd);
    fprintf(stderr, msg, arg);
    fprintf(stderr, "\n(see 'tfm %s --help')\n", cmd);
    return 2;
}

/* The input: every line of every file (or stdin), with where it came from. */
typedef struct {
    char **bufs; size_t n_bufs;       /* [n_bufs] whole files */
    const char **line; size_t *len;   /* [n] */
    const char **file; size_t *lineno;/* [n] name and line number (from 1) for messages */
    size_t n, cap;
} Input;

static void input_free(Input *in) {
    for (size_t i = 0; i < in->n_bufs; i++) free(in->bufs[i]);
    free(in->bufs); free(in->line); free(in->len); free(in->file); free(in->lineno);
    memset(in, 0, sizeof *in);
}

static int slurp(FILE *f, char **out, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) break;
        char *bigger = realloc(buf, cap *= 2);
        if (!bigger) free(buf);
        buf = bigger;
    }
    if (!buf || ferror(f)) { free(buf); return -1; }
    *out = buf;
    *n = len;
    return 0;
}

static int input_read(Input *in, const char *cmd, const char *path) {
    FILE *f = path ? fopen(path, "rb") : stdin;
    const char *name = path ? path : "<stdin>";
    if (!f) { fprintf(stderr, "tfm %s: %s: %s\n", cmd, name, strerror(errno)); return -1; }
    char *buf;
    size_t len;
    const int rc = slurp(f, &buf, &len);
    if (path) fclose(f);
    if (rc != 0) { fprintf(stderr, "tfm %s: %s: read failed\n", cmd, name); return -1; }
    char **bufs = realloc(in->bufs, (in->n_bufs + 1) * sizeof *bufs);
    if (!bufs) { free(buf); return -1; }
    in->bufs = bufs;
    in->bufs[in->n_bufs++] = buf;
    size_t start = 0, no = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len ? buf[i] != '\n' : start >= len) continue;
        if (in->n == in->cap) {
            in->cap = in->cap ? 2 * in->cap : 1024;
            in->line = realloc(in->line, in->cap * sizeof *in->line);
            in->len = realloc(in->len, in->cap * sizeof *in->len);
            in->file = realloc(in->file, in->cap * sizeof *in->file);
            in->lineno = realloc(in->lineno, in->cap * sizeof *in->lineno);
            if (!in->line || !in->len || !in->file || !in->lineno) {
                fprintf(stderr, "tfm %s: out of memory for %zu lines\n", cmd, in->cap);
                exit(1);
            }
        }
        in->line[in->n] = buf + start;
        in->len[in->n] = i - start;
        in->file[in->n] = name;
        in->lineno[in->n++] = ++no;
        start = i + 1;
    }
    return 0;
}

static int load_vocab(Vocab *v, const char *cmd, const char *path) {
    char def[4096], err[TFM_TOK_ERR];
    if (!path) { tok_data_path(def, sizeof def, TOK_DEFAULT_VOCAB); path = def; }
    if (vocab_load(v, path, err, sizeof err) != 0) {
        fprintf(stderr, "tfm %s: %s%s\n", cmd, err, path == def ? " (make deps installs it)" : "");
        return -1;
    }
    return 0;
}

static void tokenize_help(void) {
    printf("usage: tfm tokenize [--vocab FILE] [--no-special] [--format ids|tokens|json] [--pair]\n"
           "                    [--max-length N] [--truncation STRATEGY] [--padding STRATEGY]\n"
           "                    [--variant naive|fast] [FILE...]\n"
           "BERT's tokenizer (bert-base-uncased, Hugging Face's BertTokenizer) on each UTF-8 line\n"
           "of the FILEs (stdin when none); one output line per input line:\n"
           "  ids     the input_ids, space-separated (default)\n"
           "  tokens  the word pieces\n"
           "  json    {\"input_ids\": [...], \"token_type_ids\": [...], \"attention_mask\": [...]}\n"
           "--pair          each line is A TAB B: [CLS] A [SEP] B [SEP], token types 0 then 1\n"
           "--no-special    no [CLS]/[SEP] (add_special_tokens=False)\n"
           "--truncation    longest_first | only_first | only_second | do_not_truncate (default)\n"
           "--padding       longest (of all lines) | max_length | do_not_pad (default)\n"
           "--max-length N  the length truncation and max_length padding aim at (default 512,\n"
           "                bert-base-uncased's model_max_length)\n"
           "--vocab FILE    a vocab.txt (default: the one make deps installed)\n"
           "--variant       naive or fast (default): the two kernels of chapter 08, same ids\n"
           "Invalid UTF-8 is refused with its file, line and byte (exit 1), and nothing is printed.\n");
}

/* Decimal digits of x (>= 0: ids, types and masks are) into buf; returns the length. A million
 * ids go out per 4 MB of text, and printf's format parsing was half the command's time. */
static size_t put_u(char *buf, int64_t x) {
    char rev[24];
    size_t n = 0;
    uint64_t u = (uint64_t)x;
    do { rev[n++] = (char)('0' + u % 10); u /= 10; } while (u);
    for (size_t i = 0; i < n; i++) buf[i] = rev[n - 1 - i];
    return n;
}

static void put_ids(FILE *o, const int64_t *a, size_t n, const char *sep) {
    char buf[32];
    const size_t ns = strlen(sep);
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        if (i) { memcpy(buf, sep, ns); k = ns; }
        k += put_u(buf + k, a[i]);
        fwrite(buf, 1, k, o);
    }
}

static void put_array(FILE *o, const char *key, const int64_t *a, size_t n, int last) {
    fprintf(o, "\"%s\": [", key);
    put_ids(o, a, n, ", ");
    fputs(last ? "]" : "], ", o);
}

int tfm_tokenize(int argc, char **argv) {
    const char *vocab_path = NULL, *format = "ids";
    int pair = 0;
    TokOptions o = tok_default_options();
    TokenizeFn fn = tokenize_fast;
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    size_t n_files = 0;
    if (!files) { fprintf(stderr, "tfm tokenize: out of memory\n"); return 1; }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const int has = i + 1 < argc;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { tokenize_help(); free(files); return 0; }
        else if (strcmp(a, "--vocab") == 0 && has) vocab_path = argv[++i];
        else if (strcmp(a, "--no-special") == 0) o.add_special_tokens = 0;
        else if (strcmp(a, "--pair") == 0) pair = 1;
        else if (strcmp(a, "--format") == 0 && has) {
            format = argv[++i];
            if (strcmp(format, "ids") && strcmp(format, "tokens") && strcmp(format, "json")) {
                free(files);
                return uerr("tokenize", "unknown format '%s' (ids, tokens or json)", format);
            }
        } else if (strcmp(a, "--max-length") == 0 && has) {
            char *end;
            errno = 0;
            const long long m = strtoll(argv[++i], &end, 10);
            if (errno || *end || end == argv[i] || m < 0 || m > 1000000000) {
                free(files);
                return uerr("tokenize", "--max-length needs a count from 0 to 10^9, not '%s'", argv[i]);
            }
            o.max_length = (size_t)m;
        } else if (strcmp(a, "--truncation") == 0 && has) {
            if (tok_parse_truncation(argv[++i], &o.truncation) != 0) {
                free(files);
                return uerr("tokenize", "unknown truncation '%s' (longest_first, only_first, "
                            "only_second, do_not_truncate)", argv[i]);
            }
        } else if (strcmp(a, "--padding") == 0 && has) {
            if (tok_parse_padding(argv[++i], &o.padding) != 0) {
                free(files);
                return uerr("tokenize", "unknown padding '%s' (longest, max_length, do_not_pad)", argv[i]);
            }
        } else if (strcmp(a, "--variant") == 0 && has) {
            const char *v = argv[++i];
            if (strcmp(v, "naive") == 0) fn = tokenize_naive;
            else if (strcmp(v, "fast") == 0) fn = tokenize_fast;
            else { free(files); return uerr("tokenize", "unknown variant '%s' (naive or fast)", v); }
        } else if (a[0] == '-' && a[1]) {
            free(files);
            return uerr("tokenize", "unknown option or missing value: '%s'", a);
        } else files[n_files++] = a;
    }
    if (o.truncation != TOK_TRUNC_NONE && o.max_length < tok_n_special(&o, pair)) {
        char m[32];
        snprintf(m, sizeof m, "%zu", o.max_length);
        free(files);
        return uerr("tokenize", pair ? "--max-length %s leaves truncation no room for [CLS] A [SEP] B [SEP]'s three special tokens"
                                     : "--max-length %s leaves truncation no room for [CLS] and [SEP]", m);
    }
    Vocab v;
    Input in = {0};
    int rc = 1;
    if (load_vocab(&v, "tokenize", vocab_path) != 0) { free(files); return 1; }
    for (size_t f = 0; f < (n_files ? n_files : 1); f++)
        if (input_read(&in, "tokenize", n_files ? files[f] : NULL) != 0) goto done;
    /* Pairs: A ends at the first TAB. UTF-8 is checked here first, so the message can name the
     * file, line and byte within the line. */
    const char **b = pair ? malloc((in.n + 1) * sizeof *b) : NULL;
    size_t *nb = pair ? malloc((in.n + 1) * sizeof *nb) : NULL;
    size_t *na = malloc((in.n + 1) * sizeof *na);
    if (!na || (pair && (!b || !nb))) {
        fprintf(stderr, "tfm tokenize: out of memory for %zu lines\n", in.n);
        goto free_pairs;
    }
    for (size_t i = 0; i < in.n; i++) {
        TokError e;
        if (tok_utf8_check(in.line[i], in.len[i], &e) != 0) {
            fprintf(stderr, "tfm tokenize: %s:%zu: %s at byte %zu of the line\n", in.file[i],
                    in.lineno[i], e.what, e.offset);
            goto free_pairs;
        }
        na[i] = in.len[i];
        if (pair) {
            const char *tab = memchr(in.line[i], '\t', in.len[i]);
            if (!tab) {
                fprintf(stderr, "tfm tokenize: %s:%zu: --pair needs a TAB between A and B\n",
                        in.file[i], in.lineno[i]);
                goto free_pairs;
            }
            na[i] = (size_t)(tab - in.line[i]);
            b[i] = tab + 1;
            nb[i] = in.len[i] - na[i] - 1;
        }
    }
    TokBatch enc = {0};
    char err[TFM_TOK_ERR];
    size_t bad = in.n;
    if (tok_encode_batch(&enc, in.line, na, b, nb, in.n, &v, fn, &o, &bad, err, sizeof err) != 0) {
        /* err begins "line I:" with I counted over all input; name the file's own line instead */
        if (bad < in.n) fprintf(stderr, "tfm tokenize: %s:%zu%s\n", in.file[bad], in.lineno[bad], strchr(err, ':'));
        else fprintf(stderr, "tfm tokenize: %s\n", err);
        tok_batch_free(&enc);
        goto free_pairs;
    }
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    for (size_t i = 0; i < in.n; i++) {
        const size_t at = enc.offset[i], len = tok_batch_len(&enc, i);
        if (strcmp(format, "json") == 0) {
            fputc('{', stdout);
            put_array(stdout, "input_ids", enc.input_ids + at, len, 0);
            put_array(stdout, "token_type_ids", enc.token_type_ids + at, len, 0);
            put_array(stdout, "attention_mask", enc.attention_mask + at, len, 1);
            fputs("}\n", stdout);
        } else {
            if (format[0] == 'i') put_ids(stdout, enc.input_ids + at, len, " ");
            else
                for (size_t k = 0; k < len; k++) {
                    if (k) fputc(' ', stdout);
                    fputs(v.token[enc.input_ids[at + k]], stdout);
                }
            fputc('\n', stdout);
        }
    }
    tok_batch_free(&enc);
    rc = fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
    if (rc) fprintf(stderr, "tfm tokenize: writing stdout failed\n");
free_pairs:
    free(b); free(nb); free(na);
done:
    input_free(&in);
    vocab_free(&v);
    free(files);
    return rc;
}

int tfm_detokenize(int argc, char **argv) {
    const char *vocab_path = NULL;
    int skip = 0;
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    size_t n_files = 0;
    if (!files) { fprintf(stderr, "tfm detokenize: out of memory\n"); return 1; }
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: tfm detokenize [--vocab FILE] [--skip-special] [FILE...]\n"
                   "Hugging Face's decode on each line of space-separated ids (stdin when no FILE):\n"
                   "word pieces joined (\"##\" continues the word before), its clean-up of spaces\n"
                   "before punctuation; --skip-special leaves out [CLS], [SEP], [PAD], [MASK], [UNK].\n");
            free(files);
            return 0;
        } else if (strcmp(argv[i], "--vocab") == 0 && i + 1 < argc) vocab_path = argv[++i];
        else if (strcmp(argv[i], "--skip-special") == 0) skip = 1;
        else if (argv[i][0] == '-' && argv[i][1]) {
            free(files);
            return uerr("detokenize", "unknown option or missing value: '%s'", argv[i]);
        } else files[n_files++] = argv[i];
    }
    Vocab v;
    Input in = {0};
    int rc = 1;
    if (load_vocab(&v, "detokenize", vocab_path) != 0) { free(files); return 1; }
    for (size_t f = 0; f < (n_files ? n_files : 1); f++)
        if (input_read(&in, "detokenize", n_files ? files[f] : NULL) != 0) goto done;
    char **text = calloc(in.n + 1, sizeof *text);
    int64_t *ids = NULL;
    size_t ids_cap = 0;
    if (!text) { fprintf(stderr, "tfm detokenize: out of memory for %zu lines\n", in.n); goto done; }
    for (size_t i = 0; i < in.n; i++) {
        size_t n = 0;
        const char *p = in.line[i], *end = in.line[i] + in.len[i];
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
            if (p == end) break;
            char num[32];
            size_t k = 0;
            while (p < end && *p != ' ' && *p != '\t' && *p != '\r' && k < sizeof num - 1) num[k++] = *p++;
            num[k] = '\0';
            char *stop;
            errno = 0;
            const long long x = strtoll(num, &stop, 10);
            if (errno || *stop || (p < end && *p != ' ' && *p != '\t' && *p != '\r')) {
                fprintf(stderr, "tfm detokenize: %s:%zu: '%s' is not an id\n", in.file[i], in.lineno[i], num);
                goto free_text;
            }
            if (n == ids_cap) {
                ids_cap = ids_cap ? 2 * ids_cap : 256;
                int64_t *bigger = realloc(ids, ids_cap * sizeof *ids);
                if (!bigger) { fprintf(stderr, "tfm detokenize: out of memory\n"); goto free_text; }
                ids = bigger;
            }
            ids[n++] = x;
        }
        char err[TFM_TOK_ERR];
        if (!(text[i] = tok_decode(&v, ids, n, skip, err, sizeof err))) {
            fprintf(stderr, "tfm detokenize: %s:%zu: %s\n", in.file[i], in.lineno[i], err);
            goto free_text;
        }
    }
    for (size_t i = 0; i < in.n; i++) { fputs(text[i], stdout); fputc('\n', stdout); }
    rc = fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
    if (rc) fprintf(stderr, "tfm detokenize: writing stdout failed\n");
free_text:
    for (size_t i = 0; i < in.n; i++) free(text[i]);
    free(text);
    free(ids);
done:
    input_free(&in);
    vocab_free(&v);
    free(files);
    return rc;
}
