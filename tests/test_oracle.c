/* test_oracle.c — the golden reader, the writer and the compare routine, including every kind
 * of bad input the reader must refuse with a clear message. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"

/* A safetensors file in memory from a header string and a data section. */
static unsigned char *make_st(const char *json, const void *data, size_t datalen, size_t *len) {
    size_t h = strlen(json);
    unsigned char *b = tu_malloc(8 + h + datalen);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, json, h);
    if (datalen) memcpy(b + 8 + h, data, datalen);
    *len = 8 + h + datalen;
    return b;
}

/* Asserts that loading the bytes fails and that the message contains `needle`. */
static void expect_refused(const unsigned char *bytes, size_t len, const char *needle) {
    GoldenFile gf;
    char err[TFM_ERR_LEN] = "";
    int rc = golden_load_bytes(&gf, bytes, len, "case.safetensors", err, sizeof err);
    ck_assert_msg(rc == -1, "a bad file was accepted (expected an error about '%s')", needle);
    ck_assert_msg(strstr(err, needle) != NULL, "error '%s' does not mention '%s'", err, needle);
    ck_assert_msg(strncmp(err, "case.safetensors: ", 18) == 0, "error '%s' does not name the file", err);
    ck_assert_msg(gf.n == 0 && gf.tensors == NULL, "a failed load left tensors behind");
}

static const float SIX[6] = {1, 2, 3, 4, 5, 6};

START_TEST(test_reads_valid_file) {
    size_t len;
    unsigned char *b = make_st(
        "{\"__metadata__\":{\"seed\":\"7\"},\"c/x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}",
        SIX, sizeof SIX, &len);
    GoldenFile gf;
    char err[TFM_ERR_LEN];
    ck_assert_msg(golden_load_bytes(&gf, b, len, "ok", err, sizeof err) == 0, "%s", err);
    const Tensor *t = golden_require(&gf, "c/x", TFM_F32, 2, err, sizeof err);
    ck_assert_msg(t != NULL, "%s", err);
    ck_assert_uint_eq(t->shape[0], 2);
    ck_assert_uint_eq(t->shape[1], 3);
    ck_assert_float_eq(tensor_f32(t)[5], 6.0f);
    ck_assert_str_eq(golden_meta(&gf, "seed"), "7");
    ck_assert_ptr_null(golden_require(&gf, "c/x", TFM_F64, 2, err, sizeof err));
    ck_assert_msg(strstr(err, "is F32, expected F64") != NULL, "%s", err);
    ck_assert_ptr_null(golden_require(&gf, "c/y", TFM_F32, 2, err, sizeof err));
    ck_assert_msg(strstr(err, "'c/y' is missing") != NULL, "%s", err);
    char **cases;
    size_t n = golden_cases(&gf, &cases);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(cases[0], "c");
    golden_free_cases(cases, n);
    golden_free(&gf);
    free(b);
}
END_TEST

START_TEST(test_write_read_roundtrip) {
    char dir[] = "/tmp/tfm-test-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    const char *suffixes[] = {"/t.safetensors", "/t.safetensors.gz"};
    for (int s = 0; s < 2; s++) {
        char path[256], err[TFM_ERR_LEN];
        snprintf(path, sizeof path, "%s%s", dir, suffixes[s]);
        Tensor ts[3];
        size_t sh_a[2] = {2, 3}, sh_b[1] = {4};
        ck_assert_int_eq(tensor_alloc(&ts[0], TFM_F32, 2, sh_a, err, sizeof err), 0);
        ck_assert_int_eq(tensor_alloc(&ts[1], TFM_BOOL, 1, sh_b, err, sizeof err), 0);
        ck_assert_int_eq(tensor_alloc(&ts[2], TFM_I64, 0, NULL, err, sizeof err), 0);
        memcpy(ts[0].data, SIX, sizeof SIX);
        tensor_bool(&ts[1])[2] = 1;
        tensor_i64(&ts[2])[0] = -5;
        const char *names[] = {"a", "mask", "n"}, *mk[] = {"k"}, *mv[] = {"v"};
        ck_assert_msg(golden_save(path, 3, names, ts, 1, mk, mv, err, sizeof err) == 0, "%s", err);
        GoldenFile gf;
        ck_assert_msg(golden_load(&gf, path, err, sizeof err) == 0, "%s", err);
        ck_assert_uint_eq(gf.n, 3);
        ck_assert_int_eq(memcmp(golden_find(&gf, "a")->data, SIX, sizeof SIX), 0);
        ck_assert_int_eq(tensor_bool(golden_find(&gf, "mask"))[2], 1);
        ck_assert_int_eq(golden_find(&gf, "n")->ndim, 0);
        ck_assert_int_eq(tensor_i64(golden_find(&gf, "n"))[0], -5);
        ck_assert_str_eq(golden_meta(&gf, "k"), "v");
        golden_free(&gf);
        for (int i = 0; i < 3; i++) tensor_free(&ts[i]);
        unlink(path);
    }
    /* A path that cannot be written: an error, and nothing left behind. */
    char err[TFM_ERR_LEN];
    Tensor t;
    size_t one = 1;
    ck_assert_int_eq(tensor_alloc(&t, TFM_F32, 1, &one, err, sizeof err), 0);
    const char *name = "x";
    ck_assert_int_eq(golden_save("/nonexistent-dir/x.safetensors", 1, &name, &t, 0, NULL, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "/nonexistent-dir/x.safetensors: ") == err, "%s", err);
    tensor_free(&t);
    rmdir(dir);
}
END_TEST

