"""Run a study's stages as Slurm jobs, one job per stage, chained with ``afterok`` dependencies.

Jobs are submitted through submitit's ``SlurmExecutor`` (the batch script, ``srun`` over the nodes,
per-task logs, requeue on pre-emption), with ``subprocess.check_call(argv)`` as the payload: the
stage's own command streams its output straight into the Slurm log, and a non-zero exit fails the job
so its dependants are cancelled (``kill_invalid_depend``). Nothing submitit writes back is ever read:
the stages' done-markers (``is_done``) are the only truth of completion, and job states come from
``squeue``/``sacct``.

``state_dir/jobs.json`` records, per stage, the fingerprint, job id, job name and log paths of its
latest job, so a later ``submit_study`` resubmits only what is neither done nor still queued/running
(a live job is reused as a dependency), and ``study_status`` can say where every stage stands.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

from growmerge.artifacts import write_json_atomic
from growmerge.cluster.spec import ClusterSpec, Resources
from growmerge.errors import GrowmergeError

JOBS_FILE = "jobs.json"
STATES = ("done", "queued", "running", "failed", "cancelled", "not submitted")

# Slurm job states (squeue %T / sacct State, first word) -> ours. Anything unknown counts as ended.
_SLURM_STATES = {
    **dict.fromkeys(["PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                     "RESV_DEL_HOLD", "SUSPENDED"], "queued"),
    **dict.fromkeys(["RUNNING", "SIGNALING", "STAGE_OUT", "RESIZING"], "running"),
    **dict.fromkeys(["FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
                     "PREEMPTED", "SPECIAL_EXIT", "REVOKED"], "failed"),
    "CANCELLED": "cancelled",
    # Finished (or finishing) without the stage's done-marker, checked first: the work is not done.
    "COMPLETED": "failed",
    "COMPLETING": "failed",
}
ACTIVE = ("queued", "running")


class StageLike(Protocol):
    id: str
    kind: str
    deps: list[str]
    fingerprint: str


@dataclass
class StageStatus:
    id: str
    state: str            # one of STATES
    job_id: str | None    # the latest recorded job for this fingerprint, if any
    log: Path | None      # its stdout (task 0); stderr is beside it as .err
    slurm_state: str | None = None  # Slurm's own word, for the curious


# ---------------------------------------------------------------------------------------------
# The record: state_dir/jobs.json
# ---------------------------------------------------------------------------------------------
def _load(state_dir: Path) -> dict[str, dict]:
    path = state_dir / JOBS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return dict(data["stages"])
    except (ValueError, KeyError, TypeError):
        raise GrowmergeError(f"{path}: not a growmerge job record (move it away to start afresh)") from None


def _save(state_dir: Path, records: dict[str, dict]) -> None:
    write_json_atomic(state_dir / JOBS_FILE, {"version": 1, "stages": records})


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One submitter at a time per study: two racing submits would each see no live job and both submit."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "jobs.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _record_for(records: dict[str, dict], stage: StageLike) -> dict | None:
    """The recorded job of this stage, only if it ran this very work (same fingerprint)."""
    rec = records.get(stage.id)
    return rec if rec is not None and rec.get("fingerprint") == stage.fingerprint else None


# ---------------------------------------------------------------------------------------------
# Asking Slurm
# ---------------------------------------------------------------------------------------------
def _run(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        raise GrowmergeError(f"{argv[0]} not found: run on a Slurm login node (scripts/slurm-up starts a "
                             "local one-node cluster)")
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise GrowmergeError(f"{argv[0]} did not answer within 60 s: is slurmctld up?") from None
    if out.returncode != 0:
        raise GrowmergeError(f"{shlex.join(argv)} failed: {(out.stderr or out.stdout).strip()[:300]}")
    return out.stdout


def _slurm_states(records: list[dict]) -> dict[str, str]:
    """job id -> Slurm state word for these records; ids Slurm no longer knows are left out.

    squeue first: it is the controller's live view, so a job submitted a moment ago is there (sacct
    may lag). Jobs gone from squeue (older than MinJobAge) or still COMPLETING (squeue does not show
    whether they failed) are looked up in sacct. A job whose name differs from the record is another
    job that got the same id (ids restart at 1 when Slurm's state is wiped) and is ignored.
    """
    names = {r["job_id"]: r["job_name"] for r in records}
    if not names:
        return {}
    states: dict[str, str] = {}
    completing: set[str] = set()
    out = _run(["squeue", "-h", "--states=all", "-u", getpass.getuser(), "-o", "%i|%j|%T"])
    for line in out.splitlines():
        job_id, _, rest = line.partition("|")
        name, _, state = rest.rpartition("|")
        if names.get(job_id) == name:
            if state == "COMPLETING":
                completing.add(job_id)
            else:
                states[job_id] = state
    missing = [j for j in names if j not in states]
    if missing and shutil.which("sacct"):
        # No accounting (sacct fails): such jobs are long finished or unknown, i.e. not live.
        out = subprocess.run(["sacct", "-X", "-P", "-n", "-o", "JobIDRaw,JobName,State",
                              "-j", ",".join(missing)], capture_output=True, text=True, timeout=60)
        for line in out.stdout.splitlines() if out.returncode == 0 else []:
            parts = line.split("|")
            if len(parts) == 3 and names.get(parts[0]) == parts[1]:
                states[parts[0]] = parts[2].split()[0]   # "CANCELLED by 0" -> CANCELLED
    for job_id in completing:
        # Ending either way; if sacct still lags at RUNNING, it must not count as live.
        if _ours(states.get(job_id)) in (None, *ACTIVE):
            states[job_id] = "COMPLETING"
    return states


def _ours(slurm_state: str | None) -> str | None:
    return None if slurm_state is None else _SLURM_STATES.get(slurm_state, "failed")


# ---------------------------------------------------------------------------------------------
# Submitting
# ---------------------------------------------------------------------------------------------
def _order(stages: list[StageLike]) -> list[StageLike]:
    """Parents before children; unknown parents, duplicate ids and cycles are errors."""
    by_id: dict[str, StageLike] = {}
    for s in stages:
        if s.id in by_id:
            raise GrowmergeError(f"stage id {s.id!r} appears twice")
        by_id[s.id] = s
    for s in stages:
        for d in s.deps:
            if d not in by_id:
                raise GrowmergeError(f"stage {s.id!r} depends on {d!r}, which is not a stage of this study")
    order: list[StageLike] = []
    mark: dict[str, int] = {}  # 1 visiting, 2 placed

    def visit(s: StageLike, path: list[str]) -> None:
        if mark.get(s.id) == 2:
            return
        if mark.get(s.id) == 1:
            raise GrowmergeError(f"stages depend on each other in a cycle: {' -> '.join(path + [s.id])}")
        mark[s.id] = 1
        for d in s.deps:
            visit(by_id[d], path + [s.id])
        mark[s.id] = 2
        order.append(s)

    for s in stages:
        visit(s, [])
    return order


def job_name(stage: StageLike) -> str:
    """gm.<stage id>.<fingerprint prefix>: what squeue/sacct must show for a recorded job id to count.

    Kept to characters every Slurm tool prints verbatim. With the fingerprint in it, a job that got
    a recorded id after Slurm's state was wiped matches only if it is this very work anyway.
    """
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", f"{stage.id}.{stage.fingerprint[:12]}")
    return "gm." + clean[:120]


def _submit_one(stage: StageLike, argv: list[str], res: Resources, after: list[str],
                state_dir: Path) -> dict:
    import submitit  # noqa: PLC0415 - only the cluster path needs it

    # A fresh folder per submission: submitit names files by job id, and ids restart at 1 when Slurm's
    # state is wiped, so a reused folder could hold another job's files under the same name.
    stamp = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    folder = state_dir / "slurm" / re.sub(r"[^A-Za-z0-9._-]", "_", stage.id) / stamp
    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(**_job_params(job_name(stage), res, after))
    try:
        # check_call streams the command's output into the Slurm log (CommandFunction would buffer it
        # all in memory) and raises on a non-zero exit, which makes the job FAILED.
        job = executor.submit(subprocess.check_call, list(argv))
    except Exception as exc:  # sbatch refused: bad partition/account/qos, time over the limit, ...
        msg = " ".join(str(exc).split())[-300:]
        raise GrowmergeError(f"sbatch refused stage {stage.id!r} ({stage.kind}): {msg}") from None
    return {
        "fingerprint": stage.fingerprint, "kind": stage.kind, "job_id": str(job.job_id),
        "job_name": job_name(stage), "after": after, "folder": str(folder),
        "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
        "submitted": time.strftime("%Y-%m-%dT%H:%M:%S"), "argv": list(argv),
    }


def _job_params(name: str, res: Resources, after: list[str]) -> dict:
    """submitit parameters of one job (or of every task of an array)."""
    params = {
        "job_name": name, "partition": res.partition, "account": res.account,
        "qos": res.qos, "cpus_per_task": res.cpus_per_task, "mem": res.mem,
        # time=None leaves --time out (partition default); left unset, submitit would ask 5 minutes.
        "time": res.time,
        # One task per node: the stage command (e.g. torchrun) starts its own workers on its node.
        "nodes": res.nodes, "ntasks_per_node": 1,
        "gpus_per_node": res.gpus_per_node or None,   # --gpus-per-node=0 is refused without GRES
        "setup": list(res.setup) or None,
    }
    if after:
        params["dependency"] = "afterok:" + ":".join(after)
    return params


# ---------------------------------------------------------------------------------------------
# Units: a stage's work cut into idempotent pieces that run as job arrays before the stage's job
# ---------------------------------------------------------------------------------------------
Unit = tuple[str, list[str]]  # (a key naming the unit within its stage, its command)


def _live_tasks(jobs: dict[str, str]) -> set[str]:
    """Which of these job ids (array tasks ``123_4`` or plain jobs; id -> job name) are queued or
    running. A task gone from squeue has ended; the unit's own marker says whether it finished."""
    if not jobs:
        return set()
    out = _run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%j|%T"])
    live = set()
    for line in out.splitlines():
        job_id, _, rest = line.partition("|")
        name, _, state = rest.rpartition("|")
        if jobs.get(job_id) == name and _ours(state) in ACTIVE:
            live.add(job_id)
    return live


def _submit_array(stage: StageLike, wave: int, units: list[Unit], res: Resources, after: list[str],
                  state_dir: Path) -> dict[str, list[str]]:
    """One job array, a task per unit; unit key -> [task job id, job name]."""
    import submitit  # noqa: PLC0415 - only the cluster path needs it

    stamp = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    folder = state_dir / "slurm" / re.sub(r"[^A-Za-z0-9._-]", "_", stage.id) / f"units{wave}-{stamp}"
    name = f"{job_name(stage)}.u{wave}"
    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(**_job_params(name, res, after), array_parallelism=len(units))
    try:
        with executor.batch():
            jobs = [executor.submit(subprocess.check_call, list(argv)) for _, argv in units]
    except Exception as exc:
        msg = " ".join(str(exc).split())[-300:]
        raise GrowmergeError(f"sbatch refused the units of stage {stage.id!r} ({stage.kind}): {msg}") from None
    return {key: [str(job.job_id), name] for (key, _), job in zip(units, jobs)}


def _submit_units(stage: StageLike, waves: list[list[Unit]], res: Resources, after: list[str], state_dir: Path,
                  old: dict[str, list[str]], say: Callable[[str], None]) -> dict[str, list[str]]:
    """Each wave as one array after the wave before (the first after `after`). A unit whose recorded
    task is still queued or running is not submitted again: later waves wait on that task."""
    live = _live_tasks({job_id: name for job_id, name in old.values()})
    recs: dict[str, list[str]] = {}
    for i, wave in enumerate(waves):
        reused = {key: old[key] for key, _ in wave if key in old and old[key][0] in live}
        new = [(key, argv) for key, argv in wave if key not in reused]
        fresh = _submit_array(stage, i, new, res, after, state_dir) if new else {}
        if fresh:
            say(f"{stage.id}: units {', '.join(fresh)} submitted as job array "
                f"{next(iter(fresh.values()))[0].split('_')[0]}" + (f" (after {', '.join(after)})" if after else ""))
        recs.update(reused)
        recs.update(fresh)
        after = [job_id for job_id, _ in {**reused, **fresh}.values()]
    return recs


def submit_study(stages: list[StageLike], is_done: Callable[[StageLike], bool],
                 command: Callable[[StageLike], list[str]], cluster: ClusterSpec, state_dir: Path,
                 say: Callable[[str], None] = print,
                 units: Callable[[StageLike], list[list[Unit]]] | None = None) -> dict[str, str]:
    """Submit every stage that is not done and has no live job; return stage id -> job id (live or new).

    A stage's job waits (afterok) on the jobs of its parents that are not done. Safe to call again at
    any time: after a failure, scancel or pre-emption it resubmits only what is not done.
    `units(stage)`: waves of the stage's units not yet finished, each wave a job array that waits on
    the one before; the stage's job waits on them all.
    """
    state_dir = Path(state_dir)
    order = _order(stages)
    with _locked(state_dir):
        records = _load(state_dir)
        done = {s.id: bool(is_done(s)) for s in order}
        live = _slurm_states([r for s in order if not done[s.id] and (r := _record_for(records, s))])
        jobs: dict[str, str] = {}
        fresh: set[str] = set()   # submitted in this call
        for s in order:
            if done[s.id]:
                continue
            rec = _record_for(records, s)
            state = _ours(live.get(rec["job_id"])) if rec else None
            if state in ACTIVE:
                if state == "queued" and any(d in fresh for d in s.deps):
                    # It waits on a parent job that ended without finishing (that parent is being
                    # resubmitted now), so it can never start: replace it with one that waits on
                    # the new parent job.
                    _run(["scancel", rec["job_id"]])
                    say(f"{s.id}: cancelled job {rec['job_id']}: its parent is resubmitted")
                else:
                    jobs[s.id] = rec["job_id"]
                    say(f"{s.id}: job {rec['job_id']} already {state}")
                    continue
            argv = command(s)
            if not isinstance(argv, (list, tuple)) or not argv or not all(isinstance(a, str) for a in argv):
                raise GrowmergeError(f"stage {s.id!r}: its command must be a non-empty list of strings")
            after = [jobs[d] for d in s.deps if not done[d]]
            waves = units(s) if units is not None else []
            unit_recs = _submit_units(s, waves, cluster.resources(s.kind), after, state_dir,
                                      (rec or {}).get("units", {}), say) if waves else {}
            rec = _submit_one(s, argv, cluster.resources(s.kind),
                              after + [job_id for job_id, _ in unit_recs.values()], state_dir)
            if unit_recs:
                rec["units"] = unit_recs
            old = records.get(s.id)
            if old is not None:
                rec["previous"] = (old.get("previous", []) + [old["job_id"]])[-20:]
            records[s.id] = rec
            _save(state_dir, records)   # after each job: a crash mid-way must not forget a live job
            jobs[s.id] = rec["job_id"]
            fresh.add(s.id)
            say(f"{s.id}: submitted job {rec['job_id']}"
                + (f" (after {', '.join(after)})" if after else "") + f", log {rec['stdout']}")
        return jobs


def study_status(stages: list[StageLike], is_done: Callable[[StageLike], bool],
                 state_dir: Path) -> list[StageStatus]:
    """Where every stage stands, in the given order; done-markers win over Slurm's word."""
    state_dir = Path(state_dir)
    records = _load(state_dir)
    done = {s.id: bool(is_done(s)) for s in stages}
    live = _slurm_states([r for s in stages if not done[s.id] and (r := _record_for(records, s))])
    out = []
    for s in stages:
        rec = _record_for(records, s)
        job_id = rec["job_id"] if rec else None
        log = Path(rec["stdout"]) if rec else None
        word = live.get(job_id) if job_id else None
        if done[s.id]:
            state = "done"
        elif rec is None:
            state = "not submitted"
        else:
            # A recorded job Slurm no longer knows ended long ago without its marker: failed.
            state = _ours(word) or "failed"
        out.append(StageStatus(s.id, state, job_id, log, word))
    return out


# ---------------------------------------------------------------------------------------------
# Inside a job
# ---------------------------------------------------------------------------------------------
def torchrun_rendezvous_env() -> tuple[int, int, str, int]:
    """(nnodes, node_rank, master_addr, master_port) for torchrun, from the SLURM_* variables.

    Call it in the per-node task (one task per node, as submit_study starts them). The master is the
    first host of the job's node list; the port is derived from the job id so every node agrees on
    it without talking, and two jobs sharing a node do not collide.
    """
    env = os.environ
    if "SLURM_JOB_ID" not in env or "SLURM_JOB_NODELIST" not in env:
        raise GrowmergeError("torchrun_rendezvous_env: not inside a Slurm job (no SLURM_JOB_ID)")
    nnodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    node_rank = int(env.get("SLURM_NODEID") or 0)
    hosts = _run(["scontrol", "show", "hostnames", env["SLURM_JOB_NODELIST"]]).split()
    if not hosts:
        raise GrowmergeError(f"scontrol shows no hosts for SLURM_JOB_NODELIST={env['SLURM_JOB_NODELIST']}")
    port = 20000 + int(env["SLURM_JOB_ID"]) % 20000
    return nnodes, node_rank, hosts[0], port
