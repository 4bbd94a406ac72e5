"""The report's figures (matplotlib, Agg, small and fast). Each function returns a ``Figure`` entry:
the PNG files it wrote, or a visible note saying which data was missing — never an exception."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from growmerge.report.view import SETUP_ORDER, StudyView, method_sort_key
from growmerge.evaluate.controls import UNIGRAM
from growmerge.evaluate.tasks import TASKS
from growmerge.names import DEPTH_SCALE, ENGLISH, SCALES, SCRATCH_SCALE

DPI = 100


@dataclass
class Figure:
    key: str
    title: str
    caption: str
    files: list[str] = field(default_factory=list)
    note: str | None = None
    table: dict | None = None  # {"columns": [...], "rows": [[...]]} shown under the figure


def new_figure(width: float, height: float):
    from matplotlib.figure import Figure as MplFigure  # no pyplot: no global state, Agg canvas

    return MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig, out_dir: Path, name: str) -> str:
    fig.savefig(out_dir / name, dpi=DPI)
    return name


CONTROL_LABEL = "unigram control"


def grouped_bars(ax, groups: list[str], series: dict[str, list[float | None]],
                 colours: dict[str, str] | None = None) -> None:
    """Bars per group, one colour per series (`colours` by label, else the cycle; the control grey and
    hatched); missing values leave a gap."""
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (label, values) in enumerate(series.items()):
        vals = [np.nan if v is None else v for v in values]
        style = {"color": "0.75", "hatch": "//", "edgecolor": "0.4"} if label == CONTROL_LABEL else \
            {"color": colours[label]} if colours and label in colours else {}
        ax.bar(x + (i - (len(series) - 1) / 2) * width, vals, width, label=label, **style)
    ax.set_xticks(x, groups)


def legend_of_all(axes, **kwargs) -> None:
    """One legend with every series of every panel (a panel may lack some, e.g. IP has no control)."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    axes[0].legend(list(seen.values()), list(seen), **kwargs)


# ---------------------------------------------------------------------------------------------
def fig_setups(view: StudyView, out_dir: Path) -> Figure:
    f = Figure("fig2", "Scaling setups per language and benchmark (Fig. 2 analog)",
               "Final scores of 1×, 1× cloned, 2× and the multilingual runs, the English bases (the models "
               "before adaptation) and the off-the-shelf SmolLM2 reference. Group 'en': each per-language "
               "setup's English score averaged over its runs (forgetting); the bases are shown there too. "
               "LA and FK: the last bar of each group is the unigram control (add-0.5 unigram model of the "
               "language's training tokens, same pairs).")
    langs = view.languages + [ENGLISH]
    panels = []
    for task in view.tasks:
        series = {}
        for setup in SETUP_ORDER:
            values = []
            for lang in langs:
                if lang == ENGLISH and setup in SCALES:
                    cs = [c for r in view.languages if (c := view.setup_cell(setup, ENGLISH, task, run_lang=r))]
                    values.append(float(np.mean([c.value for c in cs])) if cs else None)
                else:
                    c = view.setup_cell(setup, lang, task)
                    values.append(c.value if c else None)
            if any(v is not None for v in values):
                series[setup] = values
        if series and TASKS[task].headline == "accuracy":  # the control beside every LA and FK group
            control = [c.value if (c := view.control_cell(lang, task)) else None for lang in langs]
            if any(v is not None for v in control):
                series[CONTROL_LABEL] = control
        if series:
            panels.append((task, series))
    # Drop language groups with no bar in any panel (e.g. no English scores at all).
    keep = [i for i in range(len(langs)) if any(vals[i] is not None for _, ser in panels for vals in ser.values())]
    langs = [langs[i] for i in keep]
    panels = [(t, {k: [v[i] for i in keep] for k, v in ser.items()}) for t, ser in panels]
    if not panels:
        f.note = "no data: no final scores of the scaling setups in the results"
        return f
    fig = new_figure(1.2 + 0.9 * len(langs), 2.4 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (task, series) in zip(axes, panels):
        grouped_bars(ax, langs, series)
        ax.set_ylabel(TASKS[task].label)
    legend_of_all(axes, fontsize=6, ncol=5, loc="lower left", bbox_to_anchor=(0, 1.02))
    f.files.append(save(fig, out_dir, "fig2_setups.png"))
    return f


def fig_compute_matched(view: StudyView, out_dir: Path) -> Figure:
    pairs, excluded = view.matched
    f = Figure("fig3", "Compute-matched differences (Fig. 3 analog)",
               "Score of the costlier setup at the checkpoint closest in cumulative FLOPs minus the cheaper "
               "setup's final score, per benchmark; 'en' collects every run's English score (forgetting: "
               "above 0 means the costlier setup forgot less).")
    f.table = {"columns": ["language", "cheaper (final)", "costlier (matched step)", "FLOP gap %", "note"],
               "rows": [[p.lang, f"{p.cheaper_setup} ({p.cheaper_flops:.3g})",
                         f"{p.costlier_setup} step {p.costlier_step} ({p.costlier_flops:.3g})",
                         f"{p.gap_pct:+.2f}", ""] for p in pairs]
               + [[e.lang, e.setup_a, e.setup_b, "", "excluded: " + e.reason] for e in excluded]}
    rows = view.differences
    if not rows:
        f.note = ("no data: no compute-matched pairs with scores at both checkpoints"
                  + (f" ({len(pairs)} pairs, {len(excluded)} excluded)" if pairs or excluded else ""))
        return f
    labels = sorted({r["pair"] for r in rows})
    langs = sorted({r["lang"] for r in rows} - {ENGLISH}) + [ENGLISH]
    fig = new_figure(1.5 + 3.0 * len(labels), 2.8)
    axes = fig.subplots(1, len(labels), squeeze=False, sharey=True)[0]
    rng = np.random.default_rng(0)  # jitter only, for readability
    for ax, label in zip(axes, labels):
        for task, spec in TASKS.items():
            pts = [(langs.index(r["lang"]), r["diff"]) for r in rows if r["pair"] == label and r["task"] == task]
            if pts:
                xs, ys = zip(*pts)
                ax.scatter(np.array(xs) + rng.uniform(-0.15, 0.15, len(xs)), ys, marker=spec.marker, s=14,
                           label=spec.label)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(langs)), langs)
        ax.set_title(label, fontsize=9)
    axes[0].set_ylabel("costlier − cheaper")
    axes[0].legend(fontsize=6)
    f.files.append(save(fig, out_dir, "fig3_compute_matched.png"))
    return f


