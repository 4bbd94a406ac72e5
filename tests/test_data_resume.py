"""Kill the data stage (a real SIGKILL, no cleanup) while it splits and while it packs: the resumed
run redoes no finished stream or shard and ends with the same bytes as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from growmerge.data.prepare import prepare_data
from growmerge.data.spec import DataSpec, load_data_spec

from test_data import corpus_spec, make_corpus

GROWMERGE = [str(Path(sys.executable).with_name("growmerge"))]


def outputs(run: Path) -> dict[str, bytes]:
    """Every file the data stage leaves, by path (the manifest and card too)."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and not p.name.endswith(".done.json")}


def prepare(cfg: Path, run: Path, kill_at: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GROWMERGE_KILL_AT": kill_at or ""}
    return subprocess.run([*GROWMERGE, "data", "prepare", str(cfg), "--run-dir", str(run)], env=env,
                          capture_output=True, text=True, timeout=180)


def test_kill_while_splitting_and_packing_loses_no_finished_work(tmp_path):
    make_corpus(tmp_path)
    spec = corpus_spec(tmp_path)
    spec["streams"]["en"]["max_chars"] = 20_000  # the cap is applied after the single read
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump({"data": spec}, sort_keys=False))
    prepare_data(load_data_spec(cfg), tmp_path / "ref")  # in-process: the same YAML, uninterrupted
    reference = outputs(tmp_path / "ref")

    run = tmp_path / "run"
    killed = prepare(cfg, run, "split:sv")  # streams split in order is, sv, en, code
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    work = run / "data" / "text.partial"
    assert sorted(p.name for p in work.glob("*.done.json")) == ["is.done.json", "sv.done.json"]
    assert not (run / "data" / "text").exists() and not (run / "data" / "manifest.json").exists()
    split_files = {p.name: p.stat().st_mtime_ns for p in work.glob("*.jsonl")}
    assert set(split_files) == {"is.train.jsonl", "is.eval.jsonl", "sv.train.jsonl", "sv.eval.jsonl"}

    killed = prepare(cfg, run, "pack:en_base/train")  # shards are packed in YAML order, train then eval
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "split is: kept from an earlier run" in killed.stderr and "split sv: kept" in killed.stderr
    text = run / "data" / "text"
    assert {n: (text / n).stat().st_mtime_ns for n in split_files} == split_files  # not rewritten
    finished = {p: p.stat().st_mtime_ns for p in (run / "data").glob("*/*.meta.json")}
    assert {f"{p.parent.name}/{p.name}" for p in finished} == {
        "code/train.meta.json", "code/eval.meta.json", "en_seed/train.meta.json", "en_seed/eval.meta.json",
        "en_base/train.meta.json"}
    bins = {p.with_name(p.name.replace(".meta.json", ".bin")): 0 for p in finished}
    bins = {b: b.stat().st_mtime_ns for b in bins}

    done = prepare(cfg, run, None)
    assert done.returncode == 0, done.stderr
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # finished shards were not redone
    assert {b: b.stat().st_mtime_ns for b in bins} == bins
    assert outputs(run) == reference
    assert json.loads((run / "data" / "manifest.json").read_text())["streams"]["en_seed"]["train"]["characters"] <= 20_000


def test_streams_split_side_by_side_give_the_same_bytes(tmp_path):
    make_corpus(tmp_path)
    runs = {}
    for workers in (1, 2):  # 2: the target languages and code are split in two processes
        spec = corpus_spec(tmp_path, workers=workers)
        prepare_data(DataSpec.model_validate(spec), tmp_path / f"w{workers}")
        runs[workers] = outputs(tmp_path / f"w{workers}")
    manifests = [json.loads(r.pop("data/manifest.json")) for r in runs.values()]
    assert [m.pop("fingerprint") for m in manifests][0] != ""  # it hashes `workers` too
    assert manifests[0] == manifests[1]
    assert runs[1] == runs[2] and any(k.endswith("en_seed.train.jsonl") for k in runs[1])
