/* Mamba-1 and FalconMamba end to end on the CPU engine before any transformers fixture: the
 * config keys (transformers' and mamba_ssm's spellings, "auto" rank, defaults, errors), and tiny
 * checkpoints written here with transformers' tensor names whose logits are checked against a
 * double-precision forward pass written from modeling_mamba.py / modeling_falcon_mamba.py. The
 * fixtures from transformers itself (tests/fixtures/mamba_*, falcon_mamba) are the final word;
 * this catches layout slips ([x | z], [dt | B | C], the conv taps) and state handling early. */
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "engine.h"
#include "test.h"

static int parse(srp_config *c, const char *json, srp_err *e) {
    return srp_config_parse(c, json, strlen(json), "config.json", e);
}

TEST(config_mamba1_keys_and_defaults) {
    srp_config c;
    srp_err e = { 0 };
    REQUIRE(parse(&c,
                  "{\"architectures\": [\"MambaForCausalLM\"], \"vocab_size\": 300, "
                  "\"hidden_size\": 48, \"num_hidden_layers\": 3, \"state_size\": 16, "
                  "\"expand\": 2, \"conv_kernel\": 4, \"time_step_rank\": \"auto\"}",
                  &e) == 0);
    CHECK(c.arch == SRP_ARCH_MAMBA1 && c.n_blocks == 3 && c.blocks[2].mixer[0] == SRP_MIXER_MAMBA1);
    CHECK(c.mamba1.d_inner == 96 && c.mamba1.state == 16 && c.mamba1.dt_rank == 3);
    /* MambaConfig's defaults: tied, no in/out bias, conv bias, no dt/B/C norms */
    CHECK(c.tie_embeddings && !c.mamba1.proj_bias && c.mamba1.conv_bias && !c.mamba1.bcdt_norm);
    CHECK(fabsf(c.norm_eps - 1e-5f) < 1e-12f);
    /* mamba_ssm's spellings, an explicit rank */
    REQUIRE(parse(&c,
                  "{\"model_type\": \"mamba\", \"d_model\": 40, \"n_layer\": 2, \"d_state\": 8, "
                  "\"expand\": 3, \"d_conv\": 2, \"dt_rank\": 7, \"use_bias\": true, "
                  "\"use_conv_bias\": false, \"tie_word_embeddings\": false}",
                  &e) == 0);
    CHECK(c.d_model == 40 && c.mamba1.d_inner == 120 && c.mamba1.conv_kernel == 2 &&
          c.mamba1.dt_rank == 7 && c.mamba1.proj_bias && !c.mamba1.conv_bias && !c.tie_embeddings);
    REQUIRE(parse(&c,
                  "{\"architectures\": [\"FalconMambaForCausalLM\"], \"hidden_size\": 32, "
                  "\"num_hidden_layers\": 1, \"mixer_rms_eps\": 0.001}",
                  &e) == 0);
    CHECK(c.arch == SRP_ARCH_FALCON_MAMBA && c.mamba1.bcdt_norm == 1 &&
          fabsf(c.mamba1.bcdt_eps - 1e-3f) < 1e-9f && c.mamba1.dt_rank == 2);
    REQUIRE(parse(&c, "{\"model_type\": \"falcon_mamba\", \"num_hidden_layers\": 1}", &e) == 0);
    CHECK(fabsf(c.mamba1.bcdt_eps - 1e-6f) < 1e-12f);
    /* errors name the field */
    CHECK(parse(&c, "{\"model_type\": \"mamba\", \"hidden_act\": \"gelu\"}", &e) ==
          SRP_EUNSUPPORTED);
    CHECK_STR_CONTAINS(e.msg, "hidden_act");
    CHECK(parse(&c, "{\"model_type\": \"mamba\", \"time_step_rank\": \"big\"}", &e) == SRP_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "time_step_rank");
    CHECK(parse(&c, "{\"model_type\": \"mamba\", \"expand\": 0}", &e) == SRP_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "expand");
}

/* ---- a tiny checkpoint and its reference forward -------------------------------------------- */

