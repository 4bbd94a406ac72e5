"""The paper's nine findings, each checked against this run's results by one small function.

Every finding is a list of *claims* (a > b, a not worse than b, a ≈ b) over headline scores (LA and
FK accuracy, IP; means over datasets and, where stated, over languages, with the two sides paired
on the same cells). Noise rule: a difference counts only if |Δ| > max(0.002, 2·SE(Δ)), with SE from
the binomial √(p(1−p)/n) for accuracies and ip_std/√n for IP (0 when n is unknown). Status:
✗ if any claim is contradicted beyond noise, ✓ if every claim holds, otherwise inconclusive
(data missing, or a difference within noise). LA sets whose judged validity (share of "bad"
sentences really ungrammatical) is below the LA task's ``min_validity`` are left out, and said so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from growmerge.report.validity import valid_results
from growmerge.report.view import StudyView
from growmerge.evaluate.tasks import TASKS
from growmerge.ledger import Cell, Results, mean_cell
from growmerge.names import DEPTH_SCALE, ENGLISH, SCRATCH_SCALE

HOLDS, FAILS, INCONCLUSIVE = "✓", "✗", "inconclusive"
FLOOR = 0.002
CLOSE = 0.02  # "within ~2 points"
CHANCE = 0.5
FAMILIES = {
    "north_germanic": {"sv", "swe", "da", "dan", "is", "isl", "fo", "fao", "no", "nb", "nob", "nn", "nno"},
    "finnic": {"et", "ekk", "est", "fi", "fin"},
    "iranian": {"fa", "fas", "pes"},
    "west_germanic": {"en", "eng", "de", "deu", "nl", "nld"},
}
PERSIAN = FAMILIES["iranian"]


def family(lang: str) -> str:
    return next((name for name, codes in FAMILIES.items() if lang in codes), lang)


# ---------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------
@dataclass
class Claim:
    status: str  # HOLDS, FAILS, INCONCLUSIVE
    text: str
    near_control: bool = False  # a score it compares is within noise of the unigram control's
    # What the claim compared, for intervals over seeds (report/seeds.py): the difference a − b with its
    # paired per-cell differences, and the comparison ("greater", "not_worse", "close" within tol).
    delta: Cell | None = None
    test: str = ""
    tol: float = 0.0


def margin(d: Cell) -> float:
    return max(FLOOR, 2 * d.se)


ZERO = Cell(0.0)  # the reference of claims about a mean difference


def _fmt(a: Cell, b: Cell) -> str:
    d = a - b
    if b is ZERO:
        return f"mean Δ {a.value:+.3f} (noise ±{margin(d):.3f})"
    return f"{a.value:.3f} vs {b.value:.3f}, Δ {d.value:+.3f} (noise ±{margin(d):.3f})"


def near_control(c: Cell | None) -> bool:
    """A score within noise of its unigram control's (same rule as every claim): it may measure word
    frequency rather than what the task asks."""
    if c is None or c.control is None:
        return False
    d = c - c.control
    return abs(d.value) <= margin(d)


def controlled(claim: Claim, a: Cell | None, b: Cell | None) -> Claim:
    """Mark `claim` when a score it compares is within noise of the unigram control (the status stays)."""
    near = [c for c in (a, b) if near_control(c)]
    if near:
        claim.near_control = True
        claim.text += " [≈ unigram control: " + ", ".join(f"{c.value:.3f} vs {c.control.value:.3f}" for c in near) + "]"
    return claim


def greater(what: str, a: Cell | None, b: Cell | None) -> Claim:
    """a > b beyond noise."""
    if a is None or b is None:
        return Claim(INCONCLUSIVE, f"{what}: no data")
    d = a - b
    status = HOLDS if d.value > margin(d) else FAILS if -d.value > margin(d) else INCONCLUSIVE
    return controlled(Claim(status, f"{what}: {_fmt(a, b)}", delta=d, test="greater"), a, b)


def not_worse(what: str, a: Cell | None, b: Cell | None) -> Claim:
    """a ≥ b: holds when measured so, fails if b is better beyond noise, else (b slightly better,
    within noise) inconclusive — a result in the wrong direction is never counted as support."""
    if a is None or b is None:
        return Claim(INCONCLUSIVE, f"{what}: no data")
    d = a - b
    status = HOLDS if d.value > -1e-9 else FAILS if -d.value > margin(d) else INCONCLUSIVE  # a tie is ≥
    return controlled(Claim(status, f"{what}: {_fmt(a, b)}", delta=d, test="not_worse"), a, b)


def close(what: str, a: Cell | None, b: Cell | None, tol: float = CLOSE) -> Claim:
    """|a − b| ≤ tol; fails only if the difference exceeds tol beyond noise."""
    if a is None or b is None:
        return Claim(INCONCLUSIVE, f"{what}: no data")
    d = a - b
    gap = abs(d.value)
    status = HOLDS if gap <= tol else FAILS if gap - tol > margin(d) else INCONCLUSIVE
    return controlled(Claim(status, f"{what} (within {tol:g}): {_fmt(a, b)}", delta=d, test="close", tol=tol), a, b)


def paired(pairs: Iterable[tuple[Cell | None, Cell | None]]) -> tuple[Cell | None, Cell | None]:
    """Means of both sides over the cells where both are present."""
    both = [(a, b) for a, b in pairs if a is not None and b is not None]
    return mean_cell(a for a, _ in both), mean_cell(b for _, b in both)


def control_note(claims: list[Claim]) -> str:
    """The findings table's control column: how many of a finding's claims rest on scores within
    noise of the unigram control ('' if none)."""
    near = sum(c.near_control for c in claims)
    return f"{near} of {len(claims)} claims ≈ unigram" if near else ""


def verdict(claims: list[Claim]) -> tuple[str, str]:
    statuses = {c.status for c in claims}
    status = FAILS if FAILS in statuses else HOLDS if statuses == {HOLDS} else INCONCLUSIVE
    mark = {HOLDS: "✓", FAILS: "✗", INCONCLUSIVE: "?"}
    return status, "; ".join(f"{c.text} {mark[c.status]}" for c in claims) or "no data"


# ---------------------------------------------------------------------------------------------
# The nine findings
# ---------------------------------------------------------------------------------------------
def by_setup(view: StudyView, task: str, a: str, b: str, on: str | None = None) -> tuple[Cell | None, Cell | None]:
    """Setups a and b paired over target languages, scored on each language (or on `on`)."""
    return paired((view.setup_cell(a, on or lang, task, run_lang=lang), view.setup_cell(b, on or lang, task, run_lang=lang))
                  for lang in view.languages)


def reference_models(view: StudyView) -> list[str]:
    """Every off-the-shelf reference of the run (eval.off_the_shelf: any number)."""
    return sorted(name for name, m in view.models.items() if m["kind"] == "reference")


def finding_1(view: StudyView) -> list[Claim]:
    """1x beats every reference: checked against the strongest, the one 1x leads by least on the same
    cells (each reference paired with 1x over the languages both are scored on); the others are listed."""
    claims = []
    for t in ("la", "ip"):
        sides = {ref: paired((view.setup_cell("1x", lang, t), view.final(ref, lang, t)) for lang in view.languages)
                 for ref in reference_models(view)}
        measured = {ref: (a, b) for ref, (a, b) in sides.items() if a is not None and b is not None}
        if not measured:
            claims.append(greater(f"{TASKS[t].short} 1x vs the references", None, None))
            continue
        strongest = min(measured, key=lambda ref: (measured[ref][0] - measured[ref][1]).value)
        others = ", ".join(f"{ref} {b.value:.3f}" for ref, (_, b) in sorted(measured.items()) if ref != strongest)
        what = f"{TASKS[t].short} 1x vs the strongest of {len(measured)} reference(s), {strongest}"
        claims.append(greater(what + (f" (others: {others})" if others else ""), *measured[strongest]))
    return claims


def finding_2(view: StudyView) -> list[Claim]:
    claims = []
    for t in view.tasks or ["la"]:
        n = TASKS[t].short
        claims += [not_worse(f"{n} 2x ≥ 1x_cloned", *by_setup(view, t, "2x", "1x_cloned")),
                   not_worse(f"{n} 1x_cloned ≥ 1x", *by_setup(view, t, "1x_cloned", "1x")),
                   close(f"{n} 1x_cloned ≈ 2x", *by_setup(view, t, "1x_cloned", "2x"))]
    return claims


def finding_3(view: StudyView) -> list[Claim]:
    return [greater(f"English {TASKS[t].short} {s} vs 1x", *by_setup(view, t, s, "1x", on=ENGLISH))
            for t in ("la", "ip") for s in ("1x_cloned", "2x")]


def _diff_mean(rows: list[dict], sign: Callable[[dict], int] = lambda r: 1) -> Cell | None:
    return mean_cell(Cell(sign(r) * r["diff"], r["se"]) for r in rows)


def finding_4(view: StudyView) -> list[Claim]:
    rows = view.differences

    def target(label):
        return [r for r in rows if r["pair"] == label and r["lang"] == r["run_lang"]]

    cloned = _diff_mean(target("1x vs 1x_cloned"))
    # Orient as 1x minus 2x whichever run was the cheaper one.
    beats = _diff_mean(target("1x vs 2x"), lambda r: -1 if r["cheaper_setup"] == "1x" else 1)
    english = _diff_mean([r for r in rows if r["lang"] == ENGLISH])
    pairs, excluded = view.matched
    return [
        close(f"1x_cloned − 1x at equal compute, {len(target('1x vs 1x_cloned'))} scores", cloned, ZERO),
        greater(f"1x − 2x at equal compute, {len(target('1x vs 2x'))} scores", beats, ZERO),
        greater(f"English: costlier − cheaper at equal compute, {sum(r['lang'] == ENGLISH for r in rows)} scores "
                f"({len(pairs)} pairs, {len(excluded)} excluded)", english, ZERO),
    ]


def _every_below(what: str, rows: list[dict], other: str) -> Claim:
    diffs = [(r, r[other] - r["cell"]) for r in rows if r[other] is not None]
    if not diffs:
        return Claim(INCONCLUSIVE, f"every merge below the {what}: no data")
    above = [(r, d) for r, d in diffs if -d.value > margin(d)]
    below = sum(d.value > margin(d) for _, d in diffs)
    status = FAILS if above else HOLDS if below == len(diffs) else INCONCLUSIVE
    text = f"every merge below the {what}: {below}/{len(diffs)} scores below beyond noise, {len(above)} above"
    if above:
        r, d = max(above, key=lambda x: -x[1].value)
        text += f" (most: {r['merge']} on {r['lang']} {TASKS[r['task']].short} {-d.value:+.3f})"
    return Claim(status, text)


def finding_5(view: StudyView) -> list[Claim]:
    rows = view.merge_rows
    return [_every_below("unmerged model", rows, "unmerged"), _every_below("joint multilingual model", rows, "multi")]


def _retention(rows: list[dict]) -> Cell | None:
    """Mean score change of merges against the unmerged model of the same scale and language."""
    return mean_cell(r["cell"] - r["unmerged"] for r in rows if r["unmerged"] is not None)


def finding_6(view: StudyView) -> list[Claim]:
    pairs = [r for r in view.merge_rows if r["k"] == 2]
    related = [r for r in pairs if family(r["languages"][0]) == family(r["languages"][1])]
    unrelated = [r for r in pairs if family(r["languages"][0]) != family(r["languages"][1])]
    persian = [r for r in pairs if PERSIAN & set(r["languages"])]
    others = [r for r in pairs if not PERSIAN & set(r["languages"])]
    claims = [greater("pairwise merges, score change vs unmerged: same family vs different family",
                      _retention(related), _retention(unrelated)),
              greater("pairs without Persian vs pairs with Persian", _retention(others), _retention(persian))]
    by_pair = {}
    for r in pairs:
        by_pair.setdefault("+".join(r["languages"]), []).append(r)
    ranked = sorted((c.value, name) for name, rs in by_pair.items() if (c := _retention(rs)) is not None)
    if ranked:
        worst_has_persian = bool(PERSIAN & set(ranked[0][1].split("+")))
        claims.append(Claim(INCONCLUSIVE if not persian else HOLDS if worst_has_persian else FAILS,
                            f"best pair {ranked[-1][1]} ({ranked[-1][0]:+.3f}), worst {ranked[0][1]} "
                            f"({ranked[0][0]:+.3f})" + (", worst pair has Persian" if persian else "")))
    return claims


METHOD_RANK = (("linear", "task_arithmetic"), ("multislerp",), ("ties",), ("dare_ties",))
METHOD_NAMES = {"linear": "linear", "task_arithmetic": "task arithmetic", "multislerp": "MultiSlerp",
                "ties": "TIES", "dare_ties": "DARE-TIES"}


def finding_7(view: StudyView) -> list[Claim]:
    """The paper's ranking, checked between consecutive ranks among the methods this run merged with,
    on LA, paired on the same (scale, languages, evaluated language)."""
    cells: dict[str, dict] = {}
    for r in view.merge_rows:
        if r["task"] == "la":
            cells.setdefault(r["method"], {}).setdefault((r["scale"], r["languages"], r["lang"]), []).append(r["cell"])
    # A method merged with a parameter sweep (report/sweep.py) has one cell per value: pooled here.
    cells = {m: {k: cs[0] if len(cs) == 1 else mean_cell(cs) for k, cs in by_key.items()}
             for m, by_key in cells.items()}
    claims = []
    if all(m in cells for m in METHOD_RANK[0]):
        claims.append(close("LA linear ≈ task arithmetic", *paired(
            (c, cells["task_arithmetic"].get(k)) for k, c in cells["linear"].items())))
    ranks = []  # (label, {key: cell}) per rank present; linear and task arithmetic pooled
    for rank in METHOD_RANK:
        present = [m for m in rank if m in cells]
        if present:
            keys = set().union(*(cells[m] for m in present))
            ranks.append(("/".join(METHOD_NAMES[m] for m in present),
                          {k: mean_cell(cells[m][k] for m in present if k in cells[m]) for k in keys}))
    for (hi, a), (lo, b) in zip(ranks, ranks[1:]):
        claims.append(greater(f"LA {hi} > {lo}", *paired((c, b.get(k)) for k, c in a.items())))
    if "dare_ties" in cells:
        claims.append(close("LA DARE-TIES ≈ chance", mean_cell(cells["dare_ties"].values()), Cell(CHANCE)))
    missing = [METHOD_NAMES[m] for rank in METHOD_RANK for m in rank if m not in cells]
    if missing:
        claims.append(Claim(INCONCLUSIVE, f"not merged in this run: {', '.join(missing)}"))
    return claims


def finding_8(view: StudyView) -> list[Claim]:
    rows = view.merge_rows
    return [greater("score change vs unmerged: 2-language merges vs merges of 3+",
                    _retention([r for r in rows if r["k"] == 2]), _retention([r for r in rows if r["k"] > 2]))]


def finding_9(view: StudyView) -> list[Claim]:
    from growmerge.report.sweep import variant

    def method(r):  # a swept cell is compared with the same parameter values at 1x
        return r["method"], tuple(sorted(variant(r["merge"]).items()))

    one = {(method(r), r["languages"], r["lang"], r["task"]): r["cell"] for r in view.merge_rows if r["scale"] == "1x"}
    claims, gains = [], {}
    for t in view.tasks or ["ip"]:
        up, base = paired((r["cell"], one.get((method(r), r["languages"], r["lang"], t)))
                          for r in view.merge_rows if r["scale"] not in ("1x", SCRATCH_SCALE) and r["task"] == t)
        claims.append(greater(f"{TASKS[t].short} upscaled merges vs 1x merges", up, base))
        if up is not None and base is not None:
            gains[t] = up - base
    others = [g for t, g in gains.items() if t != "ip"]
    if "ip" in gains and others:
        top = max(others, key=lambda g: g.value)
        claims.append(not_worse("gain on IP vs the largest other gain", gains["ip"], top))
    return claims


FINDINGS: list[tuple[str, Callable[[StudyView], list[Claim]]]] = [
    ("Small specialised models beat larger off-the-shelf multilingual models on LA and IP.", finding_1),
    ("2× ≥ 1× cloned ≥ 1× on the full data; 1× cloned within ~2 points of 2×.", finding_2),
    ("Upscaled models forget less English.", finding_3),
    ("At equal compute: 1× ≈ 1× cloned; 1× beats 2×; the costlier setups forget less English.", finding_4),
    ("Every merge scores below the unmerged models and below joint multilingual training.", finding_5),
    ("Related languages merge better; anything with Persian merges worst.", finding_6),
    ("Methods: linear ≈ task arithmetic > MultiSlerp > TIES > DARE-TIES (≈ chance).", finding_7),
    ("Two-model merges beat merges of more models.", finding_8),
    ("Upscaled merges beat 1× merges, most visibly on IP.", finding_9),
]

# ---------------------------------------------------------------------------------------------
# Beyond the paper: lines for the opt-in arms, each shown only when its arm ran
# ---------------------------------------------------------------------------------------------
def ran(scale: str) -> Callable[[StudyView], bool]:
    return lambda view: any(m["setup"] == scale for m in view.models.values())


def _merge_change(view: StudyView, scale: str, against: str = "1x") -> tuple[Cell | None, Cell | None]:
    """Mean score change (merge − unmerged model of its scale) of `scale`'s merges and of `against`'s,
    paired on the same method, languages, evaluated language and task."""
    other = {(r["method"], r["languages"], r["lang"], r["task"]): r for r in view.merge_rows if r["scale"] == against}

    def change(r):
        return None if r["unmerged"] is None else r["cell"] - r["unmerged"]

    return paired((change(r), change(other[key]) if (key := (r["method"], r["languages"], r["lang"], r["task"])) in other
                   else None) for r in view.merge_rows if r["scale"] == scale)


def finding_depth(view: StudyView) -> list[Claim]:
    """Findings 2 and 9 asked of depth growth instead of width."""
    claims = [not_worse(f"{TASKS[t].short} {DEPTH_SCALE} ≥ 1x", *by_setup(view, t, DEPTH_SCALE, "1x"))
              for t in view.tasks or ["la"]]
    claims.append(greater(f"score change vs unmerged: {DEPTH_SCALE} merges vs 1x merges",
                          *_merge_change(view, DEPTH_SCALE)))
    return claims


def finding_scratch(view: StudyView) -> list[Claim]:
    """The companion paper's claim: merges of models trained from scratch (no shared pretraining, only a
    shared initialisation) lose what each model learned, far more than merges of a pretrained base's
    descendants, and fall to chance."""
    rows = [r for r in view.merge_rows if r["scale"] == SCRATCH_SCALE]
    unmerged, merged = paired((r["unmerged"], r["cell"]) for r in rows)
    claims = [greater(f"{SCRATCH_SCALE}: unmerged models vs their merges", unmerged, merged),
              greater(f"score change vs unmerged: 1x merges vs {SCRATCH_SCALE} merges",
                      *reversed(_merge_change(view, SCRATCH_SCALE)))]
    if "la" in view.tasks:
        claims.append(close(f"LA {SCRATCH_SCALE} merges ≈ chance",
                            mean_cell(r["cell"] for r in rows if r["task"] == "la"), Cell(CHANCE)))
    return claims


EXTRA_FINDINGS: list[tuple[str, Callable[[StudyView], list[Claim]], Callable[[StudyView], bool]]] = [
    ("Depth growth (1x_deep, opt-in) helps like width: 1x_deep ≥ 1x, and its merges beat 1x merges.",
     finding_depth, ran(DEPTH_SCALE)),
    ("Merging from-scratch models collapses (companion paper): their merges fall to chance and lose far more "
     "than 1x merges.", finding_scratch, ran(SCRATCH_SCALE)),
]


def beyond_paper() -> list[tuple[str, Callable[[StudyView], list[Claim] | None]]]:
    """Lines for the study options beyond the paper (report/sweep.py, report/predictors.py, the opt-in
    arms above); each check returns None when its option was off, and the line is left out."""
    from growmerge.report.predictors import PREDICTORS_TEXT, finding_predictors
    from growmerge.report.sweep import DENSITY_TEXT, finding_density

    def only_if(applies, check):
        return lambda view: check(view) if applies(view) else None

    arms = [(text, only_if(applies, check)) for text, check, applies in EXTRA_FINDINGS]
    return [(DENSITY_TEXT, finding_density), (PREDICTORS_TEXT, finding_predictors), *arms]


RULE = ("A difference counts only if |Δ| > max(0.002, 2·SE); SE is binomial for accuracies and ip_std/√n "
        "for IP. ✗ if any claim is contradicted beyond noise, ✓ if all hold, else inconclusive. "
        "[≈ unigram control] marks a claim with an LA or FK score within noise of the add-0.5 unigram model of "
        "the same language's training tokens on the same sets: such a score may measure word frequency.")


class Findings(list):
    """The findings rows, and a note on the LA sets they used (``note``; '' if nothing to say)."""

    note: str = ""


def findings(results: Results | StudyView, min_validity: float | None = None) -> Findings:
    """[{number, text, status, evidence}] for the paper's nine findings, computed from the results.
    LA sets whose judged validity is below `min_validity` (default: the LA task's option in the
    run's plan, else 0.8) are left out; a StudyView is used as given. A ledger of several training
    seeds gets the findings over seeds (report/seeds.py)."""
    if not isinstance(results, StudyView):
        from growmerge.report.seeds import several_seeds

        seeds = several_seeds(results, min_validity)  # a several-seed study: intervals over seeds and cells
        if seeds is not None:
            return seeds.findings
    view = results if isinstance(results, StudyView) else StudyView(valid_results(results, min_validity))
    out = Findings()
    for text, claims in finding_claims(view):
        status, evidence = verdict(claims)
        out.append({"number": len(out) + 1, "text": text, "status": status, "evidence": evidence,
                    "control": control_note(claims)})
    sets = getattr(view.results, "sets", None)
    out.note = sets.note() if sets is not None else ""
    return out


def finding_claims(view: StudyView) -> list[tuple[str, list[Claim]]]:
    """(text, claims) of every finding line of this view: the paper's nine, then the lines of the
    study options that were on."""
    out = [(text, check(view)) for text, check in FINDINGS]
    for text, check in beyond_paper():
        claims = check(view)
        if claims is not None:  # None: the study option was off, and the line is left out
            out.append((text, claims))
    return out


def findings_text(found: list[dict]) -> str:
    """The findings table for a terminal: one line per finding, its evidence indented below."""
    lines = []
    for f in found:
        lines.append(f"{f['number']}. [{f['status']}] {f['text']}")
        lines += [f"     {part}" for part in f["evidence"].split("; ")]
    if getattr(found, "note", ""):
        lines.append(found.note)
    return "\n".join(lines)
