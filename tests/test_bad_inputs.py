"""Bad input and faults across the CLI, as a new user meets them: a table of cases, each run through
the real command line, each expected to fail cleanly.

Clean means: the exit code the README promises (2 a mistake in the command or its inputs, 3 a fault
of the machine, 143 a SIGTERM), exactly one line on stderr that names the problem (no "Traceback"),
and nothing changed on disk: no output, no temporary directory, and every input as it was.

Most cases run in this process (`cli.run_app`, milliseconds each); the ones about signals, file-size
limits, full disks and files changed under a running command run as their own process.

    .venv/bin/python -m pytest tests/test_bad_inputs.py -s    # also prints the tally by outcome
    GROWMERGE_CORPUS_SUBPROCESS=1 GROWMERGE_CORPUS_TIMEOUT=20 PYTHONPATH=OTHER/src \
        .venv/bin/python -m pytest tests/test_bad_inputs.py -s
        # every case as its own process: the same corpus against another version of growmerge
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml
from safetensors.torch import load_file, save_file

from conftest import make_tiny_llama

PY = sys.executable
TIMEOUT = int(os.environ.get("GROWMERGE_CORPUS_TIMEOUT", 120))  # seconds before a case counts as a hang


# ---------------------------------------------------------------------------------------------
# The workspace: inputs every case reads (never writes)
# ---------------------------------------------------------------------------------------------
@dataclass
class Workspace:
    root: Path
    src: Path  # a tiny Llama with tokenizer (clone source)
    base: Path  # merge inputs: a base and two "language" models
    a: Path
    b: Path
    other: Path  # another shape: merging it with the base fails
    shard: Path  # packed tokens for training
    corpus: Path  # local text for `data prepare`
    run: Path  # a run directory with a results.sqlite

    def case_dir(self, name: str) -> Path:
        d = self.root / "cases" / name
        d.mkdir(parents=True)
        return d


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    from test_data import make_corpus
    from test_train import random_shard

    from growmerge.ledger import Results

    root = tmp_path_factory.mktemp("bad")
    zoo = root / "zoo"
    w = Workspace(root=root, src=make_tiny_llama(root / "src"), base=make_tiny_llama(zoo / "base", seed=0),
                  a=make_tiny_llama(zoo / "a", seed=1), b=make_tiny_llama(zoo / "b", seed=2),
                  other=make_tiny_llama(zoo / "other", hidden=32, seed=3), shard=random_shard(root / "d.bin"),
                  corpus=root / "corpus", run=root / "run")
    w.corpus.mkdir()
    make_corpus(w.corpus)
    with Results(w.run) as res:
        res.add_model("m", "base", languages=["sv"])
        res.add_scores([{"model": "m", "step": -1, "lang": "sv", "task": "la", "dataset": "d", "metric": "accuracy",
                         "value": 0.5, "n": 10}])
    return w


# ---------------------------------------------------------------------------------------------
# Helpers that make bad inputs (always in the case's own directory: the workspace stays intact)
# ---------------------------------------------------------------------------------------------
def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def with_file(src: Path, dst: Path, name: str, content: bytes | str) -> Path:
    copy_model(src, dst)
    (dst / name).write_bytes(content.encode() if isinstance(content, str) else content)
    return dst


def with_header(src: Path, dst: Path, mangle: Callable[[dict], dict] | None = None, length: int | None = None) -> Path:
    """A copy whose model.safetensors has a mangled JSON header, or a stated header length."""
    copy_model(src, dst)
    raw = (dst / "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    if mangle is not None:
        header = mangle(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    (dst / "model.safetensors").write_bytes((length if length is not None else len(text)).to_bytes(8, "little")
                                            + text + raw[8 + n:])
    return dst


def drop_dtype(header: dict) -> dict:
    name = next(k for k in header if k != "__metadata__")
    del header[name]["dtype"]
    return header


def with_weights(src: Path, dst: Path, change: Callable) -> Path:
    copy_model(src, dst)
    tensors = load_file(dst / "model.safetensors")
    change(tensors)
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def nan_weight(t: dict) -> None:
    t["model.norm.weight"][0] = math.nan


def inf_weight(t: dict) -> None:
    t["model.layers.0.mlp.up_proj.weight"][0, 0] = math.inf


def huge_weights(t: dict) -> None:
    t["model.embed_tokens.weight"].fill_(3e38)


def with_index(src: Path, dst: Path, weight_map: dict | str) -> Path:
    copy_model(src, dst)
    shutil.move(dst / "model.safetensors", dst / "model-00001-of-00001.safetensors")
    body = weight_map if isinstance(weight_map, str) else json.dumps({"metadata": {}, "weight_map": weight_map})
    (dst / "model.safetensors.index.json").write_text(body)
    return dst


def index_of(src: Path, shard: str) -> dict:
    names = load_file(src / "model.safetensors").keys()
    return {n: shard for n in names}


def merge_yaml(d: Path, models: list[Path], base: Path | None = None, method: str = "linear", params: dict | None = None,
               shared: dict | None = None, **extra) -> Path:
    cfg = {"merge_method": method, "models": [{"model": str(m), "parameters": dict(params or {"weight": 1.0})}
                                              for m in models],
           "parameters": shared or {}, "dtype": "float32", **extra}
    if base is not None:
        cfg["base_model"] = str(base)
    (d / "m.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return d / "m.yaml"


def train_job(d: Path, ws: Workspace, **spec) -> Path:
    job = {"init": "tiny", "steps": 4, "global_batch": 4, "checkpoint_every_steps": 2, "seed": 1,
           "mixture": [{"shard": str(ws.shard), "name": "x"}], "out": str(d / "m"), **spec}
    (d / "job.yaml").write_text(yaml.safe_dump(job))
    return d / "job.yaml"


def data_yaml(d: Path, ws: Workspace, **over) -> Path:
    from test_data import corpus_spec

    (d / "data.yaml").write_text(yaml.safe_dump({"data": corpus_spec(ws.corpus, **over)}))
    return d / "data.yaml"


def study_yaml(d: Path, change: Callable[[dict], None]) -> Path:
    from test_study import micro_config

    raw = micro_config(d / "run")
    change(raw)
    (d / "study.yaml").write_text(yaml.safe_dump(raw))
    return d / "study.yaml"


def foreign(d: Path) -> Path:
    """A directory holding someone's file (not an output of any growmerge command)."""
    d.mkdir(parents=True)
    (d / "notes.txt").write_text("mine")
    return d


