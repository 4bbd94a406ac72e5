"""The data stage through the real Slurm executor (scripts/slurm-up; no mock): its units (stream
splits, tokenizer, one packing unit per stream) run as job arrays before the stage's own job, a unit killed mid-array is the only one submitted again (a
finished unit is never redone), and the bytes are those of a local `data prepare` of the same config."""

from __future__ import annotations

import getpass
import json
import subprocess
from pathlib import Path

import yaml
from slurm import slurm_cluster, wait_until  # noqa: F401

from growmerge.data.prepare import prepare_data
from growmerge.data.spec import load_data_spec
from growmerge.study.runner import is_done, load_plan, submit_study
from growmerge.study.spec import load_study
from test_data import corpus_spec, make_corpus
from test_data_resume import outputs
from test_study import micro_config


def our_jobs(prefix: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i %j %T"],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.split()[1].startswith(prefix)]


def data_outputs(run: Path) -> dict[str, bytes]:
    return {k: v for k, v in outputs(run).items() if k.startswith(("data/", "tokenizer/"))}


def test_data_stage_as_slurm_job_arrays_resumes_by_unit(tmp_path, slurm_cluster, monkeypatch):
    make_corpus(tmp_path)
    raw = micro_config(tmp_path / "run")
    raw.update(data=corpus_spec(tmp_path), cluster={"time": 10, "cpus_per_task": 1})
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    prepare_data(load_data_spec(config), tmp_path / "ref")  # what `data prepare CONFIG` does, in-process

    cfg, run = load_study(config), tmp_path / "run"
    work = run / "data" / "text.partial"
    said: list[str] = []
    monkeypatch.setenv("GROWMERGE_KILL_AT", "unit:sv")  # sbatch passes the environment on to the tasks
    submit_study(cfg, said.append, only=["data"])
    assert any("units split:is, split:sv, split:code submitted as job array" in m for m in said), said
    assert any("units split:en submitted as job array" in m for m in said), said
    assert any("units tokenizer submitted as job array" in m for m in said), said
    assert any("units pack:code, pack:en_seed, pack:en_base, pack:sv, pack:is" in m for m in said), said
    stage = next(s for s in load_plan(run) if s.id == "data")
    prefix = "gm." + stage.id
    # sv's task dies (SIGKILL, no marker): en's array and the stage's job are cancelled; code and is finish.
    wait_until(lambda: not our_jobs(prefix), timeout=240, what="the first submission to end")
    assert sorted(p.name for p in work.glob("*.done.json")) == ["code.done.json", "is.done.json"]
    assert not is_done(run, stage)
    kept = {p.name: p.stat().st_mtime_ns for p in work.glob("*.jsonl")}

    monkeypatch.delenv("GROWMERGE_KILL_AT")
    said.clear()
    submit_study(cfg, said.append, only=["data"])
    arrays = [m for m in said if "submitted as job array" in m]
    # Only what did not finish: sv is split again, then en, the tokenizer, the shards.
    assert [a.split(" submitted")[0].split(": units ")[1].split(",")[0] for a in arrays] == [
        "split:sv", "split:en", "tokenizer", "pack:code"], said
    wait_until(lambda: is_done(run, stage), timeout=300, what="the data stage to finish")
    text = run / "data" / "text"
    assert {n: (text / n).stat().st_mtime_ns for n in kept} == kept  # code and is were not split again
    assert data_outputs(run) == data_outputs(tmp_path / "ref")
    record = json.loads((run / "slurm" / "jobs.json").read_text())["stages"]["data"]
    assert sorted(k for k in record["units"] if not k.startswith("pack:")) == ["split:en", "split:sv", "tokenizer"]
    assert len(record["units"]) == 3 + 5 and len(record["previous"]) == 1

    said.clear()  # everything done: nothing is submitted
    assert submit_study(cfg, said.append, only=["data"]) == {} and not said


def test_a_unit_still_running_is_waited_on_not_submitted_again(tmp_path, slurm_cluster):
    """The stage's own job is cancelled while its units run: the next submit submits the stage's job
    again, after the unit task that is still running, and no unit twice (array task ids, live)."""
    from growmerge.cluster import ClusterSpec
    from growmerge.cluster.slurm import submit_study as submit_jobs
    from slurm import ToyStage, ToyStudy, scancel

    st = ToyStudy(tmp_path, [ToyStage("s")])
    runs = tmp_path / "unit-runs.txt"

    def units(stage):
        todo = [k for k in ("slow", "fast") if not (tmp_path / k).exists()]
        return [[(k, ["bash", "-c", f"echo {k} >> {runs}; sleep {6 if k == 'slow' else 0}; touch {tmp_path / k}"])
                 for k in todo]] if todo else []

    said: list[str] = []
    first = submit_jobs(st.stages, st.is_done, st.command, ClusterSpec(cpus_per_task=1, time=5), st.state,
                        say=said.append, units=units)
    record = json.loads((st.state / "jobs.json").read_text())["stages"]["s"]
    slow_task = record["units"]["slow"][0]
    assert "_" in slow_task and record["after"] == [record["units"]["slow"][0], record["units"]["fast"][0]]
    wait_until(lambda: (tmp_path / "fast").exists() and runs.read_text().count("slow") == 1, 60, "both units started")
    scancel(first["s"])
    wait_until(lambda: not any(j.split()[0] == first["s"] for j in our_jobs("gm.s.")), 30, "the cancel")
    said.clear()
    again = submit_jobs(st.stages, st.is_done, st.command, ClusterSpec(cpus_per_task=1, time=5), st.state,
                        say=said.append, units=units)
    assert not any("job array" in m for m in said), said  # slow is live, fast is done
    record = json.loads((st.state / "jobs.json").read_text())["stages"]["s"]
    assert record["after"] == [slow_task] and again["s"] != first["s"]
    wait_until(lambda: st.is_done(st.stage("s")), 60, "the stage after the slow unit")
    assert sorted(runs.read_text().split()) == ["fast", "slow"]  # each unit ran once
    assert st.time_of("s", "start") >= (tmp_path / "slow").stat().st_mtime - 0.1  # after the slow unit
