"""The results store: one SQLite file per study (``runs/<study>/results.sqlite``).

Every stage of the study writes what it produced here (models, checkpoints with their cumulative
FLOPs, scores, merges, training curves); the compute-matched comparison and the report read only
this file. WAL mode so a reader (``growmerge study results``) never blocks the running study, and
every write is an upsert so a resumed stage can record its rows again without duplicates.

Scores and merges carry the fingerprint of what produced them (the model's identity, the evaluation
sets, the reference): a stage asks ``has_scores(..., fingerprint)`` and recomputes exactly what changed.

A user's SQL (``study results --sql/--csv``) runs in a sandbox (``read_only=True``): a read-only
connection whose authorizer allows reading only (no ATTACH, VACUUM INTO, PRAGMA writes, writes of
any kind), under a time limit, a memory limit and a row cap; each refusal is one error line.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from growmerge.errors import GrowmergeError
from growmerge.evaluate.tasks import TASKS
from growmerge.names import GROUPS, MODEL_KINDS, SCALES

FILE_NAME = "results.sqlite"
FINAL_STEP = -1  # the step under which the final model's scores are stored

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY, kind TEXT NOT NULL, setup TEXT, scale TEXT, languages TEXT NOT NULL,
    path TEXT, parent TEXT, tokens INTEGER, flops_cumulative REAL, params INTEGER);
CREATE TABLE IF NOT EXISTS checkpoints (
    model TEXT NOT NULL, step INTEGER NOT NULL, tokens INTEGER, flops_cumulative REAL, path TEXT,
    PRIMARY KEY (model, step));
CREATE TABLE IF NOT EXISTS scores (
    model TEXT NOT NULL, step INTEGER NOT NULL, lang TEXT NOT NULL, task TEXT NOT NULL,
    dataset TEXT NOT NULL, metric TEXT NOT NULL, value REAL, n INTEGER, fingerprint TEXT, boundary TEXT,
    detail TEXT, PRIMARY KEY (model, step, lang, task, dataset, metric));
CREATE TABLE IF NOT EXISTS merges (
    name TEXT PRIMARY KEY, method TEXT NOT NULL, scale TEXT NOT NULL, languages TEXT NOT NULL, path TEXT,
    fingerprint TEXT);
CREATE TABLE IF NOT EXISTS train_log (
    model TEXT NOT NULL, step INTEGER NOT NULL, tokens INTEGER, flops REAL, loss REAL, lr REAL,
    PRIMARY KEY (model, step));
"""
TABLES = ("models", "checkpoints", "scores", "merges", "train_log")
SCORE_KEYS = ("model", "step", "lang", "task", "dataset", "metric", "value", "n")
# Columns absent from databases of older runs, added when such a database is opened for writing (its
# old rows read NULL: a score of unrecorded boundary convention, no per-pair decisions).
# scores.boundary: the document-boundary convention the score was made under (evaluate.scorer);
# scores.detail: the per-pair decisions of a minimal-pair set ("1" = good preferred), metric "decisions".
# models.seed, merges.seed: the training seed of a model's lineage (NULL: none, e.g. a reference), which
# tells the seeds of a several-seed study apart (ledger/seeds.py).
ADDED_COLUMNS = (("scores", "fingerprint"), ("merges", "fingerprint"), ("scores", "boundary"), ("scores", "detail"),
                 ("models", "seed", "INTEGER"), ("merges", "seed", "INTEGER"))
MODEL_COLUMNS = ("name", "kind", "setup", "scale", "languages", "path", "parent", "tokens", "flops_cumulative",
                 "params", "seed")
INSERT_MODEL = (f"INSERT OR REPLACE INTO models ({', '.join(MODEL_COLUMNS)}) "
                f"VALUES ({','.join('?' * len(MODEL_COLUMNS))})")
SCORE_EXTRAS = ("fingerprint", "boundary", "detail")  # optional keys of a score row

