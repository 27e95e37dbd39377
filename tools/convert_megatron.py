#!/usr/bin/env python3
"""Converts a legacy Megatron-LM Mamba / Mamba-2-Hybrid checkpoint to a folder serpent serves.

    python3 tools/convert_megatron.py CHECKPOINT_DIR OUT_DIR [--tokenizer SPM_MODEL]

CHECKPOINT_DIR is what Megatron's `--save` wrote (NVIDIA's mamba2-hybrid-8b-3t-4k and its siblings
on the Hugging Face hub are this): latest_checkpointed_iteration.txt ("release" or an iteration),
then release/ or iter_XXXXXXX/ holding one mp_rank_NN/model_optim_rng.pt per tensor-parallel rank.
The folder of one iteration (the one holding mp_rank_NN/) is accepted too.

OUT_DIR receives a Nemotron-H checkpoint: config.json (NemotronHForCausalLM), model.safetensors (or
shards and model.safetensors.index.json) with Hugging Face names, generation_config.json, and the
SentencePiece tokenizer (tokenizer.model + tokenizer_config.json) tokenizing as Megatron's
GPTSentencePieceTokenizer does: plain encode_as_ids, no BOS, the model's end-of-sequence piece as
EOS. --tokenizer names the .model file; without it, the single *.model file in CHECKPOINT_DIR is
used if there is one (the hub repositories ship it there).

The layer pattern and every shape come from the checkpoint's saved `args` (argparse.Namespace) and
are checked against the tensors. Tensor-parallel shards are merged the way Megatron split them:
in_proj per rank holds [z, x, B, C, dt] of that rank's heads and groups, conv1d its [x, B, C]
channels, A_log/D/dt_bias/the gated norm its heads; the fused QKV holds that rank's query groups,
each group as [its query heads | key | value]; out_proj, linear_proj and linear_fc2 are split along
their input, the embedding and output layer along the vocabulary. Layouts follow Megatron-LM's
megatron/core/ssm/mamba_mixer.py, megatron/core/transformer/attention.py
(get_query_key_value_tensors) and tools/checkpoint/hybrid_conversion.py of mid-2024.

Every key the converter does not expect is named, and a checkpoint it does not understand (an
argument that changes the math serpent would compute, a missing tensor, a wrong shape) is refused
with a message saying which key or argument. PyTorch is used only to unpickle; tensors keep their
stored dtype (bf16 weights; A_log and D as stored). safetensors files are written directly.
"""
import argparse
import io
import json
import os
import pickle
import re
import shutil
import struct
import sys
import types
import zipfile


class ConversionError(Exception):
    """A checkpoint the converter refuses; the message names the key, argument or file."""


# ----------------------------------------------------------------------------------------------
# Unpickling: Megatron pickles its own objects into the checkpoint (args.model_type is a
# megatron.core.enums.ModelType; TransformerEngine's _extra_state entries are io.BytesIO), and this
# machine need not have Megatron or TransformerEngine. Classes from modules outside a short list are
# replaced by inert stand-ins, so nothing from those packages is imported or run.

_IMPORTABLE_ROOTS = {"torch", "numpy", "collections", "builtins", "argparse", "io", "_io",
                     "_codecs", "copyreg", "datetime", "enum", "pathlib", "posixpath"}


class _StubMeta(type):
    def __getattr__(cls, attr):
        # Python 3.12 pickles enum members as getattr(EnumClass, "NAME").
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _stub_class(cls.__module__, cls.__qualname__ + "." + attr)


def _stub_class(module, name):
    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__["_stub_args"] = args
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.__dict__["_stub_state"] = state

    def __repr__(self):
        return f"<stand-in for {module}.{name}{self.__dict__.get('_stub_args', ())!r}>"

    return _StubMeta(name.rsplit(".", 1)[-1], (), {
        "__module__": module, "__qualname__": name, "__new__": __new__, "__init__": __init__,
        "__setstate__": __setstate__, "__repr__": __repr__})


_stubbed = set()


class _TolerantUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.split(".")[0] in _IMPORTABLE_ROOTS:
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                pass
        _stubbed.add(f"{module}.{name}")
        return _stub_class(module, name)


def _tolerant_pickle_module():
    m = types.ModuleType("serpent_tolerant_pickle")
    for k in dir(pickle):  # UnpicklingError and the rest, as torch may use them
        if not k.startswith("__"):
            setattr(m, k, getattr(pickle, k))
    m.Unpickler = _TolerantUnpickler
    m.load = lambda f, **kw: _TolerantUnpickler(f, **kw).load()
    m.loads = lambda b, **kw: _TolerantUnpickler(io.BytesIO(b), **kw).load()
    return m


def load_rank_file(path):
    """torch.load of one model_optim_rng.pt, on the CPU, memory-mapped where torch can (>= 2.1)."""
    import inspect
    import torch
    import torch.serialization as ts
    tolerant = _tolerant_pickle_module()
    kw = dict(map_location="cpu", pickle_module=tolerant)
    # (torch.load hands arguments it does not know to the unpickler, so ask its signature.)
    known = inspect.signature(torch.load).parameters
    if "weights_only" in known:
        # the file holds an argparse.Namespace and other objects: torch >= 2.6 defaults to True
        # and would refuse them; torch 1.13 defaults to False
        kw["weights_only"] = False
    if "mmap" in known and zipfile.is_zipfile(path):
        kw["mmap"] = True  # torch >= 2.1: the tensors stay in the file until written out
    # torch 1.x replaces pickle_module by its module-level `pickle` whenever weights_only is
    # False, so there the stand-in unpickler goes in through that name for the one call.
    legacy = int(torch.__version__.split(".")[0]) < 2
    saved = ts.pickle
    if legacy:
        ts.pickle = tolerant
    try:
        return torch.load(path, **kw)
    finally:
        ts.pickle = saved


