"""The micro study (tiny models, offline data: the one tests/test_study_slurm.py runs) with the local
executor and with the Slurm executor on this machine's single-node cluster, in the same run, plus
the cluster's bring-up time. What it shows: the per-job overhead Slurm adds (a Python start-up and
imports per stage, scheduling, afterok hand-offs), not a speed-up: on one node the stages are the same.

    .venv/bin/python bench/executors.py [--work /tmp/gm-bench-executors]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_study import micro_config  # noqa: E402  (the tests' micro study: one definition)


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/gm-bench-executors"))
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    up = timed([str(REPO / "scripts" / "slurm-up")])
    growmerge = [sys.executable, "-m", "growmerge.cli", "study", "run"]
    walls = {}
    for executor in ("local", "slurm"):
        raw = micro_config(args.work / executor)
        raw.update(scales=["1x"], multilingual=False, jobs=2, cluster={"time": 30, "cpus_per_task": 1})
        raw["merge"]["methods"] = ["linear"]
        config = args.work / f"{executor}.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(yaml.safe_dump(raw))
        extra = ["--executor", "slurm", "--wait"] if executor == "slurm" else []
        walls[executor] = timed(growmerge + [str(config), *extra])
    print(f"slurm-up (already installed): {up:.1f} s")
    print(f"micro study, local executor (jobs 2): {walls['local']:.0f} s")
    print(f"micro study, Slurm executor (a job per stage, 2 CPUs): {walls['slurm']:.0f} s "
          f"({walls['slurm'] / walls['local']:.2f}x local)")


if __name__ == "__main__":
    main()
