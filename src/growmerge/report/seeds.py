"""Findings over several seeds (``seeds:`` in the study YAML): intervals and the spread across seeds.

Each seed's findings are computed on that seed's view of the ledger (ledger/seeds.py) with the rules of
report/findings.py. Each claim comparing two scores (a > b, a ≥ b, a ≈ b) is then judged on a 95%
interval of its difference from a hierarchical paired bootstrap: seeds are resampled, and within each
drawn seed the claim's paired per-cell differences (languages, merges, datasets: what the claim
averaged) are resampled; a claim whose sides cannot be paired cell by cell is resampled over seeds
only. Status from the interval: a > b holds when it lies above 0 and fails when below; a ≥ b holds
when the mean difference is ≥ 0 and fails when the interval lies below 0; a ≈ b (within tol) holds
when |mean| ≤ tol and fails when the interval lies beyond ±tol; otherwise inconclusive. A claim
without a difference (a count, a ranking) holds or fails when every seed says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from growmerge.report.figures import Figure, new_figure, save
from growmerge.report.findings import (FAILS, HOLDS, INCONCLUSIVE, Claim, Findings, control_note, finding_claims,
                                       verdict)

BOOTSTRAP = 2000
LEVEL = 0.95
SEEDS_RULE = ("Several seeds: each claim comparing two scores is judged on the 95% interval of its difference "
              "from a paired bootstrap over seeds and, within a seed, over the cells it averages "
              "(report/seeds.py); the spread across seeds is in the figure 'Spread across seeds'.")


def bootstrap_interval(per_seed: list[tuple[float, ...]], rounds: int = BOOTSTRAP,
                       level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of the mean difference: seeds drawn with replacement, then each drawn seed's
    cell differences drawn with replacement (a seed with one value contributes that value)."""
    rng = np.random.default_rng(0)  # the report is deterministic
    arrays = [np.asarray(p, dtype=float) for p in per_seed]
    k = len(arrays)
    means = np.empty(rounds)
    for i in range(rounds):
        drawn = rng.integers(0, k, size=k)
        means[i] = np.mean([arrays[j][rng.integers(0, len(arrays[j]), size=len(arrays[j]))].mean() for j in drawn])
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def judged(claim: Claim, mean: float, lo: float, hi: float) -> str:
    if claim.test == "greater":
        return HOLDS if lo > 0 else FAILS if hi < 0 else INCONCLUSIVE
    if claim.test == "not_worse":
        return HOLDS if mean > -1e-9 else FAILS if hi < 0 else INCONCLUSIVE
    if claim.test == "close":
        return HOLDS if abs(mean) <= claim.tol else FAILS if lo > claim.tol or hi < -claim.tol else INCONCLUSIVE
    return INCONCLUSIVE


def label(claim: Claim) -> str:
    """The claim without its numbers: the part before the first ': '."""
    return claim.text.split(": ", 1)[0]


def combine(claims: dict[int, Claim], seeds: list[int] | None = None) -> tuple[Claim, dict]:
    """One claim over seeds ({seed: that seed's claim}; a seed of `seeds` without it shows '–'), and its
    row of the spread table."""
    every = sorted(seeds or claims)
    seeds = sorted(claims)
    first = claims[seeds[0]]
    marks = " ".join(claims[s].status if s in claims else "–" for s in every)
    deltas = {s: c.delta for s, c in claims.items() if c.delta is not None}
    if first.test and len(deltas) == len(seeds):
        values = [deltas[s].value for s in seeds]
        mean = float(np.mean(values))
        lo, hi = bootstrap_interval([deltas[s].parts or (deltas[s].value,) for s in seeds])
        status = judged(first, mean, lo, hi)
        text = (f"{label(first)}: mean Δ over {len(seeds)} seeds {mean:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}] "
                f"(seeds {min(values):+.3f} … {max(values):+.3f})")
        row = {"values": [deltas[s].value if s in deltas else None for s in every], "mean": mean, "ci": (lo, hi)}
    else:  # a count or a ranking, or data missing in a seed: the seeds must agree
        statuses = {c.status for c in claims.values()}
        status = statuses.pop() if len(statuses) == 1 and INCONCLUSIVE not in statuses else INCONCLUSIVE
        text = f"{first.text} (per seed: {marks})"
        row = {"values": [deltas[s].value if s in deltas else None for s in every], "mean": None, "ci": None}
    out = Claim(status, text, near_control=first.near_control)
    return out, {"claim": label(first), "marks": marks, **row}


