"""A merge-parameter sweep in the report (beyond the paper): score against density per method and
scale, and the findings line "does a higher density stop TIES/DARE-TIES from destroying language
ability?".

A swept merge is named ``merge/<scale>/<method>@density=<value>/<languages>`` (``merge.grid``); merges
of methods that do not take the parameter (linear, ...) are the fixed comparison. Without a sweep in
the run there is no figure and no findings line: the report of a run without one is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from growmerge.evaluate.tasks import TASKS
from growmerge.names import SCALES
from growmerge.report.view import StudyView, method_sort_key

SWEPT = "density"
DESTROYED = ("ties", "dare_ties")  # the paper's two methods that fall to chance on LA
SAFE = ("linear", "task_arithmetic")  # what "not destroyed" is compared with, the first one present
DENSITY_TEXT = ("Beyond the paper: a higher density stops TIES/DARE-TIES from destroying language ability "
                "(density sweep).")


def variant(merge_name: str) -> dict:
    """The swept parameters of a merge from its name merge/<scale>/<label>/<languages> ({} if none)."""
    from growmerge.merge.grid import parse_variant  # here: merge.grid imports torch, the report need not

    parts = merge_name.split("/")
    try:
        return parse_variant(parts[2])[1] if len(parts) == 4 else {}
    except (ValueError, SyntaxError):  # a merge recorded by other means, named otherwise
        return {}


def swept_rows(view: StudyView, param: str = SWEPT) -> list[dict]:
    """The merge rows of swept cells, each with the parameter's value under `param`."""
    out = []
    for r in view.merge_rows:
        values = variant(r["merge"])
        if param in values:
            out.append({**r, param: values[param]})
    return out


def headline_task(view: StudyView) -> str | None:
    """LA (where the paper sees TIES/DARE-TIES collapse), else the first task scored."""
    return "la" if "la" in view.tasks else (view.tasks[0] if view.tasks else None)


def fig_density(view: StudyView, out_dir: Path):
    """Mean merge score against density, per swept method (colour) and scale (panel row), one column
    per task; the unmerged models (dashed) and the first fixed method (dotted) as references."""
    from growmerge.report.figures import Figure, new_figure, save

    rows = swept_rows(view)
    if not rows:
        return None  # no sweep in this run: no figure
    f = Figure("density", "Merge score against density (beyond the paper)",
               "Mean score of every swept merge (over its languages and subsets) at each density, per method; "
               "dashed: the unmerged models on the same languages; dotted: the same subsets merged with "
               "a method without density.")
    tasks = [t for t in view.tasks if any(r["task"] == t for r in rows)]
    scales = [s for s in SCALES if any(r["scale"] == s for r in rows)]
    methods = sorted({r["method"] for r in rows}, key=method_sort_key)
    fixed = [r for r in view.merge_rows if not variant(r["merge"])]
    safe = next((m for m in SAFE if any(r["method"] == m for r in fixed)), None)
    fig = new_figure(1.0 + 2.6 * len(tasks), 0.6 + 2.2 * len(scales))
    axes = fig.subplots(len(scales), len(tasks), squeeze=False)
    table = []
    for i, scale in enumerate(scales):
        for j, task in enumerate(tasks):
            ax = axes[i, j]
            sel = [r for r in rows if r["scale"] == scale and r["task"] == task]
            for k, method in enumerate(methods):
                points = sorted({r[SWEPT] for r in sel if r["method"] == method})
                means = [float(np.mean([r["cell"].value for r in sel if r["method"] == method and r[SWEPT] == d]))
                         for d in points]
                ax.plot(points, means, marker="o", color=f"C{k}", label=method)
                table += [[scale, TASKS[task].short, method, f"{d:g}", f"{m:.3f}",
                           sum(r["method"] == method and r[SWEPT] == d for r in sel)] for d, m in zip(points, means)]
            unmerged = [r["unmerged"].value for r in sel if r["unmerged"] is not None]
            if unmerged:
                ax.axhline(float(np.mean(unmerged)), color="grey", ls="--", lw=0.8, label="unmerged")
            ref = [r["cell"].value for r in fixed if r["method"] == safe and r["scale"] == scale and r["task"] == task]
            if ref:
                ax.axhline(float(np.mean(ref)), color="black", ls=":", lw=0.8, label=safe)
            ax.set_title(f"{TASKS[task].label} · {scale}", fontsize=8)
            ax.set_xlabel(SWEPT, fontsize=7)
    axes[0, 0].legend(fontsize=6)
    f.files.append(save(fig, out_dir, "density.png"))
    f.table = {"columns": ["scale", "task", "method", SWEPT, "mean score", "scores"], "rows": table}
    return f


def finding_density(view: StudyView):
    """Per swept TIES/DARE-TIES: the highest density beats the lowest, and at the highest density the
    method is within 2 points of linear (or task arithmetic) on the same cells. None without a sweep."""
    from growmerge.report.findings import INCONCLUSIVE, Claim, close, greater, paired

    rows = swept_rows(view)
    if not rows:
        return None
    task = headline_task(view)
    name = TASKS[task].short if task else ""
    rows = [r for r in rows if r["task"] == task]
    fixed = {}
    for r in view.merge_rows:
        if r["task"] == task and not variant(r["merge"]):
            fixed.setdefault(r["method"], {})[(r["scale"], r["languages"], r["lang"])] = r["cell"]
    safe = next((m for m in SAFE if m in fixed), None)
    claims = []
    for method in DESTROYED:
        at: dict[float, dict] = {}
        for r in rows:
            if r["method"] == method:
                at.setdefault(r[SWEPT], {})[(r["scale"], r["languages"], r["lang"])] = r["cell"]
        if len(at) < 2:
            claims.append(Claim(INCONCLUSIVE, f"{name} {method}: " + (
                "not merged with a density sweep in this run" if not at else "one density only")))
            continue
        lo, hi = min(at), max(at)
        claims.append(greater(f"{name} {method} density {hi:g} vs {lo:g}",
                              *paired((c, at[lo].get(k)) for k, c in at[hi].items())))
        if safe is None:
            claims.append(Claim(INCONCLUSIVE, f"{name} {method} density {hi:g} vs linear: no linear merges"))
        else:
            claims.append(close(f"{name} {method} density {hi:g} ≈ {safe}",
                                *paired((c, fixed[safe].get(k)) for k, c in at[hi].items())))
    return claims

