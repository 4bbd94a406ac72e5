"""SIGKILL at random moments: clone, merge, a training run and `data prepare`, each killed at KILLS seeded
moments. After every kill nothing that looks finished is partial (an output is either absent or equal
to the uninterrupted run's); after the kills a plain rerun succeeds with the same output.

SIGKILL runs no cleanup at all, so this is what the atomic renames alone guarantee (the next run of
the same output sweeps the temporary directories the killed ones left). The moments are drawn from
the part of an uninterrupted run that writes: from the first new entry in the output's directory to
the end (before it, the interpreter imports torch and reads, and a kill leaves nothing to check).
Clone and merge write for a fraction of a second, less than their start-up varies from run to run,
so their moments count from the moment the killed run itself creates its first entry. A run that
finished before its kill is started over from nothing, so that every kill interrupts work.
"""

from __future__ import annotations

import filecmp
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import make_tiny_llama

PY = sys.executable
SEED = 15
KILLS = 10


def run(argv: list, cwd: Path, kill_after: float | None = None, watch: Path | None = None
        ) -> subprocess.CompletedProcess | None:
    """The CLI as its own process; with `kill_after`, SIGKILLed that many seconds after its start or,
    with `watch`, after it first created an entry there (None if it was killed)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    before = set(watch.iterdir()) if watch is not None else set()
    proc = subprocess.Popen([PY, "-m", "growmerge.cli", *map(str, argv)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if kill_after is not None:
        while watch is not None and proc.poll() is None and not set(watch.iterdir()) - before:
            time.sleep(0.002)
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return None
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def timed(argv: list, cwd: Path, watch: Path) -> tuple[float, float]:
    """Wall time of an uninterrupted run, and when it first created something in `watch`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    before = set(watch.iterdir())
    t = time.perf_counter()
    proc = subprocess.Popen([PY, "-m", "growmerge.cli", *map(str, argv)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = None
    while proc.poll() is None:
        if first is None and set(watch.iterdir()) - before:
            first = time.perf_counter() - t
        time.sleep(0.005)
    duration = time.perf_counter() - t
    out, err = proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    return (first if first is not None else 0.5 * duration), duration


def same_tree(a: Path, b: Path, ignore: tuple[str, ...] = ()) -> list[str]:
    """Relative paths that differ between two directory trees (content, or present on one side only)."""
    files = lambda root: {str(p.relative_to(root)) for p in root.rglob("*")  # noqa: E731
                          if p.is_file() and not any(part in ignore for part in p.relative_to(root).parts)}
    fa, fb = files(a), files(b)
    differ = sorted(fa ^ fb)
    differ += [f for f in sorted(fa & fb) if not filecmp.cmp(a / f, b / f, shallow=False)]
    return differ


def moments(window: tuple[float, float], rng: random.Random) -> list[float]:
    first, duration = window
    return [rng.uniform(first, 1.02 * duration) for _ in range(KILLS)]


def temp_siblings(out: Path) -> list[Path]:
    return [p for p in out.parent.iterdir() if p.name.startswith(out.name + ".tmp-") or p.name.startswith(out.name + ".old-")]


def kill_and_rerun(argv: list, out: Path, reference: Path, cwd: Path, rng: random.Random, window) -> None:
    """Each kill (a random moment of the writing, counted from the run's first entry beside `out`)
    leaves `out` absent or complete; the rerun gives the reference and sweeps the leftovers."""
    first, duration = window
    interrupted: set[str] = set()
    for t in moments((0.0, duration - first), rng):
        r = run(argv, cwd, kill_after=t, watch=out.parent)
        assert r is None or r.returncode == 0, r.stderr[-2000:]
        interrupted |= {p.name for p in temp_siblings(out)}
        if out.exists():  # it looks finished: it must be
            assert not same_tree(out, reference), f"killed at {t:.2f} s: {out} is partial"
    print(f"{argv[0]}: {len(interrupted)} of {KILLS} kills left a temporary directory behind (swept by a later run)")
    r = run(argv, cwd)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not same_tree(out, reference)
    assert not temp_siblings(out), temp_siblings(out)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> dict[str, Path]:
    """Bigger than the other tests' tiny models, so that writing takes a noticeable part of a run."""
    root = tmp_path_factory.mktemp("kill")
    shape = dict(hidden=256, layers=4, heads=4, kv_heads=2, intermediate=768, vocab=2048)
    return {"root": root, "base": make_tiny_llama(root / "base", seed=0, **shape),
            "a": make_tiny_llama(root / "a", seed=1, **shape), "b": make_tiny_llama(root / "b", seed=2, **shape)}


def test_sigkill_clone(model, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    window = timed(["clone", model["a"], ref, "--factor", "2"], tmp_path, tmp_path)
    kill_and_rerun(["clone", model["a"], out, "--factor", "2", "--force"], out, ref, tmp_path,
                   random.Random(SEED), window)


def test_sigkill_merge(model, tmp_path):
    cfg = {"merge_method": "ties", "base_model": str(model["base"]), "dtype": "float32",
           "models": [{"model": str(model[k]), "parameters": {"weight": 1.0, "density": 0.5}} for k in ("a", "b")]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(cfg))
    ref, out = tmp_path / "ref", tmp_path / "out"
    window = timed(["merge", tmp_path / "m.yaml", ref], tmp_path, tmp_path)
    kill_and_rerun(["merge", tmp_path / "m.yaml", out, "--force"], out, ref, tmp_path, random.Random(SEED + 1), window)


def test_sigkill_training(tmp_path):
    from test_train import losses, random_shard

    from growmerge.artifacts import read_safetensors_header
    from growmerge.train.checkpoint import state_problem

    shard = random_shard(tmp_path / "d.bin")
    spec = {"init": "tiny", "steps": 16, "global_batch": 8, "micro_batch": 2, "checkpoint_every_steps": 2, "seed": 1}
    for name in ("ref", "m"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**spec, "mixture": [{"shard": str(shard), "name": "x"}],
                                                                "out": str(tmp_path / name)}))
    window = timed(["train", tmp_path / "ref.yaml", "--quiet"], tmp_path, tmp_path)
    out, work = tmp_path / "m", tmp_path / "m.partial"
    for t in moments(window, random.Random(SEED + 2)):
        if out.exists():  # the last one finished before its kill: start over
            shutil.rmtree(out)
        r = run(["train", tmp_path / "m.yaml", "--resume", "--quiet"], tmp_path, kill_after=t)
        assert r is None or r.returncode == 0, r.stderr[-2000:]
        # Every checkpoint that looks finished is: a loadable export and, if it has one, a usable state.
        for step in (work / "checkpoints").glob("step-*") if work.exists() else []:
            if step.name.endswith(".tmp"):
                continue
            assert (step / "config.json").is_file() and read_safetensors_header(step / "model.safetensors")
            if (step / "state").is_dir():
                assert state_problem(step / "state") is None, step
        if out.exists():
            assert (out / "config.json").is_file() and not work.exists()
    r = run(["train", tmp_path / "m.yaml", "--resume", "--quiet"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    got, want = np.array(losses(out)), np.array(losses(tmp_path / "ref"))
    assert len(got) == len(want) == 16 and np.max(np.abs(got - want)) <= 1e-6
    from safetensors.torch import load_file

    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "ref" / "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


def test_sigkill_data_prepare(tmp_path):
    from test_data import corpus_spec, make_corpus

    make_corpus(tmp_path)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"data": corpus_spec(tmp_path)}))
    ref, run_dir = tmp_path / "ref", tmp_path / "run"
    window = timed(["data", "prepare", tmp_path / "data.yaml", "--run-dir", ref], tmp_path, tmp_path)
    for t in moments(window, random.Random(SEED + 3)):
        if (run_dir / "data" / "manifest.json").is_file():  # the last one finished before its kill: start over
            shutil.rmtree(run_dir)
        run(["data", "prepare", tmp_path / "data.yaml", "--run-dir", run_dir], tmp_path, kill_after=t)
        if (run_dir / "data" / "manifest.json").is_file():  # "prepared": everything it lists is complete
            assert not same_tree(run_dir, ref)
        for meta in (run_dir / "data").rglob("*.meta.json") if (run_dir / "data").is_dir() else []:
            if json.loads(meta.read_text()).get("complete"):  # a shard that says complete is the reference's
                rel = meta.relative_to(run_dir)
                assert filecmp.cmp(meta, ref / rel, shallow=False)
                shard = meta.with_name(meta.name.replace(".meta.json", ".bin"))
                assert filecmp.cmp(shard, ref / shard.relative_to(run_dir), shallow=False)
    r = run(["data", "prepare", tmp_path / "data.yaml", "--run-dir", run_dir], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not same_tree(run_dir / "data", ref / "data")
    assert not same_tree(run_dir / "tokenizer", ref / "tokenizer")
