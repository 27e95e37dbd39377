/* The CPU backend's mixture-of-experts operations against double-precision references written
 * step by step from transformers' code: NemotronHTopkRouter (sigmoid, correction bias for the
 * choice only, grouped top-k), GraniteMoeHybridTopKRouter (top-k logits, softmax over them),
 * JambaSparseMoeBlock (softmax over all experts, top-k, not renormalised), and the experts'
 * weighted sums (NemotronHExperts' relu2 MLPs, the gated SwiGLU experts of Granite and Jamba). */
#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "engine.h"
#include "test.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static double urand(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}

static float *randv(int64_t n, double lo, double hi) {
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)(lo + (hi - lo) * urand());
    return v;
}

static srp_backend *cpu(void) {
    srp_backend *be = NULL;
    srp_err e = { 0 };
    if (srp_backend_cpu_create(2, &be, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        abort();
    }
    return be;
}

/* Indices of the k largest of v[0..n) in descending order (ties: the lower index): torch.topk
 * up to the order, which the callers do not depend on. */
static void topk(const double *v, int n, int k, int *out) {
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            int used = 0;
            for (int q = 0; q < j; q++) used |= out[q] == i;
            if (!used && (best < 0 || v[i] > v[best])) best = i;
        }
        out[j] = best;
    }
}

/* NemotronHTopkRouter.forward for one token, in double. */
static void ref_nemotron(const float *logits, const float *bias, int E, int K, int G, int TG,
                         int norm, double scale, int *ids, double *w) {
    double scores[64], sfc[64], gs[16];
    for (int i = 0; i < E; i++) {
        scores[i] = 1.0 / (1.0 + exp(-(double)logits[i]));
        sfc[i] = scores[i] + bias[i];
    }
    const int per = E / G;
    for (int g = 0; g < G; g++) {
        int two[2];
        topk(sfc + g * per, per, 2, two);
        gs[g] = sfc[g * per + two[0]] + sfc[g * per + two[1]];
    }
    int keep[16];
    topk(gs, G, TG, keep);
    double masked[64];
    for (int i = 0; i < E; i++) {
        int kept = 0;
        for (int q = 0; q < TG; q++) kept |= keep[q] == i / per;
        masked[i] = kept ? sfc[i] : -INFINITY;
    }
    topk(masked, E, K, ids);
    double sum = 0;
    for (int k = 0; k < K; k++) sum += w[k] = scores[ids[k]];
    for (int k = 0; k < K; k++) w[k] = (norm ? w[k] / (sum + 1e-20) : w[k]) * scale;
}

/* The weight the backend gave expert id in row t, or NAN when it did not choose it. */
static double weight_of(const int32_t *ids, const float *w, int K, int id) {
    for (int k = 0; k < K; k++)
        if (ids[k] == id) return w[k];
    return NAN;
}

static void route(srp_backend *be, const srp_moe_route_params *p, float *logits, int T,
                  int32_t *ids, float *w) {
    srp_err e = { 0 };
    const srp_moe_routing r = { { ids, SRP_I32, T, p->top_k, p->top_k },
                                { w, SRP_F32, T, p->top_k, p->top_k },
                                NULL };
    const srp_mat lg = { logits, SRP_F32, T, p->n_experts, p->n_experts };
    int rc = be->moe_route(be, p, lg, &r, &e);
    if (rc) fprintf(stderr, "%s\n", e.msg);
    CHECK(rc == 0);
}