# The sandbox of a user's SQL: what the authorizer lets through, and the limits.
READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
READ_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
                "foreign_key_list", "database_list", "collation_list", "function_list", "pragma_list"}
AUTHORIZER_ACTIONS = ("CREATE_INDEX", "CREATE_TABLE", "CREATE_TEMP_INDEX", "CREATE_TEMP_TABLE", "CREATE_TEMP_TRIGGER",
                      "CREATE_TEMP_VIEW", "CREATE_TRIGGER", "CREATE_VIEW", "DELETE", "DROP_INDEX", "DROP_TABLE",
                      "DROP_TEMP_INDEX", "DROP_TEMP_TABLE", "DROP_TEMP_TRIGGER", "DROP_TEMP_VIEW", "DROP_TRIGGER",
                      "DROP_VIEW", "INSERT", "PRAGMA", "READ", "SELECT", "TRANSACTION", "UPDATE", "ATTACH", "DETACH",
                      "ALTER_TABLE", "REINDEX", "ANALYZE", "CREATE_VTABLE", "DROP_VTABLE", "FUNCTION", "SAVEPOINT",
                      "RECURSIVE")
ACTION_NAMES = {getattr(sqlite3, f"SQLITE_{n}"): n.replace("_", " ") for n in AUTHORIZER_ACTIONS
                if hasattr(sqlite3, f"SQLITE_{n}")}
SQL_SECONDS = 20.0  # a query running longer is stopped (a runaway recursive CTE never returns)
SQL_ROWS = 200_000  # rows a query may return (a runaway one would fill the memory or the disk)
SQL_HEAP = 1 << 30  # bytes SQLite may allocate while a user's query runs
LOG_KEYS = ("step", "tokens", "flops", "loss", "lr")


def _choice(value: str | None, allowed: Iterable[str], what: str, optional: bool = True) -> str | None:
    allowed = tuple(allowed)
    if value is None and optional:
        return None
    if value not in allowed:
        raise GrowmergeError(f"unknown {what} {value!r}: use one of {', '.join(allowed)}")
    return value


def _languages(languages: Iterable[str] | str | None) -> str:
    if languages is None:
        return "[]"
    if isinstance(languages, str):
        languages = [languages]
    return json.dumps(list(languages))


