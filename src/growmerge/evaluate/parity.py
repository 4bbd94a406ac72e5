"""Information Parity (Tsvetkov & Kipnis 2024) with a fixed English reference model.

For each parallel pair t: IP(t) = NLL_ref(t_en) / NLL_model(t_L), NLL = total (summed) negative
log-likelihood after exactly one boundary token (the BOS, or the EOS for a model growmerge trained: see
``evaluate.scorer``). IP is the mean over pairs (with std and n). The English NLLs
come from one fixed reference model and are cached per (reference model fingerprint, dataset hash),
so hundreds of models share one reference pass. IP on English itself (t_L = t_en, scored by the
model) measures forgetting; a model that is its own reference scores exactly 1.0.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

from growmerge.errors import GrowmergeError

FINGERPRINT_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json", "tokenizer.json")


def read_parallel(path: str | Path) -> list[dict]:
    """Parallel JSONL ``{id, en, tgt, lang}``; both sides must be non-empty text."""
    path = Path(path)
    if not path.is_file():
        raise GrowmergeError(f"{path}: no such parallel file")
    from growmerge.evaluate.pairs import jsonl_rows

    rows = []
    for no, row in jsonl_rows(path):
        if not all(isinstance(row.get(k), str) and row[k].strip() for k in ("en", "tgt")):
            raise GrowmergeError(f"{path}:{no}: a parallel row needs non-empty 'en' and 'tgt' text")
        rows.append(row)
    if not rows:
        raise GrowmergeError(f"{path}: empty parallel file")
    return rows


def information_parity(scorer, pairs: list[dict] | list[str], reference_nll_en: list[float | None]) -> dict:
    """Mean, std and n of NLL_ref(en) / NLL_model(tgt). `pairs` are parallel rows or target texts.

    Pairs too long for either model (reference NLL None, or target beyond the model's positions)
    are skipped and counted in ``skipped``."""
    texts = [p["tgt"] if isinstance(p, dict) else p for p in pairs]
    if len(texts) != len(reference_nll_en):
        raise GrowmergeError(f"{len(texts)} target texts but {len(reference_nll_en)} reference NLLs: "
                             "compute the reference on the same parallel file")
    model_nll = scorer.sequence_nll(texts, skip_too_long=True)
    ratios = [r / m for r, m in zip(reference_nll_en, model_nll) if r is not None and m is not None and m > 0]
    n = len(ratios)
    if not n:
        raise GrowmergeError("no parallel pair fits both models with a positive NLL (texts too long?)")
    mean = sum(ratios) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in ratios) / (n - 1)) if n > 1 else 0.0
    return {"value": mean, "std": std, "n": n, "skipped": len(texts) - n}


_FINGERPRINTS: dict[tuple, str] = {}


def model_fingerprint(model_dir: str | Path) -> str:
    """Content hash of the files that determine a model's scores (weights, config, tokenizer).

    Memoised per process by (path, sizes, mtimes): the study hashes its reference once, not once
    per evaluated model."""
    model_dir = Path(model_dir)
    stamp = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(model_dir.glob("*")) if f.is_file())
    key = (str(model_dir.resolve()), stamp)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = _hash_model_files(model_dir)
    return _FINGERPRINTS[key]


def _hash_model_files(model_dir: Path) -> str:
    h = hashlib.sha256()
    files = [model_dir / f for f in FINGERPRINT_FILES if (model_dir / f).is_file()]
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        files += [model_dir / s for s in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    if not files:
        raise GrowmergeError(f"{model_dir}: nothing to fingerprint (not a model directory)")
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def dataset_hash(texts: list[str]) -> str:
    return hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("GROWMERGE_CACHE", Path.home() / ".cache" / "growmerge"))


def reference_nll(reference_model_dir: str | Path, parallel_file: str | Path,
                  cache_dir: str | Path | None = None, scorer=None, device: str = "auto") -> list[float]:
    """English-side NLLs of `parallel_file` under the reference model (loaded on `device` when no
    scorer is given), cached on disk."""
    from growmerge.artifacts import write_json_atomic
    from growmerge.evaluate.scorer import LM_EVAL, Scorer, boundary_of

    en = [r["en"] for r in read_parallel(parallel_file)]
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    # The NLLs depend on the token the texts follow (the scorer's document-boundary convention).
    boundary = getattr(scorer, "boundary", None) or boundary_of(reference_model_dir)
    key = f"{model_fingerprint(reference_model_dir)[:20]}-{dataset_hash(en)[:20]}" + \
        ("" if boundary == LM_EVAL else f"-{boundary}")  # the lm-eval key as before: older caches stay valid
    path = cache / "reference_nll" / f"{key}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if len(cached["nll"]) == len(en):
            return cached["nll"]
    scorer = scorer or Scorer.from_dir(reference_model_dir, device=device)
    nll = scorer.sequence_nll(en, skip_too_long=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"reference": str(reference_model_dir), "parallel": str(parallel_file), "nll": nll})
    return nll