TEST(cpu_moe_route_sigmoid_grouped_with_correction_bias) {
    srp_backend *be = cpu();
    const int T = 53, E = 16, K = 3, G = 4, TG = 2;
    float *logits = randv((int64_t)T * E, -3, 3), *bias = randv(E, 0, 0.3);
    const srp_weight bw = { { bias, SRP_F32, 1, E, E }, 0 };
    for (int norm = 0; norm < 2; norm++) {
        const srp_moe_route_params p = { E, K, SRP_MOE_SIGMOID, G, TG, norm, 2.5f, &bw };
        int32_t ids[53 * 3];
        float w[53 * 3];
        route(be, &p, logits, T, ids, w);
        int bias_changed = 0;
        for (int t = 0; t < T; t++) {
            int rid[3], nob[3];
            double rw[3], nw[3];
            ref_nemotron(logits + t * E, bias, E, K, G, TG, norm, 2.5, rid, rw);
            float zero[16] = { 0 };
            ref_nemotron(logits + t * E, zero, E, K, G, TG, norm, 2.5, nob, nw);
            for (int k = 0; k < K; k++) {
                double got = weight_of(ids + t * K, w + t * K, K, rid[k]);
                CHECKF(fabs(got - rw[k]) < 1e-5, "token %d: expert %d weight %g, reference %g", t,
                       rid[k], got, rw[k]);
                int in_nob = 0;
                for (int q = 0; q < K; q++) in_nob |= nob[q] == rid[k];
                bias_changed |= !in_nob;
            }
        }
        /* the bias must have moved some choices, or the test would not show it is used */
        CHECK(bias_changed);
    }
    free(logits);
    free(bias);
    be->destroy(be);
}

TEST(cpu_moe_route_softmax_top_k) {
    srp_backend *be = cpu();
    const int T = 41, E = 8, K = 3;
    float *logits = randv((int64_t)T * E, -4, 4);
    for (int norm = 0; norm < 2; norm++) {
        /* norm: Granite (softmax over the k best logits); not: Jamba (softmax over all, top-k) */
        const srp_moe_route_params p = { E, K, SRP_MOE_SOFTMAX, 1, 1, norm, 1.0f, NULL };
        int32_t ids[41 * 3];
        float w[41 * 3];
        route(be, &p, logits, T, ids, w);
        for (int t = 0; t < T; t++) {
            double l[8], all = 0, sel = 0, m = -INFINITY;
            int top[3];
            for (int i = 0; i < E; i++) l[i] = logits[t * E + i];
            topk(l, E, K, top);
            for (int i = 0; i < E; i++) m = fmax(m, l[i]);
            for (int i = 0; i < E; i++) all += exp(l[i] - m);
            for (int k = 0; k < K; k++) sel += exp(l[top[k]] - l[top[0]]);
            for (int k = 0; k < K; k++) {
                double want = norm ? exp(l[top[k]] - l[top[0]]) / sel : exp(l[top[k]] - m) / all;
                double got = weight_of(ids + t * K, w + t * K, K, top[k]);
                CHECKF(fabs(got - want) < 1e-6, "token %d: expert %d weight %g, reference %g", t,
                       top[k], got, want);
            }
        }
    }
    free(logits);
    be->destroy(be);
}

TEST(cpu_moe_route_refuses_impossible_settings) {
    srp_backend *be = cpu();
    float logits[12] = { 0 }, w[4];
    int32_t ids[4];
    srp_err e = { 0 };
    const srp_moe_routing r = { { ids, SRP_I32, 1, 4, 4 }, { w, SRP_F32, 1, 4, 4 }, NULL };
    const srp_mat lg = { logits, SRP_F32, 1, 12, 12 };
    /* 4 experts from one kept group of 3 */
    const srp_moe_route_params p = { 12, 4, SRP_MOE_SIGMOID, 4, 1, 1, 1.0f, NULL };
    CHECK(be->moe_route(be, &p, lg, &r, &e) == SRP_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "unsupported");
    be->destroy(be);
}

