"""The stages of a study, one class per kind, each with typed inputs and a ``run(ctx)``.

A stage's fields are everything that determines what it produces: the plan fills them from the
study YAML (validated once, in ``study.spec``), the fingerprint hashes them with the fingerprints
of the stage's parents, and a stage serialises to JSON and back losslessly so that an executor can
run it in another process or on another machine (``growmerge study stage RUN STAGE.json``).

What a stage may read at run time beyond its fields is the :class:`Context`: the run directory,
the results ledger, the data spec (to rebuild the training mixtures from the packed shards) and
how to execute (processes per node, device).

Within a stage, results are keyed by what produced them too: a merge cell is redone when its
fingerprint (inputs' identities, method, parameters) changes, and a score row carries the
fingerprint of the model's identity, the evaluation sets' bytes, the task's options and the reference,
so a rerun scores exactly the (model, language, task) cells that changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Annotated, Callable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from growmerge.artifacts import fingerprint_of, model_identity, read_meta, write_json_atomic, write_text_atomic
from growmerge.data.spec import DataSpec
from growmerge.errors import GrowmergeError
from growmerge.ledger import FINAL_STEP, Results
from growmerge.names import ENGLISH
from growmerge.train.spec import TrainSpec


@dataclass
class Context:
    """Where and how stages run: shared by every stage of a run, never part of a fingerprint."""

    root: Path
    data: DataSpec
    results: Results
    study: str = ""  # the study's name, recorded in every model's lineage
    nproc: int = 1  # >1: training under torchrun with this many processes per node
    device: str = "auto"  # growmerge.device.pick_device's forms
    say: Callable[[str], None] = print
    interactive: bool = False  # training progress bars (one stage at a time on a tty)
    _mixtures: dict | None = field(default=None, repr=False)

    def model_dir(self, name: str) -> Path:
        return self.root / "models" / name

    @property
    def mixtures(self) -> dict:
        if self._mixtures is None:
            from growmerge.data.mixture import build_mixtures

            self._mixtures = build_mixtures(self.root, self.data)
        return self._mixtures

    def mixture(self, name: str, phase: str, epochs: dict[str, float]):
        """Mixture `name`, with the phase's per-language epochs (phases.<phase>.epochs) if any."""
        if not epochs:
            return self.mixtures[name]
        from growmerge.data.mixture import build_mixtures

        return build_mixtures(self.root, self.data, {phase: epochs})[name]

    def eval_file(self, task: str, lang: str) -> Path:
        return self.root / "eval" / task / f"{lang}.jsonl"

    def model_path(self, name: str) -> Path:
        """Where a recorded model lives (an off-the-shelf reference may live outside the run)."""
        return Path(self.results.models(name=name)[0]["path"])


