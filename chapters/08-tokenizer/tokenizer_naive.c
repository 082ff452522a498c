/* tokenizer_naive.c — BERT's tokenizer, one step at a time, as tokenizer.h lists them.
 *
 * Each step reads one array of code points and writes the next, so the text can be inspected
 * between any two of them; the words are looked up by binary search in the sorted vocabulary.
 * Dimensions: n bytes of text; m code points of a segment; w code points of a word.
 */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tensor.h"

/* Room for `need` code points in *buf, which keeps its size for the next text; its contents are
 * discarded when it grows (every caller writes it from the start). */
static uint32_t *reserve(uint32_t **buf, size_t *cap, size_t need) {
    if (need > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < need) c *= 2;
        free(*buf);
        *buf = tfm_xcalloc(c, sizeof **buf, "tokenizer scratch");
        *cap = c;
    }
    return *buf;
}

static void push(TokIds *out, int32_t id) {
    if (out->len == out->cap) {
        const size_t cap = out->cap ? 2 * out->cap : 64;
        int32_t *p = tfm_xcalloc(cap, sizeof *p, "tokenizer output");
        if (out->len) memcpy(p, out->ids, out->len * sizeof *p);
        free(out->ids);
        out->ids = p;
        out->cap = cap;
    }
    out->ids[out->len++] = id;
}

/* Step 6, WordPiece, on one word w[0..nw): greedy longest match first. */
static void wordpiece(TokIds *out, const Vocab *v, const uint32_t *w, size_t nw) {
    if (nw > TOK_MAX_WORD_CHARS) { push(out, v->unk_id); return; }
    /* The word as UTF-8, with at[k] the byte where code point k starts (at[nw] = the end). */
    char bytes[4 * TOK_MAX_WORD_CHARS];
    size_t at[TOK_MAX_WORD_CHARS + 1];
    at[0] = 0;
    for (size_t k = 0; k < nw; k++)
        at[k + 1] = at[k] + (size_t)utf8proc_encode_char((utf8proc_int32_t)w[k],
                                                         (utf8proc_uint8_t *)bytes + at[k]);
    const size_t first_piece = out->len;
    size_t start = 0;
    while (start < nw) {
        int32_t id = -1;
        size_t end = nw;
        for (; end > start; end--) {                   /* the longest piece first */
            char piece[2 + 4 * TOK_MAX_WORD_CHARS];
            size_t len = 0;
            if (start > 0) { memcpy(piece, "##", 2); len = 2; }   /* a continuation */
            memcpy(piece + len, bytes + at[start], at[end] - at[start]);
            len += at[end] - at[start];
            id = vocab_find_naive(v, piece, len);
            if (id >= 0) break;
        }
        if (id < 0) {                                  /* no piece fits: the word is [UNK] */
            out->len = first_piece;
            push(out, v->unk_id);
            return;
        }
        push(out, id);
        start = end;
    }
}