/* out = alpha * sum_k w_k * down_e(act(up_e x)) (+ out), each expert in double. */
static void ref_experts(const float *x, int T, int in, int out_c, int H, int gated, srp_act act,
                        const float *up, const float *down, const int32_t *ids, const float *w,
                        int K, double alpha, const float *acc, double *out) {
    double *h = malloc((size_t)H * sizeof *h);
    for (int t = 0; t < T; t++) {
        for (int c = 0; c < out_c; c++) out[t * out_c + c] = acc ? acc[t * out_c + c] : 0.0;
        for (int k = 0; k < K; k++) {
            const int ex = ids[t * K + k], U = gated ? 2 * H : H;
            for (int j = 0; j < H; j++) {
                double g = 0, u = 0;
                for (int i = 0; i < in; i++) {
                    g += (double)up[((int64_t)ex * U + j) * in + i] * x[t * in + i];
                    if (gated) u += (double)up[((int64_t)ex * U + H + j) * in + i] * x[t * in + i];
                }
                double a = act == SRP_ACT_RELU2 ? (g > 0 ? g * g : 0) : g / (1 + exp(-g));
                h[j] = gated ? a * u : a;
            }
            for (int c = 0; c < out_c; c++) {
                double s = 0;
                for (int j = 0; j < H; j++)
                    s += (double)down[((int64_t)ex * out_c + c) * H + j] * h[j];
                out[t * out_c + c] += alpha * w[t * K + k] * s;
            }
        }
    }
    free(h);
}

TEST(cpu_moe_experts_grouped_by_expert) {
    srp_backend *be = cpu();
    const int T = 29, E = 6, K = 2, in = 24, oc = 24, H = 10;
    for (int gated = 0; gated < 2; gated++) {
        const srp_act act = gated ? SRP_ACT_SILU : SRP_ACT_RELU2;
        const int U = gated ? 2 * H : H;
        float *x = randv((int64_t)T * in, -1, 1), *up = randv((int64_t)E * U * in, -0.4, 0.4);
        float *down = randv((int64_t)E * oc * H, -0.4, 0.4), *out = randv((int64_t)T * oc, -1, 1);
        float *w = randv((int64_t)T * K, 0.1, 1);
        float *before = malloc((size_t)T * oc * sizeof *before);
        memcpy(before, out, (size_t)T * oc * sizeof *before);
        int32_t ids[29 * 2];
        for (int t = 0; t < T; t++) {
            ids[t * K] = (t * 5 + 1) % E;
            ids[t * K + 1] = (ids[t * K] + 1 + t % (E - 1)) % E; /* distinct; expert 0 rare */
        }
        ids[3 * K] = 0;
        float *scratch = malloc((size_t)T * K * (in + U + oc) * sizeof(float));
        const srp_weight uw = { { up, SRP_F32, E * U, in, in }, 0 },
                         dw = { { down, SRP_F32, E * oc, H, H }, 0 };
        const srp_moe_experts_params p = {
            E, K, H, act, gated, &uw, &dw, { scratch, SRP_F32, T * K, in + U + oc, in + U + oc }
        };
        const srp_moe_routing r = { { ids, SRP_I32, T, K, K }, { w, SRP_F32, T, K, K }, NULL };
        srp_err e = { 0 };
        for (int acc = 0; acc < 2; acc++) {
            memcpy(out, before, (size_t)T * oc * sizeof *out);
            REQUIRE(be->moe_experts(be, &p, &r, (srp_mat){ x, SRP_F32, T, in, in },
                                    (srp_mat){ out, SRP_F32, T, oc, oc }, 0.75f, acc, &e) == 0);
            double *ref = malloc((size_t)T * oc * sizeof *ref), num = 0, den = 0;
            ref_experts(x, T, in, oc, H, gated, act, up, down, ids, w, K, 0.75, acc ? before : NULL,
                        ref);
            for (int i = 0; i < T * oc; i++) {
                num += (out[i] - ref[i]) * (out[i] - ref[i]);
                den += ref[i] * ref[i];
            }
            CHECKF(sqrt(num / den) < 1e-5, "gated %d accumulate %d: relative error %.3g", gated,
                   acc, sqrt(num / den));
            free(ref);
        }
        free(x);
        free(up);
        free(down);
        free(out);
        free(w);
        free(before);
        free(scratch);
    }
    be->destroy(be);
}

/* Random weights of the fixtures' shapes (the benchmarks' path): the experts are loaded,
 * counted, and a step's routing can be counted: between top_k and n_experts distinct experts
 * per layer, as many as the reference's tokens chose at most. */
