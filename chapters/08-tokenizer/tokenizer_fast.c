/* tokenizer_fast.c — the same tokenizer in one pass over the bytes.
 *
 * What each optimization saves, against tokenizer_naive.c:
 *  1. One pass, no code-point arrays. Steps 0-5 happen byte by byte as the text is read: each
 *     character is validated, cleaned, lowercased, decomposed and classified once, and a
 *     word's normalized bytes go straight into one reused buffer (s->word). The naive file makes
 *     six passes over four arrays per segment.
 *  2. An ASCII fast path. A byte below 0x80 is classified by a few compares (ascii_class): no
 *     UTF-8 decoding, no Unicode property lookup, no decomposition (ASCII has none). English text
 *     is almost all ASCII.
 *  3. A hashed vocabulary. vocab_find_hashed is one FNV-1a probe instead of ~15 string compares
 *     of a binary search, and the hashes of all prefixes of a word come from one forward pass
 *     (FNV-1a extends byte by byte), the "##" of a continuation hashed once: finding the
 *     longest piece costs the word's length in hashing plus one probe per candidate length.
 *     Candidates longer than the vocabulary's longest entry are never probed.
 *  4. No allocation per word or per text: s->word and s->hash grow to the longest word seen and
 *     stay; `out` grows by doubling; a batch keeps both between calls (TokBatch).
 *  5. Batches use every thread (tok_encode_batch, tokenizer.c), each with its own scratch.
 * Two rare inputs take the naive path for their segment, so that the fast path stays one pass: a
 * capital sigma (whose lowercase depends on the letters around it) and a kept combining mark
 * with a combining class (a spacing mark that NFD may reorder: a few musical symbols and the
 * spacing viramas of some Brahmic scripts, U+1B44, U+A953, U+A9C0, U+111C0, ...).
 */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tensor.h"

enum { C_DROP, C_SPACE, C_PUNCT, C_WORD };

/* ASCII's classes, a few compares: NUL, the C0 controls but TAB, LF, CR, and DEL are dropped;
 * TAB, LF, CR and space split words; the 32 ASCII punctuation characters are words by
 * themselves (the same answers as tok_is_control, tok_is_whitespace, tok_is_punct give). */