class Results:
    """The study's results database. ``Results(run_dir)`` or ``Results(run_dir / "results.sqlite")``."""

    def __init__(self, path: str | Path, must_exist: bool = False, read_only: bool = False,
                 seconds: float | None = None, max_rows: int | None = None):
        """`read_only`: the sandbox for a user's SQL (module docstring), with `seconds` and `max_rows`."""
        path = Path(path)
        if path.is_dir() or (not path.exists() and not path.suffix):  # a run directory, maybe not made yet
            path = path / FILE_NAME
        if (must_exist or read_only) and not path.is_file():
            raise GrowmergeError(f"{path}: no results database (run the study first, or pass the run directory)")
        self.path = path
        self.sandboxed, self.refused = read_only, ""
        self.seconds, self.max_rows = seconds or SQL_SECONDS, max_rows or SQL_ROWS
        try:
            if read_only:  # `study results --sql`: a typo'd DELETE must not touch the study's data
                self.conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(str(path), timeout=30.0)
            self.conn.row_factory = sqlite3.Row
            if not read_only:
                # WAL: the report or a `--sql` query can read while the study is writing.
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.executescript(SCHEMA)
                self._add_columns()
            self.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise GrowmergeError(f"{path}: not a usable results database ({exc})") from None
        if read_only:
            self.conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            self.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100_000_000)
            self.conn.set_authorizer(self._authorize)

    def _add_columns(self) -> None:
        for table, column, *kind in ADDED_COLUMNS:
            if column not in {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind[0] if kind else 'TEXT'}")

    def _authorize(self, action: int, arg1, arg2, db, trigger) -> int:
        """Reading only: SELECT, reads of columns, functions, recursive CTEs, introspection PRAGMAs."""
        if action in READ_ACTIONS or (action == sqlite3.SQLITE_PRAGMA and arg1 in READ_PRAGMAS):
            return sqlite3.SQLITE_OK
        self.refused = self.refused or (f"PRAGMA {arg1}" if action == sqlite3.SQLITE_PRAGMA
                                        else ACTION_NAMES.get(action, str(action)))
        return sqlite3.SQLITE_DENY

    @contextlib.contextmanager
    def _limits(self):
        """A user's statement: stopped after `seconds`, SQLite's memory capped; every failure one line."""
        if not self.sandboxed:
            yield
            return
        deadline = time.monotonic() + self.seconds
        self.refused = ""
        self.conn.set_authorizer(None)
        heap = self.conn.execute("PRAGMA hard_heap_limit").fetchone()[0]
        self.conn.execute(f"PRAGMA hard_heap_limit={SQL_HEAP}")  # process-wide in SQLite: put back below
        self.conn.set_authorizer(self._authorize)
        self.conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        try:
            yield
        except sqlite3.Error as exc:
            if self.refused:
                raise GrowmergeError(f"SQL refused: {self.refused} is not allowed (--sql and --csv may only read: "
                                     f"SELECT or WITH over {', '.join(TABLES)})") from None
            if "interrupted" in str(exc):
                raise GrowmergeError(f"SQL stopped after {self.seconds:g} s (the limit): add a WHERE or a LIMIT, or "
                                     "check a recursive query for an end") from None
            raise GrowmergeError(f"SQL error: {exc} (tables: {', '.join(TABLES)})") from None
        except MemoryError:
            raise GrowmergeError(f"SQL stopped: it needs more than {SQL_HEAP >> 20} MB of memory") from None
        finally:
            self.conn.set_progress_handler(None, 0)
            self.conn.set_authorizer(None)
            self.conn.execute(f"PRAGMA hard_heap_limit={heap}")
            self.conn.set_authorizer(self._authorize)

    def _capped(self, cur) -> Iterator:
        """The rows of a user's query, at most `max_rows` of them."""
        for i, row in enumerate(cur):
            if self.sandboxed and i >= self.max_rows:
                raise GrowmergeError(f"SQL returned more than {self.max_rows:,} rows (the limit): add a LIMIT or "
                                     "aggregate with GROUP BY")
            yield row

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Results":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _write(self, sql: str, rows: list[tuple]) -> None:
        with self.conn:  # one transaction: all rows or none
            self.conn.executemany(sql, rows)

    # -- writers ------------------------------------------------------------------------------
    def add_model(self, name: str, kind: str, setup: str | None = None, scale: str | None = None,
                  languages: Iterable[str] | str | None = None, path: str | Path | None = None,
                  parent: str | None = None, tokens: int | None = None,
                  flops_cumulative: float | None = None, params: int | None = None, seed: int | None = None) -> None:
        _choice(kind, MODEL_KINDS, "model kind", optional=False)
        _choice(setup, GROUPS, "setup")
        _choice(scale, SCALES, "scale")
        self._write(
            INSERT_MODEL,
            [(name, kind, setup, scale, _languages(languages), None if path is None else str(path), parent,
              tokens, flops_cumulative, params, seed)],
        )

    def add_checkpoint(self, model: str, step: int, tokens: int | None = None,
                       flops_cumulative: float | None = None, path: str | Path | None = None) -> None:
        self._write("INSERT OR REPLACE INTO checkpoints VALUES (?,?,?,?,?)",
                    [(model, int(step), tokens, flops_cumulative, None if path is None else str(path))])

    def add_scores(self, rows: Iterable[dict]) -> int:
        """Upsert score rows ``{model, step, lang, task, dataset, metric, value, n[, fingerprint, boundary,
        detail]}``; returns the count."""
        from growmerge.evaluate.scorer import RECORDED_BOUNDARIES

        tuples = []
        for row in rows:
            missing = [k for k in SCORE_KEYS if k not in row]
            if missing:
                raise GrowmergeError(f"score row {row!r} lacks {', '.join(missing)}")
            _choice(row["task"], TASKS, "task", optional=False)  # the registry, read now: tasks may be added
            _choice(row.get("boundary"), RECORDED_BOUNDARIES, "document-boundary convention")
            tuples.append((*(row[k] for k in SCORE_KEYS), *(row.get(k) for k in SCORE_EXTRAS)))
        columns = SCORE_KEYS + SCORE_EXTRAS
        self._write(f"INSERT OR REPLACE INTO scores ({', '.join(columns)}) VALUES ({','.join('?' * len(columns))})",
                    tuples)
        return len(tuples)

    def replace_scores(self, model: str, step: int, lang: str, task: str, rows: list[dict], fingerprint: str) -> int:
        """The scores of one (model, step, language, task), all carrying `fingerprint`, in place of any
        earlier ones (a stale row for a dataset no longer scored must not survive)."""
        with self.conn:
            self.conn.execute("DELETE FROM scores WHERE model=? AND step=? AND lang=? AND task=?",
                              (model, int(step), lang, task))
        return self.add_scores({**r, "model": model, "step": step, "lang": lang, "task": task,
                                "fingerprint": fingerprint} for r in rows)

    def add_merge(self, name: str, method: str, scale: str, languages: Iterable[str],
                  path: str | Path | None = None, params: int | None = None, fingerprint: str | None = None,
                  seed: int | None = None) -> None:
        """A merge is a row of `merges` and also a model (kind merge) so it can carry scores."""
        _choice(scale, SCALES, "scale", optional=False)
        langs = _languages(languages)
        p = None if path is None else str(path)
        with self.conn:
            self.conn.execute("INSERT OR REPLACE INTO merges (name, method, scale, languages, path, fingerprint, seed) "
                              "VALUES (?,?,?,?,?,?,?)", (name, method, scale, langs, p, fingerprint, seed))
            self.conn.execute(
                INSERT_MODEL,
                (name, "merge", None, scale, langs, p, None, None, None, params, seed),
            )

    def add_train_log(self, model: str, rows: Iterable[dict]) -> int:
        """Training-curve points ``{step, tokens, flops, loss, lr}`` (missing keys stored as NULL)."""
        tuples = [(model, int(r["step"]), *(r.get(k) for k in LOG_KEYS[1:])) for r in rows]
        self._write("INSERT OR REPLACE INTO train_log VALUES (?,?,?,?,?,?)", tuples)
        return len(tuples)

    # -- readers ------------------------------------------------------------------------------
    def has_scores(self, model: str, step: int, lang: str, task: str, fingerprint: str | None = None) -> bool:
        """Whether (model, step, language, task) is scored -- by what `fingerprint` names, if given."""
        sql = "SELECT 1 FROM scores WHERE model=? AND step=? AND lang=? AND task=?"
        args: tuple = (model, int(step), lang, task)
        if fingerprint is not None:
            sql, args = sql + " AND fingerprint=?", args + (fingerprint,)
        return self.conn.execute(sql + " LIMIT 1", args).fetchone() is not None

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict]:
        """Rows of any SQL statement as dicts; a bad statement is one GrowmergeError line."""
        with self._limits():
            try:
                cur = self.conn.execute(sql, tuple(params))
                return [dict(r) for r in self._capped(cur)]
            except sqlite3.Error as exc:
                if self.sandboxed:
                    raise
                raise GrowmergeError(f"SQL error: {exc} (tables: {', '.join(TABLES)})") from None

    def models(self, **where: Any) -> list[dict]:
        """Model rows with ``languages`` decoded, filtered by equal columns (e.g. ``kind="adapt"``)."""
        sql = "SELECT * FROM models"
        if where:
            sql += " WHERE " + " AND ".join(f"{k}=?" for k in where)
        rows = self.query(sql + " ORDER BY name", where.values())
        for r in rows:
            r["languages"] = json.loads(r["languages"] or "[]")
        return rows

    def merges(self) -> list[dict]:
        rows = self.query("SELECT * FROM merges ORDER BY name")
        for r in rows:
            r["languages"] = json.loads(r["languages"] or "[]")
        return rows

    def checkpoints(self, model: str) -> list[dict]:
        return self.query("SELECT * FROM checkpoints WHERE model=? ORDER BY step", (model,))

    def to_csv(self, table_or_sql: str, path: str | Path) -> Path:
        """Write a table (by name) or the rows of a SELECT to CSV, atomically."""
        from growmerge.artifacts import temp_sibling

        sql = f"SELECT * FROM {table_or_sql}" if table_or_sql in TABLES else table_or_sql
        if re.fullmatch(r"\w+", table_or_sql) and table_or_sql not in TABLES:
            raise GrowmergeError(f"no table {table_or_sql!r}: use one of {', '.join(TABLES)} or a SELECT statement")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path)
        try:
            with self._limits():
                try:
                    cur = self.conn.execute(sql)
                except sqlite3.Error as exc:
                    if self.sandboxed:
                        raise
                    raise GrowmergeError(f"SQL error: {exc} (tables: {', '.join(TABLES)})") from None
                with open(tmp, "w", newline="", encoding="utf-8") as fh:
                    writer = csv.writer(fh)
                    writer.writerow([d[0] for d in cur.description or ()])
                    writer.writerows(self._capped(cur))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


