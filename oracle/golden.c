/* golden.c — safetensors (+gzip) reader and writer. See golden.h for the format.
 *
 * The reader distrusts its input: every length and offset in the header is checked against the
 * bytes actually present before anything is copied, so a corrupt or hostile file produces one
 * error line, never an out-of-bounds read or a half-filled tensor.
 */
#define _XOPEN_SOURCE 700   /* realpath (golden_save follows a symlinked output path) */
#include "golden.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tfm reads safetensors data in place and needs a little-endian host"
#endif

/* Files, and gzip files once inflated, larger than max_bytes are refused (golden.h). */
static size_t max_bytes = GOLDEN_MAX_BYTES;
/* The JSON header is refused past this size (safetensors itself caps it at 100 MB). */
#define GOLDEN_MAX_HEADER ((uint64_t)100 << 20)
/* Integers in JSON arrive as doubles; beyond 2^53 they are no longer exact. */
#define JSON_MAX_EXACT 9007199254740992.0

static int fail(char *err, size_t errlen, const char *label, const char *fmt, ...) {
    char msg[TFM_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s: %s", label, msg);
    /* Messages quote names taken from the file; a control character in one (a newline, an
     * escape sequence) must not split the line or drive the terminal. */
    for (char *c = err; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    return -1;
}

static int has_control_char(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return 1;
    return 0;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- reading bytes ---------------------------------------------------------------------- */

size_t golden_set_max_bytes(size_t n) {
    size_t old = max_bytes;
    max_bytes = n < SIZE_MAX / 2 ? n : SIZE_MAX / 2;
    return old;
}

/* Buffers grow by doubling, but never past max_bytes + 1: a buffer that fills up at that size
 * proves the input too large, and one that does not holds all of it. (Plain doubling let a
 * 4.4 GB gzip bomb inflate completely into an 8 GiB buffer before anything was refused.) */
static size_t first_cap(size_t want) { return want < max_bytes + 1 ? want : max_bytes + 1; }
static size_t next_cap(size_t cap) { return cap < (max_bytes + 1) / 2 ? cap * 2 : max_bytes + 1; }

static int read_file(const char *path, unsigned char **out, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, errlen, path, "cannot open: %s", strerror(errno));
    size_t cap = first_cap((size_t)1 << 16), n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (!buf) { fclose(f); return fail(err, errlen, path, "out of memory reading the file"); }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        if (n > max_bytes) {
            free(buf); fclose(f);
            return fail(err, errlen, path, "file is larger than %zu bytes", max_bytes);
        }
        unsigned char *grown = realloc(buf, next_cap(cap));
        if (!grown) free(buf);
        buf = grown;
        cap = next_cap(cap);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return fail(err, errlen, path, "read error"); }
    *out = buf;
    *len = n;
    return 0;
}

int golden_read_text(const char *path, char **text, char *err, size_t errlen) {
    unsigned char *buf;
    size_t len;
    *text = NULL;
    if (read_file(path, &buf, &len, err, errlen) != 0) return -1;
    char *t = realloc(buf, len + 1);
    if (!t) { free(buf); return fail(err, errlen, path, "out of memory reading the file"); }
    t[len] = '\0';
    if (strlen(t) != len) { free(t); return fail(err, errlen, path, "holds a NUL byte: not text"); }
    *text = t;
    return 0;
}

static int gunzip(const unsigned char *in, size_t inlen, unsigned char **out, size_t *outlen,
                  const char *label, char *err, size_t errlen) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)  /* 16+: expect a gzip wrapper, check CRC */
        return fail(err, errlen, label, "zlib initialisation failed");
    size_t cap = first_cap(inlen < SIZE_MAX / 8 ? inlen * 4 + 1024 : SIZE_MAX / 2), n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        inflateEnd(&zs);
        return fail(err, errlen, label, "out of memory inflating");
    }
    int rc = Z_OK;
    /* zlib counts in uInt; feed the input in chunks so files over 4 GiB cannot wrap it. */
    size_t fed = 0;
    for (;;) {
        if (zs.avail_in == 0 && fed < inlen) {
            size_t chunk = inlen - fed < (1u << 30) ? inlen - fed : (1u << 30);
            zs.next_in = (unsigned char *)(uintptr_t)(in + fed);
            zs.avail_in = (uInt)chunk;
            fed += chunk;
        }
        if (n == cap) {
            if (n > max_bytes) {
                free(buf); inflateEnd(&zs);
                return fail(err, errlen, label, "inflates to more than %zu bytes", max_bytes);
            }
            unsigned char *grown = realloc(buf, next_cap(cap));
            if (!grown) {
                free(buf); inflateEnd(&zs);
                return fail(err, errlen, label, "out of memory inflating");
            }
            buf = grown;
            cap = next_cap(cap);
        }
        size_t room = cap - n < (1u << 30) ? cap - n : (1u << 30);
        zs.next_out = buf + n;
        zs.avail_out = (uInt)room;
        rc = inflate(&zs, Z_NO_FLUSH);
        n += room - zs.avail_out;
        if (rc == Z_STREAM_END) break;
        if (rc == Z_BUF_ERROR && zs.avail_in == 0 && fed == inlen) break; /* input ran out */
        if (rc != Z_OK && rc != Z_BUF_ERROR) break;
    }
    const char *zmsg = zs.msg;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(buf);
        if (rc == Z_BUF_ERROR || rc == Z_OK)
            return fail(err, errlen, label, "truncated gzip stream (ends after %zu inflated bytes)", n);
        return fail(err, errlen, label, "corrupt gzip stream (%s)", zmsg ? zmsg : "zlib error");
    }
    if (n > max_bytes) {   /* the stream ended exactly as the last allowed buffer filled */
        free(buf);
        return fail(err, errlen, label, "inflates to more than %zu bytes", max_bytes);
    }
    if (zs.avail_in != 0 || fed != inlen) {
        free(buf);
        return fail(err, errlen, label, "trailing bytes after the gzip stream");
    }
    *out = buf;
    *outlen = n;
    return 0;
}

