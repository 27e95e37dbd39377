/* LlamaForCausalLM (transformers' modeling_llama.py), the Transformer++ baseline: every layer is
 * two blocks, attention (GQA, RoPE, optional q/k/v/o biases) then a SwiGLU MLP, each behind its
 * RMSNorm; tied or untied head.
 *
 * RoPE scaling: default, linear and llama3 change the frequencies once, at load
 * (engine/load_mixers.c). Dynamic NTK scaling depends on the sequence: transformers recomputes
 * the base from the largest position of each forward call (L = n_past + the call's length, when
 * L > max_position_embeddings) and rotates that call's queries and keys with it, while the keys
 * already cached keep the rotation they were stored with. serpent's rope op does the same per
 * sequence and per step (backend.h srp_rope_params), so a prompt prefilled in one step and then
 * decoded a token at a time reproduces transformers' cached generate() (its greedy tokens), and
 * a sequence fed a token at a time reproduces its token-by-token logits (the fixtures'
 * logits_stepwise_K.f32); the uncached logits of a whole prompt (logits_K.f32) are the one-step
 * prefill. A prompt prefilled in several chunks rotates every chunk as the one-step prefill
 * would (srp_step_item.call_len), so the reply does not depend on how the scheduler cut the
 * prompt; the prefix cache is off for these models (a cached prefix's keys would carry another
 * prompt's rotation). vLLM instead fixes the base at max_position_embeddings * factor. */
#include <math.h>
#include <string.h>

#include "arch.h"

static int parse(srp_config *c, const srp_cfg_reader *r) {
    srp_attn_config *a = &c->attn;
    srp_mlp_config *f = &c->mlp;
    int rc = 0;
    /* Defaults are LlamaConfig's. */
    if (!rc) rc = srp_cfg_int(r, "vocab_size", NULL, 32000, 1, &c->vocab_size);
    if (!rc) rc = srp_cfg_int(r, "hidden_size", NULL, 4096, 1, &c->d_model);
    if (!rc) rc = srp_cfg_int(r, "num_hidden_layers", NULL, 32, 1, &c->n_layers);
    if (!rc) rc = srp_cfg_floatf(r, "rms_norm_eps", NULL, 1e-6, &c->norm_eps);
    if (!rc) rc = srp_cfg_bool(r, "tie_word_embeddings", NULL, 0, &c->tie_embeddings);
    if (!rc) rc = srp_cfg_int(r, "num_attention_heads", NULL, 32, 1, &a->heads);
    if (!rc) rc = srp_cfg_int(r, "num_key_value_heads", NULL, a->heads, 1, &a->kv_heads);
    if (!rc) {
        const int def_hd = c->d_model / a->heads;
        rc = srp_cfg_int(r, "head_dim", NULL, def_hd > 0 ? def_hd : 1, 1, &a->head_dim);
    }
    if (!rc) rc = srp_cfg_bool(r, "attention_bias", NULL, 0, &a->qkv_bias);
    if (!rc) rc = srp_cfg_int(r, "intermediate_size", NULL, 11008, 1, &f->hidden);
    if (!rc) rc = srp_cfg_bool(r, "mlp_bias", NULL, 0, &f->bias);
    if (!rc) rc = srp_cfg_act(r, "hidden_act", "silu", &f->act);
    if (!rc) rc = srp_cfg_rope(r, a->head_dim, &a->rope);
    if (rc) return rc;
    if (c->n_layers > SRP_MAX_LAYERS)
        return srp_err_set(r->e, SRP_EUNSUPPORTED, "%s: more than %d layers", r->file,
                           SRP_MAX_LAYERS);
    a->o_bias = a->qkv_bias;
    a->scale = 1.0f / sqrtf((float)a->head_dim);
    f->gated = 1;
    for (int i = 0; i < c->n_layers && !rc; i++) {
        rc = srp_cfg_add_block(c, r, i, 1, SRP_MIXER_ATTENTION, 0);
        if (!rc) rc = srp_cfg_add_block(c, r, i, 1, SRP_MIXER_MLP, 0);
    }
    return rc;
}

static int load(srp_loader *L) {
    const srp_config *c = &srp_loader_model(L)->cfg;
    int rc = srp_load_embedding(L);
    for (int b = 0; !rc && b < c->n_blocks; b++) {
        const int l = c->blocks[b].layer, attn = c->blocks[b].mixer[0] == SRP_MIXER_ATTENTION;
        srp_block *bl = srp_load_block(L, b,
                                       srp_lname(L,
                                                 attn ? "layers.%d.input_layernorm.weight"
                                                      : "layers.%d.post_attention_layernorm.weight",
                                                 l),
                                       c->d_model);
        if (!bl) return srp_loader_failed(L);
        rc = attn ? srp_load_attn_mixer(L, bl, srp_lname(L, "layers.%d.self_attn.", l))
                  : srp_load_mlp_mixer(L, bl, srp_lname(L, "layers.%d.mlp.", l), NULL);
    }
    static const char *const norms[] = { "norm.weight", NULL };
    if (!rc) rc = srp_load_head(L, norms, c->tie_embeddings);
    return rc;
}

const srp_arch_desc srp_arch_llama = {
    SRP_ARCH_LLAMA, { "LlamaForCausalLM", "llama" }, parse, load
};
