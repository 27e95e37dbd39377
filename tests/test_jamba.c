/* Jamba (JambaForCausalLM): how config.json becomes blocks (the attention and expert periods,
 * the Mamba-1 keys, JambaConfig's defaults, errors that name the field), and the experts in
 * both of their checkpoint layouts: one module per expert (experts.N.gate_proj / up_proj /
 * down_proj, as the Hub's checkpoints and transformers' save_pretrained write them) and stacked
 * (experts.gate_up_proj [E, 2I, H], experts.down_proj [E, H, I], as transformers 5 holds them).
 * The stacked checkpoint is the jamba_moe fixture rewritten, so its logits must be the
 * fixture's. (What the blocks compute is tests/test_fixtures.c's business.) */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "engine.h"
#include "json_file.h"
#include "safetensors.h"
#include "test.h"

static int parse(srp_config *c, const char *json, srp_err *e) {
    return srp_config_parse(c, json, strlen(json), "config.json", e);
}

TEST(config_jamba_layers_experts_and_keys) {
    srp_config c;
    srp_err e = { 0 };
    REQUIRE(parse(&c,
                  "{\"architectures\": [\"JambaForCausalLM\"], \"vocab_size\": 300, "
                  "\"hidden_size\": 40, \"intermediate_size\": 24, \"num_hidden_layers\": 6, "
                  "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
                  "\"attn_layer_period\": 3, \"attn_layer_offset\": 1, "
                  "\"expert_layer_period\": 2, \"expert_layer_offset\": 1, "
                  "\"num_experts\": 4, \"num_experts_per_tok\": 2, \"mamba_d_state\": 8, "
                  "\"mamba_d_conv\": 3, \"mamba_expand\": 2, \"mamba_dt_rank\": \"auto\", "
                  "\"mamba_conv_bias\": false, \"mamba_proj_bias\": true, "
                  "\"rms_norm_eps\": 1e-5, \"sliding_window\": 16}",
                  &e) == 0);
    CHECK(c.arch == SRP_ARCH_JAMBA && c.n_layers == 6 && c.n_blocks == 12);
    /* two blocks a layer: the mixer, then the feed-forward */
    static const srp_mixer_kind want[12] = {
        SRP_MIXER_MAMBA1,    SRP_MIXER_MLP, SRP_MIXER_ATTENTION, SRP_MIXER_MOE,
        SRP_MIXER_MAMBA1,    SRP_MIXER_MLP, SRP_MIXER_MAMBA1,    SRP_MIXER_MOE,
        SRP_MIXER_ATTENTION, SRP_MIXER_MLP, SRP_MIXER_MAMBA1,    SRP_MIXER_MOE,
    };
    for (int b = 0; b < 12; b++)
        CHECKF(c.blocks[b].mixer[0] == want[b] && c.blocks[b].layer == b / 2 &&
                   c.blocks[b].n_mixers == 1,
               "block %d is %s of layer %d", b, srp_mixer_kind_name(c.blocks[b].mixer[0]),
               c.blocks[b].layer);
    /* Mamba-1 with learned dt/B/C norms at rms_norm_eps; "auto" rank = ceil(40 / 16) */
    CHECK(c.mamba1.d_inner == 80 && c.mamba1.state == 8 && c.mamba1.conv_kernel == 3 &&
          c.mamba1.dt_rank == 3 && !c.mamba1.conv_bias && c.mamba1.proj_bias);
    CHECK(c.mamba1.bcdt_norm == 2 && c.mamba1.bcdt_eps == 1e-5f && c.norm_eps == 1e-5f);
    /* attention: GQA, no position embedding, no biases, 1/sqrt(head_dim) */
    CHECK(c.attn.heads == 4 && c.attn.kv_heads == 2 && c.attn.head_dim == 10);
    CHECK(c.attn.rope.kind == SRP_ROPE_NONE && !c.attn.qkv_bias && !c.attn.o_bias);
    CHECK(fabsf(c.attn.scale - 1.0f / sqrtf(10.0f)) < 1e-7f);
    /* softmax over all experts, top-k, not renormalised; gated SwiGLU experts and MLP */
    CHECK(c.moe.n_experts == 4 && c.moe.top_k == 2 && c.moe.score == SRP_MOE_SOFTMAX &&
          !c.moe.norm_topk && c.moe.scale == 1.0f && c.moe.n_group == 1 && c.moe.gated &&
          c.moe.hidden == 24 && c.moe.act == SRP_ACT_SILU && !c.moe.shared_hidden && !c.moe.latent);
    CHECK(c.mlp.hidden == 24 && c.mlp.gated && !c.mlp.bias && c.mlp.act == SRP_ACT_SILU);
    CHECK(!c.tie_embeddings);

    /* JambaConfig's defaults (Jamba-v0.1): attention at 4 of every 8, experts at 1 of every 2,
     * 16 experts, top 2, 8 KV heads, rank ceil(4096 / 16) */
    REQUIRE(parse(&c, "{\"model_type\": \"jamba\"}", &e) == 0);
    CHECK(c.n_layers == 32 && c.d_model == 4096 && c.vocab_size == 65536);
    CHECK(c.blocks[8].mixer[0] == SRP_MIXER_ATTENTION &&
          c.blocks[24].mixer[0] == SRP_MIXER_ATTENTION);
    CHECK(srp_config_count(&c, SRP_MIXER_ATTENTION) == 4 &&
          srp_config_count(&c, SRP_MIXER_MOE) == 16);
    CHECK(c.blocks[3].mixer[0] == SRP_MIXER_MOE && c.blocks[1].mixer[0] == SRP_MIXER_MLP);
    CHECK(c.moe.n_experts == 16 && c.moe.top_k == 2 && c.moe.hidden == 14336);
    CHECK(c.attn.kv_heads == 8 && c.attn.head_dim == 128 && c.mamba1.dt_rank == 256);
    CHECK(c.mamba1.d_inner == 8192 && c.mamba1.state == 16 && c.mamba1.conv_kernel == 4);
    CHECK(c.mamba1.conv_bias && !c.mamba1.proj_bias && c.norm_eps == 1e-6f);

    /* one expert is no mixture: every feed-forward is the dense MLP (transformers'
     * num_experts > 1); null KV heads: one per query head; an explicit rank; tied */
    REQUIRE(parse(&c,
                  "{\"model_type\": \"jamba\", \"hidden_size\": 32, \"num_hidden_layers\": 2, "
                  "\"num_attention_heads\": 4, \"num_key_value_heads\": null, "
                  "\"num_experts\": 1, \"num_experts_per_tok\": 0, \"mamba_dt_rank\": 5, "
                  "\"tie_word_embeddings\": true}",
                  &e) == 0);
    CHECK(srp_config_count(&c, SRP_MIXER_MOE) == 0 && srp_config_count(&c, SRP_MIXER_MLP) == 2);
    CHECK(c.moe.n_experts == 0 && c.attn.kv_heads == 4 && c.mamba1.dt_rank == 5 &&
          c.tie_embeddings);
    /* no layer in the expert slot: the top-k is never used, so not checked */
    REQUIRE(parse(&c,
                  "{\"model_type\": \"jamba\", \"hidden_size\": 32, \"num_hidden_layers\": 1, "
                  "\"num_attention_heads\": 4, \"num_experts_per_tok\": 99}",
                  &e) == 0);
    CHECK(srp_config_count(&c, SRP_MIXER_MOE) == 0);
}

