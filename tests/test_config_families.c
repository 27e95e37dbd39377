/* config.json of the Bamba, Falcon-H1, Zamba2 and Llama families: how each becomes blocks of the
 * layer stack, the defaults transformers applies to missing keys, and errors that name the
 * field. (The numbers the blocks compute are the fixture tests' business.) */
#include "config.h"
#include "test.h"

static int parse(srp_config *c, const char *json, srp_err *e) {
    return srp_config_parse(c, json, strlen(json), "config.json", e);
}

TEST(config_falcon_h1_parallel_blocks_and_multipliers) {
    srp_config c;
    srp_err e = { 0 };
    /* mamba_d_ssm absent: FalconH1Config's 1024, whatever expand * hidden is */
    const char *text = "{\"architectures\": [\"FalconH1ForCausalLM\"], \"hidden_size\": 64,"
                       " \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                       " \"num_key_value_heads\": 2, \"mamba_n_heads\": 16, \"mamba_d_state\": 256,"
                       " \"mamba_rms_norm\": true, \"embedding_multiplier\": 2.5,"
                       " \"ssm_multipliers\": [1, 2, 3, 4, 5], \"mlp_multipliers\": [0.5, 0.25]}";
    REQUIRE(parse(&c, text, &e) == 0);
    CHECK(c.arch == SRP_ARCH_FALCON_H1 && c.n_blocks == 4);
    CHECK(c.blocks[0].n_mixers == 2 && c.blocks[0].mixer[0] == SRP_MIXER_ATTENTION &&
          c.blocks[0].mixer[1] == SRP_MIXER_MAMBA2);
    CHECK(c.blocks[1].n_mixers == 1 && c.blocks[1].mixer[0] == SRP_MIXER_MLP);
    CHECK(c.mamba2.d_inner == 1024 && c.mamba2.head_dim == 64 && c.mamba2.state == 256);
    CHECK(c.mamba2.gate_norm == SRP_GATE_NORM_BEFORE); /* mamba_norm_before_gate defaults true */
    CHECK(c.embed_mult == 2.5f && c.mamba2.part_mult[4] == 5.0f && c.mlp.gate_mult == 0.5f &&
          c.mlp.out_mult == 0.25f && c.mlp.gated);
    CHECK(c.attn.head_dim == 16 && c.attn.rope.kind == SRP_ROPE_DEFAULT && c.attn.rope.dim == 16);
    /* null: expand * hidden; and without mamba_rms_norm the mixer has no norm */
    text = "{\"model_type\": \"falcon_h1\", \"hidden_size\": 64, \"num_hidden_layers\": 1,"
           " \"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"mamba_n_heads\": 2,"
           " \"mamba_d_ssm\": null}";
    REQUIRE(parse(&c, text, &e) == 0);
    CHECK(c.mamba2.d_inner == 128 && c.mamba2.gate_norm == SRP_GATE_NO_NORM);
    text = "{\"model_type\": \"falcon_h1\", \"hidden_size\": 64, \"num_hidden_layers\": 1,"
           " \"num_attention_heads\": 4, \"mamba_n_heads\": 3, \"mamba_d_head\": 16,"
           " \"mamba_d_ssm\": 64}";
    CHECK(parse(&c, text, &e) == SRP_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "mamba_d_ssm");
    text = "{\"model_type\": \"falcon_h1\", \"hidden_size\": 64, \"num_hidden_layers\": 1,"
           " \"num_attention_heads\": 4, \"mamba_n_heads\": 2, \"ssm_multipliers\": [1, 2]}";
    CHECK(parse(&c, text, &e) == SRP_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "ssm_multipliers");
}

TEST(config_bamba_layers_and_partial_rotary) {
    srp_config c;
    srp_err e = { 0 };
    const char *text =
        "{\"architectures\": [\"BambaForCausalLM\"], \"hidden_size\": 64,"
        " \"num_hidden_layers\": 3, \"num_attention_heads\": 4,"
        " \"num_key_value_heads\": 1, \"mamba_n_heads\": 8, \"mamba_d_head\": \"auto\","
        " \"attn_layer_indices\": [1], \"partial_rotary_factor\": 1.0}";
    REQUIRE(parse(&c, text, &e) == 0);
    CHECK(c.arch == SRP_ARCH_BAMBA && c.n_blocks == 6);
    CHECK(c.blocks[0].mixer[0] == SRP_MIXER_MAMBA2 && c.blocks[2].mixer[0] == SRP_MIXER_ATTENTION &&
          c.blocks[3].mixer[0] == SRP_MIXER_MLP && c.blocks[4].mixer[0] == SRP_MIXER_MAMBA2);
    CHECK(c.mamba2.head_dim == 16 && c.mamba2.norm_group == c.mamba2.d_inner);
    /* transformers hard-codes half of each head, whatever the file says */
    CHECK(c.attn.head_dim == 16 && c.attn.rope.dim == 8);
    text = "{\"model_type\": \"bamba\", \"hidden_size\": 64, \"num_hidden_layers\": 3,"
           " \"num_attention_heads\": 4, \"mamba_n_heads\": 8, \"attn_layer_indices\": [3]}";
    CHECK(parse(&c, text, &e) == SRP_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "attn_layer_indices");
}