class Stage(BaseModel):
    """Fields shared by every stage kind; subclasses add their inputs and ``run``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    kind: str  # each kind narrows this to a Literal: the JSON discriminator
    id: str
    deps: list[str] = Field(default_factory=list)
    fingerprint: str = ""  # set by the plan from the fields and the parents' fingerprints

    @property
    def model(self) -> str | None:
        """The model this stage produces or evaluates, if any."""
        return None

    def identity(self) -> dict:
        return self.model_dump(mode="json", exclude={"fingerprint"})

    def to_json(self) -> str:
        return self.model_dump_json()

    def run(self, ctx: Context) -> None:
        raise NotImplementedError


class DataStage(Stage):
    kind: Literal["data"] = "data"
    data: DataSpec
    # phases.<phase>.epochs, only for the data card's mixture table: not part of the identity, so
    # new epochs redo the adaptations they change (TrainStage.epochs), not the data and the seed.
    epochs: dict[str, dict[str, float]] = Field(default_factory=dict, exclude_if=lambda v: not v)

    def identity(self) -> dict:
        return self.model_dump(mode="json", exclude={"fingerprint", "epochs"})

    def run(self, ctx: Context) -> None:
        from growmerge.data.prepare import prepare_data

        prepare_data(self.data, ctx.root, log=ctx.say, epochs=self.epochs)


class PairsStage(Stage):
    """Fixed evaluation sets for every model, one file per task and language under eval/."""

    kind: Literal["pairs"] = "pairs"
    languages: list[str]
    tasks: dict[str, dict]
    seed: int

    def run(self, ctx: Context) -> None:
        from growmerge.evaluate.tasks import PrepareEnv, get_task

        env = PrepareEnv(ctx.root, self.seed, ctx.say)
        for lang in self.languages:
            for name, opts in self.tasks.items():
                task = get_task(name)
                task.prepare(task.Options.model_validate(opts), lang, env)


class ReferenceStage(Stage):
    """An off-the-shelf model evaluated as the paper's massively multilingual reference point."""

    kind: Literal["reference"] = "reference"
    source: str  # "smollm2" (converted from the PyPI package), a GGUF file, or an HF dir / hub id

    @property
    def model(self) -> str:
        return self.id

    def run(self, ctx: Context) -> None:
        from growmerge.convert import convert_gguf, convert_hyperllama, is_hyperllama, smollm2_gguf
        from growmerge.ledger import record_model_dir
        from growmerge.names import REFERENCE

        out = ctx.model_dir(self.id)
        if self.source == "smollm2":
            convert_gguf(smollm2_gguf(), out, force=True)
        elif self.source.endswith(".gguf"):
            convert_gguf(self.source, out, force=True)
        elif is_hyperllama(self.source):  # the authors' upscaled checkpoints: a plain Llama, no remote code
            convert_hyperllama(self.source, out, force=True)
        else:
            out = Path(self.source)  # an HF dir or hub id is evaluated where it is
        record_model_dir(ctx.results, self.id, out, kind="reference",
                         setup=REFERENCE if self.source == "smollm2" else None)


class TrainStage(Stage):
    kind: Literal["train"] = "train"
    init: str  # a stage id (its model directory) or a preset / HF dir / hub id
    mixture: str  # a mixture name of data.mixture.build_mixtures
    phase: str
    role: Literal["seed", "base", "adapt"]  # the model's kind in the ledger
    group: str  # the ledger's row label: a scale, "<scale>_multi", "base_1x", "seed", …
    scale: Optional[str] = None
    languages: list[str]
    spec: TrainSpec
    # phases.<phase>.epochs of this stage's languages (data.mixture.mixture_recipe); empty: left
    # out of the identity, so studies without it keep their fingerprints.
    epochs: dict[str, float] = Field(default_factory=dict, exclude_if=lambda v: not v)

    @property
    def model(self) -> str:
        return self.id

    def run(self, ctx: Context) -> None:
        from growmerge.ledger import record_model_dir

        init = str(ctx.model_dir(self.init)) if ctx.model_dir(self.init).is_dir() else self.init
        mixture = ctx.mixture(self.mixture, self.phase, self.epochs)
        meta = {"kind": self.role, "setup": self.group, "languages": self.languages, "scale": self.scale,
                "study": ctx.study, "stage": self.id}
        out = ctx.model_dir(self.id)
        nnodes, node_rank, endpoint = nodes()
        if ctx.nproc > 1 or nnodes > 1:
            self._run_torchrun(ctx, init, mixture, meta, out, nnodes, node_rank, endpoint)
            if node_rank != 0:
                raise NotLeader  # node 0 records the model and marks the stage done
        else:
            from growmerge.train.loop import train

            # force: a previous model of this stage from other inputs (the stage reruns because its
            # fingerprint changed) is replaced; `train` replaces nothing but a trained model.
            train(init, mixture, self.spec, out, tokenizer_dir=ctx.root / "tokenizer", meta=meta, resume=True,
                  force=True, progress=ctx.interactive)
        record_model_dir(ctx.results, self.id, out, kind=self.role, setup=self.group, scale=self.scale,
                         parent=self.init, seed=self.spec.seed)

    def _run_torchrun(self, ctx: Context, init: str, mixture, meta: dict, out: Path, nnodes: int, node_rank: int,
                      endpoint: str | None) -> None:
        """The same training entry point under torchrun (DDP; FSDP2 when the spec says fsdp), on this
        node of `nnodes`; the nodes meet at the c10d rendezvous `endpoint`."""
        import subprocess

        import yaml

        from growmerge.train.launch import torchrun_command

        job = ctx.root / "jobs" / f"{self.id}.yaml"
        job.parent.mkdir(parents=True, exist_ok=True)
        body = {**self.spec.model_dump(mode="json"), "init": str(Path(init).resolve()) if Path(init).is_dir() else init,
                "mixture": [{"shard": str(Path(i.shard).resolve()), "epochs": i.epochs, "name": i.name}
                            for i in mixture.items],
                "out": str(out.resolve()), "tokenizer": str((ctx.root / "tokenizer").resolve()), "meta": meta}
        if node_rank == 0:  # a shared filesystem: one writer, the others read it after the rendezvous
            write_text_atomic(job, yaml.safe_dump(body, sort_keys=False))
        cmd = torchrun_command(job, ctx.nproc, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=endpoint,
                               rdzv_id=f"{self.id}-{self.fingerprint}") + ["--force"]  # as in run() above
        if subprocess.run(cmd).returncode != 0:
            raise GrowmergeError(f"training stage {self.id} failed under torchrun (see the output above)")