# ----------------------------------------------------------------------------------------------
# Finding the files

def find_rank_files(ckpt_dir):
    """Returns (iteration folder, [mp_rank_00 file, mp_rank_01 file, ...], iteration label)."""
    if not os.path.isdir(ckpt_dir):
        raise ConversionError(f"{ckpt_dir}: no such folder")
    tracker = os.path.join(ckpt_dir, "latest_checkpointed_iteration.txt")
    label = None
    if os.path.exists(tracker):
        with open(tracker) as f:
            meta = f.read().strip()
        if meta == "release":
            it_dir, label = os.path.join(ckpt_dir, "release"), "release"
        elif meta.isdigit() and int(meta) > 0:
            it_dir, label = os.path.join(ckpt_dir, "iter_{:07d}".format(int(meta))), int(meta)
        else:
            raise ConversionError(f"{tracker}: holds {meta!r}, not 'release' or an iteration")
    else:
        it_dir = ckpt_dir
        base = os.path.basename(os.path.normpath(ckpt_dir))
        label = "release" if base == "release" else base
    if not os.path.isdir(it_dir):
        raise ConversionError(f"{it_dir}: no such folder (named by {tracker})")
    entries = sorted(os.listdir(it_dir))
    if any(e.endswith(".distcp") for e in entries) or ".metadata" in entries:
        raise ConversionError(
            f"{it_dir}: a distributed (torch_dist) checkpoint; this converter reads the legacy "
            "format (mp_rank_NN/model_optim_rng.pt); save it again with --ckpt-format torch")
    ranks = {}
    for e in entries:
        m = re.fullmatch(r"mp_rank_(\d\d)(_\d\d\d)?(_\d\d\d)?", e)
        if not m:
            continue
        if m.group(2) or m.group(3):
            raise ConversionError(
                f"{os.path.join(it_dir, e)}: a pipeline- or expert-parallel shard; merge the "
                "pipeline stages first (Megatron's tools/checkpoint/hybrid_conversion.py "
                "--target-pp-size 1)")
        ranks[int(m.group(1))] = os.path.join(it_dir, e, "model_optim_rng.pt")
    if not ranks:
        if not os.path.exists(tracker):
            raise ConversionError(f"{ckpt_dir}: no latest_checkpointed_iteration.txt and no "
                                  "mp_rank_NN folders")
        raise ConversionError(f"{it_dir}: no mp_rank_NN folders")
    if sorted(ranks) != list(range(len(ranks))):
        raise ConversionError(f"{it_dir}: tensor-parallel ranks {sorted(ranks)} are not 0..N-1")
    files = [ranks[r] for r in range(len(ranks))]
    for p in files:
        if not os.path.exists(p):
            raise ConversionError(f"{p}: missing")
    return it_dir, files, label


# ----------------------------------------------------------------------------------------------
# The saved arguments

# Megatron's hybrid layer symbols (megatron/core/ssm/mamba_hybrid_layer_allocation.py).
MAMBA, ATTENTION, MLP = "M", "*", "-"


def allocate_layers(n_layers, attention_ratio, mlp_ratio):
    """The layer pattern Megatron derives from --hybrid-attention-ratio / --hybrid-mlp-ratio when
    no --hybrid-override-pattern is given: attention layers spread evenly between Mamba sections,
    then MLP layers spread evenly over the remaining Mamba positions."""
    n_attn = round(n_layers * attention_ratio)
    n_mamba = n_layers - n_attn
    kinds = [MAMBA] * n_layers
    section = n_mamba / (n_attn + 1)
    budget = section
    for i in range(n_layers):
        if budget < 0.5:
            kinds[i] = ATTENTION
            budget += section
        else:
            budget -= 1
    n_mlp = round(n_layers * mlp_ratio)
    if n_mlp > 0:
        per_mlp = (n_mamba - n_mlp) / n_mlp
        budget = per_mlp
        for i in range(n_layers):
            if kinds[i] != MAMBA:
                continue
            if budget < 0.5:
                kinds[i] = MLP
                budget += per_mlp
            else:
                budget -= 1
    return "".join(kinds)


def pattern_from_keys(sd, n_layers):
    """Each layer's kind as its keys show it (mixer.* Mamba, self_attention.* attention, mlp.*
    MLP), or None where a layer shows none or several."""
    kinds = [set() for _ in range(n_layers)]
    for k in sd:
        m = re.match(r"decoder\.layers\.(\d+)\.(mixer|self_attention|mlp)\.", k)
        if m and int(m.group(1)) < n_layers:
            kinds[int(m.group(1))].add({"mixer": MAMBA, "self_attention": ATTENTION,
                                        "mlp": MLP}[m.group(2)])
    if any(len(s) != 1 for s in kinds):
        return None
    return "".join(s.pop() for s in kinds)


def _arg(args, name, default=None):
    return getattr(args, name, default)