/* ---- parsing ---------------------------------------------------------------------------- */

static int json_size(const cJSON *item, size_t *out) {
    if (!cJSON_IsNumber(item)) return -1;
    double v = item->valuedouble;
    if (!(v >= 0) || v > JSON_MAX_EXACT || v != (double)(uint64_t)v) return -1;
    *out = (size_t)v;
    return 0;
}

typedef struct { size_t begin, end; const char *name; } Span;

static int span_cmp(const void *a, const void *b) {
    const Span *x = a, *y = b;
    /* By begin, then end: an empty tensor sits before a full one that starts where it does,
     * as oracle/safetensors_io.py orders them, so both readers accept the same files. */
    if (x->begin != y->begin) return (x->begin > y->begin) - (x->begin < y->begin);
    return (x->end > y->end) - (x->end < y->end);
}

static int span_name_cmp(const void *a, const void *b) {
    const Span *x = a, *y = b;
    return strcmp(x->name, y->name);
}

void golden_free(GoldenFile *gf) {
    for (size_t i = 0; i < gf->n; i++) {
        free(gf->names[i]);
        tensor_free(&gf->tensors[i]);
    }
    for (size_t i = 0; i < gf->n_meta; i++) {
        free(gf->meta_keys[i]);
        free(gf->meta_values[i]);
    }
    free(gf->names);
    free(gf->tensors);
    free(gf->meta_keys);
    free(gf->meta_values);
    free(gf->path);
    memset(gf, 0, sizeof *gf);
}

