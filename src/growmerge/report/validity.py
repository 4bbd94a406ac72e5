"""The validity of the LA sets and the sets the findings table may use.

A generated LA set's validity is the share of its "bad" sentences that people judged ungrammatical
(``growmerge pairs audit``); the LA task records it as a score row (metric ``validity``) beside
each model's accuracy. The findings table uses only the LA sets whose validity is at least the LA
task's ``min_validity`` (default 0.8); a set whose validity was never measured is used and named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

SEP = "\x1f"


def la_sets(results) -> list[dict]:
    """One row per LA set (language, dataset): its validity (None if unmeasured), the judged
    pairs, and the mean accuracy over every model scored on it."""
    from growmerge.evaluate.controls import UNIGRAM

    rows = results.query(
        "SELECT lang, dataset, metric, AVG(value) AS v, MAX(n) AS n, COUNT(*) AS k FROM scores "
        "WHERE task = 'la' AND metric IN ('accuracy', 'validity') AND model != ? "  # the models, not the control
        "GROUP BY lang, dataset, metric", (UNIGRAM,))
    sets: dict[tuple, dict] = {}
    for r in rows:
        s = sets.setdefault((r["lang"], r["dataset"]), {"lang": r["lang"], "dataset": r["dataset"], "validity": None,
                                                        "judged": 0, "accuracy": None, "pairs": 0, "models": 0})
        if r["metric"] == "validity":
            s["validity"], s["judged"] = r["v"], int(r["n"] or 0)
        else:
            s["accuracy"], s["pairs"], s["models"] = r["v"], int(r["n"] or 0), int(r["k"])
    return [sets[k] for k in sorted(sets)]


def min_validity(results) -> float:
    """The LA task's ``min_validity`` from the run's plan (``plan.json`` beside results.sqlite)."""
    from growmerge.evaluate.tasks.minimal_pairs import LAOptions

    plan = getattr(results, "path", None)
    plan = plan.parent / "plan.json" if plan is not None else None
    if plan is not None and plan.is_file():
        try:
            for stage in json.loads(plan.read_text(encoding="utf-8")):
                if stage.get("kind") == "pairs" and "la" in (stage.get("tasks") or {}):
                    return LAOptions.model_validate(stage["tasks"]["la"]).min_validity
        except (OSError, ValueError, TypeError, AttributeError):
            pass  # an unreadable plan: the default threshold
    return LAOptions().min_validity


@dataclass
class ValidSets:
    threshold: float
    used: list[dict] = field(default_factory=list)
    left_out: list[dict] = field(default_factory=list)
    unmeasured: list[dict] = field(default_factory=list)

    def note(self) -> str:
        """What the findings table says about the LA sets it used ('' when every set was measured
        and used)."""
        parts = []
        if self.left_out:
            parts.append(f"left out (validity below {self.threshold:g}): " + ", ".join(
                f"{s['lang']}/{s['dataset']} {s['validity']:.2f}" for s in self.left_out))
        if self.unmeasured:
            parts.append("used without a measured validity: " + ", ".join(
                f"{s['lang']}/{s['dataset']}" for s in self.unmeasured))
        return ("LA sets " + "; ".join(parts) + ".") if parts else ""


def classify(results, threshold: float | None = None) -> ValidSets:
    threshold = min_validity(results) if threshold is None else threshold
    out = ValidSets(threshold)
    for s in la_sets(results):
        if s["validity"] is None:
            out.unmeasured.append(s)
        elif s["validity"] >= threshold:
            out.used.append(s)
        else:
            out.left_out.append(s)
    return out


class ValidResults:
    """The results with the scores of left-out LA sets hidden: every ``query`` reads the scores
    table through a filter; everything else is the wrapped ledger's."""

    def __init__(self, results, sets: ValidSets):
        self._results = results
        self.sets = sets
        excluded = ", ".join("'" + f"{s['lang']}{SEP}{s['dataset']}".replace("'", "''") + "'" for s in sets.left_out)
        self._scores = (f"(SELECT * FROM scores WHERE NOT (task = 'la' AND lang || char(31) || dataset IN ({excluded})))"
                        if excluded else None)

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        if self._scores:
            sql = sql.replace("FROM scores", f"FROM {self._scores} AS scores")
        return self._results.query(sql, params)

    def __getattr__(self, name):
        return getattr(self._results, name)


def valid_results(results, threshold: float | None = None) -> ValidResults:
    if isinstance(results, ValidResults):
        return results
    return ValidResults(results, classify(results, threshold))
