"""Tokenize documents in worker processes and pack them into fixed-length sequences (shards contract).

A text file is cut into *pieces*: byte ranges of about ``PIECE_BYTES`` that start and end at line
boundaries. A piece is the unit of parallel work and of resume: a worker reads its own range (the
parent ships no text), tokenizes it in batches with the batch tokenizer, and writes the token ids
(each document followed by EOS) to ``<name>.pieces/<k>.tok``, then its counts to ``<k>.json``, each
in one rename. When every piece of a shard is there, the parent concatenates them in order, cuts the
stream into sequences and pads the last one with EOS (no text is lost: small eval sets), and the
``.bin`` and the meta with ``"complete": true`` appear, the meta last: a reader never sees a
half-written shard. A kill loses only the pieces in flight; the bytes do not depend on the number of
processes or on where a run was interrupted.

Memory is flat: a worker holds one batch, the parent one piece.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Iterator

import numpy as np

from growmerge.artifacts import fsync_path, naming, temp_sibling, write_json_atomic
from growmerge.data.shards import meta_path, token_dtype

BATCH_DOCS = 256  # documents per encode_batch call
PIECE_BYTES = 16 << 20  # text per piece (~4M tokens): many pieces per large shard, one per small one

_worker = {}


def _init_worker(tokenizer_file: str, eos_id: int) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the processes are the parallelism
    from tokenizers import Tokenizer

    _worker.update(tokenizer=Tokenizer.from_file(tokenizer_file), eos=eos_id)


@dataclass(frozen=True)
class Piece:
    """Bytes [start, end) of `text_file`, tokenized to `out` (+ its counts at ``out.json``)."""

    text_file: str
    start: int
    end: int
    out: str
    dtype: str

    @property
    def counts(self) -> Path:
        return Path(self.out).with_suffix(".json")


def tokenize_piece(piece: Piece) -> Piece:
    """Tokenize one piece (in a worker, or in the parent with one process); returns it when done."""
    tokenizer, eos, dtype = _worker["tokenizer"], [_worker["eos"]], np.dtype(piece.dtype)
    tmp = temp_sibling(Path(piece.out))  # a killed worker's is swept with the other leased temporaries
    docs = chars = tokens = 0
    with naming(piece.out), open(tmp, "wb") as out:
        for batch in batches(read_range(piece.text_file, piece.start, piece.end), BATCH_DOCS):
            texts = [json.loads(line)["text"] for line in batch]
            encs = tokenizer.encode_batch(texts, add_special_tokens=False)
            n = sum(len(e.ids) + 1 for e in encs)
            out.write(np.fromiter(chain.from_iterable(e.ids + eos for e in encs), dtype=np.uint32, count=n)
                      .astype(dtype).tobytes())
            docs, chars, tokens = docs + len(texts), chars + sum(map(len, texts)), tokens + n
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, piece.out)
    write_json_atomic(piece.counts, {"documents": docs, "characters": chars, "tokens": tokens})  # last: "done"
    return piece


def read_range(path: str, start: int, end: int) -> Iterator[bytes]:
    """The lines that start in [start, end) (`start` is a line start)."""
    with open(path, "rb") as fh:
        fh.seek(start)
        pos = start
        while pos < end and (line := fh.readline()):
            pos += len(line)
            yield line


def batches(lines, size: int) -> Iterator[list]:
    it = iter(lines)
    while batch := list(islice(it, size)):
        yield batch


def piece_bounds(path: Path, piece_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges of about `piece_bytes`, each starting at a line start and ending at the next's."""
    size = path.stat().st_size
    starts = [0]
    with open(path, "rb") as fh:
        while starts[-1] + piece_bytes < size:
            fh.seek(starts[-1] + piece_bytes)
            fh.readline()  # to the start of the next line
            if fh.tell() >= size:
                break
            starts.append(fh.tell())
    return list(zip(starts, starts[1:] + [size]))


@dataclass(frozen=True)
class Shard:
    """One shard to pack: `text_file` (JSONL with "text") into `bin_path`, with what it is made of."""

    text_file: Path
    bin_path: Path
    seq_len: int
    vocab_size: int
    tokenizer_hash: str
    input_hash: str

    @property
    def identity(self) -> dict:
        return {"tokenizer_hash": self.tokenizer_hash, "input_hash": self.input_hash, "seq_len": self.seq_len}

    @property
    def pieces_dir(self) -> Path:
        return self.bin_path.with_name(self.bin_path.name.removesuffix(".bin") + ".pieces")

    def complete_meta(self) -> dict | None:
        """The meta of an existing complete shard with the same inputs, else None."""
        mp_ = meta_path(self.bin_path)
        if mp_.is_file() and self.bin_path.is_file():
            meta = json.loads(mp_.read_text())
            if meta.get("complete") and all(meta.get(k) == v for k, v in self.identity.items()):
                return meta
        return None

    def pieces(self) -> list[Piece]:
        """Every piece of this shard; a pieces directory of other inputs is cleared first."""
        d, plan = self.pieces_dir, self.pieces_dir / "plan.json"
        saved = json.loads(plan.read_text()) if plan.is_file() else {}
        if saved.get("identity") != self.identity or saved.get("piece_bytes") != PIECE_BYTES:
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            saved = {"identity": self.identity, "piece_bytes": PIECE_BYTES,
                     "bounds": piece_bounds(Path(self.text_file), PIECE_BYTES)}
            write_json_atomic(plan, saved)
        dtype = token_dtype(self.vocab_size).name
        return [Piece(str(self.text_file), a, b, str(d / f"{k:05d}.tok"), dtype)
                for k, (a, b) in enumerate(saved["bounds"])]