static int parse_safetensors(GoldenFile *gf, const unsigned char *b, size_t len,
                             const char *label, char *err, size_t errlen) {
    if (len < 8) return fail(err, errlen, label, "%zu bytes is too short for a safetensors header", len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | b[i];
    if (hlen == 0) return fail(err, errlen, label, "header length is 0");
    if (hlen > len - 8)
        return fail(err, errlen, label, "header length %llu runs past the end of the file (%zu bytes)",
                    (unsigned long long)hlen, len);
    if (hlen > GOLDEN_MAX_HEADER)
        return fail(err, errlen, label, "header length %llu exceeds the 100 MB limit",
                    (unsigned long long)hlen);
    const unsigned char *data = b + 8 + hlen;
    size_t datalen = len - 8 - (size_t)hlen;

    cJSON *root = cJSON_ParseWithLength((const char *)b + 8, (size_t)hlen);
    if (!root) return fail(err, errlen, label, "header is not valid JSON");
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fail(err, errlen, label, "header is not a JSON object");
    }
    size_t count = 0, n_meta = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        if (strcmp(it->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(it)) { cJSON_Delete(root); return fail(err, errlen, label, "__metadata__ is not an object"); }
            n_meta = (size_t)cJSON_GetArraySize(it);
        } else {
            count++;
        }
    }
    gf->names = calloc(count ? count : 1, sizeof *gf->names);
    gf->tensors = calloc(count ? count : 1, sizeof *gf->tensors);
    gf->meta_keys = calloc(n_meta ? n_meta : 1, sizeof *gf->meta_keys);
    gf->meta_values = calloc(n_meta ? n_meta : 1, sizeof *gf->meta_values);
    Span *spans = calloc(count ? count : 1, sizeof *spans);
    int rc = 0;
    if (!gf->names || !gf->tensors || !gf->meta_keys || !gf->meta_values || !spans) {
        rc = fail(err, errlen, label, "out of memory");
        goto done;
    }

    /* First pass: validate every entry and record its byte span; nothing is copied yet. */
    size_t k = 0;
    cJSON_ArrayForEach(it, root) {
        const char *name = it->string;
        if (strcmp(name, "__metadata__") == 0) {
            const cJSON *m;
            cJSON_ArrayForEach(m, it) {
                if (!cJSON_IsString(m)) { rc = fail(err, errlen, label, "__metadata__ value '%s' is not a string", m->string); goto done; }
                gf->meta_keys[gf->n_meta] = dup_str(m->string);
                gf->meta_values[gf->n_meta] = dup_str(m->valuestring);
                gf->n_meta++;
                if (!gf->meta_keys[gf->n_meta - 1] || !gf->meta_values[gf->n_meta - 1]) { rc = fail(err, errlen, label, "out of memory"); goto done; }
            }
            continue;
        }
        /* Names end up in messages and, through their "<case>/" prefix, in the case names that
         * `tfm check` prints and runners quote. */
        if (has_control_char(name)) { rc = fail(err, errlen, label, "tensor name '%s' contains a control character", name); goto done; }
        if (!cJSON_IsObject(it)) { rc = fail(err, errlen, label, "entry '%s' is not an object", name); goto done; }
        const cJSON *jdt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *jsh = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *joff = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsString(jdt) || !cJSON_IsArray(jsh) || !cJSON_IsArray(joff)) {
            rc = fail(err, errlen, label, "tensor '%s' lacks dtype, shape or data_offsets", name);
            goto done;
        }
        TfmDType dt;
        if (tfm_dtype_parse(jdt->valuestring, &dt) != 0) {
            rc = fail(err, errlen, label, "tensor '%s' has unsupported dtype '%s' (tfm reads F32, F64, I64, BOOL, U8)", name, jdt->valuestring);
            goto done;
        }
        int ndim = cJSON_GetArraySize(jsh);
        if (ndim > TFM_MAX_DIMS) { rc = fail(err, errlen, label, "tensor '%s' has %d dimensions; tfm supports up to %d", name, ndim, TFM_MAX_DIMS); goto done; }
        size_t shape[TFM_MAX_DIMS] = {1, 1, 1, 1, 1, 1, 1, 1};
        for (int d = 0; d < ndim; d++)
            if (json_size(cJSON_GetArrayItem(jsh, d), &shape[d]) != 0) {
                rc = fail(err, errlen, label, "tensor '%s' has a shape entry that is not a non-negative integer", name);
                goto done;
            }
        size_t begin, end;
        if (cJSON_GetArraySize(joff) != 2 || json_size(cJSON_GetArrayItem(joff, 0), &begin) != 0 ||
            json_size(cJSON_GetArrayItem(joff, 1), &end) != 0 || begin > end) {
            rc = fail(err, errlen, label, "tensor '%s' has malformed data_offsets", name);
            goto done;
        }
        if (end > datalen) {
            rc = fail(err, errlen, label, "tensor '%s' data_offsets [%zu, %zu] run past the data section (%zu bytes)", name, begin, end, datalen);
            goto done;
        }
        int overflow;
        size_t numel = tfm_shape_numel(ndim, shape, &overflow);
        size_t esize = tfm_dtype_size(dt);
        if (overflow || numel > SIZE_MAX / esize || numel * esize != end - begin) {
            char s[96];
            tfm_shape_str(s, sizeof s, ndim, shape);
            rc = fail(err, errlen, label, "tensor '%s': shape %s x %s (%zu bytes each) does not match its %zu data bytes", name, s, jdt->valuestring, esize, end - begin);
            goto done;
        }
        spans[k] = (Span){begin, end, name};
        k++;
    }
    /* Duplicates by sorting, not by comparing every pair: a 100 MB header can name a million
     * tensors, and a million squared comparisons would hang the reader. */
    qsort(spans, count, sizeof *spans, span_name_cmp);
    for (size_t i = 1; i < count; i++)
        if (strcmp(spans[i].name, spans[i - 1].name) == 0) {
            rc = fail(err, errlen, label, "tensor '%s' appears twice", spans[i].name);
            goto done;
        }
    qsort(spans, count, sizeof *spans, span_cmp);
    for (size_t i = 1; i < count; i++)
        if (spans[i].begin < spans[i - 1].end) {
            rc = fail(err, errlen, label, "tensors '%s' and '%s' overlap in the data section", spans[i - 1].name, spans[i].name);
            goto done;
        }

    /* Second pass: everything is known to be in bounds; copy into owned tensors. */
    k = 0;
    cJSON_ArrayForEach(it, root) {
        if (strcmp(it->string, "__metadata__") == 0) continue;
        const cJSON *jsh = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *joff = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        TfmDType dt;
        tfm_dtype_parse(cJSON_GetObjectItemCaseSensitive(it, "dtype")->valuestring, &dt);
        int ndim = cJSON_GetArraySize(jsh);
        size_t shape[TFM_MAX_DIMS] = {1, 1, 1, 1, 1, 1, 1, 1}, begin = 0;
        for (int d = 0; d < ndim; d++) json_size(cJSON_GetArrayItem(jsh, d), &shape[d]);
        json_size(cJSON_GetArrayItem(joff, 0), &begin);
        char aerr[TFM_ERR_LEN];
        if (tensor_alloc(&gf->tensors[k], dt, ndim, shape, aerr, sizeof aerr) != 0) {
            rc = fail(err, errlen, label, "tensor '%s': %s", it->string, aerr);
            goto done;
        }
        gf->names[k] = dup_str(it->string);
        gf->n = ++k;
        if (!gf->names[k - 1]) { rc = fail(err, errlen, label, "out of memory"); goto done; }
        memcpy(gf->tensors[k - 1].data, data + begin, gf->tensors[k - 1].numel * tfm_dtype_size(dt));
        if (dt == TFM_BOOL) {   /* a mask byte of 2 would be "true" here and garbage in torch */
            const uint8_t *m = tensor_bool(&gf->tensors[k - 1]);
            for (size_t i = 0; i < gf->tensors[k - 1].numel; i++)
                if (m[i] > 1) {
                    rc = fail(err, errlen, label, "tensor '%s' is BOOL but element %zu is %u (BOOL bytes are 0 or 1)", it->string, i, (unsigned)m[i]);
                    goto done;
                }
        }
    }
