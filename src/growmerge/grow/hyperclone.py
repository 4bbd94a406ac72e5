"""HyperCloning (Samragh et al. 2024): widen a trained Llama-family model ×k without changing its function.

The hidden state of the big model is k copies of the small one's, ``h' = [h, h, ..., h]``. Each rule
below keeps that invariant:

* linear ``W`` (out × in) → the k×k block matrix of copies of ``W/k``: every output block is
  ``Σ_j (W/k) h = W h``, so a duplicated input gives a duplicated output;
* biases and RMSNorm weights of size d are repeated (RMS of ``[h, …, h]`` equals RMS of ``h``);
* attention grows by adding heads (head size unchanged). The q/k/v outputs are k copies of all heads,
  so new head ``c·H + j`` is a copy of head ``j`` and, with KV heads grown ×k too, reads KV head
  ``c·KV + j // g`` = a copy of the original group's KV head — MHA, GQA and MQA alike;
* embeddings are repeated along the hidden axis *without* dividing;
* tied output: the logits ``E' · [n, …, n] = k · E n`` come out k times too large, so the final norm
  weight is divided by k — the result is a plain ``LlamaForCausalLM`` that stays tied. Untied output:
  ``lm_head' = [W, …, W] / k`` and the final norm is only repeated.

Optional noise breaks the symmetry between copies without changing the function: for each output
block of a linear layer the k input-block noises sum to zero (for k=2, ± pairs), so they cancel on
the duplicated input. Its scale is set per tensor by a signal-to-noise ratio in dB.

Depth growth lives in `growmerge.grow.depth`. Qwen3's per-head q/k norms (size head_dim) are kept as they are.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch

from growmerge.artifacts import resolve_source  # noqa: F401  (re-exported: grow's callers use it here)
from growmerge.errors import EnvironmentFault, GrowmergeError

SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")
BLOCK_LINEAR = re.compile(r"\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$")
REPEAT_VECTOR = re.compile(
    r"\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.bias$|(input_layernorm|post_attention_layernorm)\.weight$"
)
KEEP = re.compile(r"\.(q_norm|k_norm)\.weight$|rotary_emb")


def check_factor(factor) -> int:
    if isinstance(factor, bool) or not float(factor).is_integer() or int(factor) < 2:
        raise GrowmergeError(f"--factor must be an integer ≥ 2, got {factor}")
    return int(factor)


def check_snr_db(snr_db: float | None) -> float | None:
    """The noise's signal-to-noise ratio: a finite number of dB ≥ 0 (noise no stronger than the
    signal; -1000 dB or NaN would write an all-NaN model)."""
    if snr_db is not None and not (math.isfinite(snr_db) and snr_db >= 0):
        raise GrowmergeError(f"--snr-db must be a finite number ≥ 0 (dB), got {snr_db}")
    return snr_db


def check_architecture(config) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED:
        raise GrowmergeError(
            f"HyperCloning supports the Llama family ({', '.join(SUPPORTED)}); this model is '{model_type}'"
        )


def grown_config(config, factor: int, tie: bool):
    """The source config with hidden, MLP, attention heads and KV heads ×k; head size unchanged."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = config.num_key_value_heads or config.num_attention_heads
    big = config.__class__.from_dict(config.to_dict())
    big.hidden_size = config.hidden_size * factor
    big.intermediate_size = config.intermediate_size * factor
    big.num_attention_heads = config.num_attention_heads * factor
    big.num_key_value_heads = kv_heads * factor
    big.head_dim = head_dim
    big.tie_word_embeddings = tie
    for stale in ("quantization_config", "_name_or_path"):
        if hasattr(big, stale):
            try:
                delattr(big, stale)
            except AttributeError:
                pass
    return big


def zero_sum_noise(shape: tuple[int, ...], k: int, std: float, gen: torch.Generator) -> torch.Tensor:
    """k noise tensors of `shape` that sum to zero elementwise (for k=2: +N and −N)."""
    noise = torch.randn((k, *shape), generator=gen, dtype=torch.float32) * std
    # Removing the mean shrinks the variance by (k-1)/k; scale back so the SNR is the one asked for.
    return (noise - noise.mean(dim=0, keepdim=True)) * (k / (k - 1)) ** 0.5


