"""Compute-matched comparison (paper §3.3).

Cost of a checkpoint = its cumulative FLOPs, base pretraining included (a cloned run inherits the
small model's cost before cloning). For every pair of setups and every language, the *final*
checkpoint of the cheaper run is matched with the checkpoint of the costlier run whose cumulative
FLOPs are closest; the FLOP gap is reported in % of the cheaper run's cost.

Exclusion rule: the match must be a checkpoint trained on the target data (step > 0; a step-0 entry
is the parent model before any adaptation, not a point of this run). If even the costlier run's
first such checkpoint costs more than the cheaper run's final checkpoint, the costlier run never
*reaches down* to that cost and the pair is excluded with the reason — this is what drops Faroese
from 1x vs 1x cloned (its first cloned checkpoint is already past the whole 1x run) and from 1x vs
2x (the 2x base alone already costs more) in the paper.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Iterable

from growmerge.ledger.store import FINAL_STEP, Cell, Results, headline_cells
from growmerge.names import ENGLISH, MULTI_SCALES, PAPER_SCALES, SCALES


@dataclass(frozen=True)
class Point:
    """One checkpoint of a run: its step and its cumulative cost."""

    step: int
    flops: float


@dataclass(frozen=True)
class Run:
    model: str
    setup: str
    lang: str
    points: tuple[Point, ...]  # in training order; the last one is the final model

    @property
    def final(self) -> Point:
        return self.points[-1]


@dataclass(frozen=True)
class MatchedPair:
    lang: str
    cheaper_setup: str
    cheaper_model: str
    cheaper_step: int
    cheaper_flops: float
    costlier_setup: str
    costlier_model: str
    costlier_step: int
    costlier_flops: float
    gap_pct: float  # (costlier - cheaper) / cheaper * 100, signed

    @property
    def label(self) -> str:
        a, b = sorted((self.cheaper_setup, self.costlier_setup), key=_setup_order)
        return f"{a} vs {b}"

    def as_dict(self) -> dict:
        return {**asdict(self), "pair": self.label}


@dataclass(frozen=True)
class Excluded:
    lang: str
    setup_a: str
    setup_b: str
    reason: str

    def as_dict(self) -> dict:
        return {**asdict(self), "pair": f"{self.setup_a} vs {self.setup_b}"}


def _setup_order(setup: str) -> int:
    order = SCALES + MULTI_SCALES
    return order.index(setup) if setup in order else len(order)


def run_language(languages: list[str]) -> str:
    """The language key of a run: its one language, or 'multi' for the joint multilingual runs."""
    return languages[0] if len(languages) == 1 else "multi"


def load_runs(results: Results, setups: Iterable[str]) -> dict[tuple[str, str], Run]:
    """{(setup, lang): Run} for every adaptation run of the given setups that has a cost ledger."""
    runs = {}
    # Adaptation runs are kind "adapt"; a bare clone recorded under the same setup and language must
    # not shadow the run trained from it, so "adapt" rows come last and win.
    for m in sorted(results.models(), key=lambda m: m["kind"] == "adapt"):
        if m["setup"] not in setups or m["kind"] in ("merge", "reference", "seed", "base"):
            continue
        ckpts = results.checkpoints(m["name"])
        points = [Point(c["step"], float(c["flops_cumulative"])) for c in ckpts if c["flops_cumulative"] is not None]
        final = m["flops_cumulative"]
        if final is not None and (not points or float(final) > points[-1].flops):
            # The final model is not among the listed checkpoints: it is the run's last point (its
            # scores live under step -1).
            points.append(Point(FINAL_STEP, float(final)))
        if points:
            runs[(m["setup"], run_language(m["languages"]))] = Run(m["name"], m["setup"], run_language(m["languages"]),
                                                                   tuple(points))
    return runs


def match(cheaper: Run, costlier: Run) -> MatchedPair | Excluded:
    """The costlier run's checkpoint closest in cost to the cheaper run's final one, or why none is."""
    cost = cheaper.final.flops
    trained = [p for p in costlier.points if p.step != 0]
    if not trained:
        return Excluded(cheaper.lang, cheaper.setup, costlier.setup, f"{costlier.model} has no checkpoints")
    first = min(trained, key=lambda p: p.flops)
    if first.flops > cost:
        return Excluded(
            cheaper.lang, cheaper.setup, costlier.setup,
            f"no checkpoint of {costlier.setup} reaches the cost of {cheaper.setup}'s final model "
            f"({cost:.3g} FLOPs): its first checkpoint (step {first.step}) already costs {first.flops:.3g} "
            f"(+{100 * (first.flops - cost) / cost:.1f}%)",
        )
    best = min(trained, key=lambda p: (abs(p.flops - cost), p.step))
    return MatchedPair(cheaper.lang, cheaper.setup, cheaper.model, cheaper.final.step, cost,
                       costlier.setup, costlier.model, best.step, best.flops, 100 * (best.flops - cost) / cost)


def default_setups(results: Results) -> tuple[str, ...]:
    present = {m["setup"] for m in results.models()}
    return PAPER_SCALES + tuple(s for s in SCALES if s not in PAPER_SCALES and s in present)


def compute_matched_pairs(results: Results, setups: Iterable[str] | None = None,
                          languages: Iterable[str] | None = None) -> tuple[list[MatchedPair], list[Excluded]]:
    """Every pair of setups × language: matched checkpoints, and the pairs excluded with a reason.
    Default setups: the paper's scales, and an opt-in scale (1x_deep, scratch) when it has runs."""
    setups = tuple(setups) if setups is not None else default_setups(results)
    runs = load_runs(results, setups)
    langs = sorted({lang for _, lang in runs}) if languages is None else list(languages)
    pairs, excluded = [], []
    for lang in langs:
        for a, b in combinations(setups, 2):
            ra, rb = runs.get((a, lang)), runs.get((b, lang))
            if ra is None or rb is None:
                missing = ", ".join(s for s, r in ((a, ra), (b, rb)) if r is None)
                excluded.append(Excluded(lang, a, b, f"no run with a cost ledger for {missing}"))
                continue
            # Ties go to the first setup as the "cheaper" one; the match is then its final point.
            cheaper, costlier = (ra, rb) if ra.final.flops <= rb.final.flops else (rb, ra)
            out = match(cheaper, costlier)
            if isinstance(out, MatchedPair):
                pairs.append(out)
            else:
                excluded.append(Excluded(lang, a, b, out.reason))
    return pairs, excluded


