/* config.json reading: Python's non-finite numbers, both key spellings, and clear errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "json_file.h"
#include "test.h"

static int parse(srp_config *c, const char *json, srp_err *e) {
    return srp_config_parse(c, json, strlen(json), "config.json", e);
}

TEST(json_nonfinite_numbers) {
    const char *text = "{\"a\": Infinity, \"b\": -Infinity, \"c\": NaN, \"d\": [0.0, Infinity],"
                       " \"e\": {\"__float__\": \"Infinity\"}, \"s\": \"Infinity NaN\"}";
    srp_err e = { 0 };
    cJSON *root = srp_json_parse(text, strlen(text), "t.json", &e);
    REQUIRE(root != NULL);
    double v;
    CHECK(srp_json_number(cJSON_GetObjectItem(root, "a"), &v) == 0 && isinf(v) && v > 0);
    CHECK(srp_json_number(cJSON_GetObjectItem(root, "b"), &v) == 0 && isinf(v) && v < 0);
    CHECK(srp_json_number(cJSON_GetObjectItem(root, "c"), &v) == 0 && isnan(v));
    CHECK(srp_json_number(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "d"), 1), &v) == 0 &&
          isinf(v));
    CHECK(srp_json_number(cJSON_GetObjectItem(root, "e"), &v) == 0 && isinf(v));
    /* text inside strings is left alone */
    CHECK(!strcmp(cJSON_GetObjectItem(root, "s")->valuestring, "Infinity NaN"));
    cJSON_Delete(root);
}

TEST(json_errors_name_file_and_line) {
    srp_err e = { 0 };
    const char *text = "{\n  \"a\": 1,\n  \"b\": ]\n}";
    CHECK(srp_json_parse(text, strlen(text), "cfg.json", &e) == NULL);
    CHECK(e.code == SRP_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "cfg.json");
    CHECK_STR_CONTAINS(e.msg, "line 3");
    CHECK(srp_json_load_file("/nonexistent/config.json", &e) == NULL);
    CHECK(e.code == SRP_EIO);
    CHECK_STR_CONTAINS(e.msg, "/nonexistent/config.json");
}

TEST(config_nemotron_published_spelling) {
    srp_config c;
    srp_err e = { 0 };
    REQUIRE(srp_config_load(&c, srp_test_path("fixtures/nemotron_h_pattern"), &e) == 0);
    CHECK(c.arch == SRP_ARCH_NEMOTRON_H);
    CHECK(c.n_layers == 10 && c.n_blocks == 10);
    const char *pattern = "M-M*-MM-*M";
    for (int i = 0; i < 10; i++) {
        srp_mixer_kind want = pattern[i] == 'M'   ? SRP_MIXER_MAMBA2
                              : pattern[i] == '*' ? SRP_MIXER_ATTENTION
                                                  : SRP_MIXER_MLP;
        CHECKF(c.blocks[i].mixer[0] == want && c.blocks[i].n_mixers == 1, "layer %d", i);
    }
    CHECK(c.mamba2.groups == 2 && c.mamba2.conv_kernel == 4 &&
          c.mamba2.chunk_size == 16); /* mamba_* keys */
    CHECK(c.mamba2.heads == 8 && c.mamba2.head_dim == 16 && c.mamba2.d_inner == 128);
    CHECK(c.mamba2.conv_dim == 128 + 2 * 2 * 16);
    CHECK(c.mamba2.d_in_proj == 2 * 128 + 2 * 2 * 16 + 8);
    CHECK(c.attn.heads == 4 && c.attn.kv_heads == 2 && c.attn.head_dim == 16);
    CHECK(c.mlp.act == SRP_ACT_RELU2 && c.mlp.hidden == 96 && !c.mlp.gated);
    CHECK(c.mamba2.norm_group == 64);
    CHECK(fabsf(c.mamba2.dt_min - 0.001f) < 1e-9f && isinf(c.mamba2.dt_max));
    CHECK(c.n_eos == 1 && c.eos_ids[0] == 2 && c.bos_id == 1);
}