# ---------------------------------------------------------------------------------------------
# Headline scores: one number (with its standard error) per model, step, language and task
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """A task score averaged over its datasets, with the standard error used to judge noise."""

    value: float
    se: float = 0.0
    n: int = 0
    # The same score of a control on the same sets (the unigram model: evaluate/controls.py), when
    # known: the findings mark a claim whose scores are within noise of it.
    control: "Cell | None" = None
    # The values a mean was taken over (mean_cell), and of a difference the paired differences: what a
    # bootstrap over seeds and cells resamples (report/seeds.py). Not part of a cell's equality.
    parts: tuple[float, ...] = field(default=(), compare=False, repr=False)

    def __sub__(self, other: "Cell") -> "Cell":
        return Cell(self.value - other.value, math.hypot(self.se, other.se), min(self.n, other.n),
                    parts=_part_differences(self, other))


def _part_differences(a: Cell, b: Cell) -> tuple[float, ...]:
    """Paired differences of two means over as many cells (the findings pair their sides cell by
    cell); a mean minus a constant; () when the sides cannot be paired."""
    if a.parts and b.parts:
        return tuple(x - y for x, y in zip(a.parts, b.parts)) if len(a.parts) == len(b.parts) else ()
    if a.parts:
        return tuple(x - b.value for x in a.parts)
    return tuple(a.value - y for y in b.parts)


