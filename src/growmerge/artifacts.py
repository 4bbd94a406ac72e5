"""Model directories: the contract between stages.

Every model a stage writes is a Hugging Face directory (config.json, model.safetensors, tokenizer
files) that plain ``AutoModelForCausalLM.from_pretrained`` loads, plus a ``growmerge.json`` sidecar
with lineage and FLOPs::

    {"kind": "seed|base|adapt|clone|merge|external", "parents": [...], "setup": "1x|1x_cloned|2x",
     "languages": [...], "tokens": n, "flops": {"self": x, "cumulative": y}, "spec": {...}}

Writes are atomic: a stage builds ``<out>.tmp-<pid>`` and renames it into place when complete, so a
killed process never leaves a directory that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

from growmerge.errors import GrowmergeError

META_FILE = "growmerge.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


# ---------------------------------------------------------------------------------------------
# Atomic directories
# ---------------------------------------------------------------------------------------------
def ensure_free(out: str | Path, force: bool = False) -> Path:
    """Refuse to overwrite a non-empty directory unless `force` (checked before any work starts)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GrowmergeError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise GrowmergeError(f"{out} exists and is not empty (pass --force to replace it)")
    return out


@contextlib.contextmanager
def atomic_dir(out: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `out` in one rename.

    On any exception the temporary directory is removed and `out` is left as it was.
    """
    out = ensure_free(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        # Move the old one aside first so that `out` is never missing *and* never half-written.
        old = out.with_name(f"{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_safetensors(path: str | Path, tensors: dict, metadata: dict | None = None) -> None:
    """Write a safetensors file tensor by tensor.

    `safetensors.torch.save_file` first serialises everything into one bytes object, which doubles
    peak memory and costs a full extra copy; the format (8-byte header size, JSON header, raw
    little-endian data) is simple enough to stream.
    """
    import torch

    names = sorted(tensors)
    header: dict[str, Any] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name in names:
        t = tensors[name]
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little"))
        fh.write(raw)
        for name in names:
            t = tensors[name].detach().cpu().contiguous()
            if t.numel():
                fh.write(t.reshape(-1).view(torch.uint8).numpy().data)


def _safetensors_dtypes() -> dict:
    import torch

    return {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
            torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
            torch.bool: "BOOL"}


class _LazyDtypes(dict):
    def __missing__(self, key):
        self.update(_safetensors_dtypes())
        return dict.__getitem__(self, key)


SAFETENSORS_DTYPES = _LazyDtypes()


# ---------------------------------------------------------------------------------------------
# growmerge.json
# ---------------------------------------------------------------------------------------------
def read_meta(model_dir: str | Path) -> dict:
    """The sidecar of a model directory; a model from elsewhere counts as an external model with no
    recorded training cost."""
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        return {"kind": "external", "parents": [], "flops": {"self": 0.0, "cumulative": 0.0}}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GrowmergeError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def write_meta(model_dir: str | Path, meta: dict) -> None:
    write_json_atomic(Path(model_dir) / META_FILE, meta)


def cumulative_flops(model_dir: str | Path) -> float:
    return float(read_meta(model_dir).get("flops", {}).get("cumulative", 0.0))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def is_local(src: str | Path) -> bool:
    """A path that exists, or anything that cannot be a hub id (`org/name`), is treated as local."""
    s = str(src)
    return Path(s).expanduser().exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", s) or s.startswith(".")


def check_model_dir(src: str | Path) -> Path:
    """A local model directory must have a config and safetensors weights (we never unpickle)."""
    path = Path(src).expanduser()
    if not path.is_dir():
        raise GrowmergeError(f"{path}: no such model directory")
    if not (path / "config.json").is_file():
        raise GrowmergeError(f"{path}: no config.json (not a Hugging Face model directory)")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
        hint = f" (found {pickled[0]}: pickled checkpoints are refused, convert to safetensors)" if pickled else ""
        raise GrowmergeError(f"{path}: no model.safetensors weights{hint}")
    return path


def check_safetensors(path: Path) -> None:
    """Open every shard's header so a truncated or corrupt file is one clear error, not a traceback."""
    from safetensors import safe_open

    index = path / "model.safetensors.index.json"
    shards = (
        sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if index.is_file()
        else ["model.safetensors"]
    )
    for shard in shards:
        f = path / shard
        try:
            with safe_open(str(f), framework="pt") as h:
                h.keys()
        except Exception as exc:  # safetensors raises its own error types for bad headers
            raise GrowmergeError(f"{f}: corrupt or unreadable safetensors file ({exc})") from None
        size = f.stat().st_size
        # The header states where the last tensor ends; a truncated file is shorter than that.
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if size < 8 + n + end:
            raise GrowmergeError(f"{f}: truncated safetensors file ({size} bytes, header needs {8 + n + end})")


def load_config(src: str | Path):
    from transformers import AutoConfig

    if is_local(src):
        check_model_dir(src)
    try:
        return AutoConfig.from_pretrained(str(src))
    except OSError as exc:
        raise GrowmergeError(f"{src}: cannot load config ({str(exc).splitlines()[0]})") from None


def load_model(src: str | Path, dtype: Any = None, **kwargs):
    """Load a causal LM from a local directory or a hub id, safetensors only, float32 by default."""
    import torch
    from transformers import AutoModelForCausalLM

    if is_local(src):
        check_safetensors(check_model_dir(src))
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(src), dtype=dtype or torch.float32, use_safetensors=True, **kwargs
        )
    except OSError as exc:
        raise GrowmergeError(f"{src}: cannot load model ({str(exc).splitlines()[0]})") from None
    model.eval()
    return model


def load_tokenizer(src: str | Path, required: bool = False):
    """The tokenizer saved beside a model (None if there is none and it is not required)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(src))
    except (OSError, ValueError, TypeError) as exc:
        if required:
            raise GrowmergeError(f"{src}: no usable tokenizer ({str(exc).splitlines()[0]})") from None
        return None


def copy_tokenizer_files(src: str | Path, dst: str | Path) -> None:
    """Copy tokenizer files verbatim (cheaper and more faithful than load + save)."""
    names = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
             "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "generation_config.json")
    for name in names:
        f = Path(src) / name
        if f.is_file():
            shutil.copy2(f, Path(dst) / name)


def save_model(model, out: str | Path, tokenizer=None, meta: dict | None = None, force: bool = False,
               tokenizer_from: str | Path | None = None) -> Path:
    """Write a loadable HF directory atomically: safetensors + config + tokenizer + growmerge.json."""
    out = Path(out)
    with atomic_dir(out, force=force) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        elif tokenizer_from is not None:
            copy_tokenizer_files(tokenizer_from, tmp)
        if meta is not None:
            write_meta(tmp, meta)
    return out
