"""What predicts mergeability (beyond the paper; study option ``analysis.predictors``).

For every pair of per-language models of a scale, two similarities -- the weight-space cosine of their
language vectors (``analysis/vectors_<scale>.json``, the vectors stage) and the activation-space linear
CKA of their hidden states averaged over layers (``analysis/similarity_<scale>.json``, the similarity
stage) -- against the pair merge's score change: the merge's score on each of the two languages minus
that language's unmerged model, averaged over both languages and every method the pair was merged
with. The rank correlation (Spearman) is over all pairs of all scales, its p-value from a permutation
test (exact up to 7 pairs). Without the option there are no similarity files: no figure, no line.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np

from growmerge.evaluate.tasks import TASKS
from growmerge.names import SCALES
from growmerge.report.view import StudyView

PREDICTORS = {"cosine": "weight cosine of language vectors", "cka": "linear CKA of hidden states (mean over layers)"}
PREDICTORS_TEXT = ("Beyond the paper: more similar models merge better (Spearman ρ of weight cosine and of "
                   "activation CKA against the pair merge's score change).")
ALPHA = 0.05
DRAWS = 10_000  # permutations when there are too many pairs to enumerate


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tied = x == v
        r[tied] = r[tied].mean()
    return r


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Correlation of `a` with each row of `b` (b: [k x n] or [n])."""
    a = a - a.mean()
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a ** 2).sum() * (b ** 2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (b @ a) / den


def spearman(x, y, seed: int = 0) -> tuple[float, float, int]:
    """(ρ, two-sided permutation p-value, n); NaN ρ and p when n < 3 or one side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 3:
        return math.nan, math.nan, n
    rx, ry = ranks(x), ranks(y)
    rho = float(_pearson(rx, ry))
    if math.isnan(rho):
        return rho, math.nan, n
    if math.factorial(n) <= 5040:
        perms = np.array(list(itertools.permutations(ry)))
        null = _pearson(rx, perms)
        p = float(np.mean(np.abs(null) >= abs(rho) - 1e-12))
    else:
        rng = np.random.default_rng(seed)
        perms = np.array([rng.permutation(ry) for _ in range(DRAWS)])
        null = _pearson(rx, perms)
        p = float((np.sum(np.abs(null) >= abs(rho) - 1e-12) + 1) / (DRAWS + 1))
    return rho, p, n


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def run_dir_of(view: StudyView) -> Path | None:
    path = getattr(view.results, "path", None)
    return Path(path).parent if path else None


def pair_points(view: StudyView) -> list[dict] | None:
    """One point per (scale, pair): its predictors and its score change per task; None when the run has
    no similarity files (the option was off)."""
    run_dir = run_dir_of(view)
    found = {s: _json(run_dir / "analysis" / f"similarity_{s}.json") for s in SCALES} if run_dir else {}
    found = {s: v for s, v in found.items() if v}
    if not found:
        return None
    merges: dict[tuple, list] = {}
    for r in view.merge_rows:
        if r["k"] == 2 and r["unmerged"] is not None:
            merges.setdefault((r["scale"], tuple(sorted(r["languages"])), r["task"]), []).append(
                r["cell"].value - r["unmerged"].value)
    points = []
    for scale, sim in found.items():
        vectors = _json(run_dir / "analysis" / f"vectors_{scale}.json") or {}
        vlangs = vectors.get("languages", [])
        cosine = vectors.get("overall", {}).get("cosine")
        for pair in sim.get("pairs", []):
            a, b = sorted(pair["languages"])
            cos = cosine[vlangs.index(a)][vlangs.index(b)] if cosine and a in vlangs and b in vlangs else None
            change = {t: float(np.mean(v)) for t in view.tasks if (v := merges.get((scale, (a, b), t)))}
            points.append({"scale": scale, "pair": f"{a}+{b}", "cosine": cos, "cka": pair.get("cka_mean"),
                           "cka_layers": pair.get("cka") or [], "change": change})
    return points


def correlation(points: list[dict], predictor: str, task: str) -> tuple[float, float, int]:
    usable = [(p[predictor], p["change"][task]) for p in points
              if p[predictor] is not None and not math.isnan(p[predictor]) and task in p["change"]]
    return spearman([u[0] for u in usable], [u[1] for u in usable])


def _rho_text(rho: float, p: float, n: int) -> str:
    if n < 3:
        return f"too few pairs to rank (n={n})"
    return f"undefined: one side is constant (n={n})" if math.isnan(rho) else f"ρ={rho:+.2f} (n={n}, p={p:.3f})"


def fig_predictors(view: StudyView, out_dir: Path):
    """Each predictor (column) against the pair merge's score change, per task (row), coloured by scale."""
    from growmerge.report.figures import Figure, new_figure, save

    points = pair_points(view)
    if points is None:
        return None
    f = Figure("predictors", "What predicts mergeability (beyond the paper)",
               "Each pair of per-language models of a scale: its weight-space cosine (language vectors) and "
               "activation-space linear CKA (hidden states on the parallel evaluation sentences, mean over "
               "layers) against the pair merge's score change (merge minus unmerged, mean over both "
               "languages and every method). ρ: Spearman rank correlation over all pairs. Second image: "
               "each pair's CKA layer by layer.")
    tasks = [t for t in view.tasks if any(t in p["change"] for p in points)]
    f.table = {"columns": ["scale", "pair", "weight cosine", "CKA", *(f"Δ {TASKS[t].short}" for t in tasks)],
               "rows": [[p["scale"], p["pair"], "–" if p["cosine"] is None else f"{p['cosine']:.3f}",
                         "–" if p["cka"] is None else f"{p['cka']:.3f}",
                         *(f"{p['change'][t]:+.3f}" if t in p["change"] else "–" for t in tasks)] for p in points]}
    if not tasks:
        f.note = "no data: no scored two-language merges with their unmerged models"
        return f
    fig = new_figure(1.0 + 3.0 * len(PREDICTORS), 0.6 + 2.4 * len(tasks))
    axes = fig.subplots(len(tasks), len(PREDICTORS), squeeze=False)
    for i, task in enumerate(tasks):
        for j, (key, label) in enumerate(PREDICTORS.items()):
            ax = axes[i, j]
            for k, scale in enumerate(s for s in SCALES if any(p["scale"] == s for p in points)):
                pts = [(p[key], p["change"][task], p["pair"]) for p in points
                       if p["scale"] == scale and p[key] is not None and task in p["change"]]
                if pts:
                    ax.scatter([q[0] for q in pts], [q[1] for q in pts], s=16, color=f"C{k}", label=scale)
                    for x, y, name in pts:
                        ax.annotate(name, (x, y), fontsize=5)
            ax.axhline(0, color="grey", lw=0.6)
            ax.set_title(f"{TASKS[task].short}: {_rho_text(*correlation(points, key, task))}", fontsize=8)
            ax.set_xlabel(label, fontsize=7)
            ax.set_ylabel(f"{TASKS[task].short} merge − unmerged", fontsize=7)
    axes[0, 0].legend(fontsize=6, title="scale", title_fontsize=6)
    f.files.append(save(fig, out_dir, "predictors.png"))
    f.files.append(save(cka_by_layer(points), out_dir, "predictors_cka_layers.png"))
    return f


def cka_by_layer(points: list[dict]):
    """One panel per scale: each pair's CKA at every layer (0 = the embeddings)."""
    from growmerge.report.figures import new_figure

    scales = [s for s in SCALES if any(p["scale"] == s for p in points)]
    fig = new_figure(0.8 + 2.8 * len(scales), 2.6)
    axes = fig.subplots(1, len(scales), squeeze=False, sharey=True)[0]
    for ax, scale in zip(axes, scales):
        for p in points:
            if p["scale"] == scale and p["cka_layers"]:
                ax.plot(range(len(p["cka_layers"])), p["cka_layers"], marker=".", lw=0.8, label=p["pair"])
        ax.set_title(f"CKA by layer · {scale}", fontsize=8)
        ax.set_xlabel("layer (0: embeddings)", fontsize=7)
    axes[0].set_ylabel("linear CKA", fontsize=7)
    axes[0].legend(fontsize=5, ncol=2)
    return fig


def finding_predictors(view: StudyView):
    """Per predictor, on LA (else the first task): ✓ if ρ > 0 with p < 0.05, ✗ if ρ < 0 with p < 0.05."""
    from growmerge.report.findings import FAILS, HOLDS, INCONCLUSIVE, Claim

    points = pair_points(view)
    if points is None:
        return None
    task = "la" if "la" in view.tasks else (view.tasks[0] if view.tasks else None)
    if task is None:
        return [Claim(INCONCLUSIVE, "no scores")]
    claims = []
    for key in PREDICTORS:
        rho, p, n = correlation(points, key, task)
        significant = not math.isnan(p) and p < ALPHA
        status = INCONCLUSIVE if not significant else HOLDS if rho > 0 else FAILS
        claims.append(Claim(status, f"{TASKS[task].short} score change vs {key}: {_rho_text(rho, p, n)}"))
    return claims