def mean_cell(cells: Iterable[Cell]) -> Cell | None:
    """Unweighted mean of independent cells; its SE is sqrt(sum se^2) / k. The mean's control is the
    mean of the cells' controls when every cell has one."""
    cells = list(cells)
    if not cells:
        return None
    k = len(cells)
    controls = [c.control for c in cells]
    return Cell(sum(c.value for c in cells) / k, math.sqrt(sum(c.se**2 for c in cells)) / k,
                sum(c.n for c in cells), mean_cell(controls) if all(u is not None for u in controls) else None,
                parts=tuple(c.value for c in cells))


def dataset_se(task: str, value: float, n: int | None, std: float | None) -> float:
    """Binomial SE sqrt(p(1-p)/n) for accuracies; std/sqrt(n) for IP when its spread was recorded."""
    if not n:
        return 0.0
    if TASKS[task].headline == "accuracy":
        p = min(max(value, 0.0), 1.0)
        return math.sqrt(p * (1 - p) / n)
    return (std or 0.0) / math.sqrt(n)


def headline_cells(results: Results) -> dict[tuple[str, int, str, str], Cell]:
    """{(model, step, lang, task): Cell} of every headline score (mean over the task's datasets)."""
    rows = results.query("SELECT model, step, lang, task, dataset, metric, value, n FROM scores")
    std = {(r["model"], r["step"], r["lang"], r["task"], r["dataset"]): r["value"]
           for r in rows if r["metric"] == f"{r['task']}_std"}
    per_dataset: dict[tuple, list[Cell]] = {}
    for r in rows:
        task = r["task"]
        if task not in TASKS or r["metric"] != TASKS[task].headline:
            continue
        if r["value"] is None or not math.isfinite(r["value"]):  # a failed evaluation is missing data
            continue
        key = (r["model"], r["step"], r["lang"], task)
        se = dataset_se(task, r["value"], r["n"], std.get(key + (r["dataset"],)))
        per_dataset.setdefault(key, []).append(Cell(float(r["value"]), se, int(r["n"] or 0)))
    return {key: mean_cell(cells) for key, cells in per_dataset.items()}