TEST(config_zamba2_shared_blocks_as_data) {
    srp_config c;
    srp_err e = { 0 };
    const char *text =
        "{\"architectures\": [\"Zamba2ForCausalLM\"], \"hidden_size\": 32, \"num_hidden_layers\": "
        "4,"
        " \"layers_block_type\": [\"mamba\", \"hybrid\", \"linear_attention\", \"hybrid\"],"
        " \"num_attention_heads\": 4, \"n_mamba_heads\": 4, \"num_mem_blocks\": 2,"
        " \"use_shared_attention_adapter\": true, \"adapter_rank\": 8, \"use_mem_rope\": true,"
        " \"rms_norm_eps\": 1e-6, \"time_step_min\": 0.01}";
    REQUIRE(parse(&c, text, &e) == 0);
    CHECK(c.arch == SRP_ARCH_ZAMBA2 && c.n_blocks == 8);
    /* layer 1: attention on [x | e] into aux, the MLP from aux into aux, Mamba on x + aux */
    CHECK(c.blocks[1].mixer[0] == SRP_MIXER_ATTENTION && c.blocks[1].in == SRP_IN_CONCAT_EMBED &&
          c.blocks[1].out == SRP_OUT_AUX && c.blocks[1].shared_id == 1);
    CHECK(c.blocks[2].mixer[0] == SRP_MIXER_MLP && c.blocks[2].in == SRP_IN_AUX &&
          c.blocks[2].out == SRP_OUT_AUX && c.blocks[2].shared_id == 2);
    CHECK(c.blocks[3].mixer[0] == SRP_MIXER_MAMBA2 && c.blocks[3].in == SRP_IN_RESID_AUX &&
          c.blocks[3].out == SRP_OUT_RESID && c.blocks[3].shared_id == 0);
    CHECK(c.blocks[5].shared_id == 3 && c.blocks[6].shared_id == 4); /* the second block */
    CHECK(srp_config_norm_width(&c, 1) == 64 && srp_config_norm_width(&c, 2) == 32);
    CHECK(c.attn.d_in == 64 && c.attn.head_dim == 16 && c.attn.adapter_rank == 8);
    CHECK(fabsf(c.attn.scale - 1.0f / sqrtf(8.0f)) < 1e-7f && c.attn.rope.dim == 16);
    CHECK(c.mamba2.norm_eps == 1e-5f && c.norm_eps == 1e-6f); /* the gated norm's eps is fixed */
    CHECK(c.mamba2.dt_min == 0.01f && isinf(c.mamba2.dt_max) && c.mamba2.conv_bias);
    CHECK(c.mlp.gated && c.mlp.act == SRP_ACT_GELU && c.mlp.post_proj && c.tie_embeddings);
    text = "{\"model_type\": \"zamba2\", \"hidden_size\": 32, \"num_hidden_layers\": 3,"
           " \"layers_block_type\": [\"mamba\", \"hybrid\"], \"num_attention_heads\": 4,"
           " \"n_mamba_heads\": 4}";
    CHECK(parse(&c, text, &e) == SRP_EFORMAT);
    CHECK_STR_CONTAINS(e.msg, "layers_block_type");
    text = "{\"model_type\": \"zamba2\", \"hidden_size\": 32, \"num_hidden_layers\": 1,"
           " \"layers_block_type\": [\"hybrid\"], \"num_attention_heads\": 4,"
           " \"n_mamba_heads\": 4, \"use_mem_rope\": true, \"use_long_context\": true}";
    CHECK(parse(&c, text, &e) == SRP_EUNSUPPORTED);
    CHECK_STR_CONTAINS(e.msg, "use_long_context");
}

TEST(config_llama_rope_spellings) {
    srp_config c;
    srp_err e = { 0 };
    const char *text = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64,"
                       " \"num_hidden_layers\": 2, \"num_attention_heads\": 4,"
                       " \"num_key_value_heads\": 2, \"rope_theta\": 500000.0,"
                       " \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 3.0},"
                       " \"max_position_embeddings\": 48, \"tie_word_embeddings\": true}";
    REQUIRE(parse(&c, text, &e) == 0);
    CHECK(c.arch == SRP_ARCH_LLAMA && c.n_blocks == 4 && c.tie_embeddings);
    CHECK(c.blocks[0].mixer[0] == SRP_MIXER_ATTENTION && c.blocks[1].mixer[0] == SRP_MIXER_MLP);
    CHECK(c.attn.head_dim == 16 && c.attn.rope.kind == SRP_ROPE_DYNAMIC &&
          c.attn.rope.factor == 3.0f && c.attn.rope.theta == 500000.0f &&
          c.attn.rope.max_positions == 48);
    CHECK(c.mlp.gated && c.mlp.act == SRP_ACT_SILU && c.norm_eps == 1e-6f);
    text = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 1,"
           " \"num_attention_heads\": 4, \"head_dim\": 32,"
           " \"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"rope_theta\": 1e4,"
           " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
           " \"original_max_position_embeddings\": 8192}}";
    REQUIRE(parse(&c, text, &e) == 0);
    CHECK(c.attn.head_dim == 32 && c.attn.rope.kind == SRP_ROPE_LLAMA3 &&
          c.attn.rope.original_max_positions == 8192);
    text = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 1,"
           " \"num_attention_heads\": 4, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}}";
    CHECK(parse(&c, text, &e) == SRP_EUNSUPPORTED);
    CHECK_STR_CONTAINS(e.msg, "yarn");
}