def a_file(path: Path, content: str | bytes = "x") -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def pickled_only(src: Path, dst: Path) -> Path:
    copy_model(src, dst)
    (dst / "model.safetensors").unlink()
    (dst / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")  # a pickle: never opened
    return dst


def gguf_like(d: Path) -> Path:
    (d / "model.gguf").write_bytes(b"GGUF" + os.urandom(64))
    return d / "model.gguf"


# ---------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    argv: Callable[[Workspace, Path], list]  # builds its inputs in the case directory, returns the arguments
    needle: str  # in the one stderr line
    code: int = 2
    mode: str = "inproc"  # inproc | proc | fsize | fullfs | readonly | sigterm | changed
    may_leave: tuple[str, ...] = ()  # paths (relative to the case directory) a failure may leave by design
    logs: bool = False  # the command reports progress on stderr by design: the error is its last line


def clone(src, out, *flags) -> list:
    return ["clone", src, out, "--factor", "2", *flags]


def merge(cfg, out, *flags) -> list:
    return ["merge", cfg, out, *flags]


def grid(ws: Workspace, out: Path, *models: str, flags: tuple = ()) -> list:
    return ["merge-grid", *models, "--out", out, "--base", ws.base, "--methods", "linear,ties", *flags]


CASES = [
    # -- clone: numbers ------------------------------------------------------------------------
    Case("clone-factor-fraction", lambda w, d: ["clone", w.src, d / "o", "--factor", "1.5"], "integer ≥ 2"),
    Case("clone-factor-nan", lambda w, d: ["clone", w.src, d / "o", "--factor", "nan"], "integer ≥ 2"),
    Case("clone-factor-huge", lambda w, d: ["clone", w.src, d / "o", "--factor", "1e6"], "memory available", code=3),
    Case("clone-snr-nan", lambda w, d: clone(w.src, d / "o", "--snr-db", "nan"), "--snr-db must be a finite"),
    Case("clone-snr-minus-1000", lambda w, d: clone(w.src, d / "o", "--snr-db", "-1000"), "--snr-db must be"),
    Case("clone-snr-inf", lambda w, d: clone(w.src, d / "o", "--snr-db", "inf"), "--snr-db must be"),
    Case("clone-source-nan", lambda w, d: clone(with_weights(w.src, d / "s", nan_weight), d / "o", "--verify"),
         "NaN or infinite"),
    Case("clone-source-random-bytes", lambda w, d: clone(with_weights(
        w.src, d / "s", lambda t: t["model.norm.weight"].view(-1).view(dtype=__import__("torch").int32).fill_(-1)),
        d / "o", "--verify"), "NaN or infinite"),
    # -- clone: inputs are sacred ---------------------------------------------------------------
    Case("clone-onto-itself", lambda w, d: clone(copy_model(w.src, d / "s"), d / "s", "--force"), "is the input"),
    Case("clone-into-parent", lambda w, d: clone(copy_model(w.src, d / "models" / "a"), d / "models", "--force"),
         "contains the input"),
    Case("clone-inside-source", lambda w, d: clone(w.src, w.src / "big"), "is inside the input"),
    Case("clone-force-over-foreign", lambda w, d: clone(w.src, foreign(d / "o"), "--force"),
         "replaces only a previous clone"),
    Case("clone-onto-a-file", lambda w, d: clone(w.src, a_file(d / "o")), "not a directory"),
    # -- clone: unreadable inputs ---------------------------------------------------------------
    Case("clone-missing-source", lambda w, d: clone(d / "nope", d / "o"), "no such model directory"),
    Case("clone-config-empty-object", lambda w, d: clone(with_file(w.src, d / "s", "config.json", "{}"), d / "o"),
         "cannot load config"),
    Case("clone-config-not-json", lambda w, d: clone(with_file(w.src, d / "s", "config.json", "{oops"), d / "o"),
         "not valid JSON"),
    Case("clone-config-binary", lambda w, d: clone(with_file(w.src, d / "s", "config.json", b"\xff\xfe\x00"), d / "o"),
         "not UTF-8"),
    Case("clone-header-length-2^62", lambda w, d: clone(with_header(w.src, d / "s", length=1 << 62), d / "o"),
         "not a safetensors file"),
    Case("clone-header-without-dtype", lambda w, d: clone(with_header(w.src, d / "s", drop_dtype), d / "o"),
         "is not a safetensors dtype"),
    Case("clone-header-not-json", lambda w, d: clone(with_header(w.src, d / "s", length=16), d / "o"),
         "header is not JSON"),
    Case("clone-truncated-weights", lambda w, d: clone(with_file(
        w.src, d / "s", "model.safetensors", (w.src / "model.safetensors").read_bytes()[:5000]), d / "o"), "truncated"),
    Case("clone-empty-weights", lambda w, d: clone(with_file(w.src, d / "s", "model.safetensors", b""), d / "o"),
         "not a safetensors file"),
    Case("clone-index-not-json", lambda w, d: clone(with_index(w.src, d / "s", "{"), d / "o"), "not valid JSON"),
    Case("clone-index-escapes", lambda w, d: clone(with_index(w.src, d / "s", index_of(w.src, "../../x.safetensors")),
                                                   d / "o"), "is not a file name"),
    Case("clone-index-missing-shard", lambda w, d: clone(with_index(w.src, d / "s", index_of(w.src, "gone.safetensors")),
                                                         d / "o"), "is missing"),
    Case("clone-sidecar-not-json", lambda w, d: clone(with_file(w.src, d / "s", "growmerge.json", "[1,"), d / "o"),
         "not valid JSON"),
    Case("clone-pickled-only", lambda w, d: clone(pickled_only(w.src, d / "s"), d / "o"), "pickled checkpoints are refused"),
    # -- clone: the machine ---------------------------------------------------------------------
    Case("clone-read-only-dir", lambda w, d: clone(w.src, d / "ro" / "o"), "Operation not permitted", mode="readonly"),
    Case("clone-file-size-limit", lambda w, d: clone(w.src, d / "o"), "File too large", code=3, mode="fsize"),
    Case("clone-disk-full", lambda w, d: clone(w.src, d / "full" / "o"), "free", code=3, mode="fullfs"),
    Case("clone-sigterm", lambda w, d: clone(w.src, d / "o"), "interrupted by SIGTERM", code=143, mode="sigterm"),
    # -- merge: numbers -------------------------------------------------------------------------
    Case("merge-weight-nan", lambda w, d: merge(merge_yaml(d, [w.a, w.b], params={"weight": math.nan}), d / "o"),
         "weight=nan is outside"),
    Case("merge-weight-inf", lambda w, d: merge(merge_yaml(d, [w.a, w.b], params={"weight": math.inf}), d / "o"),
         "weight=inf is outside"),
    Case("merge-lambda-nan", lambda w, d: merge(merge_yaml(d, [w.a, w.b], w.base, "task_arithmetic",
                                                            shared={"lambda": math.nan}), d / "o"), "lambda=nan"),
    Case("merge-t-nan", lambda w, d: merge(merge_yaml(d, [w.a], w.base, "slerp", params={}, shared={"t": math.nan}),
                                           d / "o"), "t=nan"),
    Case("merge-density-above-1", lambda w, d: merge(merge_yaml(d, [w.a, w.b], w.base, "ties",
                                                                 params={"weight": 1, "density": 1.5}), d / "o"),
         "density=1.5 is outside"),
    Case("merge-weights-cancel", lambda w, d: merge(merge_yaml(d, [w.a, w.b], params={"weight": 0.0}), d / "o"),
         "weights sum to 0"),
    Case("merge-input-inf-weights", lambda w, d: merge(merge_yaml(d, [with_weights(w.a, d / "a", inf_weight), w.b]),
                                                       d / "o"), "NaN or infinite"),
    # -- merge: inputs are sacred ---------------------------------------------------------------
    Case("merge-onto-an-input", lambda w, d: merge(merge_yaml(d, [copy_model(w.a, d / "a"), w.b]), d / "a", "--force"),
         "is the input"),
    Case("merge-into-input-parent", lambda w, d: merge(merge_yaml(d, [copy_model(w.a, d / "in" / "a"), w.b]), d / "in",
                                                       "--force"), "contains the input"),
    Case("merge-onto-the-base", lambda w, d: merge(merge_yaml(d, [w.a, w.b], copy_model(w.base, d / "base"),
                                                              "task_arithmetic"), d / "base", "--force"), "is the input"),
    Case("merge-force-over-foreign", lambda w, d: merge(merge_yaml(d, [w.a, w.b]), foreign(d / "o"), "--force"),
         "replaces only a previous merge"),
    # -- merge: unreadable inputs ---------------------------------------------------------------
    Case("merge-yaml-not-yaml", lambda w, d: merge(a_file(d / "m.yaml", "a: ["), d / "o"), "not valid YAML"),
    Case("merge-yaml-a-list", lambda w, d: merge(a_file(d / "m.yaml", "- 1\n"), d / "o"), "expected a mapping"),
    Case("merge-missing-yaml", lambda w, d: merge(d / "none.yaml", d / "o"), "no such config file"),
    Case("merge-config-empty-object", lambda w, d: merge(merge_yaml(d, [with_file(w.a, d / "a", "config.json", "{}"), w.b]),
                                                         d / "o"), "no model_type"),
    Case("merge-config-not-json", lambda w, d: merge(merge_yaml(d, [with_file(w.a, d / "a", "config.json", "{"), w.b]),
                                                     d / "o"), "not valid JSON"),
    Case("merge-index-not-json", lambda w, d: merge(merge_yaml(d, [with_index(w.a, d / "a", "[[["), w.b]), d / "o"),
         "not valid JSON"),
    Case("merge-header-length-2^62", lambda w, d: merge(merge_yaml(d, [with_header(w.a, d / "a", length=1 << 62), w.b]),
                                                        d / "o"), "not a safetensors file"),
    Case("merge-header-without-dtype", lambda w, d: merge(merge_yaml(d, [with_header(w.a, d / "a", drop_dtype), w.b]),
                                                          d / "o"), "is not a safetensors dtype"),
    Case("merge-shapes-differ", lambda w, d: merge(merge_yaml(d, [w.a, w.other]), d / "o"), "models differ"),
    Case("merge-read-only-dir", lambda w, d: merge(merge_yaml(d, [w.a, w.b]), d / "ro" / "o"), "Operation not permitted",
         mode="readonly"),
    Case("merge-file-size-limit", lambda w, d: merge(merge_yaml(d, [w.a, w.b]), d / "o"), "File too large", code=3,
         mode="fsize"),
    Case("merge-disk-full", lambda w, d: merge(merge_yaml(d, [w.a, w.b]), d / "full" / "o"), "free", code=3,
         mode="fullfs"),
    Case("merge-sigterm", lambda w, d: merge(merge_yaml(d, [w.a, w.b]), d / "o"), "interrupted by SIGTERM", code=143,
         mode="sigterm"),
    Case("merge-input-truncated-meanwhile", lambda w, d: merge(merge_yaml(d, [copy_model(w.a, d / "a"), w.b]), d / "o"),
         "another process is writing it", mode="changed", may_leave=("a/model.safetensors",)),
    # -- merge-grid -----------------------------------------------------------------------------
    Case("grid-plus-in-a-name", lambda w, d: grid(w, d / "g", f"a+b={w.a}", f"c={w.b}"), "not a usable name"),
    Case("grid-name-escapes", lambda w, d: grid(w, d / "g", f"../../escape={w.a}", f"b={w.b}"), "not a usable name"),
    Case("grid-one-model", lambda w, d: grid(w, d / "g", f"a={w.a}"), "at least two models"),
    Case("grid-size-0", lambda w, d: grid(w, d / "g", f"a={w.a}", f"b={w.b}", flags=("--sizes", "0")),
         "subset size 0 is impossible"),
    Case("grid-size-not-a-number", lambda w, d: grid(w, d / "g", f"a={w.a}", f"b={w.b}", flags=("--sizes", "two")),
         "expected comma-separated integers"),
    Case("grid-language-twice", lambda w, d: grid(w, d / "g", f"a={w.a}", f"a={w.b}"), "given twice"),
    Case("grid-density-nan", lambda w, d: grid(w, d / "g", f"a={w.a}", f"b={w.b}", flags=("--param", "density=nan")),
         "density=nan is outside"),
    Case("grid-out-inside-an-input", lambda w, d: grid(w, copy_model(w.a, d / "a") / "g", f"a={d / 'a'}", f"b={w.b}"),
         "is inside the input"),
    Case("grid-cell-in-the-way", lambda w, d: grid(w, d / "g", f"a={w.a}", f"b={w.b}", flags=())
         if foreign(d / "g" / "ties" / "a+b") else [], "is in the way"),
    # -- train ----------------------------------------------------------------------------------
    Case("train-lr-1e30", lambda w, d: ["train", train_job(d, w, lr=1e30)], "lr: Input should be less than"),
    Case("train-lr-nan", lambda w, d: ["train", train_job(d, w, lr=math.nan)], "lr: Input should be a finite"),
    Case("train-beta-above-1", lambda w, d: ["train", train_job(d, w, betas=[0.9, 1.5])], "betas[1]"),
    Case("train-warmup-nan", lambda w, d: ["train", train_job(d, w, warmup_fraction=math.nan)], "warmup_fraction"),
    Case("train-job-a-list", lambda w, d: ["train", a_file(d / "j.yaml", "- a\n")], "expected a mapping"),
    Case("train-out-is-init", lambda w, d: ["train", train_job(d, w, init=str(copy_model(w.src, d / "s")),
                                                               out=str(d / "s")), "--force"], "is the input"),
    Case("train-diverges", lambda w, d: ["train", train_job(d, w, init=str(with_weights(w.src, d / "s", huge_weights)),
                                                            checkpoint_every_steps=None), "--quiet"],
         "training diverged at step 1", may_leave=("m.partial",)),
    # -- data prepare ---------------------------------------------------------------------------
    Case("data-language-twice", lambda w, d: ["data", "prepare", data_yaml(d, w, languages=["sv", "sv"]),
                                              "--run-dir", d / "r"], "'sv' is given twice"),
    Case("data-stream-escapes", lambda w, d: ["data", "prepare", renamed_stream(data_yaml(d, w), "../x"),
                                              "--run-dir", d / "r"], "not a usable name"),
    Case("data-missing-config", lambda w, d: ["data", "prepare", d / "none.yaml", "--run-dir", d / "r"],
         "no such config file"),
    Case("data-read-only-run-dir", lambda w, d: ["data", "prepare", data_yaml(d, w), "--run-dir", d / "ro" / "r"],
         "Operation not permitted", mode="readonly"),
    Case("data-file-size-limit", lambda w, d: ["data", "prepare", data_yaml(d, w), "--run-dir", d / "r"],
         "File too large", code=3, mode="fsize", may_leave=("r",), logs=True),
    Case("data-disk-full", lambda w, d: ["data", "prepare", data_yaml(d, w), "--run-dir", d / "full" / "r"],
         "No space left on device (the machine", code=3, mode="fullfs", may_leave=("r",), logs=True),
    # -- study ----------------------------------------------------------------------------------
    Case("study-sizes-0", lambda w, d: ["study", "plan", study_yaml(d, lambda r: r["merge"].update(sizes=[0]))],
         "merge.sizes[0]"),
    Case("study-weight-nan", lambda w, d: ["study", "plan", study_yaml(
        d, lambda r: r["merge"].update(parameters={"weight": math.nan}))], "weight=nan is outside"),
    Case("study-weights-cancel", lambda w, d: ["study", "plan", study_yaml(
        d, lambda r: r["merge"].update(parameters={"weight": 0.0, "normalize": True}))], "weights sum to 0"),
    Case("study-language-twice", lambda w, d: ["study", "plan", study_yaml(
        d, lambda r: r["data"].update(languages=["is", "is"]))], "'is' is given twice"),
    Case("study-name-escapes", lambda w, d: ["study", "plan", study_yaml(d, lambda r: r.update(name="../../x"))],
         "study name '../../x' is not a usable name"),
    Case("study-off-the-shelf-escapes", lambda w, d: ["study", "plan", study_yaml(
        d, lambda r: r["eval"].update(off_the_shelf=[{"name": "../m", "source": "x"}]))], "not a usable name"),
    Case("study-off-the-shelf-clash", lambda w, d: ["study", "plan", study_yaml(
        d, lambda r: r["eval"].update(off_the_shelf=[{"name": "base_1x", "source": "x"}]))], "named 'base_1x'"),
    Case("study-eval-file-missing", lambda w, d: ["study", "run", study_yaml(
        d, lambda r: r["eval"]["tasks"]["la"].update(extra={"is": [str(d / "nope.tsv")]}))],
         "evaluation file not found: eval.tasks.la.extra.is[0]"),
    Case("study-eval-file-other-language", lambda w, d: ["study", "run", study_yaml(
        d, lambda r: r["eval"]["tasks"]["ip"].update(files={"xx": str(d)}))], "xx is not one of this study's languages"),
    Case("study-lr-inf", lambda w, d: ["study", "plan", study_yaml(d, lambda r: r["train"].update(lr=math.inf))],
         "Input should be a finite number"),
    # -- study results --------------------------------------------------------------------------
    Case("sql-attach", lambda w, d: ["study", "results", w.run, "--sql", f"ATTACH DATABASE '{d / 'x.db'}' AS x"],
         "ATTACH is not allowed"),
    Case("sql-vacuum-into", lambda w, d: ["study", "results", w.run, "--sql", f"VACUUM INTO '{d / 'copy.db'}'"],
         "ATTACH is not allowed"),
    Case("sql-pragma-write", lambda w, d: ["study", "results", w.run, "--sql", "PRAGMA journal_mode=DELETE"],
         "PRAGMA journal_mode is not allowed"),
    Case("sql-delete", lambda w, d: ["study", "results", w.run, "--sql", "DELETE FROM scores"], "DELETE is not allowed"),
    Case("sql-recursive-count", lambda w, d: ["study", "results", w.run, "--sql",
                                              "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
                                              "SELECT COUNT(*) FROM r"], "SQL stopped after"),
    Case("sql-recursive-rows", lambda w, d: ["study", "results", w.run, "--sql",
                                             "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r"],
         "more than"),
    Case("sql-csv-attach", lambda w, d: ["study", "results", w.run, "--csv", d / "o.csv", "--sql",
                                         f"ATTACH DATABASE '{d / 'x.db'}' AS x"], "ATTACH is not allowed"),
    Case("sql-syntax", lambda w, d: ["study", "results", w.run, "--sql", "SELEC 1"], "syntax error"),
    Case("sql-two-statements", lambda w, d: ["study", "results", w.run, "--sql", "SELECT 1; SELECT 2"],
         "one statement at a time"),
    Case("sql-no-run", lambda w, d: ["study", "results", d / "nothing", "--sql", "SELECT 1"], "no results database"),
    Case("sql-corrupt-db", lambda w, d: ["study", "results", a_file(d / "results.sqlite", os.urandom(4096)).parent],
         "not a usable results database"),
    # -- eval and convert -----------------------------------------------------------------------
    Case("eval-json-read-only", lambda w, d: ["eval", w.src, "--lang", "sv", "--la", _pairs(d), "--json",
                                              d / "ro" / "r.json", "--device", "cpu"], "Operation not permitted",
         mode="readonly"),
    Case("eval-corrupt-model", lambda w, d: ["eval", with_header(w.src, d / "s", length=1 << 40), "--lang", "sv", "--la",
                                             _pairs(d), "--device", "cpu"], "not a safetensors file"),
    Case("convert-not-gguf", lambda w, d: ["convert", "gguf", gguf_like(d), d / "o"], "cannot read as a GGUF"),
    Case("convert-out-contains-input", lambda w, d: ["convert", "gguf", gguf_like(d), d, "--force"], "contains the input"),
]


def renamed_stream(data_file: Path, name: str) -> Path:
    raw = yaml.safe_load(data_file.read_text())
    raw["data"]["streams"][name] = raw["data"]["streams"].pop("sv")
    data_file.write_text(yaml.safe_dump(raw))
    return data_file


def _pairs(d: Path) -> Path:
    (d / "la.jsonl").write_text(json.dumps({"good": "The dog runs.", "bad": "The dog run."}) + "\n")
    return d / "la.jsonl"


# ---------------------------------------------------------------------------------------------
# Running a case and judging the outcome
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    code: int | None
    stdout: str = ""
    stderr: str = ""
    hung: bool = False
    bug: str = ""  # an exception that escaped the CLI (in-process runs)
    after: list[str] = field(default_factory=list)  # what a mode saw inside its own namespace


class Hang(BaseException):
    pass


def run_inproc(argv: list[str]) -> Run:
    from growmerge.cli import run_app

    out, err = io.StringIO(), io.StringIO()

    def on_alarm(signum, frame):
        raise Hang()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TIMEOUT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_app([str(a) for a in argv])
        return Run(code, out.getvalue(), err.getvalue())
    except Hang:
        return Run(None, out.getvalue(), err.getvalue(), hung=True)
    except BaseException:  # noqa: BLE001 -- an escaped exception is what the corpus counts
        return Run(1, out.getvalue(), err.getvalue(), bug=traceback.format_exc())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# A process that stops (sleeps) the first time a tensor is checked on its way to disk, after touching
# a file: the moment a test sends its signal or changes an input (clone: main thread; merge: the
# writer thread, with the inputs leased and mapped).
PAUSE = '''
import os, time
if os.environ.get("GROWMERGE_TEST_PAUSE"):
    from growmerge import artifacts
    _check = artifacts.check_finite
    def check_finite(*a, _done=[]):
        if not _done:
            _done.append(1)
            open(os.environ["GROWMERGE_TEST_PAUSE"], "w").close()
            time.sleep(3)
        return _check(*a)
    artifacts.check_finite = check_finite
'''


def env_for(d: Path, pause: bool = False) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if pause:
        site = d.parent / "_pause"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(PAUSE)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
        env["GROWMERGE_TEST_PAUSE"] = str(d / "paused")
    return env


def run_proc(argv: list, d: Path, preexec=None, pause: bool = False, poke=None) -> Run:
    """The CLI as its own process; `poke(proc)` runs once the process has paused (see PAUSE)."""
    cmd = [PY, "-m", "growmerge.cli", *map(str, argv)]
    proc = subprocess.Popen(cmd, cwd=d, env=env_for(d, pause), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=preexec)
    try:
        if poke is not None:
            deadline = time.monotonic() + TIMEOUT
            while not (d / "paused").exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            (d / "paused").unlink(missing_ok=True)
            poke(proc)
        out, err = proc.communicate(timeout=TIMEOUT)
        return Run(proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return Run(None, out, err, hung=True)


def run_full_disk(argv: list, d: Path) -> Run:
    """The CLI in its own mount namespace, writing to a 256 KiB tmpfs; what is left there is listed."""
    full = d / "full"
    cmd = " ".join(map(shlex_quote, [PY, "-m", "growmerge.cli", *map(str, argv)]))
    script = (f"mount -t tmpfs -o size=256k tmpfs {shlex_quote(str(full))} || exit 99; {cmd}; code=$?; "
              f"ls -A {shlex_quote(str(full))}; exit $code")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=d, env=env_for(d), capture_output=True,
                          text=True, timeout=TIMEOUT)
    if proc.returncode == 99:
        pytest.skip("cannot mount a tmpfs in a private mount namespace here (needs root)")
    left = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return Run(proc.returncode, "", proc.stderr, after=left)


def shlex_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


@contextlib.contextmanager
def read_only(directory: Path):
    """`directory` immutable (chattr +i): even root cannot create anything in it."""
    directory.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root` with its size and modification time (directories too)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        # A directory's own mtime changes whenever an entry comes and goes (a temporary one too).
        out[str(p.relative_to(root))] = ("dir",) if p.is_dir() else (st.st_size, st.st_mtime_ns)
    return out


def execute(case: Case, ws: Workspace) -> tuple[Run, dict, dict, Path]:
    d = ws.case_dir(case.name)
    argv = case.argv(ws, d)
    assert argv, f"{case.name}: the case built no command"
    before = snapshot(ws.root)
    separate = bool(os.environ.get("GROWMERGE_CORPUS_SUBPROCESS"))
    if case.mode == "inproc":
        run = run_proc(argv, d) if separate else run_inproc(argv)
    elif case.mode == "proc":
        run = run_proc(argv, d)
    elif case.mode == "readonly":
        with read_only(d / "ro"):
            before = snapshot(ws.root)
            run = run_proc(argv, d) if separate else run_inproc(argv)
    elif case.mode == "fsize":
        limit = 20_000  # bytes: far less than any model or shard this writes

        def preexec():
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        run = run_proc(argv, d, preexec=preexec)
    elif case.mode == "fullfs":
        (d / "full").mkdir()
        before = snapshot(ws.root)
        run = run_full_disk(argv, d)
    elif case.mode == "sigterm":
        run = run_proc(argv, d, pause=True, poke=lambda p: p.send_signal(signal.SIGTERM))
    elif case.mode == "changed":
        target = d / "a" / "model.safetensors"
        run = run_proc(argv, d, pause=True, poke=lambda p: os.truncate(target, 1000))
    else:
        raise AssertionError(case.mode)
    after = snapshot(ws.root)
    return run, before, after, d


def judge(case: Case, ws: Workspace, run: Run, before: dict, after: dict, d: Path) -> tuple[str, str]:
    """(outcome, detail): clean, hang, traceback, wrong success, leftovers or unclear."""
    if run.hung:
        return "hang", run.stderr[-500:]
    if run.bug or "Traceback" in run.stderr or "Traceback" in run.stdout:
        return "traceback", (run.bug or run.stderr)[-2000:]
    if run.code == 0:
        return "wrong success", run.stdout[-500:]
    prefix = str(d.relative_to(ws.root))
    allowed = [f"{prefix}/{p}" for p in case.may_leave]
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)
                     and not any(k == a or k.startswith(a + "/") for a in allowed))
    # The pause hook's own files, and SQLite's shared-memory and WAL files beside a results database
    # (a reader of a WAL database keeps them; they are not outputs).
    changed = [k for k in changed if not k.startswith("cases/_pause") and not k.endswith(("-shm", "-wal"))]
    inside = [x for x in run.after if x not in case.may_leave]
    if changed or inside:
        return "leftovers", f"{changed[:5]} {inside[:5]}"
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    if case.logs:
        lines = lines[-1:] if lines and not any(ln.startswith("error:") for ln in lines[:-1]) else lines
    if run.code != case.code or len(lines) != 1 or case.needle not in lines[0]:
        return "unclear", f"exit {run.code}, stderr: {run.stderr[-800:]!r}"
    return "clean", lines[0]


TALLY: dict[str, list[str]] = {}


@pytest.fixture(scope="module", autouse=True)
def tally(request):
    yield
    if TALLY:
        counts = {k: len(v) for k, v in sorted(TALLY.items())}
        line = f"bad inputs: tried {sum(counts.values())}, " + ", ".join(f"{k} {n}" for k, n in counts.items())
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        (reporter.write_line if reporter else print)(line)


@pytest.fixture(autouse=True, scope="module")
def short_sql_limit():
    """A runaway query is stopped after 2 s here rather than the CLI's 20 (in-process runs)."""
    from growmerge.ledger import store

    before, store.SQL_SECONDS = getattr(store, "SQL_SECONDS", None), 2.0
    yield
    store.SQL_SECONDS = before


@pytest.fixture(autouse=True, scope="module")
def quiet_transformers():
    """As the CLI has it: library warnings would be extra stderr lines of an in-process run."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    yield
    hf_logging.set_verbosity(level)
    if bars:
        hf_logging.enable_progress_bar()


def test_the_corpus_is_large_and_names_are_unique():
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, ws: Workspace):
    run, before, after, d = execute(case, ws)
    outcome, detail = judge(case, ws, run, before, after, d)
    TALLY.setdefault(outcome, []).append(case.name)
    assert outcome == "clean", f"{outcome}: {detail}"