TEST(engine_moe_random_weights_and_expert_counts) {
    static const struct {
        const char *dir;
        int layers, experts, top_k;
    } cases[] = { { "fixtures/nemotron_h_moe_pattern", 2, 16, 3 },
                  { "fixtures/nemotron_h_moe_list", 2, 8, 2 },
                  { "fixtures/granite_moe_rope", 5, 8, 2 },
                  { "fixtures/granite_dense_nope", 0, 0, 0 },
                  { "fixtures/jamba_moe", 3, 4, 2 } };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        srp_engine_opts o;
        srp_engine_opts_default(&o);
        o.backend = "cpu";
        o.n_threads = 2;
        o.random_weights = 1;
        o.seed = 7;
        o.max_seqs = 4;
        o.max_seq_len = 256;
        srp_engine *eng = NULL;
        srp_err e = { 0 };
        REQUIRE(srp_engine_open(srp_test_path(cases[c].dir), &o, &eng, &e) == 0);
        const srp_config *cfg = srp_engine_config(eng);
        CHECK(srp_config_count(cfg, SRP_MIXER_MOE) == cases[c].layers);
        CHECK(srp_engine_expert_count(eng) == (int64_t)cases[c].layers * cases[c].experts);
        const int64_t per = cases[c].experts
                                ? (int64_t)((cfg->moe.latent ? cfg->moe.latent : cfg->d_model) *
                                            cfg->moe.hidden * (cfg->moe.gated ? 3 : 2))
                                : 0;
        CHECK(srp_engine_expert_params(eng) == per * cases[c].layers * cases[c].experts);
        CHECK(srp_engine_expert_bytes(eng) == 4 * srp_engine_expert_params(eng));
        CHECK(srp_engine_matrix_params(eng) > srp_engine_expert_params(eng));
        srp_seq s[3];
        srp_step_item it[3];
        int32_t ids[3][9];
        for (int i = 0; i < 3; i++) {
            REQUIRE(srp_seq_open(eng, &s[i], &e) == 0);
            for (int k = 0; k < 9; k++) ids[i][k] = (i * 31 + k * 17) % cfg->vocab_size;
            it[i] = (srp_step_item){ &s[i], ids[i], 9, SRP_LOGITS_LAST, 0 };
        }
        srp_engine_count_experts(eng, 1);
        srp_mat lg;
        REQUIRE(srp_engine_step(eng, it, 3, &lg, &e) == 0);
        const int64_t used = srp_engine_experts_used(eng);
        CHECKF(used >= (int64_t)cases[c].layers * cases[c].top_k &&
                   used <= (int64_t)cases[c].layers * cases[c].experts,
               "%s: %lld experts used", cases[c].dir, (long long)used);
        float *row = malloc(sizeof(float) * cfg->vocab_size);
        REQUIRE(srp_engine_logits_to_host(eng, lg, 2, 1, row, &e) == 0);
        int finite = 1;
        for (int v = 0; v < cfg->vocab_size; v++) finite &= isfinite(row[v]);
        CHECK(finite);
        fprintf(stderr, "  %s (random): %lld experts in %d layers, %lld used by 27 tokens\n",
                cases[c].dir, (long long)srp_engine_expert_count(eng), cases[c].layers,
                (long long)used);
        free(row);
        for (int i = 0; i < 3; i++) srp_seq_close(eng, &s[i]);
        srp_engine_close(eng);
    }
}

static int parse(const char *json, srp_config *c, srp_err *e) {
    return srp_config_parse(c, json, strlen(json), "config.json", e);
}