static inline int ascii_class(unsigned char b) {
    if (b == ' ' || b == '\t' || b == '\n' || b == '\r') return C_SPACE;
    if (b < 0x20 || b == 0x7f) return C_DROP;
    if ((b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || (b >= 'A' && b <= 'Z')) return C_WORD;
    return C_PUNCT;                            /* every other printable ASCII byte */
}

static void push(TokIds *out, int32_t id) {
    if (out->len == out->cap) {
        out->cap = out->cap ? 2 * out->cap : 256;
        out->ids = tfm_xrealloc(out->ids, out->cap, sizeof *out->ids, "tokenizer output");
    }
    out->ids[out->len++] = id;
}

/* WordPiece on one normalized word w[0..nb) of nc code points. */
static void wordpiece(TokIds *out, const Vocab *v, const char *w, size_t nb, size_t nc,
                      TokScratch *s) {
    if (nc > TOK_MAX_WORD_CHARS) { push(out, v->unk_id); return; }
    const uint64_t h_cont = tok_hash(TOK_HASH_INIT, "##", 2);
    uint64_t *h = s->hash;                   /* h[k]: hash of the candidate w[start..start+k) */
    const size_t first_piece = out->len;
    size_t start = 0;
    while (start < nb) {
        const size_t prefix = start > 0 ? 2 : 0;
        const size_t room = v->max_len > prefix ? v->max_len - prefix : 0;
        const size_t longest = nb - start < room ? nb - start : room;
        h[0] = start > 0 ? h_cont : TOK_HASH_INIT;
        for (size_t k = 0; k < longest; k++)
            h[k + 1] = (h[k] ^ (unsigned char)w[start + k]) * 0x100000001b3ull;
        int32_t id = -1;
        size_t len = longest;
        for (; len > 0; len--) {
            if (start + len < nb && ((unsigned char)w[start + len] & 0xC0) == 0x80)
                continue;                     /* not a code point boundary */
            id = vocab_find_hashed(v, w + start, len, h[len], prefix > 0);
            if (id >= 0) break;
        }
        if (id < 0) {
            out->len = first_piece;
            push(out, v->unk_id);
            return;
        }
        push(out, id);
        start += len;
    }
}

/* Room for one more code point (4 bytes) in the word buffer; the hash buffer follows the
 * vocabulary's longest entry. */
static void word_room(TokScratch *s, size_t used) {
    if (used + 4 <= s->word_cap) return;
    s->word_cap = s->word_cap ? 2 * s->word_cap : 1024;
    s->word = tfm_xrealloc(s->word, s->word_cap, 1, "tokenizer word");
}

/* Steps 1-6 on text[lo..hi). Returns 0, 1 if the segment needs the naive path (nothing appended
 * then), or -1 at invalid UTF-8 (e filled). */
static int segment(TokIds *out, const Vocab *v, const char *text, size_t lo, size_t hi,
                   TokScratch *s, TokError *e) {
    size_t nb = 0, nc = 0;                       /* the current word: bytes, code points */
    const size_t out0 = out->len;
#define FLUSH() do { if (nb) wordpiece(out, v, s->word, nb, nc, s); nb = nc = 0; } while (0)
    for (size_t i = lo; i < hi;) {
        const unsigned char b = (unsigned char)text[i];
        if (b < 0x80) {                                       /* 2. the ASCII fast path */
            i++;
            switch (ascii_class(b)) {
            case C_DROP: break;
            case C_SPACE: FLUSH(); break;
            case C_PUNCT: {
                FLUSH();
                char p = (char)b;
                wordpiece(out, v, &p, 1, 1, s);
                break;
            }
            default:
                word_room(s, nb);
                s->word[nb++] = (char)(b >= 'A' && b <= 'Z' ? b + 32 : b);
                nc++;
            }
            continue;
        }
        utf8proc_int32_t c;
        const utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i,
                                                    (utf8proc_ssize_t)(hi - i), &c);
        if (k < 0) { out->len = out0; e->offset = i; e->what = "invalid UTF-8"; return -1; }
        i += (size_t)k;
        const uint32_t u = (uint32_t)c;
        if (u == 0xFFFD || tok_is_control(u)) continue;
        if (tok_is_whitespace(u)) { FLUSH(); continue; }
        /* a CJK ideograph is a word by itself, but still lowercased and decomposed below: the
         * compatibility ideographs (U+F900..) decompose to unified ones, which are in the vocabulary */
        const int alone = tok_is_cjk(u);
        if (alone) FLUSH();
        if (u == 0x3A3) { out->len = out0; return 1; }        /* sigma: context decides */
        utf8proc_int32_t d[32];
        const utf8proc_ssize_t nd = utf8proc_decompose_char(utf8proc_tolower(c), d, 32,
                                                            UTF8PROC_DECOMPOSE, NULL);
        for (utf8proc_ssize_t j = 0; j < nd; j++) {
            const utf8proc_property_t *p = utf8proc_get_property(d[j]);
            if (p->category == UTF8PROC_CATEGORY_MN) continue;           /* the accent goes */
            if (p->combining_class != 0) { out->len = out0; return 1; }  /* may reorder */
            const uint32_t du = (uint32_t)d[j];
            if (tok_is_whitespace(du)) { FLUSH(); continue; }
            if (tok_is_punct(du)) {
                FLUSH();
                char buf[4];
                const size_t m = (size_t)utf8proc_encode_char(d[j], (utf8proc_uint8_t *)buf);
                wordpiece(out, v, buf, m, 1, s);
                continue;
            }
            word_room(s, nb);
            nb += (size_t)utf8proc_encode_char(d[j], (utf8proc_uint8_t *)s->word + nb);
            nc++;
        }
        if (alone) FLUSH();
    }
    FLUSH();
#undef FLUSH
    return 0;
}

int tokenize_fast(TokIds *out, const Vocab *v, const char *text, size_t n, TokScratch *s,
                  TokError *e) {
    if (s->hash_cap < v->max_len + 1) {
        free(s->hash);
        s->hash = tfm_xcalloc(v->max_len + 1, sizeof *s->hash, "tokenizer hashes");
        s->hash_cap = v->max_len + 1;
    }
    const size_t out0 = out->len;
    size_t start = 0, i = 0;
    for (;;) {
        /* 0. the next special token: memchr for '[' skips the text between in vector strides */
        const char *br = i < n ? memchr(text + i, '[', n - i) : NULL;
        const size_t at = br ? (size_t)(br - text) : n;
        size_t len = 0;
        const int32_t id = br ? tok_special_at(v, text, n, at, &len) : -1;
        if (br && id < 0) { i = at + 1; continue; }
        const int rc = segment(out, v, text, start, at, s, e);      /* text[start..at) */
        if (rc < 0) { out->len = out0; return -1; }
        if (rc > 0) {
            if (tok_utf8_check(text + start, at - start, e) != 0) {
                e->offset += start;
                out->len = out0;
                return -1;
            }
            tokenize_segment_naive(out, v, text, start, at, s);
        }
        if (!br) return 0;
        push(out, id);
        start = i = at + len;
    }
}