def read_hparams(args, n_ranks, sd=None):
    """Model shape and the semantics checks, from Megatron's saved argparse.Namespace (and rank 0's
    state dict `sd`, whose keys must show the same layer pattern)."""
    def need(name):
        v = _arg(args, name)
        if v is None:
            raise ConversionError(f"args.{name} is missing from the checkpoint's saved arguments")
        return v

    def refuse_if(cond, name, why):
        if cond:
            raise ConversionError(f"args.{name} = {_arg(args, name)!r}: {why}")

    tp = _arg(args, "tensor_model_parallel_size", n_ranks)
    if tp != n_ranks:
        raise ConversionError(f"args.tensor_model_parallel_size = {tp}, but the checkpoint has "
                              f"{n_ranks} mp_rank_NN folders")
    refuse_if((_arg(args, "pipeline_model_parallel_size", 1) or 1) != 1,
              "pipeline_model_parallel_size", "pipeline-parallel checkpoints are not supported; "
              "merge the stages first (tools/checkpoint/hybrid_conversion.py --target-pp-size 1)")
    refuse_if((_arg(args, "virtual_pipeline_model_parallel_size") or 1) != 1,
              "virtual_pipeline_model_parallel_size", "interleaved pipelines are not supported")
    refuse_if(_arg(args, "num_experts") not in (None, 0), "num_experts",
              "mixture-of-experts layers are not supported")
    refuse_if(_arg(args, "position_embedding_type", "none") != "none", "position_embedding_type",
              "the Mamba hybrids use no position embedding; serpent's Nemotron-H attention "
              "applies none")
    refuse_if(_arg(args, "normalization", "RMSNorm") != "RMSNorm", "normalization",
              "only RMSNorm is supported")
    refuse_if(bool(_arg(args, "apply_layernorm_1p", False)), "apply_layernorm_1p",
              "zero-centred norm weights are not supported")
    refuse_if(bool(_arg(args, "add_bias_linear", False)), "add_bias_linear",
              "linear layers with biases are not supported (the hybrids use --disable-bias-linear)")
    refuse_if(bool(_arg(args, "add_qkv_bias", False)), "add_qkv_bias",
              "QKV biases are not supported")
    refuse_if(bool(_arg(args, "swiglu", False)), "swiglu",
              "a gated (SwiGLU) MLP is not what Nemotron-H's MLP computes")
    refuse_if(bool(_arg(args, "squared_relu", False)), "squared_relu",
              "this converter writes the GELU MLP of the Mamba hybrids; squared-ReLU checkpoints "
              "are not supported")
    refuse_if(bool(_arg(args, "qk_layernorm", False)), "qk_layernorm",
              "query/key norms are not supported")
    eps = float(_arg(args, "norm_epsilon", 1e-5))
    # The Mamba mixer's gated norm has eps 1e-5 written into Megatron's code; a Nemotron-H config
    # has one epsilon for every norm.
    refuse_if(abs(eps - 1e-5) > 1e-12, "norm_epsilon",
              "Megatron's Mamba gated norm always uses 1e-5, and a Nemotron-H config has one "
              "epsilon for every norm")

    hidden = int(need("hidden_size"))
    n_layers = int(need("num_layers"))
    pattern = _arg(args, "hybrid_override_pattern")
    from_keys = pattern_from_keys(sd, n_layers) if sd is not None else None
    source = "args.hybrid_override_pattern"
    if pattern:
        pattern = pattern.replace("|", "")  # pipeline-stage separators of newer Megatron
        bad = sorted(set(pattern) - {MAMBA, ATTENTION, MLP})
        if bad:
            raise ConversionError(f"args.hybrid_override_pattern = {pattern!r}: layer symbols "
                                  f"{bad} are not supported (only M, *, -)")
        if len(pattern) != n_layers:
            raise ConversionError(f"args.hybrid_override_pattern has {len(pattern)} layers, "
                                  f"args.num_layers is {n_layers}")
    elif any(hasattr(args, k) for k in ("hybrid_override_pattern", "hybrid_attention_ratio",
                                         "hybrid_mlp_ratio")):
        att = float(_arg(args, "hybrid_attention_ratio", 0.0) or 0.0)
        mlp = float(_arg(args, "hybrid_mlp_ratio", 0.0) or 0.0)
        if not (0 <= att <= 1 and 0 <= mlp <= 1 and att + mlp <= 1):
            raise ConversionError(f"args.hybrid_attention_ratio = {att}, args.hybrid_mlp_ratio = "
                                  f"{mlp}: not ratios that sum to at most 1")
        pattern = allocate_layers(n_layers, att, mlp)
        source = f"args.hybrid_attention_ratio = {att}, args.hybrid_mlp_ratio = {mlp}"
    elif from_keys is not None:
        pattern = from_keys  # arguments of some other Megatron version: the keys say it
        source = "the keys"
    else:
        raise ConversionError("the saved args have no hybrid_override_pattern or hybrid_*_ratio, "
                              "and the keys do not show one kind per layer")
    if from_keys is not None and from_keys != pattern:
        raise ConversionError(f"{source} gives the layer pattern {pattern!r}, but the "
                              f"checkpoint's keys hold {from_keys!r}")

    heads = int(need("num_attention_heads"))
    groups = int(_arg(args, "num_query_groups") or heads) if _arg(
        args, "group_query_attention", False) else heads
    kv_ch = int(_arg(args, "kv_channels") or hidden // heads)
    ffn = int(_arg(args, "ffn_hidden_size") or 4 * hidden)
    # The mid-2024 code had no mamba arguments: the mixer's defaults (d_state 128, headdim 64,
    # ngroups 8, expand 2) were the model; later Megatron saves them (and mamba_num_heads).
    d_state = int(_arg(args, "mamba_state_dim", 128) or 128)
    head_dim = int(_arg(args, "mamba_head_dim", 64) or 64)
    m_groups = int(_arg(args, "mamba_num_groups", 8) or 8)
    m_heads = _arg(args, "mamba_num_heads")
    d_inner = int(m_heads) * head_dim if m_heads else 2 * hidden
    if d_inner % head_dim:
        raise ConversionError(f"Mamba d_inner {d_inner} is not a multiple of args.mamba_head_dim "
                              f"{head_dim}")
    m_heads = d_inner // head_dim
    for what, n in (("num_attention_heads", heads), ("num_query_groups", groups),
                    ("ffn_hidden_size", ffn), ("mamba_num_groups", m_groups),
                    ("Mamba heads", m_heads)):
        if ATTENTION not in pattern and what in ("num_attention_heads", "num_query_groups"):
            continue
        if MLP not in pattern and what == "ffn_hidden_size":
            continue
        if MAMBA not in pattern and what in ("mamba_num_groups", "Mamba heads"):
            continue
        if n % tp:
            raise ConversionError(f"{what} = {n} is not divisible by the {tp} tensor-parallel "
                                  "ranks")
    if heads % groups:
        raise ConversionError(f"args.num_attention_heads {heads} is not a multiple of "
                              f"args.num_query_groups {groups}")
    if m_heads % m_groups:
        raise ConversionError(f"Mamba heads {m_heads} is not a multiple of args.mamba_num_groups "
                              f"{m_groups}")
    tied = not _arg(args, "untie_embeddings_and_output_weights", False)
    return dict(tp=tp, hidden=hidden, n_layers=n_layers, pattern=pattern, heads=heads,
                groups=groups, kv_ch=kv_ch, ffn=ffn, d_state=d_state, head_dim=head_dim,
                m_groups=m_groups, m_heads=m_heads, d_inner=d_inner, eps=eps, tied=tied,
                seq_len=int(_arg(args, "max_position_embeddings") or _arg(args, "seq_length")
                            or 4096))


# ----------------------------------------------------------------------------------------------
# Keys, shapes and merging

def _expected_keys(hp):
    """Maps each expected Megatron key to its role; `alt` keys are one-of alternatives."""
    keys = {"embedding.word_embeddings.weight": "embedding",
            "decoder.final_norm.weight": "final_norm"}
    if not hp["tied"]:
        keys["output_layer.weight"] = "output"
    for i, kind in enumerate(hp["pattern"]):
        p = f"decoder.layers.{i}."
        if kind == MAMBA:
            for s in ("in_proj.weight", "conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D",
                      "norm.weight", "out_proj.weight"):
                keys[p + "mixer." + s] = "mamba"
        elif kind == ATTENTION:
            for s in ("linear_qkv.layer_norm_weight", "linear_qkv.weight", "linear_proj.weight"):
                keys[p + "self_attention." + s] = "attention"
        else:
            for s in ("linear_fc1.layer_norm_weight", "linear_fc1.weight", "linear_fc2.weight"):
                keys[p + "mlp." + s] = "mlp"
    return keys


def _mamba_prenorm_key(sd, i):
    """The Mamba layer's pre-norm: a separate TENorm (decoder.layers.i.norm.weight, the released
    checkpoints) or fused into TE's in_proj (mixer.in_proj.layer_norm_weight, Megatron from July
    2024 on)."""
    a = f"decoder.layers.{i}.norm.weight"
    b = f"decoder.layers.{i}.mixer.in_proj.layer_norm_weight"
    if a in sd and b in sd:
        raise ConversionError(f"both {a} and {b} are present: two pre-norms for one layer")
    if a not in sd and b not in sd:
        raise ConversionError(f"missing tensor {a} (or {b}): the pre-norm of Mamba layer {i}")
    return a if a in sd else b


def check_keys(sds, hp, files):
    """Names every unexpected and missing key (of every rank) and refuses if there is one."""
    import torch
    expected = set(_expected_keys(hp))
    # modules whose _extra_state (TransformerEngine/FP8 metadata, or None from Megatron's own
    # parallel linears) is expected and ignored
    modules = {k.rsplit(".", 1)[0] for k in expected} | {"output_layer"}
    for i, kind in enumerate(hp["pattern"]):
        if kind == ATTENTION:
            modules.add(f"decoder.layers.{i}.self_attention.core_attention")
        if kind == MAMBA:
            modules.add(f"decoder.layers.{i}.norm")
    problems = []
    for r, sd in enumerate(sds):
        optional = {"decoder.layers.{}.mixer.conv1d.bias".format(i)
                    for i, k in enumerate(hp["pattern"]) if k == MAMBA}
        seen = set()
        for i, kind in enumerate(hp["pattern"]):
            if kind == MAMBA:
                try:
                    seen.add(_mamba_prenorm_key(sd, i))
                except ConversionError as e:
                    problems.append(f"{files[r]}: {e}")
        unexpected = []
        for k, v in sd.items():
            if k.endswith("._extra_state") and k[:-len("._extra_state")] in modules:
                continue
            if k in expected or k in seen:
                if not isinstance(v, torch.Tensor):
                    problems.append(f"{files[r]}: key {k} holds a {type(v).__name__}, not a tensor")
                continue
            unexpected.append(k)
        missing = sorted(expected - set(sd) - optional)
        for k in unexpected:
            problems.append(f"{files[r]}: unexpected key {k}")
        for k in missing:
            problems.append(f"{files[r]}: missing key {k}")
    if problems:
        more = f"\n  ... and {len(problems) - 40} more" if len(problems) > 40 else ""
        raise ConversionError("the checkpoint does not match the layer pattern "
                              f"{hp['pattern']!r} from its saved args:\n  "
                              + "\n  ".join(problems[:40]) + more)


def _check_shape(key, t, shape, why):
    if tuple(t.shape) != tuple(shape):
        raise ConversionError(f"tensor {key} has shape {list(t.shape)}, expected {list(shape)} "
                              f"({why})")


def _replicated(sds, key):
    import torch
    t = sds[0][key]
    for r in range(1, len(sds)):
        if not torch.equal(sds[r][key], t):
            raise ConversionError(f"tensor {key} differs between rank 0 and rank {r}; a "
                                  "replicated norm weight should be identical on every rank")
    return t


def _split_cat(sds, key, sizes, dim):
    """Splits each rank's tensor into pieces of `sizes` along dim and concatenates piece k of every
    rank, then the pieces: how [z, x, B, C, dt] per rank becomes the global [z, x, B, C, dt]."""
    import torch
    if len(sds) == 1:
        return sds[0][key]
    parts = [torch.split(sd[key], sizes, dim=dim) for sd in sds]
    return torch.cat([torch.cat([p[k] for p in parts], dim=dim) for k in range(len(sizes))],
                     dim=dim)


def _cat(sds, key, dim):
    import torch
    return torch.cat([sd[key] for sd in sds], dim=dim) if len(sds) > 1 else sds[0][key]


def deinterleave_qkv(w, heads, groups, kv_ch):
    """Megatron's fused QKV rows are grouped per query group: [q of the group's heads | k | v] for
    each group in turn. Returns (q, k, v) with q's heads in order (head j in group j // (heads /
    groups), as Hugging Face's GQA repeats the key/value heads)."""
    per = heads // groups
    w3 = w.reshape(groups, (per + 2) * kv_ch, w.shape[-1])
    q = w3[:, :per * kv_ch].reshape(heads * kv_ch, -1)
    k = w3[:, per * kv_ch:(per + 1) * kv_ch].reshape(groups * kv_ch, -1)
    v = w3[:, (per + 1) * kv_ch:].reshape(groups * kv_ch, -1)
    return q.contiguous(), k.contiguous(), v.contiguous()


def build_tensors(sds, hp):
    """Checks every tensor's per-rank shape and returns [(Hugging Face name, merged tensor)]."""
    tp, d = hp["tp"], hp["hidden"]
    out = []
    emb_key = "embedding.word_embeddings.weight"
    v_local = sds[0][emb_key].shape[0]
    for r, sd in enumerate(sds):
        _check_shape(emb_key, sd[emb_key], (v_local, d), "vocab rows of this rank x hidden_size")
    vocab = v_local * tp
    out.append(("backbone.embeddings.weight", _cat(sds, emb_key, 0)))

    di, g, n, h = hp["d_inner"] // tp, hp["m_groups"] // tp, hp["d_state"], hp["m_heads"] // tp
    heads, groups, kv = hp["heads"] // tp, hp["groups"] // tp, hp["kv_ch"]
    ffn = hp["ffn"] // tp
    conv_bias = None
    conv_k = None
    for i, kind in enumerate(hp["pattern"]):
        p, o = f"decoder.layers.{i}.", f"backbone.layers.{i}."
        if kind == MAMBA:
            nk = _mamba_prenorm_key(sds[0], i)
            for sd in sds:
                _mamba_prenorm_key(sd, i)
            m = p + "mixer."
            why = (f"d_inner {hp['d_inner']}, {hp['m_heads']} heads, {hp['m_groups']} groups, "
                   f"d_state {n}, split over {tp} ranks")
            for sd in sds:
                _check_shape(nk, sd[nk], (d,), "hidden_size")
                _check_shape(m + "in_proj.weight", sd[m + "in_proj.weight"],
                             (2 * di + 2 * g * n + h, d), "[z, x, B, C, dt] rows: " + why)
                cw = sd[m + "conv1d.weight"]
                if cw.dim() != 3 or cw.shape[1] != 1:
                    raise ConversionError(f"tensor {m}conv1d.weight has shape {list(cw.shape)}, "
                                          "expected [channels, 1, kernel]")
                if conv_k is None:
                    conv_k = cw.shape[2]
                _check_shape(m + "conv1d.weight", cw, (di + 2 * g * n, 1, conv_k),
                             "[x, B, C] channels: " + why)
                has_bias = (m + "conv1d.bias") in sd
                if conv_bias is None:
                    conv_bias = has_bias
                if has_bias != conv_bias:
                    raise ConversionError(f"tensor {m}conv1d.bias: present in some Mamba layers "
                                          "or ranks only")
                if has_bias:
                    _check_shape(m + "conv1d.bias", sd[m + "conv1d.bias"], (di + 2 * g * n,), why)
                for s in ("dt_bias", "A_log", "D"):
                    _check_shape(m + s, sd[m + s], (h,), "one per head: " + why
                                 + (" (a per-channel D is not supported)" if s == "D" else ""))
                _check_shape(m + "norm.weight", sd[m + "norm.weight"], (di,), why)
                _check_shape(m + "out_proj.weight", sd[m + "out_proj.weight"], (d, di), why)
            out.append((o + "norm.weight", _replicated(sds, nk)))
            mo = o + "mixer."
            out.append((mo + "in_proj.weight",
                        _split_cat(sds, m + "in_proj.weight", [di, di, g * n, g * n, h], 0)))
            out.append((mo + "conv1d.weight",
                        _split_cat(sds, m + "conv1d.weight", [di, g * n, g * n], 0)))
            if conv_bias:
                out.append((mo + "conv1d.bias",
                            _split_cat(sds, m + "conv1d.bias", [di, g * n, g * n], 0)))
            for s in ("dt_bias", "A_log", "D"):
                out.append((mo + s, _cat(sds, m + s, 0)))
            out.append((mo + "norm.weight", _cat(sds, m + "norm.weight", 0)))
            out.append((mo + "out_proj.weight", _cat(sds, m + "out_proj.weight", 1)))
        elif kind == ATTENTION:
            a = p + "self_attention."
            why = (f"{hp['heads']} heads, {hp['groups']} query groups, kv_channels {kv}, split "
                   f"over {tp} ranks")
            for sd in sds:
                _check_shape(a + "linear_qkv.layer_norm_weight",
                             sd[a + "linear_qkv.layer_norm_weight"], (d,), "hidden_size")
                _check_shape(a + "linear_qkv.weight", sd[a + "linear_qkv.weight"],
                             ((heads + 2 * groups) * kv, d), why)
                _check_shape(a + "linear_proj.weight", sd[a + "linear_proj.weight"],
                             (d, heads * kv), why)
            out.append((o + "norm.weight", _replicated(sds, a + "linear_qkv.layer_norm_weight")))
            q, k, v = deinterleave_qkv(_cat(sds, a + "linear_qkv.weight", 0), hp["heads"],
                                       hp["groups"], kv)
            out.append((o + "mixer.q_proj.weight", q))
            out.append((o + "mixer.k_proj.weight", k))
            out.append((o + "mixer.v_proj.weight", v))
            out.append((o + "mixer.o_proj.weight", _cat(sds, a + "linear_proj.weight", 1)))
        else:
            f = p + "mlp."
            for sd in sds:
                _check_shape(f + "linear_fc1.layer_norm_weight",
                             sd[f + "linear_fc1.layer_norm_weight"], (d,), "hidden_size")
                _check_shape(f + "linear_fc1.weight", sd[f + "linear_fc1.weight"], (ffn, d),
                             f"ffn_hidden_size {hp['ffn']} over {tp} ranks, not gated")
                _check_shape(f + "linear_fc2.weight", sd[f + "linear_fc2.weight"], (d, ffn),
                             f"ffn_hidden_size {hp['ffn']} over {tp} ranks")
            out.append((o + "norm.weight", _replicated(sds, f + "linear_fc1.layer_norm_weight")))
            out.append((o + "mixer.up_proj.weight", _cat(sds, f + "linear_fc1.weight", 0)))
            out.append((o + "mixer.down_proj.weight", _cat(sds, f + "linear_fc2.weight", 1)))
    for sd in sds:
        _check_shape("decoder.final_norm.weight", sd["decoder.final_norm.weight"], (d,),
                     "hidden_size")
    out.append(("backbone.norm_f.weight", _replicated(sds, "decoder.final_norm.weight")))
    if not hp["tied"]:
        for sd in sds:
            _check_shape("output_layer.weight", sd["output_layer.weight"], (v_local, d),
                         "the embedding's vocab rows of this rank x hidden_size")
        out.append(("lm_head.weight", _cat(sds, "output_layer.weight", 0)))
    hp.update(vocab=vocab, conv_bias=bool(conv_bias), conv_kernel=int(conv_k or 4))
    return out


# ----------------------------------------------------------------------------------------------
# Writing safetensors (JSON header + raw little-endian bytes; no dependency needed)

def _st_dtype(t):
    import torch
    names = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}
    if t.dtype not in names:
        raise ConversionError(f"dtype {t.dtype} is not one serpent reads (BF16, F16, F32)")
    return names[t.dtype]


