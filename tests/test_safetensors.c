#include <string.h>
/* Safetensors files and checkpoints: valid single and sharded files are read zero-copy; every
 * kind of damage is refused with its own code and a message naming the problem; allocation
 * failure at any point is handled without a crash or a leak. */
#include "base/alloc.h"
#include "base/safetensors.h"
#include "st_writer.h"
#include "test_util.h"

static char g_dir[512];

static const char *tmp(const char *name) {
    static char buf[8][600];
    static int k = 0;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", g_dir, name);
    return b;
}

/* Expects opening path to fail with code and a message containing needle. */
static void expect_fail(const char *path, nvl_status code, const char *needle) {
    nvl_err err = {0};
    nvl_checkpoint *ck = NULL;
    nvl_status st = nvl_checkpoint_open(&ck, path, &err);
    TEST_CHECK(st == code, "%s: got %s (%s), expected %s", path, nvl_status_name(st), err.msg,
               nvl_status_name(code));
    TEST_CHECK(ck == NULL, "object returned on failure");
    TEST_CHECK(strstr(err.msg, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", path, err.msg,
               needle);
}

static void write_valid(const char *path, const char *prefix) {
    st_writer w;
    st_writer_init(&w);
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[4] = {0x3f80, 0x4000, 0x4040, 0x4080}; /* bf16 1 2 3 4 */
    int64_t c[1] = {42};
    char n1[64], n2[64], n3[64];
    snprintf(n1, sizeof n1, "%sa", prefix);
    snprintf(n2, sizeof n2, "%sb", prefix);
    snprintf(n3, sizeof n3, "%sidx", prefix);
    st_writer_add(&w, n1, "F32", 2, (int64_t[]){2, 3}, a, sizeof a);
    st_writer_add(&w, n2, "BF16", 1, (int64_t[]){4}, b, sizeof b);
    st_writer_add(&w, n3, "I64", 0, NULL, c, sizeof c);
    st_writer_save(&w, path, "{\"format\":\"pt\"}");
    st_writer_free(&w);
}

static void test_valid_single(void) {
    write_valid(tmp("ok.safetensors"), "");
    nvl_err err = {0};
    nvl_safetensors *f = NULL;
    TEST_EQ_INT(nvl_safetensors_open(&f, tmp("ok.safetensors"), &err), NVL_OK);
    if (!f) return;
    TEST_EQ_INT(nvl_safetensors_count(f), 3);
    TEST_EQ_STR(nvl_safetensors_metadata(f, "format"), "pt");
    const nvl_st_entry *a = nvl_safetensors_find(f, "a");
    TEST_CHECK(a && a->dtype == NVL_DTYPE_F32 && a->n_dims == 2 && a->shape[1] == 3, "entry a");
    nvl_tensor t = nvl_st_entry_tensor(a);
    TEST_CHECK(nvl_tensor_get_f32(&t, 5) == 6.0f, "a[5]");
    const nvl_st_entry *b = nvl_safetensors_find(f, "b");
    nvl_tensor tb = nvl_st_entry_tensor(b);
    TEST_CHECK(nvl_tensor_get_f32(&tb, 3) == 4.0f, "bf16 b[3]");
    const nvl_st_entry *c = nvl_safetensors_find(f, "idx");
    TEST_CHECK(c && c->n_dims == 0 && c->end - c->begin == 8, "scalar entry");
    TEST_CHECK(nvl_safetensors_find(f, "nope") == NULL, "find missing");
    nvl_safetensors_close(f);

    /* through the checkpoint API: a directory holding model.safetensors */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/single", g_dir);
    mkdir(dir, 0755);
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_valid(p, "");
    nvl_checkpoint *ck = NULL;
    TEST_EQ_INT(nvl_checkpoint_open(&ck, dir, &err), NVL_OK);
    if (!ck) return;
    TEST_EQ_INT(nvl_checkpoint_count(ck), 3);
    TEST_EQ_INT(nvl_checkpoint_n_shards(ck), 1);
    TEST_EQ_INT(nvl_checkpoint_data_bytes(ck), 24 + 8 + 8);
    nvl_tensor ta;
    TEST_EQ_INT(nvl_checkpoint_get(ck, "a", &ta, &err), NVL_OK);
    TEST_CHECK(nvl_tensor_get_f32(&ta, 0) == 1.0f, "checkpoint view");
    TEST_EQ_INT(nvl_checkpoint_get(ck, "zz", &ta, &err), NVL_ERR_NOT_FOUND);
    TEST_CONTAINS(err.msg, "missing tensor 'zz'");
    nvl_checkpoint_close(ck);
}

static void make_sharded(const char *dir, const char *index_json) {
    mkdir(dir, 0755);
    char p[700];
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    write_valid(p, "s1.");
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    write_valid(p, "s2.");
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    test_write_file(p, index_json, strlen(index_json));
}

#define SHARD1 "\"model-00001-of-00002.safetensors\""
#define SHARD2 "\"model-00002-of-00002.safetensors\""

static void test_sharded(void) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/sharded", g_dir);
    make_sharded(dir, "{\"metadata\":{\"total_size\":80},\"weight_map\":{"
                      "\"s1.a\":" SHARD1 ",\"s1.b\":" SHARD1 ",\"s1.idx\":" SHARD1 ","
                      "\"s2.a\":" SHARD2 ",\"s2.b\":" SHARD2 ",\"s2.idx\":" SHARD2 "}}");
    nvl_err err = {0};
    nvl_checkpoint *ck = NULL;
    TEST_EQ_INT(nvl_checkpoint_open(&ck, dir, &err), NVL_OK);
    if (ck) {
        TEST_EQ_INT(nvl_checkpoint_n_shards(ck), 2);
        TEST_EQ_INT(nvl_checkpoint_count(ck), 6);
        const nvl_st_entry *e = nvl_checkpoint_find(ck, "s2.b");
        TEST_CHECK(e && e->shard == 1, "s2.b in shard 1");
        nvl_checkpoint_close(ck);
    }
    /* missing shard */
    snprintf(dir, sizeof dir, "%s/missing_shard", g_dir);
    make_sharded(dir, "{\"weight_map\":{\"s1.a\":" SHARD1
                      ",\"s3.a\":\"model-00003-of-00002.safetensors\"}}");
    expect_fail(dir, NVL_ERR_NOT_FOUND, "shard 'model-00003-of-00002.safetensors' named in the index");
    /* tensor listed for a shard that does not hold it */
    snprintf(dir, sizeof dir, "%s/wrong_shard", g_dir);
    make_sharded(dir, "{\"weight_map\":{\"s1.b\":" SHARD1 ",\"s1.a\":" SHARD2 ",\"s2.a\":" SHARD2 "}}");
    expect_fail(dir, NVL_ERR_FORMAT, "'s1.a' is listed for shard 'model-00002-of-00002.safetensors' but found in");
    /* listed for a shard that is the only one named, and not in it */
    snprintf(dir, sizeof dir, "%s/not_in_shard", g_dir);
    make_sharded(dir, "{\"weight_map\":{\"s1.a\":" SHARD2 ",\"s2.a\":" SHARD2 "}}");
    expect_fail(dir, NVL_ERR_NOT_FOUND, "'s1.a' is listed for shard 'model-00002-of-00002.safetensors' but is not in it");
    /* index names a tensor no shard has */
    snprintf(dir, sizeof dir, "%s/ghost", g_dir);
    make_sharded(dir, "{\"weight_map\":{\"s1.a\":" SHARD1 ",\"ghost\":" SHARD2 "}}");
    expect_fail(dir, NVL_ERR_NOT_FOUND, "tensor 'ghost' is listed");
    /* the same name in two shards */
    snprintf(dir, sizeof dir, "%s/dup_across", g_dir);
    mkdir(dir, 0755);
    char p[700];
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    write_valid(p, "x.");
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    write_valid(p, "x.");
    const char *ix = "{\"weight_map\":{\"x.a\":" SHARD1 ",\"x.b\":" SHARD2 "}}";
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    test_write_file(p, ix, strlen(ix));
    expect_fail(dir, NVL_ERR_FORMAT, "appears in both");
    /* path escape in the index */
    snprintf(dir, sizeof dir, "%s/escape", g_dir);
    make_sharded(dir, "{\"weight_map\":{\"s1.a\":\"../ok.safetensors\"}}");
    expect_fail(dir, NVL_ERR_FORMAT, "not a plain file name");
    /* index without weight_map, index not JSON */
    snprintf(dir, sizeof dir, "%s/no_map", g_dir);
    make_sharded(dir, "{\"metadata\":{}}");
    expect_fail(dir, NVL_ERR_FORMAT, "no 'weight_map' object");
    snprintf(dir, sizeof dir, "%s/bad_index", g_dir);
    make_sharded(dir, "{\"weight_map\": {");
    expect_fail(dir, NVL_ERR_FORMAT, "invalid JSON");
    /* directory with two files and no index */
    snprintf(dir, sizeof dir, "%s/two_no_index", g_dir);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/a.safetensors", dir);
    write_valid(p, "");
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    write_valid(p, "");
    expect_fail(dir, NVL_ERR_FORMAT, "no model.safetensors.index.json");
    snprintf(dir, sizeof dir, "%s/empty_dir", g_dir);
    mkdir(dir, 0755);
    expect_fail(dir, NVL_ERR_NOT_FOUND, "no *.safetensors file");
}

