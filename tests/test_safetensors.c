/* Checkpoint files: valid and malformed safetensors, shard indexes, and model loading errors that
 * name the file and the tensor. */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"
#include "model.h"
#include "safetensors.h"
#include "test.h"

static char tmpdir[256];

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/serpent_test_st_XXXXXX");
        if (!mkdtemp(tmpdir)) abort();
    }
    char *b = buf[k++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", tmpdir, name);
    return b;
}

/* Writes a safetensors file: header JSON, then `data_len` bytes of data. */
static void write_st(const char *path, const char *header, const void *data, size_t data_len) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    uint64_t n = strlen(header);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(n >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, n, f);
    if (data_len) fwrite(data, 1, data_len, f);
    fclose(f);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

TEST(safetensors_reads_tensors) {
    float data[6] = { 1, 2, 3, 4, 5, 6 };
    uint16_t bf[2] = { 0x3f80, 0xc000 }; /* 1.0, -2.0 */
    unsigned char buf[28];
    memcpy(buf, data, 24);
    memcpy(buf + 24, bf, 4);
    write_st(tmp("a.safetensors"),
             "{\"__metadata__\":{\"format\":\"pt\"},"
             "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
             "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[24,28]}}",
             buf, sizeof buf);
    srp_ckpt *ck = NULL;
    srp_err e = { 0 };
    REQUIRE(srp_ckpt_open_file(tmp("a.safetensors"), &ck, &e) == 0);
    CHECK(srp_ckpt_count(ck) == 2);
    const srp_tensor_info *w = srp_ckpt_find(ck, "w"), *b = srp_ckpt_find(ck, "b");
    REQUIRE(w && b);
    CHECK(w->dtype == SRP_F32 && w->ndim == 2 && w->shape[0] == 2 && w->shape[1] == 3);
    float got[6];
    srp_convert_to_f32(got, w->data, w->dtype, 6);
    CHECK(!memcmp(got, data, sizeof data));
    srp_convert_to_f32(got, b->data, b->dtype, 2);
    CHECK(got[0] == 1.0f && got[1] == -2.0f);
    CHECK(srp_ckpt_find(ck, "missing") == NULL);
    srp_ckpt_close(ck);
}