class NotLeader(Exception):
    """Raised by a node other than the first of a multi-node stage once its share is done: the first
    node records the results and marks the stage done."""


def nodes() -> tuple[int, int, str | None]:
    """(nodes, this node's rank, rendezvous host:port) of the allocation this process runs in:
    a multi-node Slurm job, or one node."""
    import os

    if int(os.environ.get("SLURM_NNODES", "1")) > 1:
        from growmerge.cluster.slurm import torchrun_rendezvous_env

        nnodes, rank, host, port = torchrun_rendezvous_env()
        return nnodes, rank, f"{host}:{port}"
    return 1, 0, None


class CloneStage(Stage):
    kind: Literal["clone"] = "clone"
    src: str
    factor: int
    snr_db: Optional[float] = None
    seed: int = 0
    scale: Optional[str] = None

    @property
    def model(self) -> str:
        return self.id

    def run(self, ctx: Context) -> None:
        from growmerge.grow.hyperclone import clone_dir
        from growmerge.ledger import record_model_dir

        out = clone_dir(ctx.model_dir(self.src), ctx.model_dir(self.id), self.factor, snr_db=self.snr_db,
                        seed=self.seed, force=True)
        record_model_dir(ctx.results, self.id, out, kind="clone", scale=self.scale, parent=self.src, seed=self.seed)


class DeepenStage(Stage):
    """Depth growth of a trained model (grow/depth.py): the "1x_deep" arm's base, as base_1x_cloned is
    the "1x_cloned" arm's."""

    kind: Literal["deepen"] = "deepen"
    src: str
    depth: int
    scale: Optional[str] = None

    @property
    def model(self) -> str:
        return self.id

    def run(self, ctx: Context) -> None:
        from growmerge.grow.depth import deepen_dir
        from growmerge.ledger import record_model_dir

        out = deepen_dir(ctx.model_dir(self.src), ctx.model_dir(self.id), self.depth, force=True)
        src = ctx.results.models(name=self.src)
        record_model_dir(ctx.results, self.id, out, kind="clone", scale=self.scale, parent=self.src,
                         seed=src[0].get("seed") if src else None)  # the seed of the model it deepens


class InitStage(Stage):
    """A randomly initialised model written as a directory: the shared starting point of the
    from-scratch arm, and the base its task-vector merges subtract. For a preset it is bit for bit the
    model the seed stage starts from (same preset, same seed, same draw as train.loop.build_model)."""

    kind: Literal["init"] = "init"
    init: str  # a train preset, or an HF dir / hub id whose architecture is drawn afresh
    seed: int = 0
    scale: Optional[str] = None

    @property
    def model(self) -> str:
        return self.id

    def run(self, ctx: Context) -> None:
        import torch
        from transformers import AutoModelForCausalLM, LlamaForCausalLM

        from growmerge.artifacts import load_config, load_tokenizer, save_model
        from growmerge.ledger import record_model_dir
        from growmerge.train.spec import PRESETS, preset_config

        tokenizer_dir = ctx.root / "tokenizer"
        if self.init in PRESETS:
            tok = load_tokenizer(tokenizer_dir, required=True)
            config = preset_config(self.init, len(tok), tok.bos_token_id, tok.eos_token_id)
            torch.manual_seed(self.seed)
            model = LlamaForCausalLM(config)
        else:
            config = load_config(self.init)
            torch.manual_seed(self.seed)
            model = AutoModelForCausalLM.from_config(config)
        meta = {"kind": "seed", "parents": [], "setup": None, "languages": [], "tokens": 0, "scale": self.scale,
                "flops": {"self": 0.0, "cumulative": 0.0}, "spec": {"init": self.init, "seed": self.seed},
                "study": ctx.study, "stage": self.id}
        out = save_model(model, ctx.model_dir(self.id), tokenizer_from=tokenizer_dir, meta=meta, force=True,
                         kind="seed")
        record_model_dir(ctx.results, self.id, out, kind="seed", scale=self.scale, seed=self.seed)


