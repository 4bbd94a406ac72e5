"""Run a study plan: every stage in order, skipping what is already done. Only the loop lives here:
the stages themselves (``study/stages.py``) know how to run.

A stage is done when ``<run>/stages/<id>.json`` holds its current fingerprint; the marker is written
only after the stage's outputs are complete (every output is itself written atomically), so a run
killed at any point resumes at the first unfinished stage. Training stages additionally resume from
their last checkpoint; evaluation stages skip the (model, language) cells already in results.sqlite.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from growmerge.artifacts import write_json_atomic, write_text_atomic
from growmerge.errors import GrowmergeError
from growmerge.ledger import Results
from growmerge.study.plan import build_plan
from growmerge.study.spec import StudyConfig
from growmerge.study.stages import Context, NotLeader, Stage, TrainStage, stage_from_json


STUDY_FILE = "study.json"  # the validated study config of a run, as the stages' executors read it


def context(cfg: StudyConfig, results: Results, say: Callable[[str], None] = print, interactive: bool = False,
            root: Path | None = None) -> Context:
    return Context(root or cfg.root, cfg.data, results, study=cfg.name, nproc=cfg.nproc, device=cfg.device, say=say,
                   interactive=interactive)


# ---------------------------------------------------------------------------------------------
# Stage markers
# ---------------------------------------------------------------------------------------------
def marker(root: Path, stage: Stage) -> Path:
    return root / "stages" / f"{stage.id}.json"


def is_done(root: Path, stage: Stage) -> bool:
    path = marker(root, stage)
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text())["fingerprint"] == stage.fingerprint
    except (json.JSONDecodeError, KeyError):
        return False


def mark_done(root: Path, stage: Stage, seconds: float) -> None:
    path = marker(root, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"fingerprint": stage.fingerprint, "seconds": round(seconds, 2),
                             "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
@contextmanager
def stage_log(root: Path, stage: Stage, echo: Callable[[str], None]):
    """Messages of a stage go to <run>/logs/<id>.log and, shortened, to the terminal."""
    path = root / "logs" / f"{stage.id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        def say(msg: str) -> None:
            fh.write(f"{time.strftime('%H:%M:%S')} {msg}\n")
            fh.flush()
            echo(f"    {msg}")
        yield say


def run_stage(ctx: Context, stage: Stage, head: str, echo: Callable[[str], None], t_study: float) -> None:
    echo(f"{head}: running")
    t0 = time.perf_counter()
    with stage_log(ctx.root, stage, echo) as say:
        ctx.say = say
        try:
            stage.run(ctx)
        except NotLeader:
            echo(f"{head}: this node's share finished (node 0 marks the stage done)")
            return
    mark_done(ctx.root, stage, time.perf_counter() - t0)
    echo(f"{head}: finished in {time.perf_counter() - t0:.1f} s (study {time.perf_counter() - t_study:.0f} s)")


def _worker(cfg_json: str, stage_json: str, head: str, threads: int, t_study: float) -> None:
    """One stage in a worker process (parallel runs): its own threads, its own results connection."""
    import torch

    torch.set_num_threads(threads)
    cfg = StudyConfig.model_validate_json(cfg_json)
    stage = stage_from_json(stage_json)
    # Only stages that do not train change threads midway: a gradient's float sums depend on the
    # thread count (1e-9, measured), a forward pass's did not, and the demo must repeat bit for bit.
    follows = not cfg.threads and not isinstance(stage, TrainStage)
    hook = follow_share(cfg.root / SHARES / stage.id) if follows else None

    def echo(msg: str) -> None:
        print(msg, flush=True)

    try:
        with Results(cfg.root / "results.sqlite") as results:
            run_stage(context(cfg, results, say=echo), stage, head, echo, t_study)
    finally:
        if hook is not None:  # the pool reuses this process for the next stage
            hook.remove()


def open_run(cfg: StudyConfig, only: list[str] | None = None, echo: Callable[[str], None] = print
             ) -> tuple[list[Stage], list[Stage]]:
    """Plan the study, record the plan and the validated config in the run directory (a stage run
    elsewhere reads them there), and return (every stage, the stages still to do)."""
    cfg.check_files()  # the whole study is valid before its first stage (the YAML itself, when it was read)
    root = cfg.root
    stages = build_plan(cfg)
    root.mkdir(parents=True, exist_ok=True)
    if only:
        unknown = [s for s in only if s not in {st.id for st in stages}]
        if unknown:
            raise GrowmergeError(f"no stage named {unknown[0]!r} (see `growmerge study plan`)")
    write_json_atomic(root / STUDY_FILE, cfg.model_dump(mode="json"))
    write_json_atomic(root / "plan.json", [s.model_dump(mode="json") for s in stages])
    with Results(root / "results.sqlite"):
        pass  # create the schema once, before any worker opens the file (concurrent creation locks)
    todo = []
    for i, s in enumerate(stages, 1):
        if only and s.id not in only:
            continue
        if is_done(root, s):
            echo(f"[{i}/{len(stages)}] {s.id}: done")
        else:
            todo.append(s)
    return stages, todo


def run_study(cfg: StudyConfig, only: list[str] | None = None, echo: Callable[[str], None] = print,
              jobs: int | None = None) -> list[Stage]:
    """The local executor: every stage not done yet, `jobs` at a time as dependencies allow.
    Returns the plan."""
    jobs = jobs or cfg.jobs
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    stages, todo = open_run(cfg, only, echo)
    root = cfg.root
    t_study = time.perf_counter()
    heads = {s.id: f"[{i}/{len(stages)}] {s.id}" for i, s in enumerate(stages, 1)}
    if jobs == 1:
        with Results(root / "results.sqlite") as results:
            ctx = context(cfg, results, say=echo, interactive=sys.stderr.isatty())
            for stage in todo:
                run_stage(ctx, stage, heads[stage.id], echo, t_study)
    else:
        run_parallel(cfg, sorted(todo, key=start_order(stages, todo)), heads, jobs, t_study)
    return stages


def start_order(stages: list[Stage], todo: list[Stage]) -> Callable[[Stage], tuple]:
    """Which of the ready stages starts first: the one most stages wait on (the critical path), then
    the heavy scorers, then plan order. Why: in plan order the long evaluations of merges, of the
    matched runs and of off-the-shelf references started last and ran alone at the end, one core idle."""
    children: dict[str, list[str]] = {s.id: [] for s in todo}
    for s in todo:
        for d in s.deps:
            children.setdefault(d, []).append(s.id)
    below: dict[str, set[str]] = {}

    def descendants(sid: str) -> set[str]:
        if sid not in below:
            below[sid] = set().union(*({c, *descendants(c)} for c in children.get(sid, [])))
        return below[sid]

    references = {s.id for s in stages if s.kind == "reference"}
    heavy = {s.id for s in todo if s.kind in ("eval_merges", "matched")
             or (s.kind == "eval" and s.target in references)}
    index = {s.id: i for i, s in enumerate(todo)}
    return lambda s: (-len(descendants(s.id)), s.id not in heavy, index[s.id])


def run_parallel(cfg: StudyConfig, todo: list[Stage], heads: dict[str, str], jobs: int, t_study: float) -> None:
    """Independent stages in `jobs` worker processes; a stage starts once none of its dependencies
    is still to run. A failure stops new starts, lets running stages finish, then re-raises."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    cores = os.cpu_count() or 1
    pending = list(todo)
    running: dict = {}
    failure: BaseException | None = None
    cfg_json = cfg.model_dump_json()
    def exclusive(stage: Stage) -> bool:
        # torchrun with nproc > 1 takes every GPU (or core) of the machine: never beside another stage.
        return cfg.nproc > 1 and stage.kind == "train"

    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        while (pending and failure is None) or running:
            busy = {s.id for s in pending} | {s.id for s in running.values()}
            ready = [s for s in pending if not any(d in busy for d in s.deps)] if failure is None else []
            starting: list[Stage] = []
            for stage in ready:
                if len(running) + len(starting) >= jobs or any(map(exclusive, [*running.values(), *starting])):
                    break
                if exclusive(stage) and (running or starting):
                    continue
                pending.remove(stage)
                starting.append(stage)
            # The cores are shared evenly by the stages running now: 2 threads per process on a
            # shared 2-core machine collapse several-fold, and a scoring stage left alone takes the
            # cores its finished neighbour freed (its worker follows its share file).
            threads = share_cores(cfg, [*running.values(), *starting], cores)
            for stage in starting:
                fut = pool.submit(_worker, cfg_json, stage.to_json(), heads[stage.id], threads, t_study)
                running[fut] = stage
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                running.pop(fut)
                if fut.exception() is not None and failure is None:
                    failure = fut.exception()
    shutil.rmtree(cfg.root / SHARES, ignore_errors=True)
    if failure is not None:
        raise failure


