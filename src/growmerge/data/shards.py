"""Packed token shards: the contract between the data stage and the trainer.

A shard is ``<name>.bin`` (a flat array of token ids, ``uint16`` if the vocabulary has fewer than
65,536 entries else ``uint32``) plus ``<name>.meta.json`` beside it::

    {"dtype": "uint16", "seq_len": 512, "sequences": n, "tokens": n * seq_len, "documents": d,
     "characters": c, "vocab_size": v, "tokenizer_hash": "...", "eos_id": e, "complete": true}

Sequence i is ``tokens[i * seq_len : (i + 1) * seq_len]`` (documents are concatenated with an EOS
after each and cut into fixed-length sequences; the model shifts labels itself). A shard without
``"complete": true`` in its meta is unfinished and must never be read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from growmerge.errors import GrowmergeError


def meta_path(bin_path: str | Path) -> Path:
    bin_path = Path(bin_path)
    return bin_path.with_name(bin_path.name.removesuffix(".bin") + ".meta.json")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size < 65_536 else np.dtype(np.uint32)


def read_shard_meta(bin_path: str | Path) -> dict:
    bin_path = Path(bin_path)
    mp = meta_path(bin_path)
    if not bin_path.is_file() or not mp.is_file():
        raise GrowmergeError(f"{bin_path}: shard not found (run `growmerge data prepare` first)")
    meta = json.loads(mp.read_text(encoding="utf-8"))
    if not meta.get("complete"):
        raise GrowmergeError(f"{bin_path}: shard is incomplete (its writer was interrupted); prepare the data again")
    return meta


def open_shard(bin_path: str | Path) -> tuple[np.ndarray, dict]:
    """Memory-map a complete shard as an array of shape [sequences, seq_len]."""
    meta = read_shard_meta(bin_path)
    n, seq_len = int(meta["sequences"]), int(meta["seq_len"])
    if n == 0:
        raise GrowmergeError(f"{bin_path}: shard has no sequences")
    arr = np.memmap(bin_path, dtype=np.dtype(meta["dtype"]), mode="r", shape=(n, seq_len))
    return arr, meta