def _raw_bytes(t):
    import torch
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)  # numpy has no bfloat16; same bits
    return memoryview(t.numpy()).cast("B")


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, t in tensors:
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": _st_dtype(t), "shape": list(t.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, t in tensors:
            f.write(_raw_bytes(t))


def write_weights(out_dir, tensors, max_shard_bytes):
    shards, cur, cur_bytes = [], [], 0
    for name, t in tensors:
        nb = t.numel() * t.element_size()
        if cur and cur_bytes + nb > max_shard_bytes:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append((name, t))
        cur_bytes += nb
    if cur:
        shards.append(cur)
    if len(shards) == 1:
        write_safetensors(os.path.join(out_dir, "model.safetensors"), shards[0])
        return ["model.safetensors"]
    names, weight_map = [], {}
    total = sum(t.numel() * t.element_size() for _, t in tensors)
    for k, shard in enumerate(shards):
        fname = "model-{:05d}-of-{:05d}.safetensors".format(k + 1, len(shards))
        write_safetensors(os.path.join(out_dir, fname), shard)
        names.append(fname)
        for name, _ in shard:
            weight_map[name] = fname
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return names


# ----------------------------------------------------------------------------------------------
# The SentencePiece model: the special pieces, read from its protobuf (no sentencepiece module
# needed). SentencePieceProcessor's bos_id()/eos_id() are the ids of trainer_spec's bos_piece /
# eos_piece ("<s>", "</s>" unless set) when those pieces are CONTROL pieces, else -1; pad_id() the
# same for pad_piece; unk_id() the id of unk_piece.

