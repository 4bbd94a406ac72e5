"""Depth growth: make a trained Llama-family model ×k deeper without changing its function.

Variant (and why): **interleaved copies with zeroed output projections** (the "block expansion" of
LLaMA Pro, Wu et al. 2024). Layer ``i`` of the source becomes layers ``i·k … i·k+k−1`` of the deep
model: the first is the original, the k−1 others are copies of it whose attention ``o_proj`` and MLP
``down_proj`` (and their biases, where an architecture has them) are zero. A decoder layer adds
``o_proj(attn(norm(h)))`` and ``down_proj(mlp(norm(h)))`` to the residual stream, so a copy with
both zero adds exactly 0: the deep model computes bit for bit the same hidden states and logits.

* Zeroed outputs, not copied-and-halved: two halved copies in a row compute
  ``h + f(h)/2 + f(h + f(h)/2)/2``, which is not ``h + f(h)`` (the second copy sees another input), so
  that variant is only approximately function-preserving; zeroed outputs are exact. The zero output
  projections still receive gradients (their inputs are not zero), so the new layers start training
  from the first step; the copied q/k/v/gate/up weights give them useful features from the start.
* Interleaved, not stacked: a copy placed right after the layer it copies sees the residual stream
  that layer was trained on (the copy adds nothing), so its features fit its depth. Copies of all
  layers stacked on top would put early-layer weights where late-layer statistics flow.

Everything outside the decoder layers (embeddings, final norm, a tied or untied output head) is
kept as it is; the config's layer count (and, where present, per-layer lists and layer indices)
grows ×k. The result is a plain HF directory of the source's class.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch

from growmerge.errors import EnvironmentFault, GrowmergeError
from growmerge.grow.hyperclone import SUPPORTED, available_memory, resolve_source

LAYER = re.compile(r"^(.*\.layers\.)(\d+)(\..+)$")
# What a decoder layer adds to the residual stream: zero in a new layer makes it the identity.
OUTPUT = re.compile(r"\.(self_attn\.o_proj|mlp\.down_proj)\.(weight|bias)$")
VARIANT = "interleaved copies, o_proj and down_proj zeroed"


def check_depth(depth) -> int:
    if isinstance(depth, bool) or not float(depth).is_integer() or int(depth) < 2:
        raise GrowmergeError(f"--depth must be an integer ≥ 2 (the factor the layer count grows by), got {depth}")
    return int(depth)


def check_architecture(config) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED:
        raise GrowmergeError(
            f"depth growth supports the Llama family ({', '.join(SUPPORTED)}); this model is '{model_type}'")


def deepened_config(config, depth: int):
    """The source config with ×k layers; per-layer lists repeated in place, layer indices scaled."""
    deep = config.__class__.from_dict(config.to_dict())
    deep.num_hidden_layers = config.num_hidden_layers * depth
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list):  # copy c of layer i keeps layer i's attention type
        deep.layer_types = [t for t in layer_types for _ in range(depth)]
    if isinstance(getattr(config, "max_window_layers", None), int):  # Qwen2: a boundary layer index
        deep.max_window_layers = config.max_window_layers * depth
    for stale in ("quantization_config", "_name_or_path"):
        if hasattr(deep, stale):
            try:
                delattr(deep, stale)
            except AttributeError:
                pass
    return deep


def deepen_state(names: Iterable[str], get: Callable[[str], torch.Tensor], config,
                 depth: int) -> dict[str, torch.Tensor]:
    """The deepened state dict, built tensor by tensor from `get(name)` (the source may stay lazy)."""
    k = check_depth(depth)
    check_architecture(config)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    n_layers = config.num_hidden_layers
    out: dict[str, torch.Tensor] = {}
    for name in sorted(names):
        if name == "lm_head.weight" and tied:
            continue  # a tied source may still store a copy; the embedding is the truth
        m = LAYER.match(name)
        if m is None:
            out[name] = get(name).clone()
            continue
        prefix, index, rest = m.group(1), int(m.group(2)), m.group(3)
        if index >= n_layers:
            raise GrowmergeError(f"tensor {name} names layer {index} but the config has {n_layers} layers")
        w = get(name)
        for copy in range(k):
            new = w.clone() if copy == 0 or not OUTPUT.search(name) else torch.zeros_like(w)
            out[f"{prefix}{index * k + copy}{rest}"] = new
    return out


def deepen(model, depth: int):
    """Deepen an in-memory model ×k; the deep model is built on the meta device (no random init)."""
    from transformers import AutoModelForCausalLM

    from growmerge.grow.hyperclone import _check_no_meta

    state = model.state_dict()
    deep_state = deepen_state(state.keys(), state.__getitem__, model.config, depth)
    with torch.device("meta"):
        deep = AutoModelForCausalLM.from_config(deepened_config(model.config, check_depth(depth)),
                                                dtype=next(model.parameters()).dtype)
    deep.load_state_dict(deep_state, strict=False, assign=True)
    deep.tie_weights()
    _check_no_meta(deep)
    return deep.eval()


def deepened_bytes(info: Mapping, depth: int, tied: bool) -> int:
    """Bytes of the deep model: decoder-layer tensors ×k, everything else once."""
    return sum(i.nbytes * (depth if LAYER.match(n) else 1) for n, i in info.items()
               if not (n == "lm_head.weight" and tied))


def greedy_tokens(model, ids: torch.Tensor, n: int) -> torch.Tensor:
    """`n` greedy continuation tokens per row: argmax only, with the KV cache (no generation config,
    no sampling settings a model directory may carry)."""
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        tokens = [out.logits[:, -1].float().argmax(dim=-1, keepdim=True)]
        for _ in range(n - 1):
            out = model(input_ids=tokens[-1], cache=out.cache, use_cache=True)
            tokens.append(out.logits[:, -1].float().argmax(dim=-1, keepdim=True))
    return torch.cat(tokens, dim=1)


def deepen_dir(src: str | Path, out: str | Path, depth: int, force: bool = False) -> Path:
    """Deepen a model directory ×k into `out`: tensors read one by one, written straight to
    safetensors, config deepened, tokenizer copied, lineage recorded (no training FLOPs). `out` may
    not be, contain or lie inside the source; --force replaces only a previous grown model."""
    from growmerge.artifacts import (ModelTensors, atomic_dir, check_room, copy_tokenizer_files, ensure_free,
                                     fingerprint_of, human_bytes, load_config, model_identity, read_meta, write_meta,
                                     write_safetensors)

    k = check_depth(depth)
    src = resolve_source(src)
    ensure_free(out, force, kind="clone", inputs=[src])
    config = load_config(src)
    check_architecture(config)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    state = ModelTensors(src)
    try:
        nbytes = deepened_bytes(state.info, k, tied)
        memory = available_memory()
        if memory is not None and nbytes > memory:
            raise EnvironmentFault(f"a ×{k} deeper {src} holds {human_bytes(nbytes)}, more than the "
                                   f"{human_bytes(memory)} of memory available")
        check_room(nbytes, Path(out).parent, f"a ×{k} deeper {src}")
        deep = deepen_state(state.info.keys(), state.get, config, k)
    finally:
        state.close()
    parent = read_meta(src)
    spec = {"depth": k, "variant": VARIANT, "tied": tied}
    meta = {
        "kind": "clone",  # a grown model: the ledger's kind for HyperCloning too
        "parents": [str(src)],
        "setup": parent.get("setup"),
        "languages": parent.get("languages", []),
        "tokens": parent.get("tokens", 0),
        "params": sum(t.numel() for t in deep.values()),
        # Growing costs no training FLOPs; the lineage's cost travels on (as for HyperCloning).
        "flops": {"self": 0.0, "cumulative": float(parent.get("flops", {}).get("cumulative", 0.0))},
        "spec": spec,
        "fingerprint": fingerprint_of({"deepen": spec, "source": model_identity(src)}),
    }
    with atomic_dir(out, force=force, kind="clone", inputs=[src]) as tmp:
        write_safetensors(tmp / "model.safetensors", deep)
        deepened_config(config, k).save_pretrained(tmp)
        copy_tokenizer_files(src, tmp)
        write_meta(tmp, meta)
    return Path(out)