class MergeStage(Stage):
    """Every subset of a scale's per-language models × every method (merge-grid)."""

    kind: Literal["merge"] = "merge"
    scale: str
    base: str
    models: dict[str, str]  # language -> stage id of its adapted model
    methods: list[str]
    sizes: Optional[list[int]] = None
    dtype: str
    parameters: dict
    compat: bool = False
    seed: int = 0
    # A later seed's (study.plan.seed_suffix): merges/<scale><suffix>, merge/<scale><suffix>/… names.
    suffix: str = Field("", exclude_if=lambda v: not v)

    def run(self, ctx: Context) -> None:
        from growmerge.merge.grid import merge_grid, parse_variant

        models = {lang: ctx.model_dir(m) for lang, m in self.models.items()}
        outputs = merge_grid(models, ctx.model_dir(self.base), self.methods, self.sizes,
                             ctx.root / "merges" / (self.scale + self.suffix), {**self.parameters, "dtype": self.dtype},
                             compat=self.compat, device=ctx.device)
        for out in outputs:
            label, langs = out.parent.name, out.name.split("+")  # label: the method, or a sweep's method@k=v
            ctx.results.add_merge(merge_name(self.scale + self.suffix, label, langs), parse_variant(label)[0],
                                  self.scale, langs, out, fingerprint=read_meta(out).get("fingerprint"), seed=self.seed)


def merge_name(scale: str, method: str, langs: list[str]) -> str:
    return f"merge/{scale}/{method}/{'+'.join(sorted(langs))}"


class Scoring(Stage):
    """What every evaluating stage shares: the tasks, the fixed reference, the seed."""

    tasks: dict[str, dict]
    reference: str
    seed: int = 0

    def evaluate(self, ctx: Context, name: str, path: Path, langs: list[str], step: int = FINAL_STEP,
                 max_pairs: int | None = None, scorer=None):
        """Score one model (or checkpoint) on each language; a (language, task) cell already in the
        ledger with the same fingerprint is skipped, any other is (re)scored. Returns the scorer so
        the caller can reuse the loaded model for its next call."""
        from growmerge.evaluate.run import score_model
        from growmerge.evaluate.scorer import Scorer, boundary_of
        from growmerge.evaluate.tasks import PrepareEnv, ScoreEnv, get_task

        env = PrepareEnv(ctx.root, self.seed, ctx.say)
        reference = ctx.model_dir(self.reference)
        # What every score of this model depends on besides its sets. The reference is in it for every
        # task (tasks do not declare whether they read it): a retrained reference rescores all.
        basis = {"model": model_identity(path), "reference": model_identity(reference) if reference.is_dir() else None,
                 "seed": self.seed,  # and the document-boundary convention the model is scored under
                 "boundary": scorer.boundary if scorer is not None else boundary_of(path)}
        score_env = ScoreEnv(reference=reference, cache_dir=ctx.root / "cache", seed=self.seed, device=ctx.device)
        for lang in langs:
            todo: dict[str, tuple[list[Path], str]] = {}
            for t, opts in self.tasks.items():
                task = get_task(t)
                files = [trim(ctx.root, f, max_pairs) for f in task.sets(task.Options.model_validate(opts), lang, env)]
                fingerprint = fingerprint_of({**basis, "task": t, "options": opts, "sets": [digest(f) for f in files]})
                if files and not ctx.results.has_scores(name, step, lang, t, fingerprint):
                    todo[t] = (files, fingerprint)
            if not todo:
                continue
            scorer = scorer or Scorer.from_dir(path, device=ctx.device)
            rows = score_model(path, lang, {t: files for t, (files, _) in todo.items()}, score_env, scorer=scorer)
            for t, (_, fingerprint) in todo.items():
                ctx.results.replace_scores(name, step, lang, t, [r for r in rows if r["task"] == t], fingerprint)
        return scorer


