"""A read-only view of a results database shaped for the report: final scores by setup and language,
merge scores with their unmerged and multilingual counterparts, compute-matched differences."""

from __future__ import annotations

from dataclasses import replace
from functools import cached_property

from growmerge.evaluate.controls import UNIGRAM
from growmerge.evaluate.tasks import DECISIONS, TASKS
from growmerge.ledger import FINAL_STEP, Cell, Results, headline_cells
from growmerge.ledger.matching import cell_at, compute_matched_pairs, score_differences
from growmerge.names import ENGLISH, MULTI_SCALES, REFERENCE, SCALES, base_of

SETUP_ORDER = SCALES + MULTI_SCALES + ("base_1x", "base_2x", REFERENCE)


METHOD_ORDER = ("linear", "task_arithmetic", "multislerp", "ties", "dare_ties")  # the paper's ranking


def method_sort_key(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def method_key(method: str) -> str:
    """'DARE-TIES', 'dare_ties' and 'dare-ties' are the same method."""
    return method.lower().replace("-", "_")


class StudyView:
    def __init__(self, results: Results):
        self.results = results
        self.cells = headline_cells(results)
        self.models = {m["name"]: m for m in results.models()}
        self.final_steps = {r["model"]: r["s"] for r in
                            results.query("SELECT model, MAX(step) AS s FROM checkpoints GROUP BY model")}

    # -- single models ------------------------------------------------------------------------
    def final(self, model: str | None, lang: str, task: str) -> Cell | None:
        """The final model's score (stored under step -1, or under its last checkpoint's step); an
        accuracy carries the unigram control's on the same language and task (``Cell.control``)."""
        if model is None:
            return None
        cell = cell_at(self.cells, model, FINAL_STEP, self.final_steps.get(model, FINAL_STEP), lang, task)
        if cell is not None and model != UNIGRAM and TASKS[task].headline == "accuracy":
            control = self.control_cell(lang, task)
            if control is not None:
                cell = replace(cell, control=control)
        return cell

    # -- controls -----------------------------------------------------------------------------
    def control_cell(self, lang: str, task: str) -> Cell | None:
        """The unigram control's score on `lang`'s sets of `task` (evaluate/controls.py)."""
        return self.cells.get((UNIGRAM, FINAL_STEP, lang, task))

    def before_adaptation(self, scale: str) -> tuple[str | None, str]:
        """(model, label) of the English base a scale adapts from. The 1x_cloned base is usually not
        scored: HyperCloning preserves the function, so the 1x base stands in for it, and says so."""
        own = base_of(scale)
        if any(k[0] == own for k in self.cells):
            return own, own
        if scale == "1x_cloned":
            model = self.setup_model("base_1x")
            return model, f"{model} (as {own}: a function-preserving clone)"
        model = self.setup_model(own)
        return model, model or own

    @cached_property
    def _decisions(self) -> dict[tuple[str, str, str], dict[str, str]]:
        """{(model, lang, task): {dataset: per-pair decisions}} of the final models."""
        out: dict[tuple[str, str, str], dict[str, str]] = {}
        for r in self.results.query("SELECT model, step, lang, task, dataset, detail FROM scores "
                                    "WHERE metric = ? AND detail IS NOT NULL ORDER BY step", (DECISIONS,)):
            if r["step"] in (FINAL_STEP, self.final_steps.get(r["model"], FINAL_STEP)):
                out.setdefault((r["model"], r["lang"], r["task"]), {})[r["dataset"]] = r["detail"]
        return out

    def agreement(self, model: str | None, lang: str, task: str, other: str = UNIGRAM) -> tuple[float, int] | None:
        """(share of pairs on which `model` decides as `other`, pairs compared), over the sets both
        were scored on. A set scored on its first N pairs only (the merges') is compared on those."""
        a, b = self._decisions.get((model, lang, task), {}), self._decisions.get((other, lang, task), {})
        same = n = 0
        for dataset in a.keys() & b.keys():
            k = min(len(a[dataset]), len(b[dataset]))
            same += sum(x == y for x, y in zip(a[dataset][:k], b[dataset][:k]))
            n += k
        return (same / n, n) if n else None

    def phenomena(self, model: str | None, lang: str, task: str) -> dict[tuple[str, str], tuple[float, int]]:
        """{(dataset, phenomenon): (accuracy, n)} of a final model, from the per-phenomenon rows."""
        if model is None:
            return {}
        steps = {FINAL_STEP, self.final_steps.get(model, FINAL_STEP)}
        rows = self.results.query("SELECT step, dataset, metric, value, n FROM scores WHERE model = ? AND lang = ? "
                                  "AND task = ? AND metric LIKE 'accuracy/%'", (model, lang, task))
        return {(r["dataset"], r["metric"].split("/", 1)[1]): (r["value"], int(r["n"] or 0))
                for r in rows if r["step"] in steps and r["value"] is not None}

    @cached_property
    def _setup_index(self) -> dict[tuple[str, str | None], str]:
        index = {}
        # Later rows win: "adapt" rows over a bare clone of the same setup, then the first name.
        by_name = sorted(self.models.values(), key=lambda m: m["name"], reverse=True)
        for m in sorted(by_name, key=lambda m: m["kind"] == "adapt"):
            if m["kind"] == "merge":
                continue
            if m["setup"] in SCALES and len(m["languages"]) == 1:
                index[(m["setup"], m["languages"][0])] = m["name"]
            elif m["setup"] is not None:
                index[(m["setup"], None)] = m["name"]
            if m["kind"] == "reference":
                index.setdefault((REFERENCE, None), m["name"])
        return index

    def setup_model(self, setup: str, lang: str | None = None) -> str | None:
        """The model of a setup: for per-language setups the run on `lang`, otherwise the one model."""
        return self._setup_index.get((setup, lang if setup in SCALES else None))

    def setup_cell(self, setup: str, lang: str, task: str, run_lang: str | None = None) -> Cell | None:
        """Score of `setup` on `lang`; per-language runs are the run on `run_lang` (default `lang`)."""
        return self.final(self.setup_model(setup, run_lang or lang), lang, task)

    @cached_property
    def languages(self) -> list[str]:
        """Target languages: those of the per-language runs, else of any scores (English excluded)."""
        langs = {m["languages"][0] for m in self.models.values()
                 if m["setup"] in SCALES and len(m["languages"]) == 1}
        langs = langs or {lang for (_, _, lang, _) in self.cells}
        return sorted(langs - {ENGLISH})

    @cached_property
    def tasks(self) -> list[str]:
        present = {task for (_, _, _, task) in self.cells}
        return [t for t in TASKS if t in present]

    # -- merges -------------------------------------------------------------------------------
    @cached_property
    def merge_rows(self) -> list[dict]:
        """One row per merge × merged language × task with a score: the merge's cell, the unmerged
        model of the same scale on that language, and the joint multilingual model of that scale."""
        rows = []
        for mg in self.results.merges():
            for lang in mg["languages"]:
                for task in self.tasks:
                    cell = self.final(mg["name"], lang, task)
                    if cell is None:
                        continue
                    rows.append({
                        "merge": mg["name"], "method": method_key(mg["method"]), "scale": mg["scale"],
                        "languages": tuple(mg["languages"]), "k": len(mg["languages"]), "lang": lang,
                        "task": task, "cell": cell,
                        "unmerged": self.setup_cell(mg["scale"], lang, task),
                        "multi": self.setup_cell(f"{mg['scale']}_multi", lang, task),
                    })
        return rows

    # -- compute matched ----------------------------------------------------------------------
    @cached_property
    def matched(self):
        return compute_matched_pairs(self.results)

    @cached_property
    def differences(self) -> list[dict]:
        pairs, _ = self.matched
        return [row for task in self.tasks for row in score_differences(self.results, pairs, task)]