typedef struct tiny {
    int V, d, L, N, K, R, Di, bias, conv_bias, tied, falcon;
    int cfg_extra_state; /* config.json claims N + this (a shape mismatch) */
    float eps, mix_eps;
    /* weights, fp32, in transformers' layouts */
    float *embed, *norm_f, *lm_head;
    float *norm[4], *in_w[4], *in_b[4], *conv_w[4], *conv_b[4], *xp[4], *dtp[4], *dtb[4], *A_log[4],
        *D[4], *out_w[4], *out_b[4];
} tiny;

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float urand(float lo, float hi) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    double u = (double)((rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

static float *draw(int64_t n, float lo, float hi) {
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = urand(lo, hi);
    return v;
}

static void tiny_init(tiny *m) {
    const int d = m->d, Di = m->Di, N = m->N, R = m->R;
    const float sd = 1.0f / sqrtf((float)d), si = 1.0f / sqrtf((float)Di);
    m->embed = draw((int64_t)m->V * d, -1, 1);
    m->norm_f = draw(d, 0.8f, 1.2f);
    m->lm_head = m->tied ? NULL : draw((int64_t)m->V * d, -sd, sd);
    for (int l = 0; l < m->L; l++) {
        m->norm[l] = draw(d, 0.8f, 1.2f);
        m->in_w[l] = draw((int64_t)2 * Di * d, -1.5f * sd, 1.5f * sd);
        m->in_b[l] = m->bias ? draw(2 * Di, -0.2f, 0.2f) : NULL;
        m->conv_w[l] = draw((int64_t)Di * m->K, -0.6f, 0.6f);
        m->conv_b[l] = m->conv_bias ? draw(Di, -0.2f, 0.2f) : NULL;
        m->xp[l] = draw((int64_t)(R + 2 * N) * Di, -2 * si, 2 * si);
        m->dtp[l] = draw((int64_t)Di * R, -1, 1);
        m->dtb[l] = draw(Di, -4, -1);
        m->A_log[l] = draw((int64_t)Di * N, -0.5f, 2.5f);
        m->D[l] = draw(Di, 0.5f, 1.5f);
        m->out_w[l] = draw((int64_t)d * Di, -si, si);
        m->out_b[l] = m->bias ? draw(d, -0.1f, 0.1f) : NULL;
    }
}

static void tiny_free(tiny *m) {
    free(m->embed), free(m->norm_f), free(m->lm_head);
    for (int l = 0; l < m->L; l++)
        free(m->norm[l]), free(m->in_w[l]), free(m->in_b[l]), free(m->conv_w[l]),
            free(m->conv_b[l]), free(m->xp[l]), free(m->dtp[l]), free(m->dtb[l]), free(m->A_log[l]),
            free(m->D[l]), free(m->out_w[l]), free(m->out_b[l]);
}

typedef struct st_entry {
    char name[96];
    const float *data;
    int64_t shape[3];
    int ndim;
} st_entry;

/* Writes DIR/config.json and DIR/model.safetensors (fp32), leaving out tensor `skip`. */
static void tiny_write(const tiny *m, const char *dir, const char *skip) {
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fprintf(f,
            "{\"architectures\": [\"%s\"], \"vocab_size\": %d, \"hidden_size\": %d, "
            "\"num_hidden_layers\": %d, \"state_size\": %d, \"expand\": 2, \"conv_kernel\": %d, "
            "\"time_step_rank\": %d, \"use_bias\": %s, \"use_conv_bias\": %s, "
            "\"tie_word_embeddings\": %s, \"layer_norm_epsilon\": %g, \"mixer_rms_eps\": %g, "
            "\"eos_token_id\": 0}\n",
            m->falcon ? "FalconMambaForCausalLM" : "MambaForCausalLM", m->V, m->d, m->L,
            m->N + m->cfg_extra_state, m->K, m->R, m->bias ? "true" : "false",
            m->conv_bias ? "true" : "false", m->tied ? "true" : "false", m->eps, m->mix_eps);
    fclose(f);
    static st_entry t[64];
    int n = 0;
#define ADD(nm, ptr, nd, a, b, c)                                                  \
    do {                                                                           \
        if (ptr) {                                                                 \
            snprintf(t[n].name, sizeof t[n].name, "%s", nm);                       \
            t[n].data = ptr, t[n].ndim = nd, t[n].shape[0] = a, t[n].shape[1] = b, \
            t[n].shape[2] = c;                                                     \
            if (!skip || strcmp(t[n].name, skip)) n++;                             \
        }                                                                          \
    } while (0)
    char nm[96];
    ADD("backbone.embeddings.weight", m->embed, 2, m->V, m->d, 0);
    for (int l = 0; l < m->L; l++) {
#define LNAME(s) (snprintf(nm, sizeof nm, "backbone.layers.%d.%s", l, s), nm)
        ADD(LNAME("norm.weight"), m->norm[l], 1, m->d, 0, 0);
        ADD(LNAME("mixer.in_proj.weight"), m->in_w[l], 2, 2 * m->Di, m->d, 0);
        ADD(LNAME("mixer.in_proj.bias"), m->in_b[l], 1, 2 * m->Di, 0, 0);
        ADD(LNAME("mixer.conv1d.weight"), m->conv_w[l], 3, m->Di, 1, m->K);
        ADD(LNAME("mixer.conv1d.bias"), m->conv_b[l], 1, m->Di, 0, 0);
        ADD(LNAME("mixer.x_proj.weight"), m->xp[l], 2, m->R + 2 * m->N, m->Di, 0);
        ADD(LNAME("mixer.dt_proj.weight"), m->dtp[l], 2, m->Di, m->R, 0);
        ADD(LNAME("mixer.dt_proj.bias"), m->dtb[l], 1, m->Di, 0, 0);
        ADD(LNAME("mixer.A_log"), m->A_log[l], 2, m->Di, m->N, 0);
        ADD(LNAME("mixer.D"), m->D[l], 1, m->Di, 0, 0);
        ADD(LNAME("mixer.out_proj.weight"), m->out_w[l], 2, m->d, m->Di, 0);
        ADD(LNAME("mixer.out_proj.bias"), m->out_b[l], 1, m->d, 0, 0);
#undef LNAME
    }
    ADD("backbone.norm_f.weight", m->norm_f, 1, m->d, 0, 0);
    ADD("lm_head.weight", m->lm_head, 2, m->V, m->d, 0);
#undef ADD
    char *hdr = malloc(1 << 16);
    int64_t off = 0;
    int h = snprintf(hdr, 1 << 16, "{");
    for (int i = 0; i < n; i++) {
        int64_t cnt = 1;
        h += snprintf(hdr + h, (1 << 16) - h, "%s\"%s\": {\"dtype\": \"F32\", \"shape\": [",
                      i ? ", " : "", t[i].name);
        for (int k = 0; k < t[i].ndim; k++) {
            h +=
                snprintf(hdr + h, (1 << 16) - h, "%s%lld", k ? ", " : "", (long long)t[i].shape[k]);
            cnt *= t[i].shape[k];
        }
        h += snprintf(hdr + h, (1 << 16) - h, "], \"data_offsets\": [%lld, %lld]}", (long long)off,
                      (long long)(off + 4 * cnt));
        off += 4 * cnt;
    }
    h += snprintf(hdr + h, (1 << 16) - h, "}");
    while (h % 8) hdr[h++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    if (!f) abort();
    uint64_t hl = (uint64_t)h;
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, (size_t)h, f);
    for (int i = 0; i < n; i++) {
        int64_t cnt = 1;
        for (int k = 0; k < t[i].ndim; k++) cnt *= t[i].shape[k];
        fwrite(t[i].data, 4, (size_t)cnt, f);
    }
    fclose(f);
    free(hdr);
}

static void rms(double *v, int n, const float *w, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += v[i] * v[i];
    const double inv = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) v[i] = v[i] * inv * (w ? w[i] : 1.0);
}

static double silu(double v) {
    return v / (1 + exp(-v));
}

/* modeling_mamba.py's slow_forward over one sequence: logits [T][V]. */
static void tiny_reference(const tiny *m, const int32_t *ids, int T, double *logits) {
    const int d = m->d, Di = m->Di, N = m->N, R = m->R, K = m->K;
    double *hs = malloc(sizeof(double) * T * d), *u = malloc(sizeof(double) * d);
    double *xs = malloc(sizeof(double) * T * Di), *zs = malloc(sizeof(double) * T * Di);
    double *xc = malloc(sizeof(double) * T * Di), *st = malloc(sizeof(double) * Di * N);
    double *dbc = malloc(sizeof(double) * (R + 2 * N)), *y = malloc(sizeof(double) * Di);
    for (int t = 0; t < T; t++)
        for (int c = 0; c < d; c++) hs[t * d + c] = m->embed[(int64_t)ids[t] * d + c];
    for (int l = 0; l < m->L; l++) {
        for (int t = 0; t < T; t++) {
            for (int c = 0; c < d; c++) u[c] = hs[t * d + c];
            rms(u, d, m->norm[l], m->eps);
            for (int o = 0; o < 2 * Di; o++) {
                double acc = m->in_b[l] ? m->in_b[l][o] : 0;
                for (int c = 0; c < d; c++) acc += m->in_w[l][(int64_t)o * d + c] * u[c];
                if (o < Di)
                    xs[t * Di + o] = acc;
                else
                    zs[t * Di + o - Di] = acc;
            }
        }
        /* nn.Conv1d(padding = K - 1)[..., :T]: left zero padding, cross-correlation */
        for (int t = 0; t < T; t++)
            for (int i = 0; i < Di; i++) {
                double acc = m->conv_b[l] ? m->conv_b[l][i] : 0;
                for (int k = 0; k < K; k++) {
                    int src = t + k - (K - 1);
                    if (src >= 0) acc += m->conv_w[l][i * K + k] * xs[src * Di + i];
                }
                xc[t * Di + i] = silu(acc);
            }
        memset(st, 0, sizeof(double) * Di * N);
        for (int t = 0; t < T; t++) {
            for (int o = 0; o < R + 2 * N; o++) {
                double acc = 0;
                for (int i = 0; i < Di; i++) acc += m->xp[l][(int64_t)o * Di + i] * xc[t * Di + i];
                dbc[o] = acc;
            }
            if (m->falcon) {
                rms(dbc, R, NULL, m->mix_eps);
                rms(dbc + R, N, NULL, m->mix_eps);
                rms(dbc + R + N, N, NULL, m->mix_eps);
            }
            const double *Bt = dbc + R, *Ct = dbc + R + N;
            for (int i = 0; i < Di; i++) {
                double v = m->dtb[l][i];
                for (int r = 0; r < R; r++) v += m->dtp[l][i * R + r] * dbc[r];
                const double delta = v > 20 ? v : log1p(exp(v)), x = xc[t * Di + i];
                double acc = 0;
                for (int n = 0; n < N; n++) {
                    const double A = -exp((double)m->A_log[l][i * N + n]);
                    st[i * N + n] = exp(A * delta) * st[i * N + n] + delta * Bt[n] * x;
                    acc += st[i * N + n] * Ct[n];
                }
                y[i] = (acc + m->D[l][i] * x) * silu(zs[t * Di + i]);
            }
            for (int c = 0; c < d; c++) {
                double acc = m->out_b[l] ? m->out_b[l][c] : 0;
                for (int i = 0; i < Di; i++) acc += m->out_w[l][(int64_t)c * Di + i] * y[i];
                hs[t * d + c] += acc;
            }
        }
    }
    const float *head = m->tied ? m->embed : m->lm_head;
    for (int t = 0; t < T; t++) {
        for (int c = 0; c < d; c++) u[c] = hs[t * d + c];
        rms(u, d, m->norm_f, m->eps);
        for (int v = 0; v < m->V; v++) {
            double acc = 0;
            for (int c = 0; c < d; c++) acc += head[(int64_t)v * d + c] * u[c];
            logits[(int64_t)t * m->V + v] = acc;
        }
    }
    free(hs), free(u), free(xs), free(zs), free(xc), free(st), free(dbc), free(y);
}

static srp_engine *open_dir(const char *dir, int seqs, srp_err *e) {
    srp_engine_opts o;
    srp_engine_opts_default(&o);
    o.backend = "cpu";
    o.n_threads = 2;
    o.max_seqs = seqs;
    o.max_batch_tokens = 256;
    o.max_logits = 256;
    o.max_seq_len = 512;
    srp_engine *eng = NULL;
    if (srp_engine_open(dir, &o, &eng, e)) return NULL;
    return eng;
}

/* The logits of ids fed in pieces of `piece` tokens (0: one step), into out [T][V]. */
static int engine_logits(srp_engine *eng, const int32_t *ids, int T, int piece, float *out) {
    srp_seq s;
    srp_err e = { 0 };
    if (srp_seq_open(eng, &s, &e)) return -1;
    const int step = piece > 0 ? piece : T;
    for (int i = 0; i < T; i += step) {
        const int k = T - i < step ? T - i : step;
        srp_step_item it = { &s, ids + i, k, SRP_LOGITS_ALL, 0 };
        srp_mat lg;
        if (srp_engine_step(eng, &it, 1, &lg, &e) ||
            srp_engine_logits_to_host(eng, lg, 0, k, out + (size_t)i * lg.cols, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            srp_seq_close(eng, &s);
            return -1;
        }
    }
    srp_seq_close(eng, &s);
    return 0;
}

static double rel(const float *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (a[i] != a[i]) return INFINITY;
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static void check_tiny(tiny *m, const char *what) {
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/serpent_mamba1_XXXXXX");
    REQUIRE(mkdtemp(dir));
    m->Di = 2 * m->d;
    tiny_init(m);
    tiny_write(m, dir, NULL);
    enum { T = 45 };
    int32_t ids[T];
    for (int t = 0; t < T; t++) ids[t] = (t * 7 + 3) % m->V;
    double *ref = malloc(sizeof(double) * T * m->V);
    float *got = malloc(sizeof(float) * T * m->V);
    tiny_reference(m, ids, T, ref);
    srp_err e = { 0 };
    srp_engine *eng = open_dir(dir, 2, &e);
    CHECKF(eng != NULL, "%s", e.msg);
    if (eng) {
        const int pieces[3] = { 0, 1, 13 }; /* one prefill, decode steps, chunked prefill */
        for (int k = 0; k < 3; k++) {
            REQUIRE(engine_logits(eng, ids, T, pieces[k], got) == 0);
            double err = rel(got, ref, (int64_t)T * m->V);
            CHECKF(err < 1e-4, "%s, pieces of %d: logits relative error %.3g", what, pieces[k],
                   err);
            fprintf(stderr, "  %s, pieces of %d: logits relative error %.2e\n", what, pieces[k],
                    err);
        }
        /* per slot: every layer's conv window [Di][K-1] and SSM state [Di][N], fp32 */
        CHECK(srp_engine_slot_bytes(eng) == (int64_t)m->L * m->Di * (m->K - 1 + m->N) * 4);
        srp_engine_close(eng);
    }
    /* a missing tensor names the file and the tensor */
    tiny_write(m, dir, "backbone.layers.1.mixer.x_proj.weight");
    eng = open_dir(dir, 1, &e);
    CHECK(eng == NULL);
    if (eng) srp_engine_close(eng);
    CHECK_STR_CONTAINS(e.msg, "backbone.layers.1.mixer.x_proj.weight");
    /* so does a tensor of the wrong shape (x_proj is the first with a state-sized dimension) */
    m->cfg_extra_state = 1;
    tiny_write(m, dir, NULL);
    m->cfg_extra_state = 0;
    eng = open_dir(dir, 1, &e);
    CHECK(eng == NULL);
    if (eng) srp_engine_close(eng);
    CHECK_STR_CONTAINS(e.msg, "backbone.layers.0.mixer.x_proj.weight");
    CHECK_STR_CONTAINS(e.msg, "model.safetensors");
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", dir), unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir), unlink(path);
    rmdir(dir);
    free(ref), free(got);
    tiny_free(m);
}

TEST(mamba1_tiny_checkpoint_matches_reference_forward) {
    tiny m = { .V = 37,
               .d = 12,
               .L = 2,
               .N = 6,
               .K = 4,
               .R = 2,
               .bias = 0,
               .conv_bias = 1,
               .tied = 1,
               .eps = 1e-5f,
               .mix_eps = 1e-6f };
    check_tiny(&m, "mamba tied");
    tiny u = { .V = 29,
               .d = 16,
               .L = 3,
               .N = 5,
               .K = 3,
               .R = 3,
               .bias = 1,
               .conv_bias = 0,
               .tied = 0,
               .eps = 1e-6f,
               .mix_eps = 1e-6f };
    check_tiny(&u, "mamba untied, biases, conv 3");
}

TEST(falcon_mamba_tiny_checkpoint_matches_reference_forward) {
    tiny m = { .V = 31,
               .d = 16,
               .L = 2,
               .N = 8,
               .K = 4,
               .R = 3,
               .bias = 0,
               .conv_bias = 1,
               .tied = 0,
               .eps = 1e-5f,
               .mix_eps = 1e-3f,
               .falcon = 1 };
    check_tiny(&m, "falcon_mamba");
}
