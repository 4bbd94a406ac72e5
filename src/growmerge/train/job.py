"""A training job file for the CLI: a TrainSpec plus what to train on and where to write."""

from __future__ import annotations

from pathlib import Path

from growmerge.data.mixture import Mixture, MixtureItem
from growmerge.errors import GrowmergeError
from growmerge.train.spec import TrainSpec


class TrainJob(TrainSpec):
    mixture_items: list[MixtureItem] = []
    out: Path | None = None
    tokenizer: Path | None = None
    meta: dict = {}

    def spec(self) -> TrainSpec:
        return TrainSpec(**self.model_dump(include=set(TrainSpec.model_fields)))

    def mixture(self) -> Mixture:
        if not self.mixture_items:
            raise GrowmergeError("the job names no data: add `mixture:` with at least one {shard, epochs, name} item")
        return Mixture(items=self.mixture_items)


def load_job(path: Path) -> TrainJob:
    """Read a job YAML; relative paths (shards, out, tokenizer, a local init dir) are relative to it."""
    from growmerge.config import parse, read_yaml

    data = read_yaml(path)
    if "mixture" in data:  # the YAML says `mixture:` (a list of items, or {items: [...]})
        mix = data.pop("mixture")
        data["mixture_items"] = mix.get("items", mix) if isinstance(mix, dict) else mix
    job = parse(TrainJob, data, str(path))
    base = Path(path).resolve().parent
    for item in job.mixture_items:
        item.shard = base / item.shard
    job.out = base / job.out if job.out is not None else None
    job.tokenizer = base / job.tokenizer if job.tokenizer is not None else None
    if job.init and (base / job.init).is_dir():
        job.init = str(base / job.init)
    return job
