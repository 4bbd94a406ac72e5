"""The study: the plan's DAG, a micro study end to end (real offline data, tiny models), skip/resume
after a crash, and the report it ends in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from growmerge.errors import GrowmergeError
from growmerge.study import runner
from growmerge.study.plan import build_plan
from growmerge.ledger.store import Results
from growmerge.study.spec import StudyConfig, load_study
from growmerge.study.stages import MergeStage

ROOT = Path(__file__).resolve().parents[1]


def micro_config(run_dir: Path) -> dict:
    """2 languages, 2 methods, tiny models, a few steps: every stage kind of the real study."""
    return {
        "name": "micro", "seed": 0, "run_dir": str(run_dir),
        "model": {"init": "tiny", "factor": 2},
        "data": {
            "languages": ["is", "fa"], "seq_len": 64, "tokenizer": {"vocab_size": 512, "sample_chars": 60000},
            "streams": {
                "code": {"lang": "code", "sources": [{"kind": "python_code"}], "max_chars": 60000},
                "en": {"lang": "en", "sources": [{"kind": "libreoffice_help"}], "max_chars": 80000,
                       "split": {"en_seed": 0.8, "en_base": 0.2}},
                "is": {"lang": "is", "sources": [{"kind": "libreoffice_ui"}], "max_chars": 40000, "eval_fraction": 0.2},
                "fa": {"lang": "fa", "sources": [{"kind": "libreoffice_ui"}], "max_chars": 40000, "eval_fraction": 0.2},
            },
        },
        "train": {"global_batch": 4, "checkpoints": 3, "threads": 1},
        "phases": {"seed_code": {"steps": 6}, "seed_mixed": {"steps": 6}, "base": {"steps": 4},
                   "adapt": {"steps": 6}, "multi": {"steps": 6}},
        "merge": {"methods": ["linear", "ties"]},
        "eval": {"tasks": {"ip": {"max_pairs": 10}, "la": {"pairs": 10}, "fk": {"pairs": 10}}, "off_the_shelf": []},
    }


def test_plan_is_a_dag_with_the_paper_lineage():
    cfg = load_study(ROOT / "configs" / "demo.yaml")
    stages = build_plan(cfg)
    ids = [s.id for s in stages]
    assert len(ids) == len(set(ids))
    for i, s in enumerate(stages):  # every dependency comes earlier
        assert all(ids.index(d) < i for d in s.deps), s.id
    by_id = {s.id: s for s in stages}
    assert by_id["base_2x"].init == "seed_2x" and by_id["seed_2x"].src == "seed"
    assert by_id["base_1x_cloned"].src == "base_1x"
    langs = cfg.data.languages
    for lang in langs:
        assert by_id[f"1x_{lang}"].init == "base_1x"
        assert by_id[f"1x_cloned_{lang}"].init == "base_1x_cloned"
        assert by_id[f"2x_{lang}"].init == "base_2x"
        assert by_id[f"2x_{lang}"].mixture == f"adapt_{lang}"
    # task-vector merges subtract the English base of the same scale
    assert {by_id[f"merge_{s}"].base for s in ("1x", "1x_cloned", "2x")} == {"base_1x", "base_1x_cloned", "base_2x"}
    assert stages[-1].id == "report"


def test_fingerprints_change_exactly_downstream(tmp_path):
    raw = micro_config(tmp_path / "run")
    before = {s.id: s.fingerprint for s in build_plan(StudyConfig.model_validate(raw))}
    raw["phases"]["adapt"]["steps"] = 7
    after = {s.id: s.fingerprint for s in build_plan(StudyConfig.model_validate(raw))}
    changed = {k for k in before if before[k] != after[k]}
    assert {"seed", "base_1x", "base_2x", "seed_2x", "base_1x_cloned", "data"}.isdisjoint(changed)
    assert {"1x_is", "2x_fa", "1x_cloned_is", "merge_2x", "eval_1x_is", "report"} <= changed
    assert "1x_multi" not in changed  # multi has its own phase


def test_bad_study_configs(tmp_path):
    raw = micro_config(tmp_path / "run")
    raw["merge"]["methods"] = ["linear", "frankenmerge"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "growmerge.cli", "study", "plan", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "merge.methods" in proc.stderr and "frankenmerge" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    raw = micro_config(tmp_path / "run")
    raw["phases"]["adapt"]["lrr"] = 1.0
    with pytest.raises(GrowmergeError, match="phases.adapt.lrr"):
        from growmerge.config import parse

        parse(StudyConfig, raw, "x.yaml")


def test_micro_study_end_to_end_and_resume(tmp_path, monkeypatch):
    cfg = StudyConfig.model_validate(micro_config(tmp_path / "run"))
    # Crash in the middle (the first merge stage), as a kill would: nothing after it is marked done.
    def crash(self, ctx):
        raise RuntimeError("killed")

    with monkeypatch.context() as patch:
        patch.setattr(MergeStage, "run", crash)
        with pytest.raises(RuntimeError, match="killed"):
            runner.run_study(cfg, echo=lambda m: None)
    stages = build_plan(cfg)
    done = {s.id for s in stages if runner.is_done(cfg.root, s)}
    assert {"data", "pairs", "seed", "base_2x", "2x_fa", "2x_multi"} <= done and "merge_1x" not in done
    seconds = {s: json.loads((cfg.root / "stages" / f"{s}.json").read_text())["finished"] for s in done}

    log: list[str] = []
    runner.run_study(cfg, echo=log.append)
    assert all(f"{s}: done" in "\n".join(log) for s in done)  # nothing completed was redone
    assert all(json.loads((cfg.root / "stages" / f"{s}.json").read_text())["finished"] == seconds[s] for s in done)
    assert all(runner.is_done(cfg.root, s) for s in stages)

    with Results(cfg.root / "results.sqlite") as res:
        setups = {m["setup"] for m in res.models()}
        assert {"1x", "1x_cloned", "2x", "1x_multi", "1x_cloned_multi", "2x_multi", "base_1x", "base_2x"} <= setups
        merges = res.merges()
        assert len(merges) == 2 * 3  # 2 methods × 3 scales × the one pair
        assert {m["scale"] for m in merges} == {"1x", "1x_cloned", "2x"}
        tasks = {(r["task"]) for r in res.query("SELECT DISTINCT task FROM scores")}
        assert tasks == {"ip", "la", "fk"}
        # every checkpoint carries cumulative FLOPs that include the base's
        base = res.models(name="base_2x")[0]["flops_cumulative"]
        first = min(res.checkpoints("2x_is"), key=lambda c: c["step"])
        assert first["flops_cumulative"] > base > 0
        merged_scores = res.query("SELECT COUNT(*) AS n FROM scores s JOIN merges m ON s.model = m.name")
        assert merged_scores[0]["n"] > 0
    html = (cfg.root / "report" / "index.html").read_text()
    assert 'id="findings"' in html and html.count("<img") >= 5

    # a second run is a no-op
    log.clear()
    runner.run_study(cfg, echo=log.append)
    assert all(line.endswith(": done") for line in log)

    # A new density: exactly the TIES merges (linear takes no density) and their scores are redone.
    def files(res):
        return {m["name"]: (m["fingerprint"], (Path(m["path"]) / "model.safetensors").stat().st_mtime_ns)
                for m in res.merges()}

    with Results(cfg.root / "results.sqlite") as res:
        merges_before = files(res)
        scores_before = {(r["model"], r["lang"], r["task"]): r["fingerprint"] for r in res.query("SELECT * FROM scores")}
    from growmerge.evaluate import run as evaluate_run

    scored: list[str] = []
    score_model = evaluate_run.score_model
    monkeypatch.setattr(evaluate_run, "score_model",
                        lambda path, *a, **k: scored.append(str(path)) or score_model(path, *a, **k))
    raw = micro_config(tmp_path / "run")
    raw["merge"]["parameters"] = {"density": 0.3, "normalize": True, "int8_mask": True}
    log.clear()
    runner.run_study(StudyConfig.model_validate(raw), echo=log.append)
    rerun = {line.split("] ")[1].split(":")[0] for line in log if line.endswith(": running")}
    assert rerun == {"merge_1x", "merge_1x_cloned", "merge_2x", "eval_merge_1x", "eval_merge_1x_cloned",
                     "eval_merge_2x", "report"}
    with Results(cfg.root / "results.sqlite") as res:
        merges_after = files(res)
        scores_after = {(r["model"], r["lang"], r["task"]): r["fingerprint"] for r in res.query("SELECT * FROM scores")}
    redone = {name for name in merges_before if merges_after[name] != merges_before[name]}
    assert redone == {name for name in merges_before if "/ties/" in name} and len(redone) == 3
    assert {Path(p).parent.name for p in scored} == {"ties"} and len(set(scored)) == 3
    changed = {key[0] for key in scores_before if scores_after.get(key) != scores_before[key]}
    assert changed == redone and scores_after.keys() == scores_before.keys()


def test_paper_config_validates_without_running():
    proc = subprocess.run([sys.executable, "-m", "growmerge.cli", "study", "plan", str(ROOT / "configs" / "paper.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # 59 stages of the grid + the unigram control + a reference and an eval stage for each of the 6 more
    # off-the-shelf models
    assert "72 stages" in proc.stdout and "2x_fo" in proc.stdout and "merge_1x_cloned" in proc.stdout
    assert "gemma3_1b" in proc.stdout and "authors_2x_is" in proc.stdout
    assert "warning: evaluation file not found: eval.tasks.ip.flores" in proc.stderr  # not downloaded here


def test_micro_study_runs_stages_side_by_side(tmp_path):
    """jobs=2: independent stages in two worker processes; the same plan completes, in dependency order."""
    cfg = StudyConfig.model_validate({**micro_config(tmp_path / "run"), "jobs": 2})
    cfg.merge.methods = ["linear"]
    stages = runner.run_study(cfg, echo=lambda m: None)
    assert all(runner.is_done(cfg.root, s) for s in stages)
    finished = {s.id: json.loads((cfg.root / "stages" / f"{s.id}.json").read_text())["finished"] for s in stages}
    for s in stages:  # a stage finished no earlier than any of its dependencies
        assert all(finished[d] <= finished[s.id] for d in s.deps), s.id
    with Results(cfg.root / "results.sqlite") as res:
        assert len(res.merges()) == 3 and res.query("SELECT COUNT(*) AS n FROM scores")[0]["n"] > 50
    assert not (cfg.root / runner.SHARES).exists()  # the share files go with the run


def test_side_by_side_stages_start_critical_path_first_then_heavy_scorers():
    """Among ready stages: trainings before evaluations, and the long scorers (merges, the matched
    runs, the off-the-shelf reference) before single-model evaluations, which plan order puts first."""
    stages = build_plan(load_study(ROOT / "configs" / "demo.yaml"))
    order = [s.id for s in sorted(stages, key=runner.start_order(stages, stages))]
    pos = order.index
    assert pos("data") < pos("seed") < pos("1x_sv") < pos("merge_1x") < pos("eval_1x_sv")
    heavy = ["eval_merge_1x", "eval_merge_2x", "eval_matched", "eval_smollm2"]
    light = [s.id for s in stages if s.kind == "eval" and s.id != "eval_smollm2"]
    assert max(map(pos, heavy)) < min(map(pos, light))
    plan = [s.id for s in stages]
    assert max(map(plan.index, heavy)) > min(map(plan.index, light))  # the plan order it corrects
    assert order[-1] == "report"


def test_a_scoring_stage_left_alone_takes_the_freed_core(tmp_path):
    """The runner rewrites the share files as stages come and go; a worker's torch follows its file
    between forward passes (in a child process: the hook is global to the process)."""
    cfg = StudyConfig.model_validate({**micro_config(tmp_path / "run"), "jobs": 2})
    a, b = (s for s in build_plan(cfg) if s.id in ("eval_base_1x", "eval_1x_is"))
    assert runner.share_cores(cfg, [a, b], cores=2) == 1
    share = cfg.root / runner.SHARES / a.id
    assert share.read_text() == "1"
    script = f"""
