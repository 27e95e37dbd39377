/* The mixture-of-experts mixer: the router's GEMM into fp32 logits, the routing, the routed
 * experts (inside the latent projections when the model has them) added into the residual
 * stream, then the shared expert. */
#include <stdlib.h>

#include "mixer.h"

/* Benchmarks' count of the distinct experts this layer's tokens went to (a host copy). */
static int count_used(srp_engine *eng, const srp_moe_routing *r, int T, srp_err *e) {
    const srp_moe_config *c = &eng->model.cfg.moe;
    const int64_t n = (int64_t)T * c->top_k;
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    unsigned char *seen = calloc((size_t)c->n_experts, 1);
    int rc = ids && seen ? 0 : srp_err_set(e, SRP_ENOMEM, "out of memory");
    if (!rc) rc = eng->be->download(eng->be, ids, r->ids.data, (size_t)n * sizeof *ids, e);
    for (int64_t i = 0; !rc && i < n; i++)
        if (ids[i] >= 0 && ids[i] < c->n_experts && !seen[ids[i]]++) eng->experts_used++;
    free(ids);
    free(seen);
    return rc;
}

/* The shared expert: an MLP of its own width, into the residual stream. */
static int shared_expert(srp_engine *eng, const srp_mlp_weights *w, int T, srp_err *e) {
    srp_backend *be = eng->be;
    const srp_config *cfg = &eng->model.cfg;
    const srp_moe_config *c = &cfg->moe;
    const int64_t H = c->shared_hidden;
    srp_mat x = srp_mixer_in(eng, T), proj = srp_ws_rows(eng->ws.proj, T);
    srp_mat h = srp_mat_cols(proj, 0, H);
    if (c->shared_gated) {
        SRP_TRY(be->gemm(be, x, &w->up, NULL, srp_mat_cols(proj, 0, 2 * H), 1.0f, 0, e));
        SRP_TRY(be->activate_gated(be, c->shared_act, h, srp_mat_cols(proj, H, H), h, e));
    } else {
        SRP_TRY(be->gemm(be, x, &w->up, srp_opt(&w->up_bias), h, 1.0f, 0, e));
        SRP_TRY(be->activate(be, c->shared_act, h, e));
    }
    /* the routed experts wrote the block's output already: add to it */
    return be->gemm(be, h, &w->down, srp_opt(&w->down_bias), srp_mixer_out(eng, T), cfg->resid_mult,
                    1, e);
}

static int run(srp_engine *eng, const srp_mixer *mx, int T, srp_err *e) {
    srp_backend *be = eng->be;
    const srp_config *cfg = &eng->model.cfg;
    const srp_moe_config *c = &cfg->moe;
    const srp_moe_weights *w = mx->w;
    const int E = c->n_experts, K = c->top_k;
    srp_mat x = srp_mixer_in(eng, T);
    srp_mat f32 = srp_ws_rows(eng->ws.moe_f32, T);
    srp_mat logits = srp_mat_cols(f32, 0, E);
    SRP_TRY(be->gemm(be, x, &w->router, NULL, logits, 1.0f, 0, e));
    const srp_mat ids = { eng->ws.moe_i32.data, SRP_I32, T, K, K };
    const srp_moe_routing r = { ids, srp_mat_cols(f32, E, K),
                                (int32_t *)eng->ws.moe_i32.data +
                                    (int64_t)eng->opts.max_batch_tokens * K };
    const srp_moe_route_params rp = {
        E, K, c->score, c->n_group, c->topk_group, c->norm_topk, c->scale, srp_opt(&w->bias)
    };
    SRP_TRY(be->moe_route(be, &rp, logits, &r, e));
    if (eng->count_experts) SRP_TRY(count_used(eng, &r, T, e));
    const srp_moe_experts_params ep = {
        E, K, c->hidden, c->act, c->gated, &w->up, &w->down, srp_ws_rows(eng->ws.moe_rows, T * K)
    };
    srp_mat resid = srp_mixer_out(eng, T);
    const int acc = eng->io.acc;
    if (c->latent) {
        srp_mat lat = srp_mat_cols(srp_ws_rows(eng->ws.proj, T), 0, c->latent);
        srp_mat lat_out = srp_mat_cols(srp_ws_rows(eng->ws.mix, T), 0, c->latent);
        SRP_TRY(be->gemm(be, x, &w->fc1, srp_opt(&w->fc1_bias), lat, 1.0f, 0, e));
        SRP_TRY(be->moe_experts(be, &ep, &r, lat, lat_out, 1.0f, 0, e));
        SRP_TRY(
            be->gemm(be, lat_out, &w->fc2, srp_opt(&w->fc2_bias), resid, cfg->resid_mult, acc, e));
    } else {
        SRP_TRY(be->moe_experts(be, &ep, &r, x, resid, cfg->resid_mult, acc, e));
    }
    return c->shared_hidden ? shared_expert(eng, &w->shared, T, e) : 0;
}

static void ws_need(const srp_config *cfg, srp_ws_need *n) {
    const srp_moe_config *c = &cfg->moe;
    const int64_t in = c->latent ? c->latent : cfg->d_model;
    srp_ws_raise(&n->proj, c->latent);
    srp_ws_raise(&n->proj, (int64_t)c->shared_hidden * (c->shared_gated ? 2 : 1));
    srp_ws_raise(&n->mix, c->latent);
    srp_ws_raise(&n->moe_f32, (int64_t)c->n_experts + c->top_k);
    srp_ws_raise(&n->moe_k, c->top_k);
    srp_ws_raise(&n->moe_cols, 2 * in + (int64_t)c->hidden * (c->gated ? 2 : 1));
    srp_ws_raise(&n->moe_experts, c->n_experts);
}

const srp_mixer_ops srp_mixer_moe_ops = { run, ws_need };