TEST(config_jamba_errors_name_the_field) {
    static const struct {
        const char *json;
        int code;
        const char *field;
    } cases[] = {
        { "\"attn_layer_period\": 2, \"attn_layer_offset\": 2", SRP_EFORMAT, "attn_layer_offset" },
        { "\"expert_layer_period\": 0", SRP_EFORMAT, "expert_layer_period" },
        { "\"expert_layer_offset\": 3", SRP_EFORMAT, "expert_layer_offset" },
        { "\"num_experts\": 4, \"num_experts_per_tok\": 5", SRP_EFORMAT, "num_experts_per_tok" },
        { "\"num_experts\": 4, \"num_experts_per_tok\": 0", SRP_EFORMAT, "num_experts_per_tok" },
        { "\"num_experts\": 2000", SRP_EUNSUPPORTED, "num_experts" },
        { "\"mamba_dt_rank\": \"big\"", SRP_EFORMAT, "mamba_dt_rank" },
        { "\"mamba_dt_rank\": 0", SRP_EFORMAT, "mamba_dt_rank" },
        { "\"mamba_expand\": 1.5", SRP_EFORMAT, "mamba_expand" },
        { "\"mamba_d_conv\": 65", SRP_EUNSUPPORTED, "mamba_d_conv" },
        { "\"mamba_d_state\": 0", SRP_EFORMAT, "mamba_d_state" },
        { "\"mamba_conv_bias\": \"yes\"", SRP_EFORMAT, "mamba_conv_bias" },
        { "\"hidden_act\": \"gelu\"", SRP_EUNSUPPORTED, "hidden_act" },
        { "\"num_key_value_heads\": 3, \"attn_layer_offset\": 0", SRP_EFORMAT,
          "num_key_value_heads" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[512];
        snprintf(json, sizeof json,
                 "{\"architectures\": [\"JambaForCausalLM\"], \"hidden_size\": 32, "
                 "\"num_hidden_layers\": 4, \"num_attention_heads\": 4, %s}",
                 cases[i].json);
        srp_config c;
        srp_err e = { 0 };
        const int rc = parse(&c, json, &e);
        CHECKF(rc == cases[i].code, "%s: %d (%s)", cases[i].json, rc, e.msg);
        CHECK_STR_CONTAINS(e.msg, cases[i].field);
        fprintf(stderr, "  %s\n", e.msg);
    }
}

/* ---- the experts stacked -------------------------------------------------------------------- */

#define MAX_TENSORS 256

typedef struct out_tensor {
    char name[160];
    char dtype[16];
    int ndim;
    int64_t shape[3];
    /* pieces concatenated in order (stacked experts), each of `bytes` */
    int n_src;
    const void *src[64];
    size_t bytes;
} out_tensor;

typedef enum {
    STACKED,           /* experts.gate_up_proj [E, 2I, H] (each expert's gate rows, then its up
                        * rows) and experts.down_proj [E, H, I] */
    STACKED_BAD_SHAPE, /* gate_up_proj's bytes claimed as [2E, I, H], which fits no config */
    PER_EXPERT_MISSING /* one module per expert, without expert 2's gate_proj */
} layout;

/* Copies the tensors of `ck` into DIR/model.safetensors with each MoE layer's E experts in
 * layout `how`. */
static int write_experts(const srp_ckpt *ck, const char *dir, int E, layout how) {
    static out_tensor t[MAX_TENSORS];
    int n = 0;
    for (int i = 0; i < srp_ckpt_count(ck) && n < MAX_TENSORS; i++) {
        const srp_tensor_info *ti = srp_ckpt_tensor(ck, i);
        int l, x;
        char kind[16];
        if (sscanf(ti->name, "model.layers.%d.feed_forward.experts.%d.%15[a-z]_proj.weight", &l, &x,
                   kind) == 3 &&
            (how != PER_EXPERT_MISSING || (x == 2 && !strcmp(kind, "gate"))))
            continue; /* left out, or written stacked with the router below */
        out_tensor *o = &t[n++];
        snprintf(o->name, sizeof o->name, "%s", ti->name);
        snprintf(o->dtype, sizeof o->dtype, "%s", ti->dtype_name);
        o->ndim = ti->ndim;
        for (int k = 0; k < ti->ndim && k < 3; k++) o->shape[k] = ti->shape[k];
        o->n_src = 1;
        o->src[0] = ti->data;
        o->bytes = (size_t)ti->numel * srp_dtype_size(ti->dtype);
        if (how == PER_EXPERT_MISSING ||
            sscanf(ti->name, "model.layers.%d.feed_forward.router.weigh%c", &l, kind) != 2)
            continue;
        out_tensor *gu = &t[n++], *dn = &t[n++];
        char nm[160];
        for (int k = 0; k < 2; k++) {
            out_tensor *s = k ? dn : gu;
            snprintf(s->name, sizeof s->name, "model.layers.%d.feed_forward.experts.%s", l,
                     k ? "down_proj" : "gate_up_proj");
            s->n_src = 0;
        }
        for (int x = 0; x < E; x++) {
            static const char *const parts[3] = { "gate", "up", "down" };
            for (int p = 0; p < 3; p++) {
                snprintf(nm, sizeof nm, "model.layers.%d.feed_forward.experts.%d.%s_proj.weight", l,
                         x, parts[p]);
                const srp_tensor_info *pi = srp_ckpt_find(ck, nm);
                if (!pi || pi->ndim != 2) return -1;
                out_tensor *s = p < 2 ? gu : dn;
                s->src[s->n_src++] = pi->data;
                s->bytes = (size_t)pi->numel * srp_dtype_size(pi->dtype);
                snprintf(s->dtype, sizeof s->dtype, "%s", pi->dtype_name);
                s->ndim = 3;
                s->shape[0] = E;
                s->shape[1] = p < 2 ? 2 * pi->shape[0] : pi->shape[0];
                s->shape[2] = pi->shape[1];
            }
        }
        if (how == STACKED_BAD_SHAPE) {
            gu->shape[0] = 2 * E;
            gu->shape[1] /= 2;
        }
    }
    char *hdr = malloc(1 << 20);
    if (!hdr) return -1;
    int64_t off = 0;
    int h = snprintf(hdr, 1 << 20, "{");
    for (int i = 0; i < n; i++) {
        int64_t bytes = (int64_t)t[i].bytes * t[i].n_src;
        h += snprintf(hdr + h, (1 << 20) - h, "%s\"%s\": {\"dtype\": \"%s\", \"shape\": [",
                      i ? ", " : "", t[i].name, t[i].dtype);
        for (int k = 0; k < t[i].ndim; k++)
            h +=
                snprintf(hdr + h, (1 << 20) - h, "%s%lld", k ? ", " : "", (long long)t[i].shape[k]);
        h += snprintf(hdr + h, (1 << 20) - h, "], \"data_offsets\": [%lld, %lld]}", (long long)off,
                      (long long)(off + bytes));
        off += bytes;
    }
    h += snprintf(hdr + h, (1 << 20) - h, "}");
    while (h % 8) hdr[h++] = ' ';
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    int rc = f ? 0 : -1;
    if (f) {
        uint64_t hl = (uint64_t)h;
        rc |= fwrite(&hl, 8, 1, f) != 1;
        rc |= fwrite(hdr, 1, (size_t)h, f) != (size_t)h;
        for (int i = 0; i < n; i++)
            for (int s = 0; s < t[i].n_src; s++)
                rc |= fwrite(t[i].src[s], 1, t[i].bytes, f) != t[i].bytes;
        rc |= fclose(f) != 0;
    }
    free(hdr);
    return rc;
}

static int copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    int rc = a && b ? 0 : -1;
    char buf[4096];
    size_t k;
    while (!rc && (k = fread(buf, 1, sizeof buf, a)) > 0) rc = fwrite(buf, 1, k, b) != k;
    if (a) fclose(a);
    if (b && fclose(b)) rc = -1;
    return rc;
}