done:
    free(spans);
    cJSON_Delete(root);
    return rc;
}

int golden_load_bytes(GoldenFile *gf, const unsigned char *bytes, size_t len, const char *label,
                      char *err, size_t errlen) {
    memset(gf, 0, sizeof *gf);
    unsigned char *plain = NULL;
    size_t plainlen = len;
    if (len >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) {
        if (gunzip(bytes, len, &plain, &plainlen, label, err, errlen) != 0) return -1;
        bytes = plain;
    }
    int rc = parse_safetensors(gf, bytes, plainlen, label, err, errlen);
    free(plain);
    if (rc == 0) gf->path = dup_str(label);
    if (rc == 0 && !gf->path) rc = fail(err, errlen, label, "out of memory");
    if (rc != 0) golden_free(gf);
    return rc;
}

int golden_load(GoldenFile *gf, const char *path, char *err, size_t errlen) {
    memset(gf, 0, sizeof *gf);
    unsigned char *bytes = NULL;
    size_t len = 0;
    if (read_file(path, &bytes, &len, err, errlen) != 0) return -1;
    if (len == 0) { free(bytes); return fail(err, errlen, path, "file is empty"); }
    int rc = golden_load_bytes(gf, bytes, len, path, err, errlen);
    free(bytes);
    return rc;
}

