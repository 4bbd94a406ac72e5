"""The micro study through the real Slurm executor: one job per stage with afterok dependencies, a
job cancelled half way, a second `study run` that finishes with nothing finished redone, and
`study status` showing it all (scripts/slurm-up brings the cluster up; no mock)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import yaml
from slurm import scancel, slurm_cluster, wait_until  # noqa: F401

from growmerge.study.runner import study_status
from test_study import micro_config


def growmerge(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "growmerge.cli", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_micro_study_through_slurm_survives_a_cancelled_job(tmp_path, slurm_cluster):
    raw = micro_config(tmp_path / "run")
    # The data stage as one job: its units as job arrays are tested in test_data_slurm.py.
    raw.update(scales=["1x"], multilingual=False, cluster={"time": 30, "cpus_per_task": 1, "data_units": False})
    raw["merge"]["methods"] = ["linear"]
    config = tmp_path / "micro.yaml"
    config.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"

    t0 = time.perf_counter()
    first = growmerge("study", "run", str(config), "--executor", "slurm")
    assert first.returncode == 0, first.stderr
    assert "seed: submitted job" in first.stdout and "(after " in first.stdout
    assert "job array" not in first.stdout  # data_units: false

    # Cancel the seed's training job once it runs: everything after it can no longer start.
    def seed_running():
        return next(r for r in study_status(run) if r.id == "seed").state == "running"

    wait_until(seed_running, timeout=300)
    seed_job = next(r.job_id for r in study_status(run) if r.id == "seed")
    scancel(seed_job)
    wait_until(lambda: not any(r.state in ("queued", "running") for r in study_status(run)), timeout=120)
    status = {r.id: r for r in study_status(run)}
    assert status["seed"].state == "cancelled" and status["seed"].job_id == seed_job
    assert status["seed_code"].state == "done" and status["data"].state == "done"
    assert status["report"].state != "done"
    finished_before = {p.stem: json.loads(p.read_text())["finished"] for p in (run / "stages").glob("*.json")}

    shown = growmerge("study", "status", str(run))
    assert shown.returncode == 0 and "cancelled" in shown.stdout and seed_job in shown.stdout

    second = growmerge("study", "run", str(config), "--executor", "slurm", "--wait")
    assert second.returncode == 0, second.stderr
    assert "Findings of the paper" in second.stdout
    wall = time.perf_counter() - t0
    for stage in finished_before:  # nothing finished was redone
        assert "submitted" not in next((line for line in second.stdout.splitlines() if line.startswith(f"{stage}:")), "")
        assert json.loads((run / "stages" / f"{stage}.json").read_text())["finished"] == finished_before[stage]
    rows = study_status(run)
    assert all(r.state == "done" for r in rows), [(r.id, r.state) for r in rows]
    assert next(r for r in rows if r.id == "seed").job_id != seed_job  # resubmitted
    assert (run / "report" / "index.html").is_file()
    print(f"micro study through Slurm: {wall:.0f} s wall (with one cancelled job)")
