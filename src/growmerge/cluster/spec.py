"""Where a study's stages run on a Slurm cluster: defaults for every job plus per-kind overrides.

    cluster:
      partition: gpu
      account: proj123
      time: "04:00:00"
      gpus_per_node: 1
      setup: ["module load cuda/12.4"]
      kinds:
        train: {nodes: 2, gpus_per_node: 4, time: "1-00:00:00", mem: 200G}
        report: {gpus_per_node: 0, partition: cpu}

``ClusterSpec.resources(kind)`` is what one job of that kind asks Slurm for.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field, field_validator

from growmerge.config import Strict, parse
from growmerge.errors import GrowmergeError
from growmerge.names import STAGE_KINDS

# A typo in `kinds` must be an error, not a silent no-op.
Kind = Literal[STAGE_KINDS]  # type: ignore[valid-type]

# Slurm's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME = re.compile(r"^(?:(\d+)-(\d+)(?::(\d+)(?::(\d+))?)?|(\d+)(?::(\d+)(?::(\d+))?)?)$")
_MEM = re.compile(r"^\d+[KMGT]?$")


def time_minutes(value: int | str) -> int:
    """A Slurm time limit in whole minutes (rounded up: a limit must never shrink)."""
    if isinstance(value, bool):
        raise ValueError("a time limit is minutes or a Slurm time like '04:00:00'")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("a time limit must be positive")
        return value
    m = _TIME.match(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a Slurm time (minutes, 'H:M:S', 'D-H:M:S', ...)")
    d, dh, dm, ds, a, b, c = (int(x) if x else 0 for x in m.groups())
    if m.group(1) is not None:
        seconds = ((d * 24 + dh) * 60 + dm) * 60 + ds
    elif m.group(7) is not None:      # H:M:S
        seconds = (a * 60 + b) * 60 + c
    else:                             # M or M:S
        seconds = a * 60 + b
    if seconds <= 0:
        raise ValueError("a time limit must be positive")
    return math.ceil(seconds / 60)


class Resources(Strict):
    """What one Slurm job asks for (None: the cluster's default; time in minutes)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: int | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem: str | None = None
    setup: list[str] = Field(default_factory=list)


class _Fields(Strict):
    """The fields a default or a per-kind override may set; every one optional so overrides merge."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: int | str | None = None
    nodes: int | None = Field(default=None, ge=1)
    gpus_per_node: int | None = Field(default=None, ge=0)
    cpus_per_task: int | None = Field(default=None, ge=1)
    mem: str | None = None
    setup: list[str] | None = None

    @field_validator("time")
    @classmethod
    def _time(cls, v):
        return None if v is None else time_minutes(v)

    @field_validator("mem")
    @classmethod
    def _mem(cls, v):
        if v is not None and not _MEM.match(v):
            raise ValueError(f"{v!r} is not a Slurm memory size like '32G' or '8000M'")
        return v

    @field_validator("partition", "account", "qos")
    @classmethod
    def _word(cls, v):
        # These go on an #SBATCH line: whitespace or a newline would break or change the script.
        if v is not None and (not v or any(ch.isspace() for ch in v)):
            raise ValueError(f"{v!r} must be one non-empty word")
        return v

    @field_validator("setup")
    @classmethod
    def _setup(cls, v):
        # Each entry is one line of the batch script; an embedded newline would hide a second line.
        if v is not None and any("\n" in line for line in v):
            raise ValueError("each setup entry is one shell line (no newlines)")
        return v


class KindOverrides(_Fields):
    """Per-kind settings; a field left out keeps the cluster-wide default."""


class ClusterSpec(_Fields):
    """Cluster-wide job defaults plus `kinds`: overrides per stage kind."""

    kinds: dict[Kind, KindOverrides] = Field(default_factory=dict)
    # The data stage's units (file groups, stream splits, tokenizer, packing per stream) as job arrays
    # before its own job; false: the data stage is one job, as a local run.
    data_units: bool = True

    def resources(self, kind: str) -> Resources:
        """Defaults merged with the override for `kind` (an override's `setup` replaces the default's)."""
        if kind not in STAGE_KINDS:
            raise GrowmergeError(f"unknown stage kind {kind!r} (one of {', '.join(STAGE_KINDS)})")
        merged = {k: v for k, v in self.model_dump(exclude={"kinds", "data_units"}).items() if v is not None}
        override = self.kinds.get(kind)  # type: ignore[call-overload]
        if override is not None:
            merged.update(override.model_dump(exclude_none=True))
        return Resources(**merged)


def load_cluster(data: dict | ClusterSpec | None, source: str = "cluster") -> ClusterSpec:
    """A ClusterSpec from a YAML mapping (None: all defaults); errors are one GrowmergeError line."""
    if isinstance(data, ClusterSpec):
        return data
    return parse(ClusterSpec, dict(data or {}), source)