def block_clone(w: torch.Tensor, k: int, snr_db: float | None, gen: torch.Generator | None) -> torch.Tensor:
    """k×k blocks of W/k, plus per-output-block zero-sum noise across the input blocks."""
    out_dim, in_dim = w.shape
    base = (w.float() / k).repeat(k, k)
    if snr_db is not None:
        signal_power = (w.float() / k).pow(2).mean().item()
        std = (signal_power / 10 ** (snr_db / 10)) ** 0.5
        for i in range(k):  # each output block row gets its own noise, zero-sum over its inputs
            noise = zero_sum_noise((out_dim, in_dim), k, std, gen)
            base[i * out_dim:(i + 1) * out_dim] += torch.cat(list(noise), dim=1)
    return base.to(w.dtype)


def clone_tensor(name: str, w: torch.Tensor, k: int, tie: bool, snr_db: float | None,
                 gen: torch.Generator | None) -> torch.Tensor:
    if name.endswith("embed_tokens.weight"):
        return w.repeat(1, k)
    if name == "lm_head.weight":
        return (w.float().repeat(1, k) / k).to(w.dtype)
    if name.endswith("model.norm.weight"):
        # Tied: dividing the final norm by k undoes the k-fold sum over the repeated embedding.
        return (w.float().repeat(k) / k).to(w.dtype) if tie else w.repeat(k)
    if BLOCK_LINEAR.search(name):
        return block_clone(w, k, snr_db, gen)
    if REPEAT_VECTOR.search(name):
        return w.repeat(k)
    if KEEP.search(name):
        return w.clone()
    raise GrowmergeError(f"HyperCloning does not know how to grow tensor '{name}' {tuple(w.shape)}")


def clone_state(names: Iterable[str], get: Callable[[str], torch.Tensor], config, factor: int,
                snr_db: float | None = None, seed: int = 0, untie: bool = False) -> dict[str, torch.Tensor]:
    """The cloned state dict, built tensor by tensor from `get(name)` (so the source can stay lazy).

    Tensors are visited in sorted name order so the noise, drawn from one seeded generator, is
    reproducible whatever order the source file lists them in.
    """
    k = check_factor(factor)
    check_snr_db(snr_db)
    check_architecture(config)
    src_tied = bool(getattr(config, "tie_word_embeddings", False))
    tie = src_tied and not untie
    gen = torch.Generator().manual_seed(seed) if snr_db is not None else None
    out: dict[str, torch.Tensor] = {}
    names = sorted(names)
    for name in names:
        if name == "lm_head.weight" and src_tied:
            continue  # a tied source may still store a copy; the embedding is the truth
        out[name] = clone_tensor(name, get(name), k, tie, snr_db, gen)
    if not tie and "lm_head.weight" not in out:
        emb = get(next(n for n in names if n.endswith("embed_tokens.weight")))
        out["lm_head.weight"] = (emb.float().repeat(1, k) / k).to(emb.dtype)
    return out


def hyperclone(model, factor: int, snr_db: float | None = None, seed: int = 0, untie: bool = False):
    """Clone an in-memory model ×k; the big model is built on the meta device (no random init)."""
    from transformers import AutoModelForCausalLM

    config = model.config
    state = model.state_dict()
    big_state = clone_state(state.keys(), state.__getitem__, config, factor, snr_db, seed, untie)
    big_config = grown_config(config, check_factor(factor), bool(config.tie_word_embeddings) and not untie)
    with torch.device("meta"):
        big = AutoModelForCausalLM.from_config(big_config, dtype=next(model.parameters()).dtype)
    big.load_state_dict(big_state, strict=False, assign=True)
    big.tie_weights()
    _check_no_meta(big)
    return big.eval()


def _check_no_meta(model) -> None:
    """Non-persistent buffers (rotary inv_freq) are not in a state dict: rebuild those modules from
    the config on the CPU; any other tensor still on the meta device is a bug."""
    for name, module in list(model.named_modules()):
        if any(b.is_meta for b in module.buffers(recurse=False)) and "rotary" in name:
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr,
                    type(module)(config=model.config))
    missing = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if missing:
        raise GrowmergeError(f"cloned model is missing tensors: {missing[:3]}")


