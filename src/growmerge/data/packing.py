"""Tokenize documents in worker processes and pack them into fixed-length sequences (shards contract).

Streaming and bounded: documents are read in batches, tokenized by a pool (order preserved), and
appended to ``<name>.bin.partial``; the leftover tokens that do not yet fill a sequence are carried.
Every few batches the writer records its position in ``<name>.progress.json`` (documents consumed,
bytes written, carry), so an interrupted run resumes there. The ``.bin`` and the meta with
``"complete": true`` appear only at the end, the meta last: a reader never sees a half-written shard.
The final partial sequence is padded with EOS so that no text is lost (small eval sets).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections import deque
from itertools import chain, islice
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from growmerge.artifacts import write_json_atomic
from growmerge.data.shards import meta_path, token_dtype

BATCH_DOCS = 256
CHECKPOINT_EVERY = 16  # batches between progress records

_worker = {}


def _init_worker(tokenizer_file: str, eos_id: int) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the pool is the parallelism
    from tokenizers import Tokenizer

    _worker.update(tokenizer=Tokenizer.from_file(tokenizer_file), eos=eos_id)


def _encode(lines: list[str]) -> tuple[np.ndarray, int, int]:
    """One batch of JSONL lines: the token ids of its documents, each followed by EOS, as one array.
    Parsing here and returning one array per batch keeps the parent (which only reads raw lines and
    writes) from becoming the bottleneck."""
    texts = [json.loads(line)["text"] for line in lines]
    encs = _worker["tokenizer"].encode_batch(texts, add_special_tokens=False)
    eos = [_worker["eos"]]
    ids = np.fromiter(chain.from_iterable(e.ids + eos for e in encs), dtype=np.uint32,
                      count=sum(len(e.ids) + 1 for e in encs))
    return ids, len(texts), sum(map(len, texts))


def read_lines(path: Path, skip: int = 0) -> Iterator[str]:
    with open(path, encoding="utf-8") as fh:
        yield from islice(fh, skip, None)


def batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(texts)
    while batch := list(islice(it, size)):
        yield batch


class Packer:
    """Packs many shards with one worker pool (start-up is paid once)."""

    def __init__(self, tokenizer_file: Path, workers: int, eos_id: int):
        self.init_args = (str(tokenizer_file), eos_id)
        self.workers = workers
        self.pool = None

    def __enter__(self):
        if self.workers > 1:
            # spawn: forking a process whose tokenizer already ran Rust threads can deadlock.
            self.pool = mp.get_context("spawn").Pool(self.workers, _init_worker, self.init_args)
        else:
            _init_worker(*self.init_args)
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def encoded(self, lines: Iterable[str]) -> Iterator[tuple[np.ndarray, int, int]]:
        """Token ids, documents and characters, batch by batch, in order. At most a few batches per
        worker are in flight (Pool.imap would read the whole input ahead: unbounded memory)."""
        groups = batches(lines, BATCH_DOCS)
        if self.pool is None:
            yield from map(_encode, groups)
            return
        window = deque(self.pool.apply_async(_encode, (g,)) for g in islice(groups, 2 * self.workers))
        while window:
            result = window.popleft().get()
            for g in islice(groups, 1):
                window.append(self.pool.apply_async(_encode, (g,)))
            yield result

    def pack(self, text_file: Path, bin_path: Path, *, seq_len: int, vocab_size: int,
             tokenizer_hash: str, input_hash: str, stop_after: int | None = None) -> dict:
        """Pack `text_file` (JSONL with "text") into `bin_path`; return its meta. `stop_after`
        (batches) simulates an interruption for tests."""
        bin_path = Path(bin_path)
        mp_, partial, progress_file = meta_path(bin_path), bin_path.with_name(bin_path.name + ".partial"), \
            bin_path.with_name(bin_path.name.removesuffix(".bin") + ".progress.json")
        identity = {"tokenizer_hash": tokenizer_hash, "input_hash": input_hash, "seq_len": seq_len}
        if mp_.is_file():
            meta = json.loads(mp_.read_text())
            if meta.get("complete") and all(meta.get(k) == v for k, v in identity.items()) and bin_path.is_file():
                return meta  # already done with the same inputs
        dtype = token_dtype(vocab_size)
        state = {"docs": 0, "characters": 0, "bytes": 0, "carry": []}
        if progress_file.is_file() and partial.is_file():
            saved = json.loads(progress_file.read_text())
            if saved.get("identity") == identity:
                state = saved["state"]
        mp_.unlink(missing_ok=True)
        bin_path.unlink(missing_ok=True)
        with open(partial, "r+b" if state["bytes"] else "wb") as out:
            out.truncate(state["bytes"])
            out.seek(state["bytes"])
            carry = np.asarray(state["carry"], dtype=np.uint32)
            lines = read_lines(text_file, skip=state["docs"])
            for n, (batch, docs, chars) in enumerate(self.encoded(lines), 1):
                ids = np.concatenate([carry, batch])
                full = len(ids) // seq_len * seq_len
                out.write(ids[:full].astype(dtype).tobytes())
                carry = ids[full:]
                state["docs"] += docs
                state["characters"] += chars
                if n % CHECKPOINT_EVERY == 0 or n == stop_after:
                    out.flush()
                    state.update(bytes=out.tell(), carry=carry.tolist())
                    write_json_atomic(progress_file, {"identity": identity, "state": state})
                if n == stop_after:
                    raise KeyboardInterrupt(f"stopped after {n} batches (test)")
            if len(carry):
                pad = np.full(seq_len - len(carry), self.init_args[1], dtype=np.uint32)
                out.write(np.concatenate([carry, pad]).astype(dtype).tobytes())
            size = out.tell()
        tokens = size // dtype.itemsize
        meta = {"dtype": dtype.name, "seq_len": seq_len, "sequences": tokens // seq_len, "tokens": tokens,
                "documents": state["docs"], "characters": state["characters"], "vocab_size": vocab_size,
                "eos_id": self.init_args[1], **identity, "complete": True}
        os.replace(partial, bin_path)
        write_json_atomic(mp_, meta)  # last: its "complete" makes the shard visible
        progress_file.unlink(missing_ok=True)
        return meta