const Tensor *golden_find(const GoldenFile *gf, const char *name) {
    for (size_t i = 0; i < gf->n; i++)
        if (strcmp(gf->names[i], name) == 0) return &gf->tensors[i];
    return NULL;
}

const Tensor *golden_require(const GoldenFile *gf, const char *name, TfmDType dt, int ndim,
                             char *err, size_t errlen) {
    const Tensor *t = golden_find(gf, name);
    const char *label = gf->path ? gf->path : "(tensors)";
    if (!t) { fail(err, errlen, label, "tensor '%s' is missing", name); return NULL; }
    if (t->dtype != dt) {
        fail(err, errlen, label, "tensor '%s' is %s, expected %s", name, tfm_dtype_name(t->dtype), tfm_dtype_name(dt));
        return NULL;
    }
    if (ndim >= 0 && t->ndim != ndim) {
        char s[96];
        tfm_shape_str(s, sizeof s, t->ndim, t->shape);
        fail(err, errlen, label, "tensor '%s' has shape %s, expected %d dimensions", name, s, ndim);
        return NULL;
    }
    return t;
}

const char *golden_meta(const GoldenFile *gf, const char *key) {
    for (size_t i = 0; i < gf->n_meta; i++)
        if (strcmp(gf->meta_keys[i], key) == 0) return gf->meta_values[i];
    return NULL;
}

size_t golden_cases(const GoldenFile *gf, char ***cases) {
    char **list = calloc(gf->n ? gf->n : 1, sizeof *list);
    size_t n = 0;
    for (size_t i = 0; list && i < gf->n; i++) {
        const char *slash = strchr(gf->names[i], '/');
        if (!slash) continue;
        size_t len = (size_t)(slash - gf->names[i]);
        size_t j = 0;
        while (j < n && !(strlen(list[j]) == len && strncmp(list[j], gf->names[i], len) == 0)) j++;
        if (j < n) continue;
        list[n] = malloc(len + 1);
        if (!list[n]) break;
        memcpy(list[n], gf->names[i], len);
        list[n][len] = '\0';
        n++;
    }
    *cases = list;
    return n;
}

void golden_free_cases(char **cases, size_t n) {
    for (size_t i = 0; i < n; i++) free(cases[i]);
    free(cases);
}

