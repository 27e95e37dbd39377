/* The layer stack, written once over the backend interface: the embedding, then the model's
 * blocks — each a pre-norm, one or more mixers reading it, their outputs added into the residual
 * stream — then the final norm and the output head on the rows whose logits are wanted. What a
 * block holds is data (engine/model.h); what a mixer computes is in engine/mixer_*.c. */
#include "mixer.h"

const srp_mixer_ops *srp_mixer_ops_of(srp_mixer_kind kind) {
    switch (kind) {
    case SRP_MIXER_MAMBA2:
        return &srp_mixer_mamba2_ops;
    case SRP_MIXER_ATTENTION:
        return &srp_mixer_attention_ops;
    case SRP_MIXER_MLP:
        return &srp_mixer_mlp_ops;
    case SRP_MIXER_MAMBA1:
        return &srp_mixer_mamba1_ops;
    case SRP_MIXER_MOE:
        return &srp_mixer_moe_ops;
    case SRP_MIXER_COUNT:
        break;
    }
    return NULL;
}

/* The norm input of block i (engine/config.h srp_block_in), built in the workspace. */
static int block_input(srp_engine *eng, const srp_block_desc *bd, int T, srp_mat *x, srp_err *e) {
    srp_backend *be = eng->be;
    const int64_t d = eng->model.cfg.d_model;
    const srp_mat resid = srp_ws_rows(eng->ws.resid, T), aux = srp_ws_rows(eng->ws.aux, T);
    switch (bd->in) {
    case SRP_IN_RESID:
        *x = resid;
        return 0;
    case SRP_IN_CONCAT_EMBED: /* ws.wide holds e in its right half since the embedding */
        *x = srp_ws_rows(eng->ws.wide, T);
        return be->add(be, resid, NULL, srp_mat_cols(*x, 0, d), e);
    case SRP_IN_AUX:
        *x = aux;
        return 0;
    case SRP_IN_RESID_AUX: /* the aux stream is consumed here: x + aux takes its place */
        *x = aux;
        return be->add(be, resid, &aux, aux, e);
    }
    return srp_err_set(e, SRP_EINVAL, "block input mode %d", (int)bd->in);
}

/* Everything after begin_step: embedding, blocks, head. */
static int run_layers(srp_engine *eng, const srp_batch *b, srp_err *e) {
    srp_backend *be = eng->be;
    const srp_model *m = &eng->model;
    const int T = b->n_tokens;
    srp_mat resid = srp_ws_rows(eng->ws.resid, T);
    SRP_TRY(be->embed(be, &m->embed, m->cfg.embed_mult, resid, e));
    if (srp_config_uses_embed(&m->cfg))
        SRP_TRY(be->add(be, resid, NULL,
                        srp_mat_cols(srp_ws_rows(eng->ws.wide, T), m->cfg.d_model, m->cfg.d_model),
                        e));
    for (int i = 0; i < m->cfg.n_blocks; i++) {
        const srp_block *bl = &m->blocks[i];
        const srp_block_desc *bd = &m->cfg.blocks[i];
        srp_mat x;
        SRP_TRY(block_input(eng, bd, T, &x, e));
        eng->io.in = srp_mat_cols(srp_ws_rows(eng->ws.normed, T), 0, x.cols);
        SRP_TRY(be->rmsnorm(be, x, &bl->norm, m->cfg.norm_eps, eng->io.in, e));
        eng->io.out = bd->out == SRP_OUT_AUX ? srp_ws_rows(eng->ws.aux, T) : resid;
        for (int k = 0; k < bl->n_mixers; k++) {
            const srp_mixer *mx = &bl->mixer[k];
            eng->io.acc = bd->out == SRP_OUT_RESID || k > 0;
            int rc = srp_mixer_ops_of(mx->kind)->run(eng, mx, T, e);
            if (rc)
                return srp_err_prefix(e, "layer %d (%s)", bd->layer, srp_mixer_kind_name(mx->kind));
        }
    }
    if (b->n_logits == 0) return 0;
    srp_mat head_in = srp_ws_rows(eng->ws.head_in, b->n_logits);
    srp_mat head_norm = srp_ws_rows(eng->ws.head_norm, b->n_logits);
    SRP_TRY(be->gather_rows(be, resid, head_in, e));
    SRP_TRY(be->rmsnorm(be, head_in, &m->norm_f, m->cfg.norm_eps, head_norm, e));
    return be->gemm(be, head_norm, &m->lm_head, NULL, srp_ws_rows(eng->ws.logits, b->n_logits),
                    m->cfg.logits_mult, 0, e);
}

/* A decode-only step (every sequence one token, every one wanting logits) has the same shape
 * every time for a given batch size, so the backend can replay it as one graph: the launch
 * overhead of the ~8 operations per layer would otherwise rival the step itself. */
static int graph_key(srp_engine *eng, const srp_batch *b) {
    if (!eng->use_graphs || eng->count_experts || !eng->be->graph_replay) return -1;
    if (b->n_tokens != b->n_seqs || b->n_logits != b->n_seqs) return -1;
    for (int i = 0; i < b->n_logits; i++)
        if (b->logit_rows[i] != i) return -1;
    /* The first step of a batch size runs eagerly: operations allocate their lazily made
     * buffers there (no allocation may happen while a graph records). */
    if (!eng->graph_seen[b->n_seqs]) {
        eng->graph_seen[b->n_seqs] = 1;
        return -1;
    }
    return b->n_seqs;
}

int srp_forward(srp_engine *eng, const srp_batch *b, srp_mat *logits, srp_err *e) {
    srp_backend *be = eng->be;
    eng->experts_used = 0;
    SRP_TRY(be->begin_step(be, b, e));
    *logits = srp_ws_rows(eng->ws.logits, b->n_logits);
    const int key = graph_key(eng, b);
    if (key < 0) return run_layers(eng, b, e);
    int rc = be->graph_replay(be, key, e);
    if (rc != 0) return rc < 0 ? rc : 0;
    SRP_TRY(be->graph_begin(be, key, e));
    rc = run_layers(eng, b, e);
    if (rc) {
        srp_err ignored;
        be->graph_end(be, -1, &ignored);
        return rc;
    }
    return be->graph_end(be, key, e);
}