def fig_pairwise(view: StudyView, out_dir: Path) -> Figure:
    rows = [r for r in view.merge_rows if r["k"] == 2]
    methods = sorted({r["method"] for r in rows}, key=method_sort_key)
    method = methods[0] if methods else None  # linear when it ran: the paper's best method
    f = Figure("fig4", "Pairwise merges (Fig. 4 analog)",
               f"Method {method}: cell (row, column) = score on the row's language of the merge of the row's "
               "and the column's language; the diagonal is the unmerged model of the same scale.")
    langs = view.languages
    scales = [s for s in SCALES if any(r["scale"] == s and r["method"] == method for r in rows)]
    if not scales or not langs:
        f.note = "no data: no scored two-language merges"
        return f
    for scale in scales:
        tasks = [t for t in view.tasks if any(r["task"] == t and r["scale"] == scale for r in rows)]
        fig = new_figure(0.6 + 2.6 * len(tasks), 2.6)
        axes = fig.subplots(1, len(tasks), squeeze=False)[0]
        for ax, task in zip(axes, tasks):
            grid = np.full((len(langs), len(langs)), np.nan)
            for i, lang in enumerate(langs):
                c = view.setup_cell(scale, lang, task)
                grid[i, i] = c.value if c else np.nan
            for r in rows:
                if r["scale"] == scale and r["task"] == task and r["method"] == method:
                    other = next(x for x in r["languages"] if x != r["lang"])
                    if r["lang"] in langs and other in langs:
                        grid[langs.index(r["lang"]), langs.index(other)] = r["cell"].value
            im = ax.imshow(grid, cmap="viridis")
            for (i, j), v in np.ndenumerate(grid):
                if not np.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w")
            ax.set_xticks(range(len(langs)), langs)
            ax.set_yticks(range(len(langs)), langs)
            ax.set_title(f"{TASKS[task].label} · {scale}", fontsize=8)
            fig.colorbar(im, ax=ax, shrink=0.7)
        f.files.append(save(fig, out_dir, f"fig4_pairwise_{scale}.png"))
    return f