# ---------------------------------------------------------------------------------------------
# Recording a model directory (growmerge.json sidecar, checkpoints/step-N/, train_log.jsonl)
# ---------------------------------------------------------------------------------------------
STEP_DIR = re.compile(r"step-(\d+)")


def _read_meta(path: Path) -> dict:
    from growmerge.artifacts import read_meta

    return read_meta(path)


def count_params(model_dir: str | Path) -> int | None:
    """Parameters stored in the safetensors header(s), without loading any tensor."""
    from growmerge.artifacts import read_safetensors_header, weight_files

    files = weight_files(model_dir)
    if not all(f.is_file() for f in files):
        return None
    return sum(math.prod(v["shape"]) for f in files for v in read_safetensors_header(f)[0].values())


def record_model_dir(results: Results, name: str, model_dir: str | Path, *, kind: str | None = None,
                     setup: str | None = None, scale: str | None = None, languages: Iterable[str] | None = None,
                     parent: str | None = None, seed: int | None = None) -> dict:
    """Record a finished model directory: its row in `models` (from its growmerge.json unless given),
    every exported ``checkpoints/step-N`` with its cumulative FLOPs, the final model as a checkpoint at
    its last step, and ``train_log.jsonl`` as the training curve. Returns the sidecar."""
    model_dir = Path(model_dir)
    meta = _read_meta(model_dir)
    flops = float(meta.get("flops", {}).get("cumulative", 0.0))
    kind = kind or meta.get("kind")
    if kind not in MODEL_KINDS:
        kind = "reference" if kind == "external" else kind
    parents = meta.get("parents") or []
    results.add_model(name, kind, setup=setup if setup is not None else meta.get("setup"),
                      scale=scale, languages=languages if languages is not None else meta.get("languages", []),
                      path=model_dir, parent=parent or (str(parents[0]) if parents else None),
                      tokens=meta.get("tokens"), flops_cumulative=flops, params=count_params(model_dir), seed=seed)
    for d in sorted((model_dir / "checkpoints").glob("step-*")):
        m = STEP_DIR.fullmatch(d.name)
        if m and (d / "growmerge.json").is_file():
            cm = _read_meta(d)
            results.add_checkpoint(name, int(m.group(1)), tokens=cm.get("tokens"),
                                   flops_cumulative=float(cm.get("flops", {}).get("cumulative", 0.0)), path=d)
    if "step" in meta:
        results.add_checkpoint(name, int(meta["step"]), tokens=meta.get("tokens"), flops_cumulative=flops,
                               path=model_dir)
    log = model_dir / "train_log.jsonl"
    if log.is_file():
        rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        results.add_train_log(name, [r for r in rows if "step" in r])
    return meta