def grown_bytes(info: Mapping, factor: int, untie: bool, tied: bool) -> int:
    """Bytes of the clone of tensors `info` (name -> TensorInfo), known before any is built: linear
    layers grow k², vectors and embeddings k times."""
    total = 0
    for name, i in info.items():
        if name == "lm_head.weight" and tied:
            continue
        total += i.nbytes * (factor * factor if BLOCK_LINEAR.search(name) else 1 if KEEP.search(name) else factor)
    if tied and untie:
        total += next((i.nbytes for n, i in info.items() if n.endswith("embed_tokens.weight")), 0) * factor
    return total


def available_memory() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is no such file)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def max_logit_diff(a, b, ids: torch.Tensor) -> float:
    """max |logits_a − logits_b| over a batch of token id sequences, in float32."""
    with torch.no_grad():
        la = a(input_ids=ids).logits.float()
        lb = b(input_ids=ids).logits.float()
    return (la - lb).abs().max().item()


def verification_ids(tokenizer, vocab_size: int, seed: int = 0) -> torch.Tensor:
    """A few real sentences when a tokenizer is there, else random ids (both deterministic)."""
    if tokenizer is not None:
        texts = ["The capital of France is Paris, and", "def add(a, b):\n    return a + b",
                 "Hunden springer över staketet medan", "Þetta er lítið próf á íslensku."]
        rows = [tokenizer(t, add_special_tokens=False).input_ids[:12] for t in texts]
        n = min(len(r) for r in rows)
        return torch.tensor([r[:n] for r in rows])
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (4, 16), generator=gen)


def clone_dir(src: str | Path, out: str | Path, factor: int, snr_db: float | None = None, seed: int = 0,
              untie: bool = False, force: bool = False) -> Path:
    """Clone a model directory ×k into `out`: tensors read from the source one by one, written straight
    to safetensors (no big model is ever initialised), config grown, tokenizer copied, lineage recorded.
    `out` may not be, contain or lie inside the source; --force replaces only a previous clone; a clone
    that does not fit in memory or on disk, or would hold a NaN or infinite weight, is refused."""
    from growmerge.artifacts import (ModelTensors, atomic_dir, check_room, copy_tokenizer_files, ensure_free,
                                     fingerprint_of, human_bytes, load_config, model_identity, read_meta, write_meta,
                                     write_safetensors)

    k = check_factor(factor)
    check_snr_db(snr_db)
    src = resolve_source(src)
    ensure_free(out, force, kind="clone", inputs=[src])
    config = load_config(src)
    check_architecture(config)
    src_tied = bool(getattr(config, "tie_word_embeddings", False))
    tie = src_tied and not untie
    state = ModelTensors(src)
    try:
        nbytes = grown_bytes(state.info, k, untie, src_tied)
        memory = available_memory()
        if memory is not None and nbytes > memory:
            raise EnvironmentFault(f"a ×{k} clone of {src} holds {human_bytes(nbytes)}, more than the "
                                   f"{human_bytes(memory)} of memory available")
        check_room(nbytes, Path(out).parent, f"a ×{k} clone of {src}")
        big = clone_state(state.info.keys(), state.get, config, k, snr_db, seed, untie)
    finally:
        state.close()
    parent = read_meta(src)
    spec = {"factor": k, "snr_db": snr_db, "seed": seed, "untie": untie, "tied": tie}
    meta = {
        "kind": "clone",
        "parents": [str(src)],
        "setup": parent.get("setup"),
        "languages": parent.get("languages", []),
        "tokens": parent.get("tokens", 0),
        "params": sum(t.numel() for t in big.values()),
        # Cloning costs no training FLOPs; the lineage's cost travels on (paper §3.3).
        "flops": {"self": 0.0, "cumulative": float(parent.get("flops", {}).get("cumulative", 0.0))},
        "spec": spec,
        "fingerprint": fingerprint_of({"clone": spec, "source": model_identity(src)}),
    }
    with atomic_dir(out, force=force, kind="clone", inputs=[src]) as tmp:
        write_safetensors(tmp / "model.safetensors", big)
        grown_config(config, k, tie).save_pretrained(tmp)
        copy_tokenizer_files(src, tmp)
        write_meta(tmp, meta)
    return Path(out)
