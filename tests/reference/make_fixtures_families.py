#!/usr/bin/env python3
"""Builds the reference fixtures of the new model families with transformers' own classes.

Runs on the GPU machine (torch, transformers 5.x, safetensors, tokenizers, jinja2; no network), on
the CPU, in float32, on transformers' pure-PyTorch paths (use_mamba_kernels=False where the config
has it; mamba_ssm / causal_conv1d are not installed there anyway):

    python3 tests/reference/make_fixtures_families.py OUTDIR [--only NAME ...] [--holdout] [--list]

--holdout writes a second, different batch of random configs of every family (other shapes,
seeds, dtypes, group and expert counts, rope types, layer layouts) into OUTDIR: not for the
repository, for checking that serpent reproduces transformers on models nobody tuned it for.

Every fixture folder has the checkpoint (config.json, safetensors, generation_config.json, and
for some tokenizer.json + tokenizer_config.json) and reference.json, in the format of
tests/reference/make_fixtures.py (prompts[].ids / logits / greedy / margins / uncached_agrees,
text prompts with text / greedy_text / messages), plus:
  "family", "architecture", "storage_dtype", "notes" (what the fixture covers and what a consumer
  must know), "derived" (facts read off the instantiated transformers model: layer kinds, rotary
  inv_freq, attention scaling, tensor dtypes), "routing" (MoE fixtures: distinct experts chosen
  per MoE layer over the prompt tokens; for Nemotron-H the share of choices that the
  e_score_correction_bias changes).
Weights are re-drawn as make_fixtures.py does (unit-variance scaling, A_log / dt_bias / D in
realistic ranges, 3x output head when untied), rounded to the storage dtype before the reference
is computed, saved with save_pretrained, and loaded back with from_pretrained: the reference comes
from the files serpent reads, and the loaded weights are checked equal to the drawn ones.

Each fixture runs in its own try/except (full traceback, then the next one); a summary table closes
the run; the exit status is 1 when a fixture failed. See tests/reference/FAMILIES.md for what each
family computes.
"""
import argparse
import copy
import dataclasses
import glob
import inspect
import json
import math
import os
import re
import shutil
import struct
import sys
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import bpe_tokenizers  # noqa: E402
import make_fixtures as mf  # noqa: E402

PROMPT_LENGTHS = mf.PROMPT_LENGTHS  # [1, 5, 37, 77]
GREEDY_TOKENS = mf.GREEDY_TOKENS  # 24
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}

# family -> (config class, model class), both looked up in transformers by name
FAMILIES = {
    "mamba": ("MambaConfig", "MambaForCausalLM"),
    "falcon_mamba": ("FalconMambaConfig", "FalconMambaForCausalLM"),
    "nemotron_h": ("NemotronHConfig", "NemotronHForCausalLM"),
    "granitemoehybrid": ("GraniteMoeHybridConfig", "GraniteMoeHybridForCausalLM"),
    "jamba": ("JambaConfig", "JambaForCausalLM"),
    "bamba": ("BambaConfig", "BambaForCausalLM"),
    "falcon_h1": ("FalconH1Config", "FalconH1ForCausalLM"),
    "zamba2": ("Zamba2Config", "Zamba2ForCausalLM"),
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
}

# Keys every config takes through PreTrainedConfig (not always visible as fields).
BASE_KEYS = {"tie_word_embeddings", "pad_token_id", "bos_token_id", "eos_token_id", "use_cache",
             "rope_parameters", "rope_scaling", "rope_theta", "num_hidden_layers", "dtype"}
# Legacy spellings a config's __post_init__ pops on purpose.
ALIASES = {"hybrid_override_pattern", "mtp_hybrid_override_pattern", "mamba_n_groups", "mamba_d_conv",
           "mamba_expand", "mamba_chunk_size", "mamba_conv_bias"}

MAMBA2_SSM = ("A_log", "D", "dt_bias")
ROUTER_BIAS = "e_score_correction_bias"