def fig_methods(view: StudyView, out_dir: Path) -> Figure:
    rows = view.merge_rows
    f = Figure("fig5", "Merge methods, scales and number of languages (Fig. 5 analog)",
               "Left: mean score of every merge (over its languages) per method and scale. Right: mean score "
               "by number of merged languages, per method (all scales).")
    if not rows:
        f.note = "no data: no scored merges"
        return f
    tasks = [t for t in view.tasks if any(r["task"] == t for r in rows)]
    methods = sorted({r["method"] for r in rows}, key=method_sort_key)
    scales = [s for s in SCALES if any(r["scale"] == s for r in rows)]
    ks = sorted({r["k"] for r in rows})

    def mean(sel):
        vals = [r["cell"].value for r in sel]
        return float(np.mean(vals)) if vals else None

    fig = new_figure(1.0 + 2.4 * len(tasks), 4.6)
    axes = fig.subplots(2, len(tasks), squeeze=False)
    for col, task in enumerate(tasks):
        sel = [r for r in rows if r["task"] == task]
        grouped_bars(axes[0, col], methods, {s: [mean([r for r in sel if r["method"] == m and r["scale"] == s])
                                                 for m in methods] for s in scales})
        axes[0, col].tick_params(axis="x", labelsize=6, rotation=30)
        axes[0, col].set_title(TASKS[task].label, fontsize=8)
        for m in methods:
            ys = [mean([r for r in sel if r["method"] == m and r["k"] == k]) for k in ks]
            axes[1, col].plot(ks, [np.nan if y is None else y for y in ys], marker="o", label=m)
        axes[1, col].set_xticks(ks)
        axes[1, col].set_xlabel("merged languages")
    axes[0, 0].legend(fontsize=6, title="scale", title_fontsize=6)
    axes[1, 0].legend(fontsize=6)
    f.files.append(save(fig, out_dir, "fig5_methods.png"))
    return f


def fig_training(view: StudyView, out_dir: Path) -> Figure:
    rows = view.results.query("SELECT model, step, tokens, flops, loss FROM train_log ORDER BY model, step")
    f = Figure("curves", "Training curves", "Training loss against tokens seen and against cumulative FLOPs (colour: language, line style: setup).")
    curves: dict[str, list[dict]] = {}
    for r in rows:
        if r["loss"] is not None:
            curves.setdefault(r["model"], []).append(r)
    if not curves:
        f.note = "no data: no training log in the results"
        return f
    fig = new_figure(9, 3.4)
    axes = fig.subplots(1, 2)
    styles = {"1x": "-", "1x_cloned": "--", "2x": ":", "1x_multi": "-.", "1x_cloned_multi": "-.", "2x_multi": "-."}
    colours = {}
    for model, pts in curves.items():
        meta = view.models.get(model, {})
        # Colour by language set, line style by setup: a run's siblings are easy to find.
        key = "+".join(meta.get("languages") or [model])
        colour = colours.setdefault(key, f"C{len(colours) % 10}")
        for ax, k in zip(axes, ("tokens", "flops")):
            xs = [p[k] for p in pts if p[k] is not None]
            if len(xs) == len(pts):
                ax.plot(xs, [p["loss"] for p in pts], lw=0.8, label=model, color=colour,
                        ls=styles.get(meta.get("setup"), "-"))
    for ax, label in zip(axes, ("tokens", "cumulative FLOPs")):
        ax.set_xlabel(label)
        ax.set_ylabel("loss")
        lo, hi = ax.get_xlim()
        if lo > 0 and hi / lo > 100:  # seed and base runs dwarf the adaptation runs
            ax.set_xscale("log")
    axes[1].legend(fontsize=5, ncol=2 if len(curves) > 12 else 1, loc="upper left", bbox_to_anchor=(1.01, 1))
    f.files.append(save(fig, out_dir, "training_curves.png"))
    return f


def vector_summary(v: dict) -> tuple[list[str], list[list[float]], dict[str, float]]:
    """Languages, cosine matrix and norms from ``{"languages", "cosine", "norms": {lang: x}}`` or from
    the merge stage's full analysis ``{"languages", "overall": {"cosine", "norm": [...]}, ...}``."""
    langs = v["languages"]
    summary = v.get("overall", v)
    norms = summary.get("norms", summary.get("norm", {}))
    if isinstance(norms, list):
        norms = dict(zip(langs, norms))
    return langs, summary["cosine"], norms


