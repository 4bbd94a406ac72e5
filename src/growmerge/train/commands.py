"""CLI commands of `growmerge.train` (registered by `growmerge.cli`).

    growmerge train JOB.yaml [--out DIR] [--resume] [--force] [--threads N] [--fsdp] [--compile] [--device D]
    torchrun --nproc-per-node 2 -m growmerge.cli train JOB.yaml [--fsdp]

JOB.yaml holds the TrainSpec fields plus ``mixture:`` (items of shard/epochs/name), ``out:``,
optionally ``tokenizer:`` and ``meta:`` (kind, parents, setup, languages for growmerge.json).
Relative paths are relative to the YAML file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from growmerge.device import DEVICE_HELP, METAVAR, check_spec


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train_cmd(
        job: Path = typer.Argument(..., help="Training job YAML (TrainSpec fields + mixture, out, tokenizer, meta)."),
        out: Optional[Path] = typer.Option(None, help="Output model directory (overrides `out:` in the YAML)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the newest complete checkpoint."),
        force: bool = typer.Option(False, "--force", help="Discard an unfinished or different earlier run."),
        threads: Optional[int] = typer.Option(
            None, help="OpenMP threads per process (default: torch's, or 1 per process under torchrun; "
                       "2 threads per process on a shared 2-core machine ran ~7x slower)."),
        fsdp: bool = typer.Option(False, "--fsdp", help="Under torchrun: FSDP2 instead of DDP."),
        compile: bool = typer.Option(False, "--compile", help="torch.compile the model."),
        device: Optional[str] = typer.Option(
            None, parser=check_spec, metavar=METAVAR, help=f"{DEVICE_HELP} (default: the job's `device:`, else auto); "
                                                "under torchrun each process takes the GPU of its LOCAL_RANK."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    ) -> None:
        """Train (or continue pretraining) a model on a data mixture with the WSD schedule."""
        from growmerge.train.job import load_job
        from growmerge.train.loop import train

        j = load_job(job)
        spec = j.spec().model_copy(update={k: v for k, v in
                                           dict(threads=threads, fsdp=fsdp or None, compile=compile or None,
                                                device=device).items()
                                           if v is not None})
        target = out or j.out
        if target is None:
            raise_missing_out(job)
        result = train(spec.init, j.mixture(), spec, target, j.tokenizer, j.meta, resume=resume, force=force,
                       progress=not quiet)
        print(result)


def raise_missing_out(job: Path) -> None:
    from growmerge.errors import GrowmergeError

    raise GrowmergeError(f"{job}: no output directory: add `out:` to the YAML or pass --out")