TEST(config_nemotron_list_spelling) {
    srp_config c;
    srp_err e = { 0 };
    REQUIRE(srp_config_load(&c, srp_test_path("fixtures/nemotron_h_list"), &e) == 0);
    const char *pattern = "*M-M-M*M";
    CHECK(c.n_layers == 8);
    for (int i = 0; i < 8; i++)
        CHECK(c.blocks[i].mixer[0] == (pattern[i] == 'M'   ? SRP_MIXER_MAMBA2
                                       : pattern[i] == '*' ? SRP_MIXER_ATTENTION
                                                           : SRP_MIXER_MLP));
    CHECK(c.mlp.act == SRP_ACT_GELU && c.attn.kv_heads == 1 && c.mamba2.conv_kernel == 3);
    /* the newest transformers names */
    const char *json = "{\"architectures\":[\"NemotronHForCausalLM\"],\"hidden_size\":8,"
                       "\"vocab_size\":10,\"layers_block_type\":[\"linear_attention\","
                       "\"full_attention\",\"mlp\"],\"mamba_num_heads\":2,\"mamba_head_dim\":4,"
                       "\"n_groups\":1,\"num_attention_heads\":2,\"head_dim\":4}";
    REQUIRE(parse(&c, json, &e) == 0);
    CHECK(c.n_layers == 3 && c.blocks[0].mixer[0] == SRP_MIXER_MAMBA2 &&
          c.blocks[1].mixer[0] == SRP_MIXER_ATTENTION && c.blocks[2].mixer[0] == SRP_MIXER_MLP);
}

TEST(config_mamba2) {
    srp_config c;
    srp_err e = { 0 };
    REQUIRE(srp_config_load(&c, srp_test_path("fixtures/mamba2_tied"), &e) == 0);
    CHECK(c.arch == SRP_ARCH_MAMBA2 && c.n_layers == 4 && c.tie_embeddings);
    CHECK(c.mamba2.heads == 8 && c.mamba2.groups == 2 && c.mamba2.state == 16);
    CHECK(c.mamba2.norm_group == c.mamba2.d_inner); /* transformers' Mamba2 norm has no groups */
    CHECK(c.mamba2.dt_min == 0.0f && isinf(c.mamba2.dt_max)); /* {"__float__": "Infinity"} */
    /* Megatron's pipeline marker is not a layer */
    const char *json = "{\"model_type\":\"nemotron_h\",\"hybrid_override_pattern\":\"M-|M*\","
                       "\"hidden_size\":8,\"mamba_num_heads\":2,\"mamba_head_dim\":4,"
                       "\"n_groups\":1,\"num_attention_heads\":2}";
    REQUIRE(parse(&c, json, &e) == 0);
    CHECK(c.n_layers == 4 && c.attn.head_dim == 4);
}