def fig_vectors(run_dir: Path, out_dir: Path) -> list[Figure]:
    """Language-vector cosines written by the merge stage (``analysis/vectors_<scale>.{png,json}``)."""
    out = []
    for scale in SCALES:
        png = run_dir / "analysis" / f"vectors_{scale}.png"
        data = run_dir / "analysis" / f"vectors_{scale}.json"
        if not png.is_file() and not data.is_file():
            continue
        f = Figure(f"vectors_{scale}", f"Language vectors at scale {scale}",
                   "Cosine similarity of language vectors (fine-tuned minus the English base of the same scale).")
        if png.is_file():
            shutil.copyfile(png, out_dir / png.name)
            f.files.append(png.name)
        if data.is_file():
            try:
                langs, cos, norms = vector_summary(json.loads(data.read_text(encoding="utf-8")))
                f.table = {"columns": ["", *langs, "norm"],
                           "rows": [[a, *(f"{x:.3f}" for x in cos[i]), f"{norms[a]:.4g}" if a in norms else ""]
                                    for i, a in enumerate(langs)]}
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                f.note = f"{data.name} is not in the expected format ({type(exc).__name__}: {exc})"
        out.append(f)
    if not out:
        out.append(Figure("vectors", "Language vectors", "", note="no data: no analysis/vectors_<scale>.png or .json"))
    return out


def fig_la_validity(view: StudyView, out_dir: Path) -> Figure:
    """A table: each LA set's judged validity beside its accuracy, and whether the findings use it."""
    from growmerge.report.validity import classify

    f = Figure("la-validity", "LA sets: validity and accuracy",
               "Validity = share of a set's \"bad\" sentences judged really ungrammatical (growmerge pairs audit), "
               "with the number of judged pairs; accuracy = mean over every model scored on the set.")
    sets = classify(view.results)
    status = {id(s): why for why, group in (("used", sets.used), (f"left out (< {sets.threshold:g})", sets.left_out),
                                            ("used, validity not measured", sets.unmeasured)) for s in group}
    rows = [[s["lang"], s["dataset"], s["pairs"], "–" if s["validity"] is None else f"{s['validity']:.2f}",
             s["judged"] or "–", "–" if s["accuracy"] is None else f"{s['accuracy']:.3f}", s["models"], status[id(s)]]
            for group in (sets.used, sets.left_out, sets.unmeasured) for s in group]
    rows.sort(key=lambda r: (r[0], r[1]))
    if not rows:
        f.note = "no data: no LA scores in the results"
    f.table = {"columns": ["language", "set", "pairs", "validity", "judged", "accuracy", "models", "findings"],
               "rows": rows}
    return f


# ---------------------------------------------------------------------------------------------
# Controls: the unigram model and the model before adaptation beside every LA and FK score
# ---------------------------------------------------------------------------------------------
def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _agree(view: StudyView, model: str | None, lang: str, task: str) -> str:
    a = view.agreement(model, lang, task)
    return "–" if a is None else f"{a[0]:.2f} ({a[1]})"


def control_rows(view: StudyView, task: str) -> list[list]:
    """One row per language and adapted setup: its score, the score before adaptation, the unigram
    control's, and the share of pairs on which it decides as the control."""
    rows = []
    for lang in view.languages + [ENGLISH]:
        control = view.control_cell(lang, task)
        if lang == ENGLISH:  # the English bases themselves (adapted models on English: forgetting, Fig. 2)
            for setup in ("base_1x", "base_2x"):
                model = view.setup_model(setup)
                cell = view.final(model, lang, task)
                if cell is not None:
                    rows.append([lang, setup, model, _fmt(cell.value), "–", "–", _fmt(control.value if control else None),
                                 _agree(view, model, lang, task), "–"])
            continue
        for setup in SCALES + tuple(f"{s}_multi" for s in SCALES):
            scale = setup.removesuffix("_multi")
            model = view.setup_model(setup, lang)
            cell = view.final(model, lang, task)
            if cell is None:
                continue
            base, base_label = view.before_adaptation(scale)
            before = view.final(base, lang, task)
            rows.append([lang, setup, model, _fmt(cell.value), base_label, _fmt(before.value if before else None),
                         _fmt(control.value if control else None), _agree(view, model, lang, task),
                         _agree(view, base, lang, task)])
    return rows


def fig_controls(view: StudyView, out_dir: Path) -> list[Figure]:
    """A table per minimal-pair task: every adapted model beside its base and the unigram control."""
    out = []
    for task in [t for t in view.tasks if TASKS[t].headline == "accuracy"]:
        short = TASKS[task].short
        f = Figure(f"controls-{task}", f"{short} with its controls",
                   f"{short} accuracy of every adapted model, of the model before adaptation (the English base of "
                   "its scale) and of the unigram control (add-0.5 unigram model of the language's training "
                   "tokens, no context, same pairs). 'agrees': share of pairs on which the model (or the base) "
                   "prefers the same sentence as the unigram control, with the pairs compared. A score near the "
                   "control's with high agreement measures word frequency, not the task.")
        rows = control_rows(view, task)
        if not any(r[6] != "–" for r in rows):
            f.note = "no data: no unigram control scores in the results (the control stage writes them)"
        f.table = {"columns": ["language", "setup", "model", short, "before adaptation", short + " before",
                               "unigram control", "agrees with control", "base agrees with control"], "rows": rows}
        out.append(f)
    return out