def _varint(b, i):
    v, shift = 0, 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return v, i
        shift += 7


def _fields(b):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        yield num, wt, v


def read_spm_specials(path):
    with open(path, "rb") as f:
        data = f.read()
    pieces, types_, trainer = [], [], {}
    try:
        for num, wt, v in _fields(data):
            if num == 1 and wt == 2:
                piece, ptype = "", 1
                for n2, w2, v2 in _fields(v):
                    if n2 == 1 and w2 == 2:
                        piece = v2.decode("utf-8")
                    elif n2 == 3 and w2 == 0:
                        ptype = v2
                pieces.append(piece)
                types_.append(ptype)
            elif num == 2 and wt == 2:
                for n2, w2, v2 in _fields(v):
                    if n2 in (45, 46, 47, 48) and w2 == 2:
                        trainer[n2] = v2.decode("utf-8")
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        raise ConversionError(f"{path}: not a SentencePiece model ({e})")
    if not pieces:
        raise ConversionError(f"{path}: not a SentencePiece model (no pieces)")
    ids = {}
    for k, p in enumerate(pieces):
        ids.setdefault(p, k)
    CONTROL, UNKNOWN = 3, 2

    def special(field, default, want_type):
        piece = trainer.get(field, default)
        k = ids.get(piece, -1)
        return (piece, k) if k >= 0 and types_[k] == want_type else (None, -1)

    return dict(size=len(pieces), unk=special(45, "<unk>", UNKNOWN),
                bos=special(46, "<s>", CONTROL), eos=special(47, "</s>", CONTROL),
                pad=special(48, "<pad>", CONTROL))