START_TEST(test_missing_and_empty_file) {
    GoldenFile gf;
    char err[TFM_ERR_LEN];
    ck_assert_int_eq(golden_load(&gf, "/nonexistent/none.safetensors.gz", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "cannot open") != NULL, "%s", err);
    char path[] = "/tmp/tfm-empty-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(golden_load(&gf, path, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "file is empty") != NULL, "%s", err);
    unlink(path);
}
END_TEST

START_TEST(test_bad_headers) {
    size_t len;
    unsigned char *b;
    b = make_st("{\"x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", SIX, sizeof SIX, &len);
    expect_refused(b, 5, "too short");
    b[0] = 0xff; /* header length now far past the end */
    expect_refused(b, len, "runs past the end of the file");
    for (int i = 0; i < 8; i++) b[i] = 0;
    b[7] = 0x80; /* 2^63 */
    expect_refused(b, len, "runs past the end of the file");
    free(b);

    b = make_st("{\"x\":{\"dtype\":\"F32\",", SIX, sizeof SIX, &len);
    expect_refused(b, len, "not valid JSON");
    free(b);
    b = make_st("[1,2,3]", NULL, 0, &len);
    expect_refused(b, len, "not a JSON object");
    free(b);
    b = make_st("{\"x\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]}}", SIX, 6, &len);
    expect_refused(b, len, "unsupported dtype 'F16'");
    free(b);
    b = make_st("{\"x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,24]}}", SIX, sizeof SIX, &len);
    expect_refused(b, len, "does not match its 24 data bytes");
    free(b);
    b = make_st("{\"x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,28]}}", SIX, sizeof SIX, &len);
    expect_refused(b, len, "run past the data section");
    free(b);
    b = make_st("{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", SIX, sizeof SIX, &len);
    expect_refused(b, len, "overlap");
    free(b);
    b = make_st("{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", SIX, sizeof SIX, &len);
    expect_refused(b, len, "not a non-negative integer");
    free(b);
    b = make_st("{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", SIX, sizeof SIX, &len);
    expect_refused(b, len, "5 dimensions");
    free(b);
    b = make_st("{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", SIX, sizeof SIX, &len);
    expect_refused(b, len, "does not match");
    free(b);
    b = make_st("{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", SIX, sizeof SIX, &len);
    expect_refused(b, len, "lacks dtype, shape or data_offsets");
    free(b);
    b = make_st("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", SIX, sizeof SIX, &len);
    expect_refused(b, len, "appears twice");
    free(b);
}
END_TEST

/* gzip-compresses `in` with zlib (a gzip wrapper, as the goldens have). */
static unsigned char *gz(const unsigned char *in, size_t inlen, size_t *outlen) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    ck_assert_int_eq(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)inlen) + 64;
    unsigned char *out = tu_malloc(cap);
    zs.next_in = (unsigned char *)(uintptr_t)in;
    zs.avail_in = (uInt)inlen;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    ck_assert_int_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *outlen = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

