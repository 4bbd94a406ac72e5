"""What a study will cost before it runs: training tokens and FLOPs per stage, the Slurm resources
of every job, and GPU-hours at an assumed MFU (`growmerge study plan CONFIG --cost --gpu h100`).

Tokens are exact for a budget in tokens or steps. "One pass over the mixture" needs each stream's
size: measured once the data stage has run (its manifest), assumed before that from the YAML's
``cost.streams`` (e.g. the paper's Table 1). Only training is costed: merging and scoring are small
next to it at the paper's scale (a few percent), and their cost depends on the evaluation sets.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from growmerge.config import Strict
from growmerge.errors import GrowmergeError

# Dense bf16 peak of one accelerator, TFLOP/s, from the vendors' datasheets (no sparsity).
PEAK_TFLOPS = {"h100": 989.0, "h200": 989.0, "b200": 2250.0, "a100": 312.0, "l40s": 362.0, "mi300x": 1307.0,
               "mi250x": 383.0}


class StreamSize(Strict):
    tokens: float = Field(gt=0)  # training tokens of the stream (before any split)
    documents: float = Field(gt=0)


class CostSpec(Strict):
    """The `cost:` section: stream sizes assumed until the data stage has measured them."""

    streams: dict[str, StreamSize] = Field(default_factory=dict)
    chars_per_token: float = Field(4.0, gt=0)  # turns tokens into UniMax's characters


@dataclass
class StageCost:
    id: str
    kind: str
    tokens: float | None
    flops: float | None
    nodes: int
    gpus: int  # per node
    time_limit: int | None  # minutes

    def gpu_hours(self, peak_tflops: float, mfu: float) -> float | None:
        if self.flops is None:
            return None
        return self.flops / (peak_tflops * 1e12 * mfu) / 3600


def stream_stats(cfg) -> dict[str, dict] | None:
    """{packed stream: {documents, characters, tokens}} measured by the data stage, else assumed."""
    from growmerge.data.shards import read_shard_meta

    manifest = cfg.root / "data" / "manifest.json"
    if manifest.is_file():
        from growmerge.data.card import read_manifest

        streams = read_manifest(cfg.root)["streams"]
        return {name: {**s["train"], "tokens": read_shard_meta(cfg.root / s["train"]["shard"])["tokens"]}
                for name, s in streams.items()}
    if not cfg.cost.streams:
        return None
    out = {}
    for name, stream in cfg.data.streams.items():
        size = cfg.cost.streams.get(name)
        if size is None:
            raise GrowmergeError(f"cost.streams has no size for stream {name!r} (give tokens and documents)")
        for part, share in (stream.split or {name: 1.0}).items():
            tokens = size.tokens * share
            out[part] = {"tokens": tokens, "documents": size.documents * share,
                         "characters": tokens * cfg.cost.chars_per_token}
    return out


def pass_tokens(cfg) -> dict[str, float]:
    """Training tokens of one pass over each mixture (empty when no stream size is known)."""
    from growmerge.data.mixture import mixture_recipe

    stats = stream_stats(cfg)
    if stats is None:
        return {}
    return {name: sum(stats[s]["tokens"] * epochs for s, epochs, _ in items)
            for name, items in mixture_recipe(cfg.data, stats, cfg.phase_epochs()).items()}


def estimate(cfg, stages) -> list[StageCost]:
    """Every stage with its resources; training stages with their tokens and FLOPs."""
    from growmerge.grow.depth import deepened_config
    from growmerge.grow.hyperclone import grown_config
    from growmerge.names import DEPTH_SCALE
    from growmerge.study.stages import TrainStage
    from growmerge.train.flops import flops_per_token
    from growmerge.train.spec import PRESETS, preset_config

    passes = pass_tokens(cfg)
    small = (preset_config(cfg.model.init, cfg.data.tokenizer.vocab_size, None, None)
             if cfg.model.init in PRESETS else None)
    out = []
    for s in stages:
        res = cfg.cluster.resources(s.kind)
        tokens = flops = None
        if isinstance(s, TrainStage):
            seq = s.spec.seq_len or cfg.data.seq_len
            tokens = s.spec.tokens or (s.spec.steps * s.spec.global_batch * seq if s.spec.steps else None)
            tokens = tokens or passes.get(s.mixture)
            big = s.scale in ("2x", "1x_cloned") or s.id == "base_2x"
            config = None if small is None else (grown_config(small, cfg.model.factor, True) if big else small)
            if config is not None and s.scale == DEPTH_SCALE:
                config = deepened_config(small, cfg.model.depth)
            flops = flops_per_token(config, seq) * tokens if (config is not None and tokens) else None
        out.append(StageCost(s.id, s.kind, tokens, flops, res.nodes, res.gpus_per_node, res.time))
    return out