int tokenize_segment_naive(TokIds *out, const Vocab *v, const char *text, size_t lo, size_t hi,
                           TokScratch *s) {
    /* The code points of the segment. */
    uint32_t *cp = reserve(&s->cp, &s->cp_cap, hi - lo);
    size_t m = 0;
    for (size_t i = lo; i < hi;) {
        utf8proc_int32_t c;
        i += (size_t)utf8proc_iterate((const utf8proc_uint8_t *)text + i,
                                      (utf8proc_ssize_t)(hi - i), &c);
        cp[m++] = (uint32_t)c;
    }

    /* 1. clean: drop NUL, U+FFFD and control characters; whitespace becomes a space. */
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        const uint32_t c = cp[i];
        if (c == 0 || c == 0xFFFD || tok_is_control(c)) continue;
        cp[k++] = tok_is_whitespace(c) ? ' ' : c;
    }
    m = k;

    /* 2. CJK: " " c " " around every ideograph. */
    uint32_t *cjk = reserve(&s->cp2, &s->cp2_cap, 3 * m);
    k = 0;
    for (size_t i = 0; i < m; i++) {
        if (tok_is_cjk(cp[i])) { cjk[k++] = ' '; cjk[k++] = cp[i]; cjk[k++] = ' '; }
        else cjk[k++] = cp[i];
    }
    m = k;

    /* 3. lowercase. Capital sigma has two lowercase forms; Final_Sigma picks one. (U+0130's full
     * lowercase is "i" + U+0307, its simple one "i": step 4 removes the difference.) */
    for (size_t i = 0; i < m; i++)
        cjk[i] = cjk[i] == 0x3A3 ? (tok_sigma_final(cjk, m, i) ? 0x3C2 : 0x3C3)
                                 : (uint32_t)utf8proc_tolower((utf8proc_int32_t)cjk[i]);

    /* 4. strip accents: NFD is canonical decomposition (every character into its base and
     * marks, recursively) then canonical ordering (each run of marks sorted, stably, by
     * combining class); then every nonspacing mark (Mn) goes. A canonical decomposition has at
     * most 4 code points (Unicode 15), so 4 per character always fits; the check below says so
     * rather than trusting it. */
    uint32_t *nfd = reserve(&s->cp, &s->cp_cap, 4 * m + 32);
    k = 0;
    for (size_t i = 0; i < m; i++) {
        utf8proc_int32_t d[32];
        const utf8proc_ssize_t nd = utf8proc_decompose_char((utf8proc_int32_t)cjk[i], d, 32,
                                                            UTF8PROC_DECOMPOSE, NULL);
        if (k + (size_t)nd > s->cp_cap) {
            uint32_t *bigger = tfm_xcalloc(2 * s->cp_cap + (size_t)nd, sizeof *bigger, "nfd");
            memcpy(bigger, nfd, k * sizeof *nfd);
            free(s->cp);
            s->cp = nfd = bigger;
            s->cp_cap = 2 * s->cp_cap + (size_t)nd;
        }
        for (utf8proc_ssize_t j = 0; j < nd; j++) nfd[k++] = (uint32_t)d[j];
    }
    m = k;
    for (size_t i = 1; i < m; i++) {                   /* canonical ordering: insertion sort */
        const uint32_t c = nfd[i];
        const int cc = utf8proc_get_property((utf8proc_int32_t)c)->combining_class;
        size_t j = i;
        while (cc != 0 && j > 0) {
            const int prev = utf8proc_get_property((utf8proc_int32_t)nfd[j - 1])->combining_class;
            if (prev <= cc) break;
            nfd[j] = nfd[j - 1];
            j--;
        }
        nfd[j] = c;
    }
    k = 0;
    for (size_t i = 0; i < m; i++)
        if (utf8proc_category((utf8proc_int32_t)nfd[i]) != UTF8PROC_CATEGORY_MN) nfd[k++] = nfd[i];
    m = k;

    /* 5. pre-tokenize: words end at whitespace; a punctuation character is a word by itself.
     * 6. WordPiece on each word. */
    size_t word = 0;
    for (size_t i = 0; i <= m; i++) {
        const int end = i == m || tok_is_whitespace(nfd[i]) || tok_is_punct(nfd[i]);
        if (!end) continue;
        if (i > word) wordpiece(out, v, nfd + word, i - word);
        if (i < m && tok_is_punct(nfd[i])) wordpiece(out, v, nfd + i, 1);
        word = i + 1;
    }
    return 0;
}

int tokenize_naive(TokIds *out, const Vocab *v, const char *text, size_t n, TokScratch *s,
                   TokError *e) {
    if (tok_utf8_check(text, n, e) != 0) return -1;
    /* 0. special tokens, matched in the raw text; the stretches between them are segments. */
    size_t start = 0;
    for (size_t i = 0; i < n;) {
        size_t len;
        const int32_t id = tok_special_at(v, text, n, i, &len);
        if (id < 0) { i++; continue; }
        tokenize_segment_naive(out, v, text, start, i, s);
        push(out, id);
        i += len;
        start = i;
    }
    tokenize_segment_naive(out, v, text, start, n, s);
    return 0;
}