TEST(config_moe_families) {
    srp_config c;
    srp_err e = { 0 };
    /* Nemotron 3's spelling: 'E' layers, defaults as NemotronHConfig's */
    REQUIRE(parse("{\"architectures\": [\"NemotronHForCausalLM\"], \"hidden_size\": 64, "
                  "\"hybrid_override_pattern\": \"ME*E\", \"mamba_num_heads\": 4, "
                  "\"mamba_head_dim\": 32, \"n_groups\": 2, \"ssm_state_size\": 16, "
                  "\"num_attention_heads\": 4, \"n_routed_experts\": 16, "
                  "\"num_experts_per_tok\": 4, \"n_group\": 4, \"topk_group\": 2, "
                  "\"moe_intermediate_size\": 32, \"moe_latent_size\": null, "
                  "\"routed_scaling_factor\": 2.5, \"num_nextn_predict_layers\": 1}",
                  &c, &e) == 0);
    CHECK(srp_config_count(&c, SRP_MIXER_MOE) == 2);
    CHECK(c.moe.score == SRP_MOE_SIGMOID && c.moe.norm_topk && c.moe.scale == 2.5f);
    CHECK(c.moe.latent == 0 && c.moe.shared_hidden == 7688 && c.moe.act == SRP_ACT_RELU2);
    CHECK_STR_CONTAINS(c.note, "multi-token-prediction");
    /* the chosen experts must fit in the kept groups */
    CHECK(parse("{\"architectures\": [\"NemotronHForCausalLM\"], \"hidden_size\": 64, "
                "\"layers_block_type\": [\"moe\"], \"n_routed_experts\": 16, "
                "\"num_experts_per_tok\": 9, \"n_group\": 4, \"topk_group\": 2}",
                &c, &e) == SRP_EUNSUPPORTED);
    CHECK_STR_CONTAINS(e.msg, "topk_group 2");
    /* Granite 4.0-H: two blocks a layer, "auto" head size, the µP multipliers */
    REQUIRE(
        parse("{\"architectures\": [\"GraniteMoeHybridForCausalLM\"], \"hidden_size\": 64, "
              "\"layer_types\": [\"mamba\", \"attention\"], \"mamba_n_heads\": 4, "
              "\"mamba_d_head\": \"auto\", \"mamba_d_state\": 16, \"num_attention_heads\": 4, "
              "\"num_local_experts\": 8, \"num_experts_per_tok\": 2, \"intermediate_size\": 32, "
              "\"shared_intermediate_size\": 48, \"embedding_multiplier\": 12, "
              "\"attention_multiplier\": 0.0078125, \"residual_multiplier\": 0.22, "
              "\"logits_scaling\": 8, \"position_embedding_type\": \"rope\"}",
              &c, &e) == 0);
    CHECK(c.n_layers == 2 && c.n_blocks == 4 && c.blocks[1].mixer[0] == SRP_MIXER_MOE &&
          c.blocks[2].mixer[0] == SRP_MIXER_ATTENTION);
    CHECK(c.mamba2.head_dim == 32 && c.mamba2.norm_group == c.mamba2.d_inner);
    CHECK(c.embed_mult == 12.0f && c.attn.scale == 0.0078125f && c.resid_mult == 0.22f &&
          c.logits_mult == 0.125f);
    CHECK(c.attn.rope.kind == SRP_ROPE_DEFAULT && c.attn.rope.dim == 16);
    CHECK(c.moe.score == SRP_MOE_SOFTMAX && c.moe.gated && c.moe.shared_hidden == 48);
    /* the dense variant: the shared MLP alone */
    REQUIRE(parse("{\"architectures\": [\"GraniteMoeHybridForCausalLM\"], \"hidden_size\": 64, "
                  "\"num_hidden_layers\": 3, \"mamba_n_heads\": 4, \"mamba_d_state\": 16, "
                  "\"num_local_experts\": 0, \"shared_intermediate_size\": 48}",
                  &c, &e) == 0);
    CHECK(c.n_blocks == 6 && srp_config_count(&c, SRP_MIXER_MOE) == 0 &&
          srp_config_count(&c, SRP_MIXER_MLP) == 3 && c.mlp.gated && c.mlp.hidden == 48);
    CHECK(parse("{\"architectures\": [\"GraniteMoeHybridForCausalLM\"], \"hidden_size\": 64, "
                "\"mamba_n_heads\": 4, \"position_embedding_type\": \"alibi\"}",
                &c, &e) == SRP_EUNSUPPORTED);
    CHECK_STR_CONTAINS(e.msg, "position_embedding_type");
}