TEST(safetensors_rejects_malformed_files) {
    float data[4] = { 0 };
    static const struct {
        const char *header;
        size_t data_len;
        const char *want;
    } cases[] = {
        { "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "truncated" },
        { "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16, "16 bytes" },
        { "{\"w\":{\"dtype\":\"Q4\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, "Q4" },
        { "{\"w\":{\"dtype\":\"F32\",\"shape\":[4]}}", 16, "data_offsets" },
        { "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,4]}}", 16, "data_offsets" },
        { "{\"w\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", 16, "shape" },
        { "{\"w\": nonsense}", 16, "not valid JSON" },
        { "[]", 0, "not a JSON object" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_st(tmp("bad.safetensors"), cases[i].header, data, cases[i].data_len);
        srp_ckpt *ck = NULL;
        srp_err e = { 0 };
        int rc = srp_ckpt_open_file(tmp("bad.safetensors"), &ck, &e);
        CHECKF(rc == SRP_EFORMAT, "case %zu: rc %d", i, rc);
        CHECK_STR_CONTAINS(e.msg, "bad.safetensors");
        CHECK_STR_CONTAINS(e.msg, cases[i].want);
    }
    /* a header length larger than the file */
    FILE *f = fopen(tmp("short.safetensors"), "wb");
    fwrite("\xff\xff\xff\x00\x00\x00\x00\x00{}", 1, 10, f);
    fclose(f);
    srp_ckpt *ck = NULL;
    srp_err e = { 0 };
    CHECK(srp_ckpt_open_file(tmp("short.safetensors"), &ck, &e) == SRP_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "truncated");
    /* fewer than 8 bytes */
    write_text(tmp("tiny.safetensors"), "abc");
    CHECK(srp_ckpt_open_file(tmp("tiny.safetensors"), &ck, &e) == SRP_EFORMAT);
}

TEST(safetensors_sharded_index) {
    float a[2] = { 1, 2 }, b[2] = { 3, 4 };
    mkdir(tmp("sharded"), 0755);
    write_st(tmp("sharded/s1.safetensors"),
             "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", a, 8);
    write_st(tmp("sharded/s2.safetensors"),
             "{\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", b, 8);
    write_text(
        tmp("sharded/model.safetensors.index.json"),
        "{\"metadata\":{},\"weight_map\":{\"x\":\"s1.safetensors\",\"y\":\"s2.safetensors\"}}");
    srp_ckpt *ck = NULL;
    srp_err e = { 0 };
    REQUIRE(srp_ckpt_open(tmp("sharded"), &ck, &e) == 0);
    CHECK(srp_ckpt_find(ck, "x") && srp_ckpt_find(ck, "y"));
    srp_ckpt_close(ck);
    /* a tensor the index names but the shard lacks */
    write_text(tmp("sharded/model.safetensors.index.json"),
               "{\"weight_map\":{\"x\":\"s1.safetensors\",\"z\":\"s1.safetensors\"}}");
    CHECK(srp_ckpt_open(tmp("sharded"), &ck, &e) == SRP_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "tensor z");
    /* a shard that is missing */
    write_text(tmp("sharded/model.safetensors.index.json"),
               "{\"weight_map\":{\"x\":\"gone.safetensors\"}}");
    CHECK(srp_ckpt_open(tmp("sharded"), &ck, &e) == SRP_EIO);
    CHECK_STR_CONTAINS(e.msg, "gone.safetensors");
    /* a shard name that leaves the folder */
    write_text(tmp("sharded/model.safetensors.index.json"),
               "{\"weight_map\":{\"x\":\"../s1.safetensors\"}}");
    CHECK(srp_ckpt_open(tmp("sharded"), &ck, &e) == SRP_EFORMAT);
    /* the same tensor in two shards */
    write_st(tmp("sharded/s2.safetensors"),
             "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", b, 8);
    write_text(tmp("sharded/model.safetensors.index.json"),
               "{\"weight_map\":{\"x\":\"s1.safetensors\",\"y\":\"s2.safetensors\"}}");
    CHECK(srp_ckpt_open(tmp("sharded"), &ck, &e) == SRP_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "twice");
    /* no checkpoint at all */
    mkdir(tmp("empty"), 0755);
    CHECK(srp_ckpt_open(tmp("empty"), &ck, &e) == SRP_EIO);
    CHECK_STR_CONTAINS(e.msg, "model.safetensors");
}

/* Copies a fixture's config.json and writes a one-file checkpoint made of the fixture's tensors,
 * with one tensor renamed, reshaped or retyped, then expects srp_model_load to name it. */
static void check_model_error(const char *fixture, const char *victim, const char *change,
                              const char *want) {
    srp_ckpt *src = NULL;
    srp_err e = { 0 };
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", srp_test_path(fixture));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (srp_ckpt_open_file(path, &src, &e)) {
        CHECKF(0, "%s", e.msg);
        return;
    }
    /* header */
    size_t cap = 1 << 20, hl = 0, off = 0;
    char *h = malloc(cap);
    hl += (size_t)snprintf(h + hl, cap - hl, "{");
    for (int i = 0; i < srp_ckpt_count(src); i++) {
        const srp_tensor_info *t = srp_ckpt_tensor(src, i);
        size_t bytes = (size_t)t->numel * srp_dtype_size(t->dtype);
        const char *name = t->name, *dtype = t->dtype_name;
        char shape[128];
        snprintf(shape, sizeof shape, "[%lld", (long long)t->shape[0]);
        for (int d = 1; d < t->ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), ",%lld",
                     (long long)t->shape[d]);
        strcat(shape, "]");
        if (!strcmp(name, victim)) {
            if (!strcmp(change, "rename")) name = "renamed.tensor";
            if (!strcmp(change, "reshape")) {
                /* same byte count, other shape */
                snprintf(shape, sizeof shape, "[%lld]", (long long)t->numel);
                if (t->ndim == 1)
                    snprintf(shape, sizeof shape, "[1,%lld]", (long long)t->numel / 2);
                if (t->ndim == 1) bytes /= 2;
            }
            if (!strcmp(change, "retype")) {
                dtype = "I16"; /* same width as BF16 */
            }
        }
        hl += (size_t)snprintf(
            h + hl, cap - hl, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
            i ? "," : "", name, dtype, shape, off, off + bytes);
        off += bytes;
    }
    snprintf(h + hl, cap - hl, "}");
    unsigned char *data = malloc(off ? off : 1);
    off = 0;
    for (int i = 0; i < srp_ckpt_count(src); i++) {
        const srp_tensor_info *t = srp_ckpt_tensor(src, i);
        size_t bytes = (size_t)t->numel * srp_dtype_size(t->dtype);
        if (!strcmp(t->name, victim) && !strcmp(change, "reshape") && t->ndim == 1) bytes /= 2;
        memcpy(data + off, t->data, bytes);
        off += bytes;
    }
    mkdir(tmp("model"), 0755);
    char out[600];
    snprintf(out, sizeof out, "%s/model.safetensors", tmp("model"));
    write_st(out, h, data, off);
    /* config.json */
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *fi = fopen(path, "rb");
    char cfg[65536];
    size_t n = fread(cfg, 1, sizeof cfg - 1, fi);
    cfg[n] = 0;
    fclose(fi);
    snprintf(path, sizeof path, "%s/config.json", tmp("model"));
    write_text(path, cfg);
    srp_backend *be = NULL;
    REQUIRE(srp_backend_cpu_create(1, &be, &e) == 0);
    srp_model m;
    int rc = srp_model_load(&m, tmp("model"), be, NULL, NULL, &e);
    CHECKF(rc < 0, "%s %s: loaded", change, victim);
    CHECK_STR_CONTAINS(e.msg, want);
    be->destroy(be);
    srp_ckpt_close(src);
    free(h);
    free(data);
}

TEST(model_errors_name_the_tensor) {
    const char *fx = "fixtures/nemotron_h_pattern";
    check_model_error(fx, "backbone.layers.2.mixer.in_proj.weight", "rename",
                      "missing tensor backbone.layers.2.mixer.in_proj.weight");
    check_model_error(fx, "backbone.layers.3.mixer.k_proj.weight", "reshape",
                      "backbone.layers.3.mixer.k_proj.weight has shape");
    check_model_error(fx, "backbone.layers.0.mixer.out_proj.weight", "retype", "dtype I16");
    check_model_error(fx, "backbone.layers.5.mixer.A_log", "reshape", "A_log has shape");
    check_model_error(fx, "lm_head.weight", "rename", "lm_head.weight");
    check_model_error(fx, "backbone.norm_f.weight", "rename", "norm");
}

TEST(model_loads_every_fixture) {
    static const char *const fixtures[] = { "fixtures/nemotron_h_pattern",
                                            "fixtures/nemotron_h_list", "fixtures/mamba2_tied",
                                            "fixtures/mamba2_untied" };
    srp_backend *be = NULL;
    srp_err e = { 0 };
    REQUIRE(srp_backend_cpu_create(1, &be, &e) == 0);
    for (int i = 0; i < 4; i++) {
        srp_model m;
        int rc = srp_model_load(&m, srp_test_path(fixtures[i]), be, NULL, NULL, &e);
        CHECKF(rc == 0, "%s: %s", fixtures[i], e.msg);
        if (rc) continue;
        CHECK(m.lm_head_is_embed == (i == 2)); /* only mamba2_tied ties */
        srp_model_free(&m);
    }
    be->destroy(be);
}