static void test_damaged(void) {
    unsigned char data[64] = {0};
    /* truncated: shorter than the 8-byte length */
    test_write_file(tmp("short.safetensors"), "\x10\x00\x00", 3);
    expect_fail(tmp("short.safetensors"), NVL_ERR_TRUNCATED, "too short for the 8-byte header length");
    /* header length past EOF */
    st_write_raw(tmp("hlen_eof.safetensors"), "{}", 4096, NULL, 0);
    expect_fail(tmp("hlen_eof.safetensors"), NVL_ERR_TRUNCATED, "runs past the end of the");
    /* header length huge (above the cap) */
    st_write_raw(tmp("hlen_huge.safetensors"), "{}", (long long)1 << 40, NULL, 0);
    expect_fail(tmp("hlen_huge.safetensors"), NVL_ERR_LIMIT, "above the cap");
    /* offsets out of range */
    st_write_raw(tmp("oob.safetensors"),
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[48,64]}}", -1, data, 16);
    expect_fail(tmp("oob.safetensors"), NVL_ERR_TRUNCATED, "run past the data section of 16 bytes");
    /* file truncated inside the data section: same rule */
    st_write_raw(tmp("trunc_data.safetensors"),
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", -1, data, 9);
    expect_fail(tmp("trunc_data.safetensors"), NVL_ERR_TRUNCATED, "tensor 'a'");
    /* overlapping ranges */
    st_write_raw(tmp("overlap.safetensors"),
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                 -1, data, 24);
    expect_fail(tmp("overlap.safetensors"), NVL_ERR_FORMAT, "overlap");
    /* a header that is not UTF-8, a tensor without a name (a review: both were taken) */
    st_write_raw(tmp("utf8.safetensors"), "{\"a\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", -1,
                 data, 4);
    expect_fail(tmp("utf8.safetensors"), NVL_ERR_FORMAT, "header is not valid UTF-8 (byte 3 of its");
    st_write_raw(tmp("utf8s.safetensors"), "{\"a\xed\xa0\x80\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", -1,
                 data, 4); /* (a surrogate) */
    expect_fail(tmp("utf8s.safetensors"), NVL_ERR_FORMAT, "header is not valid UTF-8 (byte 3 of its");
    st_write_raw(tmp("utf8ok.safetensors"), "{\"caf\xc3\xa9 \xf0\x9f\x98\x80\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                 -1, data, 4);
    {
        nvl_safetensors *ok = NULL;
        nvl_err e2 = {0};
        TEST_EQ_INT(nvl_safetensors_open(&ok, tmp("utf8ok.safetensors"), &e2), NVL_OK);
        nvl_safetensors_close(ok);
    }
    st_write_raw(tmp("noname.safetensors"), "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", -1, data, 4);
    expect_fail(tmp("noname.safetensors"), NVL_ERR_FORMAT, "a tensor has an empty name");
    /* ... with an empty tensor between them in begin order (it hid the overlap: a review) */
    st_write_raw(tmp("overlap0.safetensors"),
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                 "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
                 -1, data, 24);
    expect_fail(tmp("overlap0.safetensors"), NVL_ERR_FORMAT, "tensors 'a' [0, 16) and 'b' [8, 24) overlap");
    /* ... and a tensor inside a longer one, past its neighbour that does not overlap it */
    st_write_raw(tmp("overlap2.safetensors"),
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                 "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]}}",
                 -1, data, 24);
    expect_fail(tmp("overlap2.safetensors"), NVL_ERR_FORMAT, "tensors 'a' [0, 24) and 'b' [4, 8) overlap");
    /* numel mismatch */
    st_write_raw(tmp("numel.safetensors"),
                 "{\"a\":{\"dtype\":\"BF16\",\"shape\":[3,4],\"data_offsets\":[0,16]}}", -1, data,
                 16);
    expect_fail(tmp("numel.safetensors"), NVL_ERR_FORMAT, "spans 16 bytes, expected numel x 2 = 24");
    /* unknown dtype */
    st_write_raw(tmp("dtype.safetensors"),
                 "{\"a\":{\"dtype\":\"F4_E2M1\",\"shape\":[4],\"data_offsets\":[0,2]}}", -1, data,
                 2);
    expect_fail(tmp("dtype.safetensors"), NVL_ERR_UNSUPPORTED, "unknown dtype 'F4_E2M1'");
    /* bad JSON */
    st_write_raw(tmp("json.safetensors"), "{\"a\":{\"dtype\":\"F32\",", -1, data, 16);
    expect_fail(tmp("json.safetensors"), NVL_ERR_FORMAT, "header is not valid JSON");
    /* duplicate names */
    st_write_raw(tmp("dup.safetensors"),
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 -1, data, 8);
    expect_fail(tmp("dup.safetensors"), NVL_ERR_FORMAT, "tensor name 'a' appears twice");
    /* not an object / bad fields */
    st_write_raw(tmp("array.safetensors"), "[1,2,3]", -1, data, 0);
    expect_fail(tmp("array.safetensors"), NVL_ERR_FORMAT, "header is not a JSON object");
    st_write_raw(tmp("negshape.safetensors"),
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", -1, data, 4);
    expect_fail(tmp("negshape.safetensors"), NVL_ERR_FORMAT, "shape[0] is not a non-negative integer");
    st_write_raw(tmp("nooffs.safetensors"), "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", -1, data, 4);
    expect_fail(tmp("nooffs.safetensors"), NVL_ERR_FORMAT, "needs 'data_offsets'");
    st_write_raw(tmp("backwards.safetensors"),
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", -1, data, 4);
    expect_fail(tmp("backwards.safetensors"), NVL_ERR_FORMAT, "end before begin");
    st_write_raw(tmp("meta.safetensors"), "{\"__metadata__\":{\"k\":1}}", -1, data, 0);
    expect_fail(tmp("meta.safetensors"), NVL_ERR_FORMAT, "__metadata__ value 'k' is not a string");
    st_write_raw(tmp("overflow.safetensors"),
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                 "\"data_offsets\":[0,4]}}",
                 -1, data, 4);
    expect_fail(tmp("overflow.safetensors"), NVL_ERR_FORMAT, "overflows 64 bits");
    expect_fail(tmp("does-not-exist.safetensors"), NVL_ERR_NOT_FOUND, "does-not-exist.safetensors");

    /* from memory, the same rules */
    nvl_err err = {0};
    nvl_safetensors *f = NULL;
    TEST_EQ_INT(nvl_safetensors_open_memory(&f, data, 5, "buf", &err), NVL_ERR_TRUNCATED);
    TEST_CONTAINS(err.msg, "buf: file has 5 bytes");
    /* zero-size tensors may share an offset without overlapping */
    st_write_raw(tmp("empty_tensors.safetensors"),
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                 -1, data, 4);
    nvl_checkpoint *ck = NULL;
    TEST_EQ_INT(nvl_checkpoint_open(&ck, tmp("empty_tensors.safetensors"), &err), NVL_OK);
    nvl_checkpoint_close(ck);
}

/* Every allocation point fails once: the open either succeeds or returns NVL_ERR_NOMEM, and
 * nothing leaks. */
static void test_alloc_failures(void) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/sharded", g_dir);
    int64_t live0 = nvl_alloc_count();
    int n_nomem = 0, n_ok = 0;
    for (int k = 0; k < 200; k++) {
        nvl_err err = {0};
        nvl_checkpoint *ck = NULL;
        nvl_alloc_fail_after(k);
        nvl_status st = nvl_checkpoint_open(&ck, dir, &err);
        nvl_alloc_fail_after(-1);
        if (st == NVL_OK) {
            n_ok++;
            nvl_checkpoint_close(ck);
            break;
        }
        TEST_CHECK(st == NVL_ERR_NOMEM, "fail_after %d: %s (%s)", k, nvl_status_name(st), err.msg);
        n_nomem++;
    }
    TEST_CHECK(n_ok == 1 && n_nomem > 10, "ok %d, nomem %d", n_ok, n_nomem);
    TEST_EQ_INT(nvl_alloc_count(), live0);
}

/* fuzz_safetensors: a header with "__metadata__" twice leaked the first parse (LeakSanitizer); it is
 * refused, and no block stays allocated */
static void test_duplicate_metadata(void) {
    static const char hdr[] = "{ \"__metadata__\": {\"format\": \"pt\"}, \"__metadata__\": {\"format\": \"pT\"}}";
    uint8_t buf[8 + sizeof hdr];
    const uint64_t n = sizeof hdr - 1;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, hdr, n);
    const int64_t live = nvl_alloc_count();
    nvl_safetensors *f = NULL;
    nvl_err err = {0};
    TEST_EQ_INT(nvl_safetensors_open_memory(&f, buf, 8 + n, "dup", &err), NVL_ERR_FORMAT);
    TEST_CONTAINS(err.msg, "__metadata__ appears more than once");
    TEST_CHECK(nvl_alloc_count() == live, "duplicate __metadata__: %lld blocks left allocated",
               (long long)(nvl_alloc_count() - live));
}

int main(void) {
    test_duplicate_metadata();
    snprintf(g_dir, sizeof g_dir, "%s", test_tmpdir());
    test_valid_single();
    test_sharded();
    test_damaged();
    test_alloc_failures();
    return test_report();
}
