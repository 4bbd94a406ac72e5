"""Typed stages: every kind round-trips through JSON losslessly, and a serialised stage runs alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from growmerge.errors import GrowmergeError
from growmerge.study.plan import build_plan, fingerprint_plan
from growmerge.study.spec import StudyConfig
from growmerge.study.stages import STAGE_KINDS, fingerprint, stage_from_json
from test_study import ROOT, micro_config


def every_kind_plan(tmp_path):
    raw = micro_config(tmp_path / "run")
    raw["eval"]["off_the_shelf"] = [{"name": "ref", "source": "some/dir", "max_pairs": 5}]
    raw["analysis"] = {"predictors": True}  # the similarity stages
    raw["scales"] = ["1x", "1x_cloned", "2x", "1x_deep", "scratch"]  # the opt-in arms' deepen and init stages
    return build_plan(StudyConfig.model_validate(raw))


def test_every_stage_kind_round_trips_through_json(tmp_path):
    stages = every_kind_plan(tmp_path)
    kinds = {type(s) for s in stages}
    assert kinds == set(STAGE_KINDS), set(STAGE_KINDS) - kinds
    by_id = {s.id: s for s in stages}
    for s in stages:
        back = stage_from_json(s.to_json())
        assert type(back) is type(s) and back == s, s.id
        assert fingerprint(back, [by_id[d].fingerprint for d in back.deps]) == s.fingerprint
    # typed fields, not dicts: a training stage carries a TrainSpec
    assert type(by_id["2x_is"].spec).__name__ == "TrainSpec" and by_id["2x_is"].spec.steps == 6


def test_the_paper_plan_round_trips_too():
    from growmerge.study.spec import load_study

    stages = build_plan(load_study(ROOT / "configs" / "paper.yaml"))
    copies = fingerprint_plan([stage_from_json(s.to_json()) for s in stages])
    assert [c.fingerprint for c in copies] == [s.fingerprint for s in stages]


def test_a_bad_stage_file_is_one_error():
    with pytest.raises(GrowmergeError, match="stage: "):
        stage_from_json(json.dumps({"kind": "train", "id": "x"}))
    with pytest.raises(GrowmergeError, match="stage: "):
        stage_from_json('{"kind": "teleport", "id": "x"}')


def test_study_stage_runs_a_serialised_stage(tmp_path):
    """`growmerge study stage RUN FILE` (a cluster job) runs the stage in a fresh process and marks it done."""
    from growmerge.study.runner import is_done, open_run

    cfg = StudyConfig.model_validate(micro_config(tmp_path / "run"))
    stages, _ = open_run(cfg, echo=lambda m: None)
    data = stages[0]
    stage_file = tmp_path / "data.json"
    stage_file.write_text(data.to_json())
    cmd = [sys.executable, "-m", "growmerge.cli", "study", "stage", str(cfg.root), str(stage_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert is_done(cfg.root, data) and (cfg.root / "data" / "manifest.json").is_file()
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0 and "data: done" in again.stdout
    missing = subprocess.run(cmd[:-1] + [str(tmp_path / "nope.json")], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such stage file" in missing.stderr


def test_stage_kinds_are_named_once():
    from growmerge.names import STAGE_KINDS as NAMES

    assert tuple(k.model_fields["kind"].default for k in STAGE_KINDS) == NAMES


def test_plan_cost_of_the_paper_study():
    """`study plan --cost`: resources and GPU-hours per job; the paper's ~4e21 training FLOPs."""
    proc = subprocess.run([sys.executable, "-m", "growmerge.cli", "study", "plan", str(ROOT / "configs" / "paper.yaml"),
                           "--cost", "--gpu", "h100", "--mfu", "0.4"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    seed = next(line for line in lines if " seed " in line and "train" in line)
    assert "2×8" in seed and "72:00" in seed
    flops = float(next(line for line in lines if "FLOPs" in line and "training:" in line).split(" tokens, ")[1].split()[0])
    assert 3e21 < flops < 6e21
    assert "GPU-hours at 40% MFU on h100" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "growmerge.cli", "study", "plan", str(ROOT / "configs" / "paper.yaml"),
                          "--cost", "--gpu", "tpu9"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown --gpu 'tpu9'" in bad.stderr and bad.stderr.count("\n") == 1