def seed_findings(views: dict[int, object], primary: int) -> tuple[Findings, list[dict]]:
    """The findings table over every seed's view, and the spread rows [{number, claim, marks, values,
    mean, ci}]. A finding line is matched across seeds by its text, a claim by its position (and, for a
    comparison, its label); what a seed lacks is judged on the seeds that have it."""
    per_seed = {s: dict(finding_claims(v)) for s, v in views.items()}
    out, spread = Findings(), []
    for text, claims in finding_claims(views[primary]) if primary in views else []:
        combined = []
        for j, claim in enumerate(claims):
            same = {s: lines[text][j] for s, lines in per_seed.items() if text in lines and j < len(lines[text])
                    and (not claim.test or label(lines[text][j]) == label(claim))}
            one, row = combine(same, sorted(views))
            combined.append(one)
            spread.append({"number": len(out) + 1, **row})
        status, evidence = verdict(combined)
        out.append({"number": len(out) + 1, "text": text, "status": status, "evidence": evidence,
                    "control": control_note(combined)})
    return out, spread


def fig_seeds(spread: list[dict], seeds: list[int], out_dir: Path) -> Figure:
    """The spread across seeds: every claim's difference per seed, with the bootstrap interval."""
    rows = [r for r in spread if r["mean"] is not None]
    fig = Figure("seeds", "Spread across seeds",
                 f"Each finding's claimed differences (a − b) on each of the {len(seeds)} seeds (dots) and their "
                 "95% interval from a paired bootstrap over seeds and cells (bar). A bar clear of 0 is a "
                 "difference that survives run-to-run variation.",
                 table={"columns": ["#", "claim", *(f"seed {s}" for s in seeds), "min … max", "95% CI", "per seed"],
                        "rows": [[r["number"], r["claim"],
                                  *("" if v is None else f"{v:+.3f}" for v in r["values"]),
                                  _range(r["values"]),
                                  "" if r["ci"] is None else f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}]", r["marks"]]
                                 for r in spread]})
    if not rows:
        fig.note = "no data: no claim compared two scores on every seed"
        return fig
    plot = new_figure(8, 0.3 * len(rows) + 1.2)
    ax = plot.add_subplot()
    for y, r in enumerate(rows):
        ax.plot([r["ci"][0], r["ci"][1]], [y, y], color="#888", lw=3, solid_capstyle="butt")
        known = [v for v in r["values"] if v is not None]
        ax.scatter(known, [y] * len(known), s=14, color="#1f77b4", zorder=3)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), [f"{r['number']}. {r['claim'][:60]}" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("difference a − b (per seed; bar: 95% bootstrap interval)")
    fig.files.append(save(plot, out_dir, "seeds.png"))
    return fig


def _range(values: list) -> str:
    known = [v for v in values if v is not None]
    return f"{min(known):+.3f} … {max(known):+.3f}" if known else ""


class SeedsReport:
    """The findings of a several-seed study and what the report adds for them."""

    def __init__(self, results, seeds: list[int], min_validity: float | None = None):
        from growmerge.ledger.seeds import first_seed, seed_results
        from growmerge.report.validity import valid_results
        from growmerge.report.view import StudyView

        self.seeds = seeds
        first = first_seed(results)
        self.primary = first if first in seeds else seeds[0]
        self.view = StudyView(seed_results(results, self.primary))  # the figures show the first seed
        views = {s: StudyView(valid_results(seed_results(results, s), min_validity)) for s in seeds}
        self.findings, self.spread = seed_findings(views, self.primary)
        sets = getattr(views[self.primary].results, "sets", None)
        shown = f"The other figures show the first seed ({self.primary}) of {len(seeds)}."
        self.findings.note = " ".join(x for x in (sets.note() if sets is not None else "", SEEDS_RULE, shown) if x)

    def figure(self, out_dir: Path) -> Figure:
        return fig_seeds(self.spread, self.seeds, out_dir)


def several_seeds(results, min_validity: float | None = None) -> SeedsReport | None:
    """The several-seed findings of a ledger with more than one training seed; None otherwise."""
    from growmerge.ledger.seeds import study_seeds

    seeds = study_seeds(results)
    return SeedsReport(results, seeds, min_validity) if len(seeds) > 1 else None