SHARES = "cores"  # <run>/cores/<stage id>: the threads a running stage may use (local parallel runs)


def share_cores(cfg: StudyConfig, running: list[Stage], cores: int) -> int:
    """Write each running stage's share of the cores to its share file; return the share."""
    threads = cfg.threads or max(1, cores // max(1, len(running)))
    if not cfg.threads:
        (cfg.root / SHARES).mkdir(parents=True, exist_ok=True)
        for stage in running:
            write_text_atomic(cfg.root / SHARES / stage.id, str(threads))
    return threads


def follow_share(path: Path, every_s: float = 1.0):
    """Make this process's torch use the thread count in `path`, read at most every `every_s` seconds
    before a module's forward (set_num_threads must run on the thread that computes: this one).
    Returns the hook's handle."""
    import torch

    last = [0.0]

    def check(module, args) -> None:
        now = time.monotonic()
        if now - last[0] < every_s:
            return
        last[0] = now
        try:
            threads = int(path.read_text())
        except (OSError, ValueError):
            return
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)

    return torch.nn.modules.module.register_module_forward_pre_hook(check)


def run_stage_file(run_dir: Path, stage_file: Path, echo: Callable[[str], None] = print) -> None:
    """Run one serialised stage of a run (what a cluster job does); a no-op when it is done."""
    if not (run_dir / STUDY_FILE).is_file():
        raise GrowmergeError(f"{run_dir}: no {STUDY_FILE} (start the study with `growmerge study run`)")
    if not stage_file.is_file():
        raise GrowmergeError(f"{stage_file}: no such stage file")
    cfg = StudyConfig.model_validate_json((run_dir / STUDY_FILE).read_text(encoding="utf-8"))
    stage = stage_from_json(stage_file.read_bytes())
    if is_done(run_dir, stage):
        echo(f"{stage.id}: done")
        return
    with Results(run_dir / "results.sqlite") as results:
        run_stage(context(cfg, results, say=echo, root=run_dir), stage, stage.id, echo, time.perf_counter())


