"""One seed of a several-seed study (``seeds:`` in the study YAML), seen as if it were the only one.

Every model and merge row carries the training seed of its lineage (``models.seed``, ``merges.seed``;
NULL for what no seed trained: the off-the-shelf references, the unigram control). A seed's view of
the ledger hides the other seeds' rows of those two tables, so whatever reads one model per setup and
language (the compute-matched comparison, the report's setup index, the merge rows) reads this seed's;
scores and checkpoints are keyed by model name and need no filter.
"""

from __future__ import annotations

from typing import Any, Iterable

from growmerge.ledger.store import Results


SHARED_KINDS = ("reference", "control")  # models no seed trains: in every seed's view


class SeedResults:
    """The results with the models and merges of other seeds hidden: every ``query`` reads those two
    tables through a filter; everything else is the wrapped ledger's. A row without a seed is the first
    seed's (recorded before seeds were: its stages keep their ids), or shared when no seed trains it."""

    def __init__(self, results, seed: int):
        self._results = results
        self.seed = int(seed)  # an int: it is spelled into the SQL below
        first = self.seed == first_seed(results)
        shared = "seed IS NULL" if first else f"(seed IS NULL AND kind IN {SHARED_KINDS})"
        merges = f"seed = {self.seed}" + (" OR seed IS NULL" if first else "")
        self._tables = {"models": f"(SELECT * FROM models WHERE seed = {self.seed} OR {shared})",
                        "merges": f"(SELECT * FROM merges WHERE {merges})"}

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        for table, filtered in self._tables.items():
            sql = sql.replace(f"FROM {table}", f"FROM {filtered} AS {table}")
        return self._results.query(sql, params)

    # The readers built on ``query``, bound to this view (not the wrapped ledger's unfiltered query).
    models = Results.models
    merges = Results.merges
    checkpoints = Results.checkpoints

    def __getattr__(self, name):
        return getattr(self._results, name)


def seed_results(results, seed: int) -> SeedResults:
    """`results` as seen by one seed."""
    return SeedResults(results, seed)


def first_seed(results) -> int | None:
    """The study's first seed (its stages carry no suffix): the seed of the seed_code stage in the run's
    plan (``plan.json`` beside results.sqlite), else the smallest recorded seed."""
    import json

    path = getattr(results, "path", None)
    plan = path.parent / "plan.json" if path is not None else None
    if plan is not None and plan.is_file():
        try:
            for stage in json.loads(plan.read_text(encoding="utf-8")):
                if stage.get("id") == "seed_code":
                    return int(stage["spec"]["seed"])
        except (OSError, ValueError, TypeError, AttributeError, KeyError):
            pass  # an unreadable plan: the smallest seed
    seeds = study_seeds(results)
    return seeds[0] if seeds else None


def study_seeds(results) -> list[int]:
    """The training seeds recorded in the ledger, in increasing order ([] for an older ledger)."""
    import sqlite3

    from growmerge.errors import GrowmergeError

    try:
        rows = results.query("SELECT DISTINCT seed FROM models WHERE seed IS NOT NULL ORDER BY seed")
    except (GrowmergeError, sqlite3.Error):  # a ledger of an older run opened read-only: no seed column
        return []
    return [int(r["seed"]) for r in rows]