static srp_engine *open_engine(const char *dir, srp_err *e) {
    srp_engine_opts o;
    srp_engine_opts_default(&o);
    o.backend = "cpu";
    o.n_threads = 2;
    o.max_seqs = 1;
    o.max_seq_len = 256;
    srp_engine *eng = NULL;
    return srp_engine_open(dir, &o, &eng, e) ? NULL : eng;
}

/* All logits of ids in one prefill. */
static int logits_of(srp_engine *eng, const int32_t *ids, int n, float *out) {
    srp_seq s;
    srp_err e = { 0 };
    if (srp_seq_open(eng, &s, &e)) return -1;
    srp_step_item it = { &s, ids, n, SRP_LOGITS_ALL, 0 };
    srp_mat lg;
    int rc =
        srp_engine_step(eng, &it, 1, &lg, &e) || srp_engine_logits_to_host(eng, lg, 0, n, out, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    srp_seq_close(eng, &s);
    return rc;
}

static double rel_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

TEST(engine_jamba_stacked_experts_equal_per_expert) {
    char fx[600], path[700], ref_path[700];
    snprintf(fx, sizeof fx, "%s", srp_test_path("fixtures/jamba_moe"));
    srp_err e = { 0 };
    snprintf(ref_path, sizeof ref_path, "%s/reference.json", fx);
    cJSON *ref = srp_json_load_file(ref_path, &e);
    REQUIRE(ref);
    /* the 37-token prompt: several chunks of routing, every expert chosen */
    const cJSON *pr = cJSON_GetArrayItem(cJSON_GetObjectItem(ref, "prompts"), 2);
    const cJSON *idl = cJSON_GetObjectItem(pr, "ids");
    const int n = cJSON_GetArraySize(idl), V = 300;
    int32_t ids[64];
    REQUIRE(n > 8 && n <= 64);
    for (int i = 0; i < n; i++) ids[i] = cJSON_GetArrayItem(idl, i)->valueint;
    float *want = malloc(sizeof(float) * n * V), *per = malloc(sizeof(float) * n * V),
          *got = malloc(sizeof(float) * n * V);
    snprintf(path, sizeof path, "%s/%s", fx, cJSON_GetObjectItem(pr, "logits")->valuestring);
    FILE *f = fopen(path, "rb");
    REQUIRE(f && fread(want, sizeof(float), (size_t)n * V, f) == (size_t)n * V);
    fclose(f);
    cJSON_Delete(ref);

    srp_engine *eng = open_engine(fx, &e);
    REQUIRE(eng);
    REQUIRE(logits_of(eng, ids, n, per) == 0);
    srp_engine_close(eng);

    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/serpent_jamba_XXXXXX");
    REQUIRE(mkdtemp(dir));
    char from[700], to[700];
    snprintf(from, sizeof from, "%s/config.json", fx);
    snprintf(to, sizeof to, "%s/config.json", dir);
    REQUIRE(copy_file(from, to) == 0);
    srp_ckpt *ck = NULL;
    REQUIRE(srp_ckpt_open(fx, &ck, &e) == 0);
    REQUIRE(write_experts(ck, dir, 4, STACKED) == 0);
    eng = open_engine(dir, &e);
    CHECKF(eng, "%s", e.msg);
    if (eng) {
        REQUIRE(logits_of(eng, ids, n, got) == 0);
        srp_engine_close(eng);
        /* the same weights, so the same numbers as the per-expert checkpoint */
        const double same = rel_err(got, per, (int64_t)n * V),
                     ref = rel_err(got, want, (int64_t)n * V);
        CHECKF(same < 1e-6, "stacked vs per-expert: relative error %.3g", same);
        CHECKF(ref < 1e-3, "stacked vs transformers: relative error %.3g", ref);
        fprintf(stderr, "  stacked experts: %.2e from per-expert, %.2e from transformers\n", same,
                ref);
    }
    /* a stacked tensor whose shape does not fit the config, and a missing expert tensor, are
     * refused by name */
    static const struct {
        layout how;
        const char *name;
    } bad[] = { { STACKED_BAD_SHAPE, "layers.1.feed_forward.experts.gate_up_proj" },
                { PER_EXPERT_MISSING, "layers.1.feed_forward.experts.2.gate_proj.weight" } };
    for (int i = 0; i < 2; i++) {
        REQUIRE(write_experts(ck, dir, 4, bad[i].how) == 0);
        e = (srp_err){ 0 };
        eng = open_engine(dir, &e);
        CHECK(!eng);
        if (eng) srp_engine_close(eng);
        CHECK_STR_CONTAINS(e.msg, bad[i].name);
        fprintf(stderr, "  %s\n", e.msg);
    }
    srp_ckpt_close(ck);
    unlink(to);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
    free(want);
    free(per);
    free(got);
}
