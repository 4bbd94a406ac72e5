"""Helpers for tests against a real one-node Slurm cluster (scripts/slurm-up), not a mock.

`slurm_cluster` brings the cluster up once per session. It skips only when the Slurm packages cannot
be installed (slurm-up exits 3: no apt-get, not root, refused); under CI any other failure is a test
failure, so a broken bring-up can never pass as a skip.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CANNOT_INSTALL = 3  # scripts/slurm-up's exit code when the packages cannot be installed


@pytest.fixture(scope="session")
def slurm_cluster():
    up = subprocess.run([str(REPO / "scripts" / "slurm-up")], capture_output=True, text=True,
                        stdin=subprocess.DEVNULL, timeout=600)
    reason = (up.stderr.strip() or up.stdout.strip()).splitlines()[-1:] or ["no output"]
    if up.returncode == CANNOT_INSTALL:
        pytest.skip(f"no Slurm here: {reason[0]}")
    if up.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"scripts/slurm-up failed (exit {up.returncode}): {reason[0]}")
        pytest.skip(f"scripts/slurm-up failed (exit {up.returncode}): {reason[0]}")
    yield up.stdout.strip()
    # Stop only a cluster this session started: one that was already up belongs to someone else.
    if "already up" not in up.stdout:
        subprocess.run([str(REPO / "scripts" / "slurm-down")], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=120)


@dataclass
class ToyStage:
    """Duck-types growmerge.cluster.slurm.StageLike."""

    id: str
    deps: list[str] = field(default_factory=list)
    kind: str = "data"
    fingerprint: str = "fp1"
    sleep: float = 0.0
    fail: bool = False
    extra: str = ""  # a shell line run before the marker is written


class ToyStudy:
    """Stages whose command appends '<id> start|end <time>' to runs.txt and touches done/<id>."""

    def __init__(self, root: Path, stages: list[ToyStage]):
        self.root = root
        self.stages = stages
        self.state = root / "state"
        (root / "done").mkdir(parents=True, exist_ok=True)
        self.runs = root / "runs.txt"

    def stage(self, stage_id: str) -> ToyStage:
        return next(s for s in self.stages if s.id == stage_id)

    def marker(self, s) -> Path:
        return self.root / "done" / s.id

    def is_done(self, s) -> bool:
        return self.marker(s).exists()

    def command(self, s) -> list[str]:
        lines = [f"echo {s.id} start $(date +%s.%N) >> {self.runs}"]
        if s.sleep:
            lines.append(f"sleep {s.sleep}")
        if s.extra:
            lines.append(s.extra)
        if s.fail:
            lines.append("exit 1")
        lines += [f"echo {s.id} end $(date +%s.%N) >> {self.runs}", f"touch {self.marker(s)}"]
        return ["bash", "-c", "\n".join(lines)]

    def events(self) -> list[tuple[str, str, float]]:
        if not self.runs.exists():
            return []
        return [(a, b, float(c)) for a, b, c in (ln.split() for ln in self.runs.read_text().splitlines())]

    def starts(self, stage_id: str) -> int:
        return sum(1 for i, what, _ in self.events() if i == stage_id and what == "start")

    def time_of(self, stage_id: str, what: str) -> float:
        return max(t for i, w, t in self.events() if i == stage_id and w == what)

    def all_done(self) -> bool:
        return all(self.is_done(s) for s in self.stages)


def wait_until(predicate, timeout: float = 60.0, what: str = "condition", poll: float = 0.25):
    t0 = time.monotonic()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def scancel(*job_ids: str) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], check=True, capture_output=True)


def python_line(code: str) -> str:
    """A shell line running `code` with this interpreter (the venv's, which has growmerge)."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"