# ----------------------------------------------------------------------------------------------

def nemotron_h_config(hp, dtype, spm):
    cfg = {
        "architectures": ["NemotronHForCausalLM"],
        "model_type": "nemotron_h",
        "vocab_size": hp["vocab"],  # Megatron's padded vocabulary: the rows the weights have
        "hidden_size": hp["hidden"],
        "num_hidden_layers": hp["n_layers"],
        "hybrid_override_pattern": hp["pattern"],
        "num_attention_heads": hp["heads"],
        "num_key_value_heads": hp["groups"],
        "head_dim": hp["kv_ch"],
        "attention_head_dim": hp["kv_ch"],
        "attention_bias": False,
        "intermediate_size": hp["ffn"],
        # Megatron's MLP is fc2(F.gelu(fc1(x))): exact erf GELU (no bias, so no fused tanh form)
        "mlp_hidden_act": "gelu",
        "mlp_bias": False,
        "mamba_num_heads": hp["m_heads"],
        "mamba_head_dim": hp["head_dim"],
        "ssm_state_size": hp["d_state"],
        "n_groups": hp["m_groups"],
        "conv_kernel": hp["conv_kernel"],
        "expand": hp["d_inner"] // hp["hidden"] if hp["d_inner"] % hp["hidden"] == 0
        else hp["d_inner"] / hp["hidden"],
        "chunk_size": 128,  # Megatron's MambaMixer default
        "mamba_hidden_act": "silu",
        "use_conv_bias": hp["conv_bias"],
        "use_bias": False,
        "mamba_proj_bias": False,
        # Megatron never clamps softplus(dt + dt_bias): no lower bound (time_step_min is the
        # clamp transformers' Nemotron-H and serpent apply).
        "time_step_min": 0.0,
        "time_step_limit": [0.0, float("inf")],
        "mamba_ssm_cache_dtype": "float32",
        "layer_norm_epsilon": hp["eps"],
        "residual_in_fp32": False,
        "tie_word_embeddings": hp["tied"],
        "max_position_embeddings": hp["seq_len"],
        "torch_dtype": dtype,
        "use_cache": True,
    }
    if spm:
        for key, which in (("bos_token_id", "bos"), ("eos_token_id", "eos"),
                           ("pad_token_id", "pad")):
            if spm[which][1] >= 0:
                cfg[key] = spm[which][1]
    return cfg