TEST(config_errors_name_the_field) {
    srp_config c;
    srp_err e = { 0 };
    static const struct {
        const char *json, *want;
        int code;
    } cases[] = {
        { "{\"architectures\":[\"GPT2LMHeadModel\"]}", "GPT2LMHeadModel", SRP_EUNSUPPORTED },
        { "{\"hidden_size\":8}", "architectures", SRP_EFORMAT },
        { "{\"model_type\":\"mamba2\",\"hidden_size\":\"big\"}", "hidden_size", SRP_EFORMAT },
        { "{\"model_type\":\"mamba2\",\"hidden_size\":-4}", "hidden_size", SRP_EFORMAT },
        { "{\"model_type\":\"mamba2\",\"num_hidden_layers\":2.5}", "num_hidden_layers",
          SRP_EFORMAT },
        { "{\"model_type\":\"mamba2\",\"tie_word_embeddings\":3}", "tie_word_embeddings",
          SRP_EFORMAT },
        { "{\"model_type\":\"mamba2\",\"time_step_limit\":[0]}", "time_step_limit", SRP_EFORMAT },
        { "{\"model_type\":\"mamba2\",\"hidden_size\":64,\"num_heads\":3,\"head_dim\":16}",
          "expand", SRP_EFORMAT },
        { "{\"model_type\":\"nemotron_h\",\"hybrid_override_pattern\":\"M-E\","
          "\"n_routed_experts\":\"many\"}",
          "n_routed_experts", SRP_EFORMAT },
        { "{\"model_type\":\"nemotron_h\",\"hybrid_override_pattern\":\"M-X\"}", "unknown type",
          SRP_EFORMAT },
        { "{\"model_type\":\"nemotron_h\"}", "hybrid_override_pattern", SRP_EFORMAT },
        { "{\"model_type\":\"nemotron_h\",\"hybrid_override_pattern\":\"M\","
          "\"mlp_hidden_act\":\"tanh\"}",
          "mlp_hidden_act", SRP_EUNSUPPORTED },
        { "{\"model_type\":\"nemotron_h\",\"hybrid_override_pattern\":\"M*\","
          "\"num_attention_heads\":6,\"num_key_value_heads\":4}",
          "num_key_value_heads", SRP_EFORMAT },
        { "[1, 2]", "JSON object", SRP_EFORMAT },
        { "{\"model_type\": \"mamba2\",", "not valid JSON", SRP_EFORMAT },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&e, 0, sizeof e);
        int rc = parse(&c, cases[i].json, &e);
        CHECKF(rc == cases[i].code, "case %zu: rc %d (%s)", i, rc, e.msg);
        CHECK_STR_CONTAINS(e.msg, cases[i].want);
        CHECK_STR_CONTAINS(e.msg, "config.json");
    }
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

/* Stop ids are config.json's and generation_config.json's together (serpent-tiny: </s> = 2 in
 * config.json, [2, 4] with <|im_end|> in generation_config.json). */
TEST(config_eos_joins_generation_config) {
    srp_config c;
    srp_err e = { 0 };
    REQUIRE(srp_config_load(&c, srp_test_path("../models/serpent-tiny"), &e) == 0);
    CHECK(c.n_eos == 2 && c.eos_ids[0] == 2 && c.eos_ids[1] == 4);
    char dir[] = "/tmp/srp_cfg_XXXXXX", cfg[64], gen[64];
    REQUIRE(mkdtemp(dir));
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(gen, sizeof gen, "%s/generation_config.json", dir);
    REQUIRE(symlink(srp_test_path("fixtures/nemotron_h_pattern/config.json"), cfg) == 0);
    REQUIRE(write_file(gen, "{\"eos_token_id\": 7}") == 0);
    REQUIRE(srp_config_load(&c, dir, &e) == 0);
    CHECK(c.n_eos == 2 && c.eos_ids[0] == 2 && c.eos_ids[1] == 7);
    static const char *const bad[] = { "{\"eos_token_id\": \"7\"}", "{\"eos_token_id\": [1, -3]}",
                                       "{\"eos_token_id\": 1e9}", "{\"eos_token_id\": [1.5]}" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        REQUIRE(write_file(gen, bad[i]) == 0);
        CHECKF(srp_config_load(&c, dir, &e) == SRP_EFORMAT, "%s", bad[i]);
        CHECK_STR_CONTAINS(e.msg, "generation_config.json");
        CHECK_STR_CONTAINS(e.msg, "eos_token_id");
    }
    REQUIRE(write_file(gen, "{\"temperature\": 0.6}") == 0);
    REQUIRE(srp_config_load(&c, dir, &e) == 0);
    CHECK(c.n_eos == 1 && c.eos_ids[0] == 2);
    unlink(gen);
    unlink(cfg);
    rmdir(dir);
}