_DIGESTS: dict[tuple, str] = {}


def digest(path: Path) -> str:
    """Content hash of an evaluation set (a file, or every file under a directory), memoised by the
    files' sizes and modification times: hundreds of models are scored on the same few sets."""
    path = Path(path)
    files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
    key = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.exists())
    if key not in _DIGESTS:
        h = hashlib.sha256()
        for f, *_ in key:
            h.update(f.encode())
            h.update(Path(f).read_bytes())
        _DIGESTS[key] = h.hexdigest()[:16]
    return _DIGESTS[key]


def trim(root: Path, path: Path, max_pairs: int | None) -> Path:
    """The first `max_pairs` rows of a set, as a file of its own (for the many merges and the
    large off-the-shelf model); the set itself when there is no limit. Rewritten whenever the set
    changed (the trimmed file is then stale), and only then."""
    if not max_pairs:
        return path
    from growmerge.evaluate.pairs import jsonl_rows

    small = root / "eval" / f"first-{max_pairs}" / path.parent.name / path.name
    if path.is_dir() or (path.is_file() and path.suffix != ".jsonl"):
        small, rows = small.with_name(path.name + ".jsonl"), first_pairs(path, max_pairs)
    elif not path.is_file():
        raise GrowmergeError(f"{path}: missing (the pairs stage writes it)")
    else:
        rows = [r for _, r in islice(jsonl_rows(path), max_pairs)]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if not small.is_file() or small.read_text(encoding="utf-8") != text:
        small.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(small, text)
    return small


def first_pairs(path: Path, max_pairs: int) -> list[dict]:
    """The first pairs of a set in another published format (a BLiMP directory, a MultiBLiMP TSV, a
    column mapping) as JSONL rows that read back with the same text convention: BLiMP's fields when
    it is scored with a leading space, ours otherwise."""
    from growmerge.evaluate.pairs import read_pairs

    data = read_pairs(path)
    if data.space_prefix:
        return [{"sentence_good": p["good"], "sentence_bad": p["bad"], "UID": p["phenomenon"]}
                for p in data.pairs[:max_pairs]]
    return [{"good": p["good"], "bad": p["bad"], "phenomenon": p["phenomenon"]} for p in data.pairs[:max_pairs]]


class EvalStage(Scoring):
    kind: Literal["eval"] = "eval"
    target: str  # the model (stage id) scored
    languages: list[str]
    max_pairs: Optional[int] = None

    @property
    def model(self) -> str:
        return self.target

    def run(self, ctx: Context) -> None:
        self.evaluate(ctx, self.target, ctx.model_path(self.target), self.languages, max_pairs=self.max_pairs)


class EvalMergesStage(Scoring):
    kind: Literal["eval_merges"] = "eval_merges"
    scale: str
    english: bool = False  # also score every merge on English (forgetting of merges)
    max_pairs: Optional[int] = None
    model_seed: Optional[int] = Field(None, exclude_if=lambda v: v is None)  # several seeds: this seed's merges

    def run(self, ctx: Context) -> None:
        for m in ctx.results.merges():
            if m["scale"] != self.scale or (self.model_seed is not None and m.get("seed") != self.model_seed):
                continue
            langs = json.loads(m["languages"]) if isinstance(m["languages"], str) else m["languages"]
            self.evaluate(ctx, m["name"], Path(m["path"]), [*langs, *([ENGLISH] if self.english else [])],
                          max_pairs=self.max_pairs)