def fig_phenomena(view: StudyView, out_dir: Path) -> Figure:
    """LA per phenomenon (or feature) of each language's set, the controls beside each."""
    f = Figure("la-phenomena", "LA by phenomenon, with the controls",
               "LA accuracy per phenomenon (generated sets: the rule that broke the sentence) of the 1×, 1× cloned "
               "and 2× models, the English bases they were adapted from (before adaptation) and the unigram "
               "control, with the number of pairs; dotted line: chance.")
    # Target languages: the adapted models and the bases they started from; English: the bases.
    ran = [s for s in SCALES if any(m["setup"] == s for m in view.models.values())]  # opt-in arms only if run
    columns = [*ran, "base_1x", "base_2x", CONTROL_LABEL]
    rows, panels = [], []
    for lang in view.languages + [ENGLISH]:
        models = {s: view.setup_model(s, lang) for s in columns[:-1] if lang != ENGLISH or s.startswith("base")}
        scores = {s: view.phenomena(m, lang, "la") for s, m in models.items()}
        scores[CONTROL_LABEL] = view.phenomena(UNIGRAM, lang, "la")
        keys = sorted(set().union(*scores.values()))
        if not keys:
            continue
        series = {s: [d.get(k, (None, 0))[0] for k in keys] for s, d in scores.items() if d}
        panels.append((lang, keys, series))
        for k in keys:
            n = max(d.get(k, (None, 0))[1] for d in scores.values())
            rows.append([lang, k[0], k[1], n, *(_fmt(scores.get(s, {}).get(k, (None, 0))[0]) for s in columns)])
    f.table = {"columns": ["language", "set", "phenomenon", "pairs", *columns], "rows": rows}
    if not panels:
        f.note = "no data: no LA scores per phenomenon in the results"
        return f
    width = max(len(keys) for _, keys, _ in panels)
    fig = new_figure(2.0 + 0.7 * width, 2.2 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    colours = {label: f"C{i}" for i, label in enumerate(columns)}  # one colour per model in every panel
    for ax, (lang, keys, series) in zip(axes, panels):
        grouped_bars(ax, [k[1][:18] for k in keys], series, colours)
        ax.axhline(0.5, color="grey", lw=0.6, ls=":")
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"LA {lang}")
        ax.tick_params(axis="x", labelsize=6, rotation=20)
    legend_of_all(axes, fontsize=6, ncol=6, loc="lower left", bbox_to_anchor=(0, 1.02))
    f.files.append(save(fig, out_dir, "la_phenomena.png"))
    return f


def final_losses(view: StudyView, last: int = 5) -> dict[str, tuple[float, float, int]]:
    """{model: (last logged loss, mean of the last `last` logged losses, step)} from the training log."""
    rows = view.results.query("SELECT model, step, loss FROM train_log WHERE loss IS NOT NULL ORDER BY model, step")
    curves: dict[str, list[dict]] = {}
    for r in rows:
        curves.setdefault(r["model"], []).append(r)
    return {m: (pts[-1]["loss"], float(np.mean([p["loss"] for p in pts[-last:]])), pts[-1]["step"])
            for m, pts in curves.items()}