/* ---- writing ---------------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int golden_save(const char *path, size_t n, const char *const *names, const Tensor *tensors,
                size_t n_meta, const char *const *meta_keys, const char *const *meta_values,
                char *err, size_t errlen) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return fail(err, errlen, path, "out of memory");
    if (n_meta) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (size_t i = 0; meta && i < n_meta; i++) cJSON_AddStringToObject(meta, meta_keys[i], meta_values[i]);
    }
    size_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(root, names[i]);
        if (!e) break;
        cJSON_AddStringToObject(e, "dtype", tfm_dtype_name(tensors[i].dtype));
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; sh && d < tensors[i].ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)tensors[i].shape[d]));
        size_t bytes = tensors[i].numel * tfm_dtype_size(tensors[i].dtype);
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        if (off) {
            cJSON_AddItemToArray(off, cJSON_CreateNumber((double)offset));
            cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(offset + bytes)));
        }
        offset += bytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return fail(err, errlen, path, "out of memory building the header");
    size_t hlen = strlen(json);
    size_t padded = (hlen + 7) / 8 * 8;  /* the spec allows trailing spaces; 8-byte alignment */

    /* The new file replaces `path` by rename, which replaces whatever is there: as root, a
     * device such as /dev/null would become a regular file. So an existing path must be a
     * regular file; a symlink to one is followed, so the file is replaced, not the link. */
    struct stat sb;
    char *real = NULL;
    if (stat(path, &sb) == 0) {
        if (!S_ISREG(sb.st_mode)) {
            free(json);
            return fail(err, errlen, path, "not a regular file (tfm writes a temporary file beside it and renames it into place)");
        }
        real = realpath(path, NULL);
    }
    const char *dest = real ? real : path;
    size_t plen = strlen(dest);
    char *tmp = malloc(plen + 16);
    if (!tmp) { free(json); free(real); return fail(err, errlen, path, "out of memory"); }
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", dest);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(json); free(tmp); free(real);
        return fail(err, errlen, path, "cannot create a file beside it: %s", strerror(e));
    }
    /* A second descriptor outlives the stream's close, for the fsync before the rename: without
     * it a crash right after the rename could leave an empty file under the final name. */
    int keep = dup(fd);
    /* mkstemp creates the file 0600; give it the mode an ordinary create would have. */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    int gz = ends_with(path, ".gz"), ok = 1;
    gzFile zf = NULL;
    FILE *pf = NULL;
    if (gz) zf = gzdopen(fd, "wb9");
    else pf = fdopen(fd, "wb");
    if (!zf && !pf) { close(fd); ok = 0; }

#define PUT(ptr, len)                                                                          \
    do {                                                                                       \
        size_t len_ = (len);                                                                   \
        const unsigned char *p_ = (const unsigned char *)(ptr);                                \
        while (ok && len_ > 0) {                                                               \
            unsigned chunk_ = len_ > (1u << 30) ? (1u << 30) : (unsigned)len_;                 \
            if (gz) ok = gzwrite(zf, p_, chunk_) == (int)chunk_;                               \
            else ok = fwrite(p_, 1, chunk_, pf) == chunk_;                                     \
            p_ += chunk_; len_ -= chunk_;                                                      \
        }                                                                                      \
    } while (0)

    unsigned char lenbytes[8];
    for (int i = 0; i < 8; i++) lenbytes[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    PUT(lenbytes, 8);
    PUT(json, hlen);
    for (size_t i = hlen; i < padded; i++) PUT(" ", 1);
    for (size_t i = 0; i < n; i++) PUT(tensors[i].data, tensors[i].numel * tfm_dtype_size(tensors[i].dtype));
#undef PUT
    if (zf && gzclose(zf) != Z_OK) ok = 0;
    if (pf && fclose(pf) != 0) ok = 0;
    if (keep < 0 || fsync(keep) != 0) ok = 0;
    if (keep >= 0) close(keep);
    free(json);
    if (!ok || rename(tmp, dest) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        free(real);
        return fail(err, errlen, path, "write failed: %s", ok ? strerror(e) : "could not write all bytes");
    }
    free(tmp);
    free(real);
    return 0;
}
