"""The data order of a run: a deterministic function of (mixture, seed, consumed_samples).

Each mixture item contributes floor(epochs) full passes over its shard plus a seeded sample of the
fractional rest; all of that is shuffled once with the run's seed. Sample i of the run is
``order[i % N]`` of pass ``i // N`` (a budget beyond the mixture starts a newly shuffled pass), so
the whole data position is the single integer ``consumed_samples`` and a resume continues the same
stream. Every rank computes the same order and reads its own slice of each global batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from growmerge.data.mixture import Mixture
from growmerge.data.shards import open_shard
from growmerge.errors import GrowmergeError


@dataclass
class Stream:
    shards: list[np.ndarray]  # memmaps [sequences, seq_len]
    names: list[str]  # ledger name of each item
    item_of: np.ndarray  # [N] which item each entry of the base order reads
    row_of: np.ndarray  # [N] which row of that item's shard
    seed: int
    seq_len: int
    vocab_size: int  # largest vocabulary any shard was tokenized with
    _pass: int = field(default=-1, init=False, repr=False)  # the pass whose permutation is cached
    _perm: np.ndarray | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.item_of)

    def _pass_order(self, p: int) -> np.ndarray:
        """The shuffled base order of pass p (pass p of the data is its own seeded permutation)."""
        if self._pass != p:
            self._perm, self._pass = np.random.default_rng([self.seed, 1, p]).permutation(len(self)), p
        return self._perm

    def indices(self, start: int, count: int) -> np.ndarray:
        """Positions in the base order of run samples start .. start+count-1."""
        out = np.empty(count, dtype=np.int64)
        for j, i in enumerate(range(start, start + count)):
            out[j] = self._pass_order(i // len(self))[i % len(self)]
        return out

    def batch(self, start: int, count: int) -> torch.Tensor:
        """Run samples start .. start+count-1 as a LongTensor [count, seq_len]."""
        idx = self.indices(start, count)
        rows = [self.shards[self.item_of[k]][self.row_of[k]] for k in idx]
        return torch.from_numpy(np.stack(rows).astype(np.int64))

    def tokens_per_stream(self, consumed: int) -> dict[str, int]:
        """Tokens read from each named stream by the first `consumed` samples."""
        counts = np.zeros(len(self.names), dtype=np.int64)
        full, rest = divmod(consumed, len(self))
        counts += full * np.bincount(self.item_of, minlength=len(self.names))
        if rest:
            counts += np.bincount(self.item_of[self._pass_order(full)[:rest]], minlength=len(self.names))
        totals: dict[str, int] = {}
        for name, c in zip(self.names, counts):
            totals[name] = totals.get(name, 0) + int(c) * self.seq_len
        return totals


def item_rows(n: int, epochs: float, rng: np.random.Generator) -> np.ndarray:
    """Rows for `epochs` passes over n sequences: whole passes plus a seeded sample of the rest."""
    whole, frac = int(epochs), epochs - int(epochs)
    parts = [np.arange(n)] * whole
    if frac > 0:
        parts.append(np.sort(rng.choice(n, size=max(1, round(frac * n)), replace=False)))
    return np.concatenate(parts)


def open_stream(mixture: Mixture, seed: int) -> Stream:
    shards, names, items, rows, metas = [], [], [], [], []
    for k, item in enumerate(mixture.items):
        arr, meta = open_shard(item.shard)
        r = item_rows(len(arr), item.epochs, np.random.default_rng([seed, 0, k]))
        shards.append(arr)
        metas.append(meta)
        names.append(item.name or item.shard.name.removesuffix(".bin"))
        items.append(np.full(len(r), k, dtype=np.int32))
        rows.append(r)
    seq_lens = {int(m["seq_len"]) for m in metas}
    if len(seq_lens) > 1:
        raise GrowmergeError(f"mixture shards have different seq_len {sorted(seq_lens)}: pack them alike")
    hashes = {m.get("tokenizer_hash") for m in metas}
    if len(hashes) > 1:
        raise GrowmergeError("mixture shards were made with different tokenizers: re-pack them with one tokenizer")
    return Stream(shards, names, np.concatenate(items), np.concatenate(rows), seed, seq_lens.pop(),
                  max(int(m.get("vocab_size", 0)) for m in metas))


def describe(mixture: Mixture) -> list:
    """What the fingerprint records about a mixture: each item's shard identity and epochs."""
    out = []
    for item in mixture.items:
        _, meta = open_shard(item.shard)
        out.append({"shard": item.shard.name, "epochs": item.epochs, "name": item.name,
                    "sequences": meta["sequences"], "tokenizer_hash": meta.get("tokenizer_hash")})
    return out