# Shorter than make_fixtures' prompts: a byte-level BPE of 30 merges spends ~1 id per byte.
BPE_TEXT_PROMPTS = [
    "Hello",
    "The license grants you the right to",
    "Copyright (C) 2007 Free Software Foundation, Inc. Everyone is permitted to copy and distribute it.",
    "\u00e9t\u00e9 \u2014 caf\u00e9 na\u00efve \u4f60\u597d \U0001F40D",
]
BPE_CHATS = [
    [{"role": "user", "content": "What does this license allow?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"},
     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Why?"}],
]
CHATML = mf.CHAT_TEMPLATE
CHATML_BOS = "{{ bos_token }}" + mf.CHAT_TEMPLATE
# tokenizer variant -> files and special ids (bpe_tokenizers.py)
TOKENIZERS = {
    # GPT-NeoX style (mamba-*-hf, Falcon-H1): <|endoftext|> is bos/eos/pad, nothing is prepended.
    "neox": dict(variant="chatml", n_ids=304, bos=300, eos=[300], pad=300, template=None,
                 add_bos=False, bos_text="<|endoftext|>", eos_text="<|endoftext|>"),
    # ChatML chat model (Falcon-H1-Instruct style): <|im_end|> ends a turn.
    "chatml": dict(variant="chatml", n_ids=304, bos=300, eos=[303, 300], pad=300, template=CHATML,
                   add_bos=False, bos_text="<|endoftext|>", eos_text="<|im_end|>"),
    # BOS through the tokenizer.json post-processor (TemplateProcessing) and a template that
    # writes {{ bos_token }} itself (Zamba2-instruct style); tokenizer_config has no add_bos_token.
    "bos": dict(variant="bos", n_ids=305, bos=304, eos=[303, 300], pad=300, template=CHATML_BOS,
                add_bos=None, bos_text="<|bos|>", eos_text="<|im_end|>"),
}


def S(name, family, dtype, cfg, notes, **opt):
    return dict(name=name, family=family, dtype=dtype, cfg=cfg, notes=notes, **opt)


# ---------------------------------------------------------------------------------------------
# The committed set
# ---------------------------------------------------------------------------------------------
SPECS = [
    # --- Mamba-1 ---
    S("mamba_tied", "mamba", "bfloat16",
      dict(vocab_size=300, hidden_size=48, state_size=16, num_hidden_layers=3, expand=2, conv_kernel=4,
           time_step_rank="auto", use_bias=False, use_conv_bias=True, residual_in_fp32=True,
           tie_word_embeddings=True, layer_norm_epsilon=1e-5, pad_token_id=0, bos_token_id=0, eos_token_id=0),
      "Mamba-1, tied head, bf16, time_step_rank 'auto' (= ceil(48/16) = 3), conv 4, d_state 16, "
      "conv bias, no in/out bias, residual_in_fp32."),
    S("mamba_untied", "mamba", "float32",
      dict(vocab_size=280, hidden_size=32, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=3,
           time_step_rank=5, use_bias=True, use_conv_bias=True, residual_in_fp32=False,
           tie_word_embeddings=False, layer_norm_epsilon=1e-5, pad_token_id=0, bos_token_id=0, eos_token_id=0),
      "Mamba-1, untied head, fp32, explicit time_step_rank 5, conv 3, d_state 8, in_proj/out_proj "
      "biases (use_bias), residual_in_fp32 false."),
    S("mamba_bpe", "mamba", "float16",
      dict(vocab_size=304, hidden_size=32, state_size=16, num_hidden_layers=2, expand=2, conv_kernel=4,
           time_step_rank="auto", use_bias=False, use_conv_bias=True, residual_in_fp32=True,
           tie_word_embeddings=True, layer_norm_epsilon=1e-5, pad_token_id=300, bos_token_id=300,
           eos_token_id=300),
      "Mamba-1 as state-spaces/mamba-*-hf ship it: tied, GPT-NeoX style byte-level BPE tokenizer.json "
      "(no BOS prepended, <|endoftext|> = 300 is bos/eos/pad), no chat template; text prompts.",
      tokenizer="neox"),
    # --- FalconMamba ---
    S("falcon_mamba", "falcon_mamba", "bfloat16",
      dict(vocab_size=290, hidden_size=48, state_size=16, num_hidden_layers=3, expand=2, conv_kernel=4,
           time_step_rank="auto", use_bias=False, use_conv_bias=True, residual_in_fp32=True,
           tie_word_embeddings=False, layer_norm_epsilon=1e-5, mixer_rms_eps=1e-3,
           pad_token_id=0, bos_token_id=0, eos_token_id=0),
      "FalconMamba: the Mamba-1 mixer plus weightless RMS norms of dt (before dt_proj), B and C, "
      "eps = mixer_rms_eps = 1e-3 (not the default 1e-6, so the key must be read); untied, bf16."),
    # --- Nemotron-H with MoE ---
    S("nemotron_h_moe_pattern", "nemotron_h", "bfloat16",
      dict(vocab_size=320, hidden_size=32, pattern="ME*EM-M", num_attention_heads=4, num_key_value_heads=2,
           head_dim=8, intermediate_size=48, mlp_hidden_act="relu2", ssm_state_size=16, mamba_num_heads=4,
           mamba_head_dim=16, n_groups=2, conv_kernel=4, chunk_size=16, tie_word_embeddings=False,
           n_routed_experts=16, num_experts_per_tok=3, n_group=4, topk_group=2, norm_topk_prob=True,
           routed_scaling_factor=2.5, moe_intermediate_size=16, moe_shared_expert_intermediate_size=24,
           n_shared_experts=1, num_nextn_predict_layers=0),
      "Nemotron-H MoE (Nemotron 3 style) in the published checkpoints' spelling (hybrid_override_pattern "
      "with E, mamba_* keys): 16 routed experts, top-3, n_group 4 / topk_group 2, norm_topk_prob, "
      "routed_scaling_factor 2.5, shared expert 24, relu2 experts; e_score_correction_bias non-zero and "
      "stored fp32 like A_log/D/dt_bias (mixed dtypes in one file); bf16 elsewhere.",
      legacy_nemotron=True, keep_fp32=MAMBA2_SSM + (ROUTER_BIAS,)),
    S("nemotron_h_moe_list", "nemotron_h", "float16",
      dict(vocab_size=300, hidden_size=48, layers_block_type=["linear_attention", "moe", "full_attention", "moe",
                                                             "mlp", "linear_attention"],
           num_attention_heads=4, num_key_value_heads=1, head_dim=12, intermediate_size=40,
           mlp_hidden_act="relu2", ssm_state_size=16, mamba_num_heads=4, mamba_head_dim=24, n_groups=2,
           conv_kernel=4, chunk_size=16, tie_word_embeddings=False, n_routed_experts=8,
           num_experts_per_tok=2, n_group=2, topk_group=1, norm_topk_prob=False, routed_scaling_factor=1.5,
           moe_intermediate_size=24, moe_shared_expert_intermediate_size=32, moe_latent_size=16,
           n_shared_experts=1, num_nextn_predict_layers=0),
      "Nemotron-H MoE with the layers_block_type list transformers writes ('moe' entries), latent MoE "
      "(moe_latent_size 16: fc1_latent_proj -> experts in latent space -> fc2_latent_proj; the router and "
      "the shared expert see the full hidden state), 8 experts, top-2, n_group 2 / topk_group 1, "
      "norm_topk_prob false, routed_scaling_factor 1.5, MQA; fp16 with e_score_correction_bias fp32.",
      keep_fp32=(ROUTER_BIAS,)),
    S("nemotron_h_moe_mtp", "nemotron_h", "float32",
      dict(vocab_size=260, hidden_size=32, layers_block_type=["linear_attention", "moe", "full_attention",
                                                             "linear_attention", "moe"],
           num_attention_heads=4, num_key_value_heads=2, head_dim=8, intermediate_size=32,
           mlp_hidden_act="relu2", ssm_state_size=8, mamba_num_heads=4, mamba_head_dim=16, n_groups=1,
           conv_kernel=4, chunk_size=32, tie_word_embeddings=False, n_routed_experts=8,
           num_experts_per_tok=2, n_group=2, topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.0,
           moe_intermediate_size=16, moe_shared_expert_intermediate_size=16, n_shared_experts=1,
           num_nextn_predict_layers=0),
      "Nemotron-H MoE checkpoint whose config announces multi-token-prediction layers "
      "(num_nextn_predict_layers 1, mtp_layers_block_type [full_attention, moe]) and whose safetensors "
      "carry mtp.* tensors: serpent must load or skip them with a clear message. The MTP layers do not "
      "change the main model's logits: the reference is transformers' main model (it ignores mtp.*).",
      mtp=["full_attention", "moe"]),
    # --- Granite 4.0-H ---
    S("granite_moe_rope", "granitemoehybrid", "bfloat16",
      dict(vocab_size=320, hidden_size=32, intermediate_size=24, num_hidden_layers=5,
           layer_types=["mamba", "attention", "mamba", "mamba", "attention"], num_attention_heads=4,
           num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=False,
           position_embedding_type="rope", rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
           embedding_multiplier=3.0, attention_multiplier=0.2, residual_multiplier=0.5, logits_scaling=2.0,
           num_local_experts=8, num_experts_per_tok=2, shared_intermediate_size=40, mamba_n_heads=4,
           mamba_d_head=16, mamba_n_groups=1, mamba_d_state=16, mamba_d_conv=4, mamba_expand=2,
           mamba_chunk_size=16, mamba_conv_bias=True, mamba_proj_bias=False, hidden_act="silu",
           pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "Granite 4.0-H MoE: layer_types mamba/attention, 8 experts top-2 (softmax over the top-k router "
      "logits) plus the shared MLP, RoPE, GQA, non-trivial muP multipliers (embedding 3, attention 0.2 "
      "replaces 1/sqrt(head_dim), residual 0.5, logits divided by 2); untied, bf16.",
      layer_types_fallback=True),
    S("granite_dense_nope", "granitemoehybrid", "float16",
      dict(vocab_size=300, hidden_size=48, intermediate_size=32, num_hidden_layers=4,
           layer_types=["mamba", "mamba", "attention", "mamba"], num_attention_heads=4, num_key_value_heads=1,
           max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=True,
           position_embedding_type="nope", embedding_multiplier=6.0, attention_multiplier=0.15,
           residual_multiplier=0.3, logits_scaling=3.0, num_local_experts=0, num_experts_per_tok=0,
           shared_intermediate_size=64, mamba_n_heads=6, mamba_d_head=16, mamba_n_groups=1,
           mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=16, mamba_conv_bias=True,
           mamba_proj_bias=False, hidden_act="silu", pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "Granite 4.0-H dense (num_local_experts 0: only the shared MLP, as granite-4.0-h-micro), no "
      "position embedding ('nope'), MQA, tied, fp16, muP multipliers 6 / 0.15 / 0.3 / 3.",
      layer_types_fallback=True),
    # --- Jamba ---
    S("jamba_moe", "jamba", "bfloat16",
      dict(vocab_size=300, hidden_size=32, intermediate_size=32, num_hidden_layers=6, num_attention_heads=4,
           num_key_value_heads=2, attn_layer_period=3, attn_layer_offset=1, expert_layer_period=2,
           expert_layer_offset=1, num_experts=4, num_experts_per_tok=2, mamba_d_state=8, mamba_d_conv=4,
           mamba_expand=2, mamba_dt_rank="auto", mamba_conv_bias=True, mamba_proj_bias=False,
           use_mamba_kernels=False, rms_norm_eps=1e-6, tie_word_embeddings=False, hidden_act="silu",
           max_position_embeddings=4096, pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "Jamba: attention at layers 1 and 4 (attn_layer_period 3, offset 1; no RoPE at all), MoE at "
      "1, 3, 5 (expert_layer_period 2, offset 1), 4 experts top-2 (softmax over all experts, top-k, no "
      "renormalisation), dense SwiGLU elsewhere, Mamba-1 mixers with learned dt/B/C RMS norms, "
      "mamba_dt_rank 'auto' (= 2), GQA; bf16."),
    # --- Bamba ---
    S("bamba", "bamba", "bfloat16",
      dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
           num_key_value_heads=2, attn_layer_indices=[1, 3], mamba_n_heads=4, mamba_d_head=16, mamba_n_groups=1,
           mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=16, mamba_conv_bias=True,
           mamba_proj_bias=False, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
           rms_norm_eps=1e-5, tie_word_embeddings=False, hidden_act="silu", max_position_embeddings=4096,
           pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "Bamba: Mamba-2 (n_groups 1, chunk 16 -> several SSD chunks per prompt) with a SwiGLU MLP after "
      "every mixer, attention at attn_layer_indices [1, 3] with partial rotary (transformers hard-codes "
      "partial_rotary_factor 0.5: see derived.rotary), GQA; bf16."),
    # --- Falcon-H1 ---
    S("falcon_h1_bpe", "falcon_h1", "bfloat16",
      dict(vocab_size=304, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
           num_key_value_heads=2, mamba_d_ssm=48, mamba_n_heads=4, mamba_d_head=12, mamba_n_groups=2,
           mamba_d_state=64, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=16, mamba_conv_bias=True,
           mamba_proj_bias=False, mamba_rms_norm=True, mamba_norm_before_gate=False,
           rope_parameters={"rope_type": "default", "rope_theta": 100000.0}, rms_norm_eps=1e-5,
           embedding_multiplier=2.5, lm_head_multiplier=0.6, attention_in_multiplier=1.5,
           attention_out_multiplier=0.7, key_multiplier=0.8, ssm_in_multiplier=1.25, ssm_out_multiplier=0.5,
           ssm_multipliers=[0.5, 1.5, 0.75, 1.25, 2.0], mlp_multipliers=[1.5, 0.5],
           tie_word_embeddings=False, hidden_act="silu", max_position_embeddings=4096,
           pad_token_id=300, bos_token_id=300, eos_token_id=[303, 300]),
      "Falcon-H1 with a ChatML chat template and a byte-level BPE tokenizer.json (text and chat "
      "prompts): attention and Mamba-2 in parallel in every layer, every muP multiplier non-trivial "
      "(ssm_multipliers scale the z, x, B, C, dt slices of in_proj's output), mamba_d_ssm 48 != "
      "expand*hidden 64, mamba_rms_norm with mamba_norm_before_gate false (norm(y*silu(z))), 2 groups, "
      "d_state 64; bf16.",
      tokenizer="chatml"),
    S("falcon_h1_norm_before_gate", "falcon_h1", "float16",
      dict(vocab_size=280, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
           num_key_value_heads=1, mamba_d_ssm=96, mamba_n_heads=6, mamba_d_head=16, mamba_n_groups=1,
           mamba_d_state=64, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=16, mamba_conv_bias=True,
           mamba_proj_bias=False, mamba_rms_norm=True, mamba_norm_before_gate=True,
           rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, rms_norm_eps=1e-5,
           embedding_multiplier=4.0, lm_head_multiplier=0.4, attention_in_multiplier=0.8,
           attention_out_multiplier=1.3, key_multiplier=1.7, ssm_in_multiplier=0.6, ssm_out_multiplier=1.4,
           ssm_multipliers=[1.2, 0.8, 1.5, 0.6, 0.9], mlp_multipliers=[0.7, 1.6],
           tie_word_embeddings=False, hidden_act="silu", max_position_embeddings=4096,
           pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "Falcon-H1, mamba_rms_norm with mamba_norm_before_gate true (norm(y)*silu(z)), mamba_d_ssm 96 > "
      "expand*hidden 64, MQA, multipliers different from falcon_h1_bpe; fp16."),
    S("falcon_h1_no_mixer_norm", "falcon_h1", "float32",
      dict(vocab_size=260, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2,
           num_key_value_heads=2, mamba_d_ssm=32, mamba_n_heads=2, mamba_d_head=16, mamba_n_groups=1,
           mamba_d_state=32, mamba_d_conv=3, mamba_expand=2, mamba_chunk_size=8, mamba_conv_bias=True,
           mamba_proj_bias=False, mamba_rms_norm=False, mamba_norm_before_gate=True,
           rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, rms_norm_eps=1e-6,
           embedding_multiplier=1.7, lm_head_multiplier=1.9, attention_in_multiplier=1.1,
           attention_out_multiplier=0.9, key_multiplier=0.5, ssm_in_multiplier=1.6, ssm_out_multiplier=0.8,
           ssm_multipliers=[0.9, 1.1, 1.3, 0.7, 1.6], mlp_multipliers=[1.2, 0.9],
           tie_word_embeddings=True, hidden_act="silu", max_position_embeddings=4096,
           pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "Falcon-H1 without the mixer norm (mamba_rms_norm false: y*silu(z)), MHA, conv 3, chunk 8, tied "
      "head with lm_head_multiplier, fp32."),
    # --- Zamba2 ---
    S("zamba2_bpe", "zamba2", "bfloat16",
      dict(vocab_size=305, hidden_size=32, num_hidden_layers=6,
           layers_block_type=["mamba", "mamba", "hybrid", "hybrid", "hybrid", "mamba"], mamba_d_state=16,
           mamba_d_conv=4, mamba_expand=2, mamba_ngroups=2, n_mamba_heads=4, chunk_size=16,
           time_step_min=0.01, use_conv_bias=True, add_bias_linear=False, intermediate_size=48,
           hidden_act="gelu", num_attention_heads=4, num_key_value_heads=4, num_mem_blocks=2,
           use_shared_attention_adapter=True, adapter_rank=4, use_mem_rope=True,
           rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, rms_norm_eps=1e-5,
           use_mamba_kernels=False, tie_word_embeddings=True, max_position_embeddings=4096,
           pad_token_id=300, bos_token_id=304, eos_token_id=[303, 300]),
      "Zamba2 with two shared transformer blocks used 3 times (hybrid layers 2, 3, 4 -> blocks A, B, A), "
      "attention adapters (adapter_rank 4) and MLP adapters (always present), memory RoPE, n_groups 2, "
      "time_step_min 0.01 (Zamba2 clamps dt to >= time_step_min), tied; a tokenizer.json whose "
      "TemplateProcessing post-processor prepends <|bos|> (304) and a ChatML template starting with "
      "{{ bos_token }}; bf16.",
      tokenizer="bos"),
    S("zamba2_plain", "zamba2", "float32",
      dict(vocab_size=270, hidden_size=32, num_hidden_layers=5,
           layers_block_type=["hybrid", "mamba", "mamba", "hybrid", "hybrid"], mamba_d_state=8,
           mamba_d_conv=3, mamba_expand=2, mamba_ngroups=1, n_mamba_heads=2, chunk_size=8,
           time_step_min=0.001, use_conv_bias=True, add_bias_linear=False, intermediate_size=40,
           hidden_act="gelu", num_attention_heads=2, num_key_value_heads=1, num_mem_blocks=2,
           use_shared_attention_adapter=False, adapter_rank=6, use_mem_rope=False, rms_norm_eps=1e-5,
           use_mamba_kernels=False, tie_word_embeddings=False, max_position_embeddings=4096,
           pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "Zamba2 without attention adapters and without RoPE (use_mem_rope false), two shared blocks used "
      "3 times (layers 0, 3, 4 -> A, B, A), GQA (2 heads, 1 KV head), untied, chunk 8, fp32."),
    # --- Llama ---
    S("llama_default_untied", "llama", "float32",
      dict(vocab_size=300, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=3,
           num_key_value_heads=1, head_dim=16, max_position_embeddings=4096, rms_norm_eps=1e-6,
           rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=False,
           attention_bias=False, mlp_bias=False, hidden_act="silu", pad_token_id=0, bos_token_id=1,
           eos_token_id=2),
      "Llama, default RoPE (theta 1e4), MQA (3 heads, 1 KV head), untied, fp32."),
    S("llama_linear_tied", "llama", "bfloat16",
      dict(vocab_size=280, hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
           num_key_value_heads=2, head_dim=12, max_position_embeddings=64, rms_norm_eps=1e-5,
           rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
           tie_word_embeddings=True, attention_bias=False, mlp_bias=False, hidden_act="silu",
           pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "Llama, linear RoPE scaling factor 2 (inv_freq / 2), GQA 4/2, tied, bf16; config.json in the v4 "
      "spelling real checkpoints have: rope_theta + rope_scaling {\"type\": \"linear\", ...}.",
      legacy_rope={"type": "linear", "factor": 2.0}),
    S("llama_dynamic", "llama", "float16",
      dict(vocab_size=260, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, head_dim=12, max_position_embeddings=32, rms_norm_eps=1e-5,
           rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0},
           tie_word_embeddings=False, attention_bias=False, mlp_bias=False, hidden_act="silu",
           pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "Llama, dynamic NTK RoPE, factor 2, max_position_embeddings 32 (prompts of 37 and 77 exceed it): "
      "transformers recomputes the base from the longest position of each forward call, so the "
      "uncached logits (logits_K) and the cached, token-by-token ones (logits_stepwise_K, what "
      "generate() does) differ; greedy comes from generate().", stepwise=True),
    S("llama_llama3", "llama", "bfloat16",
      dict(vocab_size=320, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=3,
           num_key_value_heads=3, head_dim=16, max_position_embeddings=128, rms_norm_eps=1e-5,
           rope_parameters={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 32,
                            "rope_theta": 10000.0},
           tie_word_embeddings=False, attention_bias=False, mlp_bias=False, hidden_act="silu",
           pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "Llama, llama3 RoPE (factor 4, low/high_freq_factor 1/4, original_max_position_embeddings 32: with "
      "head_dim 16 the frequencies fall in all three bands: kept, smoothed, divided by factor), MHA, "
      "untied, bf16; config.json in the v4 spelling (rope_scaling with rope_type).",
      legacy_rope={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 32}),
]

# ---------------------------------------------------------------------------------------------
# The hold-out set: other shapes, seeds, dtypes, group / expert counts, rope types. Not committed.
# ---------------------------------------------------------------------------------------------
HOLDOUT_SPECS = [
    S("ho_mamba", "mamba", "float16",
      dict(vocab_size=333, hidden_size=40, state_size=12, num_hidden_layers=4, expand=3, conv_kernel=2,
           time_step_rank=7, use_bias=True, use_conv_bias=False, residual_in_fp32=True,
           tie_word_embeddings=False, layer_norm_epsilon=1e-6, pad_token_id=0, bos_token_id=0, eos_token_id=0),
      "hold-out Mamba-1: expand 3, conv 2, no conv bias, in/out bias, rank 7, fp16."),
    S("ho_falcon_mamba", "falcon_mamba", "float32",
      dict(vocab_size=271, hidden_size=32, state_size=24, num_hidden_layers=2, expand=2, conv_kernel=3,
           time_step_rank="auto", use_bias=False, use_conv_bias=True, residual_in_fp32=False,
           tie_word_embeddings=True, layer_norm_epsilon=1e-5, mixer_rms_eps=1e-6,
           pad_token_id=0, bos_token_id=0, eos_token_id=0),
      "hold-out FalconMamba: tied, d_state 24, conv 3, default mixer_rms_eps, fp32."),
    S("ho_nemotron_h_moe", "nemotron_h", "bfloat16",
      dict(vocab_size=288, hidden_size=40, pattern="M*EME-E", num_attention_heads=5, num_key_value_heads=1,
           head_dim=8, intermediate_size=56, mlp_hidden_act="relu2", ssm_state_size=24, mamba_num_heads=5,
           mamba_head_dim=16, n_groups=5, conv_kernel=3, chunk_size=8, tie_word_embeddings=False,
           n_routed_experts=12, num_experts_per_tok=4, n_group=3, topk_group=2, norm_topk_prob=True,
           routed_scaling_factor=1.8, moe_intermediate_size=12, moe_shared_expert_intermediate_size=20,
           n_shared_experts=1, num_nextn_predict_layers=0),
      "hold-out Nemotron-H MoE: 12 experts in 3 groups, top-4, 5 mamba groups, conv 3, chunk 8.",
      legacy_nemotron=True, keep_fp32=MAMBA2_SSM + (ROUTER_BIAS,)),
    S("ho_nemotron_h_latent", "nemotron_h", "float32",
      dict(vocab_size=301, hidden_size=32, layers_block_type=["moe", "linear_attention", "full_attention",
                                                             "moe", "moe"],
           num_attention_heads=2, num_key_value_heads=2, head_dim=16, intermediate_size=32,
           mlp_hidden_act="relu2", ssm_state_size=16, mamba_num_heads=8, mamba_head_dim=8, n_groups=4,
           conv_kernel=4, chunk_size=16, tie_word_embeddings=True, n_routed_experts=10,
           num_experts_per_tok=2, n_group=1, topk_group=1, norm_topk_prob=False, routed_scaling_factor=3.0,
           moe_intermediate_size=8, moe_shared_expert_intermediate_size=16, moe_latent_size=8,
           n_shared_experts=1, num_nextn_predict_layers=0),
      "hold-out Nemotron-H latent MoE: one group (plain top-k), 10 experts, latent 8, tied, first "
      "layer MoE."),
    S("ho_granite_moe_nope", "granitemoehybrid", "float32",
      dict(vocab_size=277, hidden_size=32, intermediate_size=16, num_hidden_layers=4,
           layer_types=["attention", "mamba", "mamba", "attention"], num_attention_heads=2, num_key_value_heads=2,
           max_position_embeddings=4096, rms_norm_eps=1e-5, tie_word_embeddings=True,
           position_embedding_type="nope", embedding_multiplier=12.0, attention_multiplier=0.0625,
           residual_multiplier=0.22, logits_scaling=4.0, num_local_experts=6, num_experts_per_tok=3,
           shared_intermediate_size=24, mamba_n_heads=2, mamba_d_head=32, mamba_n_groups=2,
           mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=8, mamba_conv_bias=True,
           mamba_proj_bias=True, hidden_act="silu", pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "hold-out Granite MoE: 6 experts top-3, nope, mamba n_groups 2, proj bias, tied, first layer "
      "attention, fp32.", layer_types_fallback=True),
    S("ho_jamba", "jamba", "float16",
      dict(vocab_size=299, hidden_size=48, intermediate_size=24, num_hidden_layers=4, num_attention_heads=6,
           num_key_value_heads=3, attn_layer_period=2, attn_layer_offset=0, expert_layer_period=4,
           expert_layer_offset=3, num_experts=6, num_experts_per_tok=2, mamba_d_state=16, mamba_d_conv=3,
           mamba_expand=2, mamba_dt_rank=4, mamba_conv_bias=False, mamba_proj_bias=True,
           use_mamba_kernels=False, rms_norm_eps=1e-5, tie_word_embeddings=True, hidden_act="silu",
           max_position_embeddings=4096, pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "hold-out Jamba: attention at 0 and 2, one MoE layer (3) with 6 experts, explicit dt rank 4, no "
      "conv bias, proj bias, tied, fp16."),
    S("ho_bamba", "bamba", "float32",
      dict(vocab_size=310, hidden_size=48, intermediate_size=40, num_hidden_layers=3, num_attention_heads=3,
           num_key_value_heads=1, attn_layer_indices=[0], mamba_n_heads=6, mamba_d_head=16, mamba_n_groups=1,
           mamba_d_state=32, mamba_d_conv=3, mamba_expand=2, mamba_chunk_size=8, mamba_conv_bias=False,
           mamba_proj_bias=True, rope_parameters={"rope_type": "default", "rope_theta": 50000.0},
           rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu", max_position_embeddings=4096,
           pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "hold-out Bamba: attention first, MQA, conv 3 without bias, proj bias, tied, fp32."),
    S("ho_falcon_h1", "falcon_h1", "bfloat16",
      dict(vocab_size=290, hidden_size=48, intermediate_size=72, num_hidden_layers=2, num_attention_heads=3,
           num_key_value_heads=1, mamba_d_ssm=64, mamba_n_heads=4, mamba_d_head=16, mamba_n_groups=4,
           mamba_d_state=48, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=32, mamba_conv_bias=True,
           mamba_proj_bias=False, mamba_rms_norm=True, mamba_norm_before_gate=False,
           rope_parameters={"rope_type": "default", "rope_theta": 10000000000.0}, rms_norm_eps=1e-5,
           embedding_multiplier=5.0, lm_head_multiplier=0.3, attention_in_multiplier=0.9,
           attention_out_multiplier=1.2, key_multiplier=0.6, ssm_in_multiplier=1.1, ssm_out_multiplier=0.7,
           ssm_multipliers=[1.4, 0.6, 1.0, 1.8, 0.5], mlp_multipliers=[0.8, 1.3],
           tie_word_embeddings=False, hidden_act="silu", max_position_embeddings=4096,
           pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "hold-out Falcon-H1: 4 mamba groups, rope_theta 1e10 (as Falcon-H1 uses very large thetas), "
      "d_ssm 64 < expand*hidden 96."),
    S("ho_zamba2_real_layout", "zamba2", "bfloat16",
      dict(vocab_size=280, hidden_size=32, num_hidden_layers=8,
           layers_block_type=["mamba", "mamba", "hybrid", "mamba", "hybrid", "mamba", "hybrid", "hybrid"],
           mamba_d_state=16, mamba_d_conv=4, mamba_expand=2, mamba_ngroups=1, n_mamba_heads=4, chunk_size=16,
           time_step_min=0.001, use_conv_bias=True, add_bias_linear=False, intermediate_size=32,
           hidden_act="gelu", num_attention_heads=4, num_key_value_heads=4, num_mem_blocks=2,
           use_shared_attention_adapter=True, adapter_rank=4, use_mem_rope=True,
           rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, rms_norm_eps=1e-5,
           use_mamba_kernels=False, tie_word_embeddings=True, max_position_embeddings=4096,
           pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "hold-out Zamba2 with a layout like the published 2.7B model (hybrid layers 2, 4, 6, 7: the last "
      "two uses have a layer index whose parity differs from the use order, so transformers' "
      "block_id = layer_idx % num_mem_blocks and the weight tying by use order disagree)."),
    S("ho_zamba2_one_block", "zamba2", "float16",
      dict(vocab_size=300, hidden_size=48, num_hidden_layers=5,
           layers_block_type=["mamba", "hybrid", "mamba", "hybrid", "hybrid"], mamba_d_state=8,
           mamba_d_conv=4, mamba_expand=2, mamba_ngroups=3, n_mamba_heads=6, chunk_size=8,
           time_step_min=0.005, use_conv_bias=True, add_bias_linear=False, intermediate_size=32,
           hidden_act="gelu", num_attention_heads=4, num_key_value_heads=4, num_mem_blocks=1,
           use_shared_attention_adapter=True, adapter_rank=8, use_mem_rope=True,
           rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, rms_norm_eps=1e-5,
           use_mamba_kernels=False, tie_word_embeddings=False, max_position_embeddings=4096,
           pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "hold-out Zamba2 with one shared block (as Zamba2-1.2B) used 3 times, 3 mamba groups, untied."),
    S("ho_llama_dynamic_legacy", "llama", "bfloat16",
      dict(vocab_size=290, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=1, head_dim=8, max_position_embeddings=48, rms_norm_eps=1e-6,
           rope_parameters={"rope_type": "dynamic", "factor": 3.0, "rope_theta": 500000.0},
           tie_word_embeddings=True, attention_bias=False, mlp_bias=False, hidden_act="silu",
           pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "hold-out Llama dynamic (factor 3, max positions 48), MQA, tied, legacy spelling.",
      legacy_rope={"type": "dynamic", "factor": 3.0}, stepwise=True),
    S("ho_llama_llama3", "llama", "float16",
      dict(vocab_size=300, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
           num_key_value_heads=1, head_dim=32, max_position_embeddings=256, rms_norm_eps=1e-5,
           rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 2.0,
                            "high_freq_factor": 8.0, "original_max_position_embeddings": 64,
                            "rope_theta": 500000.0},
           tie_word_embeddings=False, attention_bias=False, mlp_bias=False, hidden_act="silu",
           pad_token_id=0, bos_token_id=1, eos_token_id=2),
      "hold-out Llama llama3 RoPE (factor 8, 2/8, original 64, theta 5e5), head_dim 32, v5 spelling."),
]


# ---------------------------------------------------------------------------------------------
# Config and model construction
# ---------------------------------------------------------------------------------------------
def config_fields(cls):
    names = set(getattr(cls, "__dataclass_fields__", {}))
    try:
        names |= {n for n, p in inspect.signature(cls.__init__).parameters.items()
                  if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    except (TypeError, ValueError):
        pass
    names |= set(getattr(cls, "attribute_map", {}) or {})
    return names


def config_kwargs(spec):
    c = copy.deepcopy(spec["cfg"])
    if spec["family"] == "nemotron_h" and "pattern" in c:
        c["hybrid_override_pattern"] = c.pop("pattern")
    return c


def build_config(spec, notes):
    cfg_cls = getattr(transformers, FAMILIES[spec["family"]][0])
    kw = config_kwargs(spec)
    fields = config_fields(cfg_cls)
    if "use_mamba_kernels" in fields:
        kw["use_mamba_kernels"] = False
    unknown = sorted(k for k in kw if k not in fields and k not in BASE_KEYS and k not in ALIASES)
    if unknown and fields:
        print(f"  WARNING: {cfg_cls.__name__} has no field {unknown} in transformers "
              f"{transformers.__version__}; passed anyway (check the saved config.json)", flush=True)
        notes.append(f"config keys unknown to {cfg_cls.__name__}: {unknown}")
    try:
        return cfg_cls(**kw)
    except Exception as first:  # noqa: BLE001
        if not spec.get("layer_types_fallback"):
            raise
        # transformers 5 renamed layer kinds (mamba -> linear_attention, attention -> full_attention)
        names = {"mamba": "linear_attention", "attention": "full_attention"}
        kw["layer_types"] = [names.get(t, t) for t in kw["layer_types"]]
        print(f"  layer_types rejected ({first}); retrying with {kw['layer_types']}", flush=True)
        notes.append("layer_types given in transformers 5 names (the hub names were rejected)")
        return cfg_cls(**kw)


def named_tensors(model):
    """Parameters and persistent floating buffers, by name (tied parameters once)."""
    seen = set()
    for n, p in model.named_parameters():
        seen.add(id(p))
        yield n, p
    for n, b in model.named_buffers():
        if id(b) not in seen and b.is_floating_point() and n.endswith(ROUTER_BIAS):
            yield n, b


def is_tied(model):
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    return out is not None and out.weight is inp.weight


@torch.no_grad()
def redraw(model, spec, g):
    """make_fixtures.make_model's re-drawing, extended to the new tensors."""
    for name, p in named_tensors(model):
        leaf = name.split(".")[-1]
        if leaf == "A_log":
            p.copy_(torch.log(torch.rand(p.shape, generator=g) * 15 + 1))
        elif leaf == "dt_bias" or name.endswith("dt_proj.bias"):
            p.copy_(torch.rand(p.shape, generator=g) * 5 - 5.5)
        elif leaf == "D":
            p.copy_(torch.randn(p.shape, generator=g))
        elif leaf == ROUTER_BIAS:
            p.zero_()  # drawn by tune_router_bias
        elif name.endswith("norm.weight") or "norm_f" in name:
            p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
        elif name.endswith("conv1d.weight"):
            p.copy_(torch.randn(p.shape, generator=g) * 0.6)
        elif p.dim() == 1:  # biases
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
        elif "embed" in name:
            p.copy_(torch.randn(p.shape, generator=g))
        else:  # linear [out, in], experts [E, out, in]
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
            if re.search(r"(\.gate|\.router(\.layer)?)\.weight$", name):
                p.mul_(1.5)  # sharper routing
    if not is_tied(model):
        model.get_output_embeddings().weight.mul_(3.0)


@torch.no_grad()
def damp_special_rows(model, ids):
    """Random weights pick special tokens as often as any other; their text is not in greedy_text
    (decoders skip special tokens) and a chat template may stop on them: make them rare."""
    w = model.get_output_embeddings().weight
    w[ids] *= 0.1


@torch.no_grad()
def round_to(model, dtype, keep):
    for name, p in named_tensors(model):
        if name.split(".")[-1] not in keep:
            p.copy_(p.to(dtype).float())


# ---------------------------------------------------------------------------------------------
# Routing probe
# ---------------------------------------------------------------------------------------------
class ExpertProbe:
    """Records which experts each MoE layer's expert module is called with: the integer top-k index
    tensor (transformers 5 fused experts: forward(hidden, top_k_index, top_k_weights)), a list of
    per-expert token counts (Granite's ParallelExperts), or calls of ModuleList members."""

    def __init__(self, model):
        self.calls = []  # (layer, LongTensor [tokens, k] or None, set of experts)
        self.handles = []
        self.active = True
        for name, mod in model.named_modules():
            cname = type(mod).__name__
            last = name.split(".")[-1]
            if isinstance(mod, torch.nn.ModuleList) and last == "experts":
                for j, sub in enumerate(mod):
                    self.handles.append(sub.register_forward_pre_hook(self._member(name, j)))
            elif cname.endswith("Experts") and "Shared" not in cname:
                layer = name.rsplit(".", 1)[0] if last in ("experts", "input_linear", "output_linear") else name
                try:
                    self.handles.append(mod.register_forward_pre_hook(self._fused(layer), with_kwargs=True))
                except TypeError:  # torch < 2.0: positional arguments only
                    hook = self._fused(layer)
                    self.handles.append(mod.register_forward_pre_hook(lambda m, a, h=hook: h(m, a, {})))

    def _fused(self, layer):
        def hook(mod, args, kwargs):
            if not self.active:
                return
            vals = list(args) + list(kwargs.values())
            for v in vals:
                if torch.is_tensor(v) and not v.is_floating_point() and v.dim() >= 1:
                    self.calls.append((layer, v.detach().reshape(v.shape[0], -1).clone(),
                                       set(int(x) for x in v.flatten().tolist())))
                    return
            for v in vals:
                if isinstance(v, (list, tuple)) and v and all(isinstance(x, int) for x in v):
                    self.calls.append((layer, None, {j for j, c in enumerate(v) if c > 0}))
                    return
                if torch.is_tensor(v) and not v.is_floating_point() and v.dim() == 1:
                    self.calls.append((layer, None, {j for j, c in enumerate(v.tolist()) if c > 0}))
                    return
        return hook

    def _member(self, layer, j):
        def hook(mod, args):
            if self.active:
                self.calls.append((layer, None, {j}))
        return hook

    def per_layer(self):
        used = {}
        for layer, _, s in self.calls:
            used.setdefault(layer, set()).update(s)
        return {k: sorted(v) for k, v in used.items()}

    def index_calls(self):
        return [(layer, t) for layer, t, _ in self.calls if t is not None]

    def close(self):
        for h in self.handles:
            h.remove()


@torch.no_grad()
def routed_choices(model, ids):
    probe = ExpertProbe(model)
    try:
        model(ids, use_cache=False)
        return probe.index_calls()
    finally:
        probe.close()


@torch.no_grad()
def tune_router_bias(model, g, vocab):
    """Draws e_score_correction_bias >= 0 (so that sigmoid score + bias is positive and the
    group mask's fill value, 0 or -inf in different transformers versions, cannot matter) at
    a scale where it changes at least 5% of the expert choices: it must be used for choosing."""
    biases = [t for n, t in named_tensors(model) if n.endswith(ROUTER_BIAS)]
    if not biases:
        return None
    base = [torch.rand(b.shape, generator=g) for b in biases]
    ids = torch.randint(0, vocab, (1, 77), generator=g)
    for b in biases:
        b.zero_()
    plain = routed_choices(model, ids)
    frac = 0.0
    for scale in (0.15, 0.3, 0.5, 0.8):
        for b, u in zip(biases, base):
            b.copy_(u * scale)
        biased = routed_choices(model, ids)
        if len(plain) != len(biased) or not plain:
            return {"scale": scale, "changed_fraction": None, "note": "router calls not observable"}
        diff = tot = 0
        for (_, a), (_, b) in zip(plain, biased):
            sa = [set(r) for r in a.tolist()]
            sb = [set(r) for r in b.tolist()]
            tot += sum(len(x) for x in sa)
            diff += sum(len(x - y) for x, y in zip(sa, sb))
        frac = diff / max(tot, 1)
        if frac >= 0.05:
            break
    return {"scale": scale, "changed_fraction": round(frac, 4)}


# ---------------------------------------------------------------------------------------------
# Saving and loading
# ---------------------------------------------------------------------------------------------
def st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return h


def saved_tensors(out):
    t = {}
    for p in sorted(glob.glob(os.path.join(out, "*.safetensors"))):
        for k, v in st_header(p).items():
            t[k] = (v["dtype"], v["shape"], os.path.basename(p))
    return t


def save_checkpoint(model, spec, out):
    dtype = DTYPES[spec["dtype"]]
    keep = set(spec.get("keep_fp32", ()))
    exact = {n: p.detach().clone() for n, p in named_tensors(model) if n.split(".")[-1] in keep}
    m = model.to(dtype)  # casts in place: put the fp32 values back after it
    with torch.no_grad():
        for name, p in named_tensors(m):
            if name in exact:
                p.data = exact[name]
    kw = {"max_shard_size": "40KB"} if spec.get("shard") else {}
    m.save_pretrained(out, safe_serialization=True, **kw)
    model.float()
    tensors = saved_tensors(out)
    wrong = [k for k, (dt, _, _) in tensors.items() if k.split(".")[-1] in keep and dt != "F32"]
    if wrong:
        # save_pretrained cast them: write them back in fp32 (single-file checkpoints only)
        path = os.path.join(out, "model.safetensors")
        if not os.path.exists(path):
            raise RuntimeError(f"cannot keep {wrong[:3]} in fp32 in a sharded checkpoint")
        fp32 = {n.split(".", 1)[1]: p.detach().float().contiguous() for n, p in named_tensors(model)}
        sd = load_file(path)
        for k in wrong:
            sd[k] = fp32[k.split(".", 1)[1]]
        save_file(sd, path, metadata={"format": "pt"})
    if spec.get("legacy_nemotron"):
        mf.rewrite_legacy_config(os.path.join(out, "config.json"), spec["cfg"]["pattern"])


def rewrite_legacy_rope(out, legacy):
    path = os.path.join(out, "config.json")
    with open(path) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters", None) or {}
    c["rope_theta"] = rp.get("rope_theta", 10000.0)
    c["rope_scaling"] = dict(legacy)
    with open(path, "w") as f:
        json.dump(c, f, indent=2)


def load_back(spec, out, ref_sd, notes, allow=(r"^mtp\.", r"\.mtp\.")):
    """from_pretrained(float32), then every drawn tensor must come back bit for bit: that, not
    the loading report, is the check (a tied or converted key may be reported missing and still
    be loaded; a key really left out is initialised afresh and differs)."""
    cls = getattr(transformers, FAMILIES[spec["family"]][1])
    try:
        model, info = cls.from_pretrained(out, dtype=torch.float32, output_loading_info=True)
    except TypeError:
        model, info = cls.from_pretrained(out, torch_dtype=torch.float32, output_loading_info=True)
    model = model.float().eval()
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        odd = [str(k) for k in (info.get(key) or []) if not any(re.search(a, str(k)) for a in allow)]
        if odd:
            print(f"  from_pretrained {key}: {odd[:8]}", flush=True)
            notes.append(f"from_pretrained reported {key} {odd[:8]}")
    sd = model.state_dict()
    diffs, compared = [], 0
    for k, v in ref_sd.items():
        if k not in sd:
            continue
        compared += 1
        if sd[k].shape != v.shape:
            diffs.append(f"{k}: shape {tuple(sd[k].shape)} vs {tuple(v.shape)}")
        elif v.numel() and (sd[k].float() - v.float()).abs().max().item() != 0.0:
            diffs.append(f"{k}: max diff {(sd[k].float() - v.float()).abs().max().item():.3g}")
    if diffs or compared < len(ref_sd) // 2:
        raise RuntimeError(f"loaded weights differ from the drawn ones ({compared} of {len(ref_sd)} "
                           "compared): " + "; ".join(diffs[:10]))
    return model


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def full_logits(model, ids):
    return model(torch.tensor([ids]), use_cache=False).logits[0].float()


@torch.no_grad()
def greedy(model, ids, n, pad):
    """generate() with the cache, greedy, exactly n tokens: eos switched off for the call (a
    min_new_tokens processor would otherwise mask the eos logit and bend the choice)."""
    gc = model.generation_config
    saved = gc.eos_token_id
    gc.eos_token_id = None
    try:
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=n, do_sample=False, pad_token_id=pad)
    finally:
        gc.eos_token_id = saved
    gen = out[0, len(ids):].tolist()
    if len(gen) != n:
        raise RuntimeError(f"generate returned {len(gen)} tokens, not {n}")
    return gen


@torch.no_grad()
def stepwise_logits(model, ids):
    """Token-by-token forward through the cache (what generate() does after the prefill)."""
    out = model(torch.tensor([ids[:1]]), use_cache=True)
    rows, pkv = [out.logits[0, -1].float()], out.past_key_values
    for t in ids[1:]:
        out = model(torch.tensor([[t]]), past_key_values=pkv, use_cache=True)
        pkv = out.past_key_values
        rows.append(out.logits[0, -1].float())
    return torch.stack(rows)


def rel(a, b):
    return float(((a - b).norm() / b.norm().clamp_min(1e-30)).item())


def write_tokenizer(spec, out):
    t = TOKENIZERS[spec["tokenizer"]]
    bpe_tokenizers.write(t["variant"], os.path.join(out, "tokenizer.json"))
    tc = {"bos_token": t["bos_text"], "eos_token": t["eos_text"], "pad_token": "<|endoftext|>",
          "unk_token": None, "model_max_length": 4096, "tokenizer_class": "PreTrainedTokenizerFast",
          "clean_up_tokenization_spaces": False}
    if t["add_bos"] is not None:
        tc["add_bos_token"] = t["add_bos"]
        tc["add_eos_token"] = False
    if t["template"]:
        tc["chat_template"] = t["template"]
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tc, f, indent=2)
    gen = {"bos_token_id": t["bos"], "eos_token_id": t["eos"], "pad_token_id": t["pad"],
           "transformers_version": transformers.__version__}
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)


def text_cases(spec, out):
    """Text prompts as the tokenizers library encodes them (add_special_tokens: the post-processor
    runs, as serpent's completions do), chats rendered with the template and encoded without
    special tokens (the template writes them, as serpent's chat endpoint does)."""
    import jinja2
    from tokenizers import Tokenizer
    t = TOKENIZERS[spec["tokenizer"]]
    tk = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    cases = [(s, None, tk.encode(s, add_special_tokens=True).ids) for s in BPE_TEXT_PROMPTS]
    if t["template"]:
        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
        tpl = env.from_string(t["template"])
        for msgs in BPE_CHATS:
            text = tpl.render(messages=msgs, add_generation_prompt=True, bos_token=t["bos_text"],
                              eos_token=t["eos_text"])
            cases.append((text, msgs, tk.encode(text, add_special_tokens=False).ids))
    return tk, cases


def derived_facts(model):
    d = {}
    layers = None
    for attr in ("model", "backbone"):
        inner = getattr(model, attr, None)
        if inner is not None and hasattr(inner, "layers"):
            layers = inner.layers
    if layers is not None:
        d["layers"] = [type(l).__name__ + "(" + ",".join(n for n, _ in l.named_children()) + ")" for l in layers]
    for name, mod in model.named_modules():
        if hasattr(mod, "inv_freq") and torch.is_tensor(mod.inv_freq) and "rotary" not in d:
            # original_inv_freq: the dynamic type overwrites inv_freq at each longer forward
            inv = getattr(mod, "original_inv_freq", None)
            inv = inv if torch.is_tensor(inv) else mod.inv_freq
            d["rotary"] = {"module": name, "rotary_dim": 2 * inv.numel(),
                           "inv_freq": [float(x) for x in inv.float().tolist()],
                           "attention_scaling": float(getattr(mod, "attention_scaling", 1.0)),
                           "rope_type": str(getattr(mod, "rope_type", ""))}
        if hasattr(mod, "scaling") and isinstance(getattr(mod, "scaling"), float) and "attn_scaling" not in d:
            d["attn_scaling"] = {"module": name, "scaling": mod.scaling,
                                 "head_dim": getattr(mod, "head_dim", None)}
    for key in ("hybrid_layer_ids", "layers_block_type", "layer_types", "rope_parameters"):
        v = getattr(model.config, key, None)
        if v is not None:
            try:
                json.dumps(v)
                d[key] = v
            except TypeError:
                d[key] = str(v)
    d["tied"] = is_tied(model)
    return d


def moe_expected(spec):
    c = spec["cfg"]
    if spec["family"] == "nemotron_h":
        return "E" in c.get("pattern", "") or "moe" in c.get("layers_block_type", [])
    if spec["family"] == "granitemoehybrid":
        return c.get("num_local_experts", 0) > 0
    return spec["family"] == "jamba"


def folder_size(out):
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(out, "**"), recursive=True) if os.path.isfile(p))


def add_mtp(spec, out, cfg_obj, g):
    """Announces MTP layers in config.json and appends mtp.* tensors (names made up after the
    main layers' names: transformers builds no MTP module to take them from)."""
    cfg_cls = getattr(transformers, FAMILIES["nemotron_h"][0])
    kw = config_kwargs(spec)
    kw["layers_block_type"] = list(spec["mtp"])
    kw["use_mamba_kernels"] = False
    tmp = getattr(transformers, FAMILIES["nemotron_h"][1])(cfg_cls(**kw)).float()
    redraw(tmp, spec, g)
    dtype = DTYPES[spec["dtype"]]
    extra = {}
    for k, v in tmp.state_dict().items():
        m = re.search(r"layers\.(\d+)\.(.*)$", k)
        if m:
            extra[f"mtp.layers.{m.group(1)}.{m.group(2)}"] = v.to(dtype).contiguous()
    h = cfg_obj.hidden_size
    extra["mtp.enorm.weight"] = (1 + 0.3 * torch.randn(h, generator=g)).to(dtype)
    extra["mtp.hnorm.weight"] = (1 + 0.3 * torch.randn(h, generator=g)).to(dtype)
    extra["mtp.eh_proj.weight"] = (torch.randn(h, 2 * h, generator=g) / math.sqrt(2 * h)).to(dtype)
    extra["mtp.final_layernorm.weight"] = (1 + 0.3 * torch.randn(h, generator=g)).to(dtype)
    path = os.path.join(out, "model.safetensors")
    sd = load_file(path)
    sd.update(extra)
    save_file(sd, path, metadata={"format": "pt"})
    cpath = os.path.join(out, "config.json")
    with open(cpath) as f:
        c = json.load(f)
    c["num_nextn_predict_layers"] = 1
    c["mtp_layers_block_type"] = list(spec["mtp"])
    with open(cpath, "w") as f:
        json.dump(c, f, indent=2)
    info = {"num_nextn_predict_layers": 1, "mtp_layers_block_type": list(spec["mtp"]),
            "tensor_names_synthetic": True, "tensors": sorted(extra)}
    try:  # does transformers take the announced MTP config?
        cls = getattr(transformers, FAMILIES["nemotron_h"][1])
        m2 = cls.from_pretrained(out, dtype=torch.float32)
        info["transformers_loads_it"] = True
        info["transformers_builds_mtp_modules"] = any(n.startswith("mtp") or ".mtp" in n
                                                      for n, _ in m2.named_parameters())
    except Exception as e:  # noqa: BLE001
        info["transformers_loads_it"] = False
        info["transformers_error"] = f"{type(e).__name__}: {e}"[:500]
    return info


def make_fixture(spec, outdir, seed):
    t0 = time.time()
    out = os.path.join(outdir, spec["name"])
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    notes = [spec["notes"]]
    cfg = build_config(spec, notes)
    cls = getattr(transformers, FAMILIES[spec["family"]][1])
    torch.manual_seed(seed)
    model = cls(cfg).float().eval()
    g = torch.Generator().manual_seed(seed)
    redraw(model, spec, g)
    bias_info = tune_router_bias(model, g, cfg.vocab_size)
    if spec.get("tokenizer"):
        t = TOKENIZERS[spec["tokenizer"]]
        if cfg.vocab_size < t["n_ids"]:
            raise ValueError(f"vocab_size {cfg.vocab_size} < tokenizer ids {t['n_ids']}")
        damp_special_rows(model, list(range(300, t["n_ids"])))
    round_to(model, DTYPES[spec["dtype"]], set(spec.get("keep_fp32", ())))
    ref_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_checkpoint(model, spec, out)
    if spec.get("tokenizer"):
        write_tokenizer(spec, out)
    if spec.get("legacy_rope"):
        shutil.copy(os.path.join(out, "config.json"), os.path.join(out, "config.v5.json"))
        rewrite_legacy_rope(out, spec["legacy_rope"])
    del model
    try:
        model = load_back(spec, out, ref_sd, notes)
        if spec.get("legacy_rope"):
            want = spec["cfg"]["rope_parameters"]
            got = dict(getattr(model.config, "rope_parameters", None) or {})
            bad = {k: (v, got.get(k)) for k, v in want.items() if got.get(k) != v}
            if bad:
                raise RuntimeError(f"legacy rope_scaling read as {got}, not {want}: {bad}")
            notes.append("config.json uses the v4 spelling (rope_theta + rope_scaling); transformers "
                         "read it as rope_parameters " + json.dumps(got))
    except Exception as e:  # noqa: BLE001
        if not spec.get("legacy_rope"):
            raise
        print(f"  legacy rope spelling not taken ({e}); keeping the v5 config.json", flush=True)
        notes.append(f"legacy rope spelling not taken by this transformers ({str(e)[:200]}); v5 spelling kept")
        shutil.move(os.path.join(out, "config.v5.json"), os.path.join(out, "config.json"))
        model = load_back(spec, out, ref_sd, notes)
    if os.path.exists(os.path.join(out, "config.v5.json")):
        os.remove(os.path.join(out, "config.v5.json"))

    pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    tok = None
    if spec.get("tokenizer"):
        tok, cases = text_cases(spec, out)
    else:
        gp = torch.Generator().manual_seed(seed + 1)
        cases = [(None, None, torch.randint(0, cfg.vocab_size, (n,), generator=gp).tolist())
                 for n in PROMPT_LENGTHS]
    ref = {"transformers": transformers.__version__, "torch": torch.__version__, "family": spec["family"],
           "architecture": FAMILIES[spec["family"]][1], "arch": spec["family"],
           "storage_dtype": spec["dtype"], "notes": notes, "prompts": []}
    moe = moe_expected(spec)
    probe = ExpertProbe(model) if moe else None
    min_margin = float("inf")
    for k, (text, messages, ids) in enumerate(cases):
        if probe:
            probe.active = True
        logits = full_logits(model, ids)
        if probe:
            probe.active = False
        fname = f"logits_{k}.f32"
        logits.numpy().astype("<f4").tofile(os.path.join(out, fname))
        gen = greedy(model, ids, GREEDY_TOKENS, pad)
        all_logits = full_logits(model, ids + gen)
        margins, agrees = [], True
        for i, t in enumerate(gen):
            top2 = torch.topk(all_logits[len(ids) - 1 + i], 2)
            margins.append(float(top2.values[0] - top2.values[1]))
            agrees = agrees and int(top2.indices[0]) == t
        entry = {"ids": ids, "logits": fname, "greedy": gen, "margins": margins, "uncached_agrees": agrees}
        if spec.get("stepwise"):
            sw = stepwise_logits(model, ids)
            sname = f"logits_stepwise_{k}.f32"
            sw.numpy().astype("<f4").tofile(os.path.join(out, sname))
            entry["logits_stepwise"] = sname
            entry["stepwise_vs_uncached_rel"] = rel(sw, logits)
        if text is not None:
            entry["text"] = text
            entry["greedy_text"] = tok.decode(gen)
        if messages is not None:
            entry["messages"] = messages
        ref["prompts"].append(entry)
        min_margin = min(min_margin, min(margins))
        print(f"  {spec['name']}: prompt {len(ids)}: greedy {gen[:6]}... min margin {min(margins):.3f} "
              f"uncached agrees {agrees}", flush=True)
    routing = None
    if probe:
        per = probe.per_layer()
        probe.close()
        routing = {"distinct_experts_per_layer": per, "router_bias": bias_info}
        if per:
            low = min(len(v) for v in per.values())
            routing["min_distinct"] = low
            if low <= 1:
                raise RuntimeError(f"routing collapsed to one expert: {per}")
        else:
            routing["min_distinct"] = None
            notes.append("the expert calls could not be observed (no *Experts module hooked)")
        ref["routing"] = routing
    ref["derived"] = derived_facts(model)
    ref["derived"]["tensors"] = {k: [dt, sh] for k, (dt, sh, _) in saved_tensors(out).items()}
    if spec.get("mtp"):
        ref["mtp"] = add_mtp(spec, out, cfg, g)
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    return {"size": folder_size(out), "min_margin": min_margin,
            "experts": routing.get("min_distinct") if routing else None,
            "bias_changed": (bias_info or {}).get("changed_fraction") if routing else None,
            "seconds": time.time() - t0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--holdout", action="store_true", help="build the hold-out set instead")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    specs = HOLDOUT_SPECS if a.holdout else SPECS
    if a.list:
        for s in specs:
            print(f"{s['name']:28s} {s['family']:18s} {s['dtype']:9s} {s['notes']}")
        return 0
    seed0 = a.seed if a.seed is not None else (98765 if a.holdout else 4321)
    os.makedirs(a.outdir, exist_ok=True)
    torch.set_grad_enabled(False)
    torch.set_num_threads(a.threads)
    print("transformers", transformers.__version__, "torch", torch.__version__, flush=True)
    rows = []
    t_all = time.time()
    for i, spec in enumerate(specs):
        if a.only and spec["name"] not in a.only:
            continue
        print(f"== {spec['name']} ({spec['family']}, {spec['dtype']})", flush=True)
        try:
            r = make_fixture(spec, a.outdir, seed0 + 100 * i)
            rows.append((spec["name"], "ok", r))
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            sys.stdout.flush()
            rows.append((spec["name"], "FAILED", None))
    print(f"\n{'fixture':28s} {'status':7s} {'KB':>6s} {'min margin':>10s} {'experts':>7s} "
          f"{'bias chg':>8s} {'s':>5s}")
    for name, status, r in rows:
        if r:
            ex = "-" if r["experts"] is None else str(r["experts"])
            bc = "-" if r["bias_changed"] is None else f"{r['bias_changed']:.2f}"
            print(f"{name:28s} {status:7s} {r['size'] / 1024:6.0f} {r['min_margin']:10.3f} {ex:>7s} {bc:>8s} "
                  f"{r['seconds']:5.1f}")
        else:
            print(f"{name:28s} {status:7s}")
    total = sum(r["size"] for _, _, r in rows if r)
    failed = [n for n, s, _ in rows if s != "ok"]
    print(f"\n{len(rows) - len(failed)} ok, {len(failed)} failed; {total / 1e6:.2f} MB; "
          f"{time.time() - t_all:.0f} s" + (f"; failed: {' '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