# ---------------------------------------------------------------------------------------------
# The Slurm executor: every stage a job, afterok on its parents; the done-markers stay the truth
# ---------------------------------------------------------------------------------------------
SLURM_DIR = "slurm"


def stage_command(root: Path, stage: Stage) -> list[str]:
    """The job of a stage: `growmerge study stage RUN FILE` on the stage as it was planned."""
    path = root / "jobs" / f"{stage.id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, stage.to_json())
    return [sys.executable, "-m", "growmerge.cli", "study", "stage", str(root), str(path)]


def stage_units(root: Path, stage: Stage) -> list[list[tuple[str, list[str]]]]:
    """A stage's units still to run, in waves of job arrays before its own job: a data stage's file
    groups, stream splits, tokenizer and shards (growmerge.data.units); other kinds have none."""
    if stage.kind != "data":
        return []
    from growmerge.data.units import pending_units

    argv = [sys.executable, "-m", "growmerge.cli", "data", "unit", stage_command(root, stage)[-1], "--run-dir", str(root)]
    return [[(key, argv + [key]) for key in wave] for wave in pending_units(stage.data, root)]


def submit_study(cfg: StudyConfig, echo: Callable[[str], None] = print, only: list[str] | None = None
                 ) -> dict[str, str]:
    """Submit every stage that is not done (and not already queued or running); returns stage → job.
    `only`: just these stages (their parents must be among them)."""
    from growmerge.cluster.slurm import submit_study as submit

    stages, _ = open_run(cfg, only, echo=lambda m: None)
    if only:
        stages = [s for s in stages if s.id in only]
    root = cfg.root.resolve()
    return submit(stages, lambda s: is_done(root, s), lambda s: stage_command(root, s), cfg.cluster,
                  root / SLURM_DIR, say=echo, units=(lambda s: stage_units(root, s)) if cfg.cluster.data_units else None)


def load_plan(run_dir: Path) -> list[Stage]:
    """The stages of a started run, as its last `study run` planned them."""
    path = run_dir / "plan.json"
    if not path.is_file():
        raise GrowmergeError(f"{run_dir}: no plan.json (start the study with `growmerge study run`)")
    return [stage_from_json(json.dumps(s)) for s in json.loads(path.read_text(encoding="utf-8"))]


def study_status(run_dir: Path):
    from growmerge.cluster.slurm import study_status as status

    return status(load_plan(run_dir), lambda s: is_done(run_dir, s), run_dir / SLURM_DIR)


def wait_for_study(run_dir: Path, echo: Callable[[str], None] = print, poll: float = 5.0) -> bool:
    """Poll until every stage is done (True) or nothing is left queued or running (False)."""
    seen: dict[str, str] = {}
    while True:
        rows = study_status(run_dir)
        for r in rows:
            if seen.get(r.id) != r.state and r.state in ("done", "failed", "cancelled"):
                echo(f"{r.id}: {r.state}" + (f" (job {r.job_id}, log {r.log})" if r.state != "done" else ""))
            seen[r.id] = r.state
        if all(r.state == "done" for r in rows):
            return True
        if not any(r.state in ("queued", "running") for r in rows):
            return False
        time.sleep(poll)
