"""CLI commands of `growmerge.study`: `demo`, `study run|plan|results`, `report`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

class Executor(str, Enum):
    local = "local"
    slurm = "slurm"


from growmerge.study.cost import PEAK_TFLOPS  # noqa: E402  (light: pydantic only)

study_app = typer.Typer(help="Run the whole grid from one YAML.", no_args_is_help=True)


def demo_config() -> Path:
    """configs/demo.yaml of the checkout this package runs from (or of the current directory)."""
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (root / "configs" / "demo.yaml").is_file():
            return root / "configs" / "demo.yaml"
    from growmerge.errors import GrowmergeError

    raise GrowmergeError("configs/demo.yaml not found: run from the growmerge checkout")


def run_and_summarise(config: Path, only: list[str] | None = None, jobs: int | None = None,
                      executor: str = "local", wait: bool = False) -> None:
    import time

    from growmerge.errors import GrowmergeError
    from growmerge.ledger import Results
    from growmerge.report.findings import findings, findings_text
    from growmerge.study.runner import run_study, submit_study, wait_for_study
    from growmerge.study.spec import load_study

    cfg = load_study(config)
    t0 = time.perf_counter()
    if executor == "slurm":
        if only:
            raise GrowmergeError("--only runs stages here; with --executor slurm every stage not done is submitted")
        submit_study(cfg)
        if not wait:
            print(f"\nsubmitted; follow it with: growmerge study status {cfg.root}")
            return
        if not wait_for_study(cfg.root):
            raise GrowmergeError(f"the study stopped with stages not done: growmerge study status {cfg.root}")
    else:
        run_study(cfg, only=only, jobs=jobs)
    with Results(cfg.root / "results.sqlite") as results:
        print("\nFindings of the paper, checked on this run:")
        print(findings_text(findings(results)))
    print(f"\nreport: {cfg.root / 'report' / 'index.html'}   (wall time {time.perf_counter() - t0:.0f} s)")


def demo() -> None:
    """The whole study on the built-in offline data (configs/demo.yaml) → runs/demo/report/index.html."""
    run_and_summarise(demo_config())


@study_app.command("run")
def study_run(config: Path = typer.Argument(..., help="study YAML"),
              only: Optional[List[str]] = typer.Option(None, "--only", help="run only these stage ids"),
              jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="stages side by side (default: the config's jobs)"),
              executor: Executor = typer.Option(Executor.local, "--executor", help="local: run here; slurm: one job per stage (afterok)"),
              wait: bool = typer.Option(False, "--wait", help="with slurm: wait until every stage is done, then summarise")) -> None:
    """Run (or resume) every stage of a study; completed stages are skipped."""
    run_and_summarise(config, only, jobs, executor.value, wait)


@study_app.command("status")
def study_status(run: Path = typer.Argument(..., help="run directory (runs/<name>)")) -> None:
    """Every stage of a run: done, queued, running, failed, cancelled or not submitted, with job ids and logs."""
    from growmerge.study.runner import study_status as status

    rows = status(run)
    print(f"{'stage':26s} {'state':14s} {'job':>8s}  log")
    for r in rows:
        print(f"{r.id:26s} {r.state:14s} {r.job_id or '':>8s}  {r.log or ''}")
    counts = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    print(", ".join(f"{n} {state}" for state, n in counts.items()))


@study_app.command("stage")
def study_stage(run: Path = typer.Argument(..., help="run directory (runs/<name>)"),
                stage_file: Path = typer.Argument(..., help="a stage as JSON (what an executor submits)")) -> None:
    """Run one stage of a started study (a cluster job runs this); a done stage is skipped."""
    from growmerge.study.runner import run_stage_file

    run_stage_file(run, stage_file)


@study_app.command("plan")
def study_plan(config: Path = typer.Argument(..., help="study YAML"),
               cost: bool = typer.Option(False, "--cost", help="also each job's resources and the GPU-hours"),
               gpu: str = typer.Option("h100", "--gpu", help="accelerator for --cost: " + ", ".join(PEAK_TFLOPS)),
               mfu: float = typer.Option(0.4, "--mfu", min=0.01, max=1.0, help="model FLOPs utilisation assumed by --cost")) -> None:
    """Print the stages, their parents and the estimated tokens and FLOPs, without running anything."""
    from growmerge.errors import GrowmergeError
    from growmerge.study.cost import estimate
    from growmerge.study.plan import build_plan
    from growmerge.study.runner import is_done
    from growmerge.study.spec import load_study

    if gpu not in PEAK_TFLOPS:
        raise GrowmergeError(f"unknown --gpu {gpu!r} (one of {', '.join(PEAK_TFLOPS)})")
    cfg = load_study(config)
    stages = build_plan(cfg)
    costs = estimate(cfg, stages)
    warn_eval_files(cfg)
    head = f"{'#':>3} {'stage':24s} {'kind':11s} {'done':4s} {'tokens':>17s} {'FLOPs':>9s}"
    print(head + (f" {'nodes×GPUs':>10s} {'time':>7s} {'GPU-h':>9s}" if cost else "  parents"))
    for i, (s, c) in enumerate(zip(stages, costs), 1):
        line = (f"{i:3d} {s.id:24s} {s.kind:11s} {'yes' if is_done(cfg.root, s) else '':4s} "
                f"{'' if c.tokens is None else f'{c.tokens:,.0f}':>17s} {'' if c.flops is None else f'{c.flops:.2e}':>9s}")
        if cost:
            hours = c.gpu_hours(PEAK_TFLOPS[gpu], mfu)
            limit = "" if c.time_limit is None else f"{c.time_limit // 60}:{c.time_limit % 60:02d}"
            line += f" {f'{c.nodes}×{c.gpus}':>10s} {limit:>7s} {'' if hours is None else f'{hours:,.1f}':>9s}"
        else:
            line += "  " + (", ".join(s.deps) if len(s.deps) <= 4 else f"{', '.join(s.deps[:3])}, … (+{len(s.deps) - 3})")
        print(line)
    tokens = sum(c.tokens or 0 for c in costs)
    flops = sum(c.flops or 0 for c in costs)
    unknown = sum(c.kind == "train" and c.flops is None for c in costs)
    print(f"{len(stages)} stages ({len(stages)} jobs with --executor slurm); training: {tokens:,.0f} tokens, "
          f"{flops:.2e} FLOPs" + (f"; {unknown} training stages unknown until the data stage has run "
                                  "(or give cost.streams)" if unknown else ""))
    if cost:
        hours = sum(c.gpu_hours(PEAK_TFLOPS[gpu], mfu) or 0 for c in costs)
        print(f"GPU-hours at {mfu:.0%} MFU on {gpu} ({PEAK_TFLOPS[gpu]:.0f} TFLOP/s bf16 peak): {hours:,.0f} "
              f"(training only; merging and scoring are not costed)")


def warn_eval_files(cfg) -> None:
    """A user plans before downloading: every evaluation-file problem is a warning here (`study run`
    refuses to start with one)."""
    import sys

    problems = cfg.eval_file_problems(read_all=True)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    if problems:
        print(f"warning: {len(problems)} evaluation file problem(s): `study run` will not start until they "
              "are fixed", file=sys.stderr)


@study_app.command("results")
def study_results(run: Path = typer.Argument(..., help="run directory (runs/<name>)"),
                  sql: Optional[str] = typer.Option(None, "--sql", help="a SELECT over models, checkpoints, scores, merges, train_log"),
                  csv: Optional[Path] = typer.Option(None, "--csv", help="write the query (or the scores table) as CSV")) -> None:
    """Query results.sqlite, or export it as CSV."""
    from growmerge.ledger import Results

    with Results(run / "results.sqlite", read_only=True) as results:
        if csv is not None:
            print(f"wrote {results.to_csv(sql or 'scores', csv)}")
            return
        rows = results.query(sql or "SELECT setup, COUNT(*) AS models FROM models GROUP BY setup")
        if rows:
            print("\t".join(rows[0]))
            for r in rows:
                print("\t".join("" if v is None else str(v) for v in r.values()))


def report(run: Path = typer.Argument(..., help="run directory (runs/<name>)")) -> None:
    """Rebuild the HTML report of a run from its results.sqlite."""
    from growmerge.report import build_report
    from growmerge.ledger import Results

    with Results(run / "results.sqlite", must_exist=True) as results:
        print(f"report: {build_report(run, results)}")


def register(app: typer.Typer) -> None:
    app.command()(demo)
    app.command()(report)
    app.add_typer(study_app, name="study")
