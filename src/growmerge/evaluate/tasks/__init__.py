"""Evaluation tasks, declared once: the study, the results ledger and the report iterate over this
registry. A task says which sets a language needs, how the pairs stage makes them, how a model is
scored on them and which metric is its headline number.

A new task is one new module that subclasses :class:`EvalTask` and calls :func:`register`; the study
YAML then accepts ``eval.tasks.<name>: {...}`` (validated by the task's ``Options``).
Import-light on purpose (no torch): the ledger and the config import it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from growmerge.config import Strict
from growmerge.errors import GrowmergeError


@dataclass(frozen=True)
class ScoreEnv:
    """What scoring needs beyond the model: the fixed English reference (IP), a cache, the seed, and
    the device every model of the evaluation is loaded on (the reference too)."""

    reference: Path | None = None
    cache_dir: Path | None = None
    seed: int = 0
    device: str = "auto"  # growmerge.device.pick_device's forms


@dataclass(frozen=True)
class EvalInput:
    """An outside file or directory a task's options name, with how to read it: the study reads every
    one before its first stage (a missing or unreadable file costs a line, not the training before
    the stage that would trip on it)."""

    where: str  # the YAML key that names it, e.g. eval.tasks.la.extra.is[0]
    path: Path
    read: Callable[[], Any]  # parses it for its language(s); raises GrowmergeError naming the file


@dataclass(frozen=True)
class PrepareEnv:
    """Where the pairs stage reads held-out data and writes the fixed per-language sets."""

    run_dir: Path
    seed: int
    say: Callable[[str], None] = print

    def held_out(self, *parts: str) -> Path:
        return self.run_dir / "data" / "eval" / Path(*parts)

    def set_file(self, task: str, lang: str) -> Path:
        return self.run_dir / "eval" / task / f"{lang}.jsonl"


class EvalTask:
    """One evaluation. Subclasses set the class attributes and implement prepare/sets/load/score."""

    name: ClassVar[str]
    short: ClassVar[str]  # "LA": the findings table's name
    label: ClassVar[str]  # "LA (accuracy)": a figure axis
    marker: ClassVar[str] = "o"
    headline: ClassVar[str] = "accuracy"  # the metric the report reads; "accuracy" gets a binomial SE
    Options: ClassVar[type[Strict]]  # the task's block under eval.tasks.<name>

    def prepare(self, opts: Any, lang: str, env: PrepareEnv) -> None:
        """Write the fixed set of one language (every model is scored on the same rows)."""

    def sets(self, opts: Any, lang: str, env: PrepareEnv) -> list[Path]:
        """The files a language is scored on: the prepared set (if made) and any extra files."""
        own = env.set_file(self.name, lang)
        return ([own] if own.is_file() else []) + [Path(p) for p in getattr(opts, "extra", {}).get(lang, [])]

    def inputs(self, opts: Any, langs: list[str], seed: int = 0) -> list[EvalInput] | None:
        """The outside files the options name, each with its reader, for the study's languages `langs`.
        None (a task that does not declare them): the study checks only that named paths exist."""
        return None

    def load(self, source: str | Path, lang: str, seed: int) -> Any:
        """Read and validate one set (before the model is loaded, so a bad file fails fast)."""
        raise NotImplementedError

    def score(self, scorer, data: Any, lang: str, model_dir: Path, env: ScoreEnv) -> list[dict]:
        """Rows ``{task, dataset, metric, value, n}`` of one set."""
        raise NotImplementedError


TASKS: dict[str, EvalTask] = {}


def register(task: EvalTask) -> EvalTask:
    if task.name in TASKS and type(TASKS[task.name]) is not type(task):
        raise GrowmergeError(f"evaluation task {task.name!r} is already registered")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> EvalTask:
    try:
        return TASKS[name]
    except KeyError:
        raise GrowmergeError(f"unknown evaluation task {name!r} (one of {', '.join(TASKS)})") from None


def row(task: str, dataset: str, metric: str, value, n) -> dict:
    return {"task": task, "dataset": dataset, "metric": metric, "value": float(value), "n": int(n)}


DECISIONS = "decisions"  # the metric of the row whose `detail` holds a set's per-pair decisions


def decisions(scores: list[tuple[float, float]]) -> str:
    """One character per pair, in the set's order: "1" if the good sentence is preferred (a tie
    counts as preferred, as in the accuracy), else "0"."""
    return "".join("1" if good >= bad else "0" for good, bad in scores)


def pair_rows(task: str, result: dict, dataset: str) -> list[dict]:
    """Rows for a minimal-pair result: overall accuracy, ties, skipped, accuracy per phenomenon, and the
    per-pair decisions (so the report can say how often two models, or a model and a control, agree)."""
    rows = [row(task, dataset, "accuracy", result["accuracy"], result["n"]),
            row(task, dataset, "ties", result["ties"], result["n"])]
    if "scores" in result:  # per-pair log-probabilities (evaluate.pairs.score_pairs gives them)
        rows.append({**row(task, dataset, DECISIONS, result["accuracy"], result["n"]),
                     "detail": decisions(result["scores"])})
    if result["skipped"]:
        rows.append(row(task, dataset, "skipped", result["skipped"], result["n"]))
    if len(result["per_phenomenon"]) > 1:
        rows += [row(task, dataset, f"accuracy/{ph}", r["accuracy"], r["n"])
                 for ph, r in result["per_phenomenon"].items()]
    return rows


def sample_rows(rows: list[dict], n: int, seed: int) -> list[dict]:
    """A fixed seeded sample: every model is scored on the same rows."""
    return random.Random(seed).sample(rows, min(len(rows), n))


# The built-in tasks register themselves on import (order = the report's order).
from growmerge.evaluate.tasks import parity as _parity  # noqa: E402,F401
from growmerge.evaluate.tasks import minimal_pairs as _minimal_pairs  # noqa: E402,F401