START_TEST(test_bad_gzip) {
    size_t len, zlen;
    unsigned char *b = make_st("{\"x\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}", SIX, sizeof SIX, &len);
    unsigned char *z = gz(b, len, &zlen);
    GoldenFile gf;
    char err[TFM_ERR_LEN];
    ck_assert_msg(golden_load_bytes(&gf, z, zlen, "ok.gz", err, sizeof err) == 0, "%s", err);
    golden_free(&gf);
    expect_refused(z, zlen / 2, "truncated gzip stream");
    expect_refused(z, 12, "truncated gzip stream");
    z[zlen - 6] ^= 0x01; /* inside the CRC32 trailer */
    expect_refused(z, zlen, "corrupt gzip stream");
    z[zlen - 6] ^= 0x01;
    z[zlen / 2] ^= 0x5a; /* inside the deflate data */
    expect_refused(z, zlen, "gzip stream");
    free(z);
    free(b);
}
END_TEST

START_TEST(test_compare_rules) {
    size_t sh[2] = {2, 3};
    float want[6] = {1, -2, 0, NAN, INFINITY, -INFINITY};
    Tensor w = tensor_view(TFM_F32, want, 2, sh);
    float same[6] = {1, -2, 0, NAN, INFINITY, -INFINITY};
    CompareResult r = compare_f32(same, 6, &w, 0, 0);
    ck_assert_msg(r.pass && r.max_abs == 0, "identical arrays (with NaN/inf) must pass at zero tolerance");

    float sign[6] = {1, -2, 0, NAN, -INFINITY, -INFINITY};
    r = compare_f32(sign, 6, &w, 1, 1);
    ck_assert_msg(!r.pass && r.worst == 4, "an infinity of the wrong sign must fail at any tolerance");
    float nan_where_number[6] = {NAN, -2, 0, NAN, INFINITY, -INFINITY};
    r = compare_f32(nan_where_number, 6, &w, 1, 1);
    ck_assert_msg(!r.pass && r.worst == 0, "a NaN where a number is expected must fail");

    /* atol + rtol*|want|: 1 + 1e-3 passes at rtol 1e-3 and fails just past it. */
    float close[6] = {1.0009f, -2, 0, NAN, INFINITY, -INFINITY};
    ck_assert(compare_f32(close, 6, &w, 0, 1e-3).pass);
    ck_assert(!compare_f32(close, 6, &w, 0, 1e-4).pass);
    float off[6] = {1, -2, 0.5f, NAN, INFINITY, -INFINITY};
    r = compare_f32(off, 6, &w, 1e-6, 1e-6);
    ck_assert_msg(!r.pass && r.n_bad == 1 && r.worst == 2, "worst element must be [0, 2]");
    ck_assert_double_eq_tol(r.max_abs, 0.5, 1e-12);
    ck_assert_double_eq(r.worst_got, 0.5);
    char idx[32];
    tfm_index_str(idx, sizeof idx, 2, sh, r.worst);
    ck_assert_str_eq(idx, "[0, 2]");
    /* Wrong size never passes. */
    ck_assert(!compare_f32(same, 5, &w, 1, 1).pass);
}
END_TEST

/* Every committed golden loads and says what made it. */
START_TEST(test_goldens_load) {
    size_t n;
    const TfmChapter *chs = tfm_chapters(&n);
    for (size_t i = 0; i < n; i++) {
        GoldenFile gf;
        const TfmChapter *ch;
        tu_load_chapter(&gf, &ch, chs[i].name);
        ck_assert_msg(gf.n > 0, "%s is empty", gf.path);
        ck_assert_msg(golden_meta(&gf, "torch_version") != NULL, "%s lacks torch_version", gf.path);
        ck_assert_msg(golden_meta(&gf, "seed") != NULL, "%s lacks seed", gf.path);
        golden_free(&gf);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("oracle");
    TCase *tc = tcase_create("reader, writer, compare");
    tcase_add_test(tc, test_reads_valid_file);
    tcase_add_test(tc, test_write_read_roundtrip);
    tcase_add_test(tc, test_missing_and_empty_file);
    tcase_add_test(tc, test_bad_headers);
    tcase_add_test(tc, test_bad_gzip);
    tcase_add_test(tc, test_compare_rules);
    tcase_add_test(tc, test_goldens_load);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
