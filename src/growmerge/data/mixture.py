"""Mixtures: which shards a training run reads, and how many epochs of each.

A mixture is the trainer's whole view of the data. ``epochs`` may be fractional (0.3 = a seeded 30%
sample of the shard's sequences; 4.45 = four full passes plus a 45% sample). The trainer derives a
deterministic order from its seed; see ``growmerge.train``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from growmerge.config import Strict


class MixtureItem(Strict):
    shard: Path  # a packed .bin (growmerge.data.shards)
    epochs: float = Field(1.0, gt=0)
    name: str | None = None  # stream name for the ledger (e.g. "sv", "en_replay", "code_replay")


class Mixture(Strict):
    items: list[MixtureItem] = Field(min_length=1)