# ---------------------------------------------------------------------------------------------
# Score differences at matched compute (input of the Fig. 3 analog)
# ---------------------------------------------------------------------------------------------
def cell_at(cells: dict, model: str, step: int, final_step: int, lang: str, task: str) -> Cell | None:
    """Score of a model at a checkpoint; a final checkpoint's scores may be stored under step -1."""
    found = cells.get((model, step, lang, task))
    if found is None and step in (final_step, FINAL_STEP):
        found = cells.get((model, FINAL_STEP if step == final_step else final_step, lang, task))
    return found


def _final_step(results: Results, model: str) -> int:
    rows = results.query("SELECT MAX(step) AS s FROM checkpoints WHERE model=?", (model,))
    return rows[0]["s"] if rows and rows[0]["s"] is not None else FINAL_STEP


def score_differences(results: Results, pairs: Iterable[MatchedPair], task: str,
                      metric: str | None = None) -> list[dict]:
    """Rows of score(costlier at matched) − score(cheaper final) per pair, on the run's language and
    on English (``lang == "en"``: forgetting). ``metric`` defaults to the task's headline metric;
    values are means over the task's datasets. Pairs without both scores are skipped."""
    cells = headline_cells(results) if metric is None else _metric_cells(results, task, metric)
    rows = []
    for p in pairs:
        finals = {m: _final_step(results, m) for m in (p.cheaper_model, p.costlier_model)}
        for lang in dict.fromkeys((p.lang, ENGLISH)):
            lo = cell_at(cells, p.cheaper_model, p.cheaper_step, finals[p.cheaper_model], lang, task)
            hi = cell_at(cells, p.costlier_model, p.costlier_step, finals[p.costlier_model], lang, task)
            if lo is None or hi is None:
                continue
            rows.append({
                "pair": p.label, "run_lang": p.lang, "lang": lang, "task": task,
                "cheaper_setup": p.cheaper_setup, "costlier_setup": p.costlier_setup,
                "cheaper": lo.value, "costlier": hi.value, "diff": hi.value - lo.value,
                "se": (hi - lo).se, "gap_pct": p.gap_pct,
            })
    return rows


def _metric_cells(results: Results, task: str, metric: str) -> dict:
    """Like ``headline_cells`` but for any metric (no standard error)."""
    rows = results.query(
        "SELECT model, step, lang, AVG(value) AS v, SUM(n) AS n FROM scores WHERE task=? AND metric=? "
        "GROUP BY model, step, lang", (task, metric))
    return {(r["model"], r["step"], r["lang"], task): Cell(r["v"], 0.0, int(r["n"] or 0)) for r in rows}