def fig_loss_entropy(view: StudyView, out_dir: Path) -> Figure:
    """Each trained model's final training loss beside the unigram entropy of its training data."""
    from growmerge.evaluate.controls import entropy, read_counts

    f = Figure("loss-entropy", "Final training loss vs the data's unigram entropy",
               "Training loss (nats/token; the last logged step, and the mean of the last 5 logged steps) of every "
               "trained model beside the entropy of the add-0.5 unigram distribution of its languages' training "
               "tokens (pooled; replay streams left out): the loss of a model that learned only token frequencies. "
               "A loss near the entropy means a model far from converged.")
    losses = final_losses(view)
    control = view.models.get(UNIGRAM)
    counts = {}
    if control and control.get("path"):
        try:
            counts = read_counts(Path(control["path"]))
        except Exception as exc:  # a missing or unreadable counts file: the losses alone, and why
            f.note = f"no unigram entropies: {exc}"
    elif losses:
        f.note = "no unigram entropies: no unigram control in the results (the control stage writes it)"
    rows = []
    for model, (loss, mean, step) in sorted(losses.items()):
        langs = view.models.get(model, {}).get("languages") or []
        have = [counts[lang] for lang in langs if lang in counts]
        h = entropy(sum(have)) if have and len(have) == len(langs) else None
        rows.append([model, "+".join(langs), step, _fmt(loss), _fmt(mean), _fmt(h),
                     "–" if h is None else f"{mean - h:+.3f}"])
    if not rows:
        f.note = "no data: no training log in the results"
    f.table = {"columns": ["model", "languages", "last step", "final loss", "mean of last 5", "unigram entropy",
                           "loss − entropy"], "rows": rows}
    return f


def fig_arms(view: StudyView, out_dir: Path) -> list[Figure]:
    """Beyond the paper: each scale's unmerged models beside its merges, when an opt-in arm
    (1x_deep, scratch) ran; nothing otherwise (the default report is unchanged)."""
    if not any(m["setup"] in (DEPTH_SCALE, SCRATCH_SCALE) for m in view.models.values()):
        return []
    f = Figure("arms", "Growth arms and from-scratch models: unmerged vs merged",
               "Per scale: mean final score of its per-language models (unmerged) and mean score of its merges "
               "on their languages (merged; every method and subset). 1x_deep = the 1x base deepened "
               "(new layers are identities), scratch = each language trained from random initialisation "
               "with the same budget. Dashed: chance (0.5) for the minimal-pair tasks.")
    try:
        return [_draw_arms(view, out_dir, f)]
    except Exception as exc:  # a figure must never take the whole report down
        f.note = f"figure failed: {type(exc).__name__}: {exc}"
        return [f]


def _draw_arms(view: StudyView, out_dir: Path, f: Figure) -> Figure:
    rows = view.merge_rows
    scales = [s for s in SCALES if any(m["setup"] == s for m in view.models.values())]
    panels = []
    for task in view.tasks:
        series: dict[str, list[float | None]] = {"unmerged": [], "merged": []}
        for s in scales:
            cells = [c.value for lang in view.languages if (c := view.setup_cell(s, lang, task))]
            series["unmerged"].append(float(np.mean(cells)) if cells else None)
            merged = [r["cell"].value for r in rows if r["scale"] == s and r["task"] == task]
            series["merged"].append(float(np.mean(merged)) if merged else None)
        if any(v is not None for vals in series.values() for v in vals):
            panels.append((task, series))
    if not panels:
        f.note = "no data: no scores of the scales' models or merges"
        return f
    fig = new_figure(1.2 + 0.9 * len(scales), 2.4 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (task, series) in zip(axes, panels):
        grouped_bars(ax, scales, series)
        if task != "ip":
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_ylabel(TASKS[task].label, fontsize=7)
    axes[0].legend(fontsize=6)
    f.table = {"columns": ["task", "scale", "unmerged", "merged"],
               "rows": [[t, s, *(("–" if v is None else f"{v:.3f}") for v in (ser["unmerged"][i], ser["merged"][i]))]
                        for t, ser in panels for i, s in enumerate(scales)]}
    f.files.append(save(fig, out_dir, "arms_unmerged_vs_merged.png"))
    return f


def all_figures(view: StudyView, run_dir: Path, out_dir: Path) -> list[Figure]:
    """Every figure; one that fails on unexpected data becomes a visible note, not a missing report."""
    makers = [fig_setups, fig_controls, fig_phenomena, fig_la_validity, fig_compute_matched, fig_pairwise, fig_methods,
              fig_training, fig_loss_entropy, *beyond_paper_figures()]
    figs = []
    for make in makers:
        try:
            made = make(view, out_dir)
            if made is None:  # a study option beyond the paper that was off
                continue
            figs += made if isinstance(made, list) else [made]
        except Exception as exc:  # a figure must never take the whole report down
            figs.append(Figure(make.__name__, make.__name__, "", note=f"figure failed: {type(exc).__name__}: {exc}"))
    return figs + fig_vectors(run_dir, out_dir) + fig_arms(view, out_dir)


def beyond_paper_figures() -> list:
    """Figures of the study options beyond the paper; each returns None when its option was off."""
    from growmerge.report.predictors import fig_predictors
    from growmerge.report.sweep import fig_density

    return [fig_density, fig_predictors]