class MatchedStage(Scoring):
    """Score the intermediate checkpoints that the compute-matched comparison needs (only those)."""

    kind: Literal["matched"] = "matched"
    scales: list[str]
    model_seed: Optional[int] = Field(None, exclude_if=lambda v: v is None)  # several seeds: this seed's runs

    def run(self, ctx: Context) -> None:
        from growmerge.ledger.matching import compute_matched_pairs
        from growmerge.ledger.seeds import seed_results

        results = ctx.results if self.model_seed is None else seed_results(ctx.results, self.model_seed)
        pairs, excluded = compute_matched_pairs(results, self.scales)
        for x in excluded:
            ctx.say(f"compute-matched: excluded {x.lang} {x.setup_a} vs {x.setup_b}: {x.reason}")
        for pair in pairs:
            ckpts = {c["step"]: c for c in ctx.results.checkpoints(pair.costlier_model)}
            final = max(ckpts) if ckpts else None
            if pair.costlier_step in (final, FINAL_STEP) or pair.costlier_step not in ckpts:
                continue  # the final model is scored by its own eval stage
            self.evaluate(ctx, pair.costlier_model, Path(ckpts[pair.costlier_step]["path"]), [pair.lang, ENGLISH],
                          step=pair.costlier_step)


class ControlStage(Scoring):
    """The unigram control: every minimal-pair set scored by the unigram model of its language's
    training tokens (evaluate/controls.py), recorded as the model ``unigram``."""

    kind: Literal["control"] = "control"
    languages: list[str]

    @property
    def model(self) -> str:
        from growmerge.evaluate.controls import UNIGRAM

        return UNIGRAM

    def run(self, ctx: Context) -> None:
        from growmerge.evaluate.controls import run_unigram_control

        run_unigram_control(self, ctx)


class VectorsStage(Stage):
    """Cosine similarity of the language vectors of a scale (beyond the paper)."""

    kind: Literal["vectors"] = "vectors"
    scale: str
    base: str
    models: dict[str, str]
    suffix: str = Field("", exclude_if=lambda v: not v)  # a later seed's (study.plan.seed_suffix)

    def run(self, ctx: Context) -> None:
        from growmerge.merge.vectors import vector_similarity, write_heatmap

        result = vector_similarity(ctx.model_dir(self.base), {lang: ctx.model_dir(m) for lang, m in self.models.items()})
        out = ctx.root / "analysis"
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / f"vectors_{self.scale}{self.suffix}.json", result)
        write_heatmap(result, out / f"vectors_{self.scale}{self.suffix}.png")


class SimilarityStage(Stage):
    """Linear CKA of the hidden states of a scale's per-language models, pair by pair, on the IP task's
    parallel sentences (beyond the paper: ``analysis.predictors``; analysis/similarity.py)."""

    kind: Literal["similarity"] = "similarity"
    scale: str
    models: dict[str, str]  # language -> stage id of its adapted model
    max_sentences: int
    suffix: str = Field("", exclude_if=lambda v: not v)  # a later seed's (study.plan.seed_suffix)

    def run(self, ctx: Context) -> None:
        from growmerge.analysis.similarity import cka_by_pair, parallel_sentences

        sentences = {lang: parallel_sentences(ctx.eval_file("ip", lang), self.max_sentences) for lang in self.models}
        result = cka_by_pair({lang: ctx.model_dir(m) for lang, m in self.models.items()}, sentences, ctx.device)
        out = ctx.root / "analysis"
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / f"similarity_{self.scale}{self.suffix}.json", result)


class ReportStage(Stage):
    kind: Literal["report"] = "report"

    def run(self, ctx: Context) -> None:
        from growmerge.report import build_report

        ctx.say(f"report: {build_report(ctx.root, ctx.results)}")


STAGE_KINDS: tuple[type[Stage], ...] = (DataStage, PairsStage, ReferenceStage, TrainStage, CloneStage, MergeStage,
                                        EvalStage, EvalMergesStage, MatchedStage, VectorsStage, ReportStage,
                                        SimilarityStage, ControlStage, DeepenStage, InitStage)
AnyStage = Annotated[Union[STAGE_KINDS], Field(discriminator="kind")]  # type: ignore[valid-type]
_ADAPTER = TypeAdapter(AnyStage)


def stage_from_json(text: str | bytes) -> Stage:
    try:
        return _ADAPTER.validate_json(text)
    except ValidationError as exc:
        from growmerge.config import validation_message

        raise GrowmergeError(validation_message(exc, "stage")) from None


def fingerprint(stage: Stage, parents: list[str]) -> str:
    """Hash of a stage's own inputs and its parents' fingerprints: change a setting and exactly the
    stages downstream of it are redone."""
    blob = json.dumps({"stage": stage.identity(), "deps": parents}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