import time, torch
from pathlib import Path
from growmerge.study.runner import follow_share
torch.set_num_threads(1)
hook = follow_share(Path({str(share)!r}), every_s=0.0)
lin = torch.nn.Linear(4, 4)
lin(torch.ones(1, 4)); print(torch.get_num_threads())
Path({str(share)!r}).write_text("2")
lin(torch.ones(1, 4)); print(torch.get_num_threads())
hook.remove()  # the stage is over: the next stage of this worker process is not steered by it
Path({str(share)!r}).write_text("1")
lin(torch.ones(1, 4)); print(torch.get_num_threads())
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "2", "2"]
    assert runner.share_cores(cfg, [a], cores=2) == 2 and share.read_text() == "2"
    pinned = StudyConfig.model_validate({**micro_config(tmp_path / "run2"), "jobs": 2, "threads": 1})
    assert runner.share_cores(pinned, [a], cores=2) == 1 and not (pinned.root / runner.SHARES).exists()


def test_training_stage_under_torchrun(tmp_path):
    """nproc > 1: a training stage runs as `torchrun -m growmerge.cli train JOB` (gloo on CPU)."""
    from growmerge.artifacts import read_meta

    cfg = StudyConfig.model_validate({**micro_config(tmp_path / "run"), "nproc": 2})
    runner.run_study(cfg, only=["data", "seed_code"], echo=lambda m: None)
    meta = read_meta(cfg.root / "models" / "seed_code")
    assert meta["kind"] == "seed" and meta["step"] == 6 and meta["flops"]["self"] > 0
    assert (cfg.root / "jobs" / "seed_code.yaml").is_file()


def test_torchrun_training_never_runs_beside_another_stage(tmp_path):
    """jobs=2 with nproc=2: a torchrun training stage takes the machine; pairs waits or goes first."""
    from datetime import datetime

    cfg = StudyConfig.model_validate({**micro_config(tmp_path / "run"), "nproc": 2, "jobs": 2})
    runner.run_study(cfg, only=["data", "pairs", "seed_code"], echo=lambda m: None)

    def interval(stage: str) -> tuple[float, float]:
        mark = json.loads((cfg.root / "stages" / f"{stage}.json").read_text())
        end = datetime.strptime(mark["finished"], "%Y-%m-%dT%H:%M:%S").timestamp()
        return end - mark["seconds"], end

    (a0, a1), (b0, b1) = interval("pairs"), interval("seed_code")
    assert a1 <= b0 + 1 or b1 <= a0 + 1, ((a0, a1), (b0, b1))  # whole-second timestamps