def write_tokenizer(out_dir, spm_path, spm, hp):
    shutil.copyfile(spm_path, os.path.join(out_dir, "tokenizer.model"))
    tc = {
        # GPTSentencePieceTokenizer.tokenize is encode_as_ids(text): nothing is added
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": spm["bos"][0],
        "eos_token": spm["eos"][0],  # Megatron's eod is the model's eos_id()
        "unk_token": spm["unk"][0],
        "pad_token": spm["pad"][0],
        "model_max_length": hp["seq_len"],
        "clean_up_tokenization_spaces": False,
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tc, f, indent=2)


def _parse_size(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?", s.strip(), re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {s!r} (e.g. 5GB, 500MB, 4GiB)")
    mult = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
            "KI": 1024, "KIB": 1024, "MI": 1 << 20, "MIB": 1 << 20, "GI": 1 << 30,
            "GIB": 1 << 30}[(m.group(2) or "").upper()]
    return int(float(m.group(1)) * mult)


def convert(ckpt_dir, out_dir, tokenizer=None, max_shard_bytes=5 * 10**9, force=False, log=print):
    import torch
    it_dir, files, label = find_rank_files(ckpt_dir)
    log(f"reading {len(files)} tensor-parallel rank(s) of {it_dir}")
    _stubbed.clear()
    ckpts = [load_rank_file(p) for p in files]
    for p, c in zip(files, ckpts):
        if not isinstance(c, dict):
            raise ConversionError(f"{p}: holds a {type(c).__name__}, not Megatron's checkpoint "
                                  "dict")
        if "model" not in c:
            extra = " (model0, model1, ...: a virtual-pipeline checkpoint)" if "model0" in c else ""
            raise ConversionError(f"{p}: no 'model' entry{extra}; keys: {sorted(c)}")
        if "args" not in c:
            raise ConversionError(f"{p}: no saved 'args'; the layer pattern and shapes come "
                                  "from them")
        version = c.get("checkpoint_version", 0)
        if version < 3.0:
            raise ConversionError(f"{p}: checkpoint_version {version}; Megatron-core checkpoints "
                                  "(3.0) are supported, older QKV layouts are not")
    if _stubbed:
        log("note: stood in for classes the checkpoint names but this converter does not "
            "import: " + ", ".join(sorted(_stubbed)))
    args = ckpts[0]["args"]
    sds = [c["model"] for c in ckpts]
    hp = read_hparams(args, len(files), sds[0])
    check_keys(sds, hp, files)
    tensors = build_tensors(sds, hp)
    padded = _arg(args, "padded_vocab_size")
    if padded is not None and padded != hp["vocab"]:
        raise ConversionError(f"args.padded_vocab_size = {padded}, but the embedding has "
                              f"{hp['vocab']} rows")

    spm_path = tokenizer
    if spm_path is None:
        cands = sorted(f for f in os.listdir(ckpt_dir) if f.endswith(".model"))
        if len(cands) == 1:
            spm_path = os.path.join(ckpt_dir, cands[0])
        elif len(cands) > 1:
            raise ConversionError(f"{ckpt_dir}: several *.model files ({', '.join(cands)}); "
                                  "name the tokenizer with --tokenizer")
    ttype = _arg(args, "tokenizer_type")
    spm = None
    if spm_path:
        if ttype not in (None, "GPTSentencePieceTokenizer"):
            raise ConversionError(f"args.tokenizer_type = {ttype!r}: only "
                                  "GPTSentencePieceTokenizer's tokenization is written")
        spm = read_spm_specials(spm_path)
        if spm["size"] > hp["vocab"]:
            raise ConversionError(f"{spm_path}: {spm['size']} pieces, more than the "
                                  f"{hp['vocab']} embedding rows")
        mult = (_arg(args, "make_vocab_size_divisible_by", 128) or 1) * hp["tp"]
        if -(-spm["size"] // mult) * mult != hp["vocab"]:
            log(f"warning: {spm_path} has {spm['size']} pieces, which Megatron pads to "
                f"{-(-spm['size'] // mult) * mult}, not the checkpoint's {hp['vocab']} rows; is "
                "it the tokenizer the model was trained with?")
        if spm["eos"][1] < 0:
            log(f"warning: {spm_path} has no end-of-sequence piece: generation stops only at "
                "max_tokens")
    else:
        log("note: no tokenizer (--tokenizer SPM_MODEL); the folder takes token ids only")

    if os.path.isdir(out_dir) and not force:
        clash = [f for f in os.listdir(out_dir) if f.endswith(".safetensors")
                 or f in ("config.json", "model.safetensors.index.json")]
        if clash:
            raise ConversionError(f"{out_dir}: already holds {', '.join(sorted(clash))} "
                                  "(--force overwrites)")
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        if force and (f.endswith(".safetensors") or f == "model.safetensors.index.json"):
            os.remove(os.path.join(out_dir, f))
    dtypes = {t.dtype for name, t in tensors if t.dim() == 2}
    dtype = {torch.bfloat16: "bfloat16", torch.float16: "float16",
             torch.float32: "float32"}.get(next(iter(dtypes)) if len(dtypes) == 1 else None,
                                            "bfloat16")
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(nemotron_h_config(hp, dtype, spm), f, indent=2)  # Infinity, as HF writes it
    gen = {"_from_model_config": True}
    if spm:
        for key, which in (("bos_token_id", "bos"), ("eos_token_id", "eos"),
                           ("pad_token_id", "pad")):
            if spm[which][1] >= 0:
                gen[key] = spm[which][1]
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
    if spm:
        write_tokenizer(out_dir, spm_path, spm, hp)
    shards = write_weights(out_dir, tensors, max_shard_bytes)
    log(f"wrote {out_dir}: {hp['n_layers']} layers {hp['pattern']}, vocab {hp['vocab']}, "
        f"{len(tensors)} tensors in {len(shards)} file(s), iteration {label}")
    return hp


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Convert a legacy Megatron-LM Mamba/hybrid checkpoint (mp_rank_NN/"
                    "model_optim_rng.pt) to a Nemotron-H folder serpent serves.")
    ap.add_argument("checkpoint_dir", help="folder with latest_checkpointed_iteration.txt (or an "
                    "iteration folder holding mp_rank_NN/)")
    ap.add_argument("out_dir", help="folder to write")
    ap.add_argument("--tokenizer", metavar="SPM_MODEL", help="the SentencePiece .model the "
                    "checkpoint was trained with (default: the one *.model in CHECKPOINT_DIR)")
    ap.add_argument("--max-shard-size", type=_parse_size, default=5 * 10**9, metavar="SIZE",
                    help="largest safetensors file (default 5GB)")
    ap.add_argument("--force", action="store_true", help="overwrite weights already in OUT_DIR")
    a = ap.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("convert_megatron: PyTorch is needed to read the checkpoint's pickles "
              "(Debian: apt-get install python3-torch)", file=sys.stderr)
        return 1
    try:
        convert(a.checkpoint_dir, a.out_dir, a.tokenizer, a.max_shard_size, a.force,
                log=lambda m: print(m, file=sys.stderr))
    except ConversionError as e:
        print(f"convert_megatron: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