class Packer:
    """Packs shards with one pool of tokenizer processes (start-up is paid once)."""

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

    def pack(self, text_file: Path, bin_path: Path, *, seq_len: int, vocab_size: int,
             tokenizer_hash: str, input_hash: str, stop_after: int | None = None) -> dict:
        """Pack `text_file` (JSONL with "text") into `bin_path`; return its meta."""
        shard = Shard(Path(text_file), Path(bin_path), seq_len, vocab_size, tokenizer_hash, input_hash)
        return self.pack_all([shard], stop_after=stop_after)[0]

    def pack_all(self, shards: list[Shard], stop_after: int | None = None, on_done=lambda shard, meta: None
                 ) -> list[dict]:
        """Every shard's meta, packing those not complete with the same inputs. The pieces of all of
        them share the pool, so many small shards keep every process busy too. `stop_after` (pieces)
        simulates an interruption for tests; `on_done` is called as each shard is finished."""
        metas: dict[int, dict] = {}
        todo: dict[int, list[Piece]] = {}
        for i, shard in enumerate(shards):
            if (meta := shard.complete_meta()) is not None:
                metas[i] = meta
                on_done(shard, meta)
            else:
                todo[i] = shard.pieces()
        missing = {i: {p.out for p in pieces if not p.counts.is_file()} for i, pieces in todo.items()}
        for i in [i for i, m in missing.items() if not m]:  # every piece done by an earlier run
            metas[i] = finish_shard(shards[i], todo[i], self.init_args[1])
            on_done(shards[i], metas[i])
        work = [p for i in todo for p in todo[i] if p.out in missing[i]]
        results = map(tokenize_piece, work) if self.pool is None else self.pool.imap_unordered(tokenize_piece, work)
        for n, piece in enumerate(results, 1):
            i = next(i for i in missing if piece.out in missing[i])
            missing[i].discard(piece.out)
            if not missing[i]:
                metas[i] = finish_shard(shards[i], todo[i], self.init_args[1])
                on_done(shards[i], metas[i])
            if n == stop_after:
                raise KeyboardInterrupt(f"stopped after {n} pieces (test)")
        return [metas[i] for i in range(len(shards))]


def finish_shard(shard: Shard, pieces: list[Piece], eos_id: int) -> dict:
    """Concatenate the pieces in order into sequences of `seq_len` (the last padded with EOS), publish
    the ``.bin`` and then its meta, and drop the pieces."""
    dtype, seq_len = token_dtype(shard.vocab_size), shard.seq_len
    partial = shard.bin_path.with_name(shard.bin_path.name + ".partial")
    mp_ = meta_path(shard.bin_path)
    mp_.unlink(missing_ok=True)
    shard.bin_path.unlink(missing_ok=True)
    docs = chars = 0
    with naming(shard.bin_path), open(partial, "wb") as out:
        carry = np.zeros(0, dtype=dtype)
        for piece in pieces:
            counts = json.loads(piece.counts.read_text())
            docs, chars = docs + counts["documents"], chars + counts["characters"]
            ids = np.concatenate([carry, np.fromfile(piece.out, dtype=dtype)])
            full = len(ids) // seq_len * seq_len
            out.write(ids[:full].tobytes())
            carry = ids[full:]
        if len(carry):
            out.write(np.concatenate([carry, np.full(seq_len - len(carry), eos_id, dtype=dtype)]).tobytes())
        tokens = out.tell() // dtype.itemsize
        out.flush()
        os.fsync(out.fileno())
    meta = {"dtype": dtype.name, "seq_len": seq_len, "sequences": tokens // seq_len, "tokens": tokens,
            "documents": docs, "characters": chars, "vocab_size": shard.vocab_size, "eos_id": eos_id,
            **shard.identity, "complete": True}
    os.replace(partial, shard.bin_path)
    fsync_path(shard.bin_path.parent)
    write_json_atomic(mp_, meta)  # last: its "complete" makes the shard visible
    shutil.rmtree(shard.pieces_dir, ignore_errors=True)
    return meta
