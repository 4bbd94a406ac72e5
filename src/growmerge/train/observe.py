"""What a run shows while it trains: a rich progress bar, TensorBoard events, train_log.jsonl.

Only rank 0 observes. The JSONL log is the machine-readable record (one line per logged step); on a
resume, lines past the resumed step (written by the killed process) are dropped first so the log
reads as one uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path


class Observer:
    def __init__(self, work: Path, total_steps: int, start_step: int, enabled: bool, progress: bool):
        self.enabled = enabled
        self.log_path = work / "train_log.jsonl"
        self.tb = self.bar = None
        if not enabled:
            return
        truncate_log(self.log_path, start_step)
        self.log = open(self.log_path, "a", encoding="utf-8")
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(work / "tb"))
        if progress:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("step {task.completed}/{task.total}"), BarColumn(),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn())
            self.task = self.bar.add_task("train", total=total_steps, completed=start_step, info="")
            self.bar.start()

    def step(self, record: dict) -> None:
        if not self.enabled:
            return
        self.log.write(json.dumps(record) + "\n")
        s = record["step"]
        for key in ("loss", "lr", "grad_norm", "tokens", "flops", "tokens_per_s"):
            self.tb.add_scalar(f"train/{key}", record[key], s)
        if self.bar is not None:
            self.bar.update(self.task, completed=s, info=(f"loss {record['loss']:.4f}  lr {record['lr']:.2e}  "
                                                         f"{record['tokens_per_s']:,.0f} tok/s"))

    def flush(self) -> None:
        if self.enabled:
            self.log.flush()
            self.tb.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self.log.close()
        self.tb.close()
        if self.bar is not None:
            self.bar.stop()


def truncate_log(path: Path, last_step: int) -> None:
    if not path.is_file():
        return
    kept = [ln for ln in path.read_text(encoding="utf-8").splitlines(keepends=True)
            if ln.strip() and ln.endswith("\n") and json.loads(ln)["step"] <= last_step]
    path.write_text("".join(kept), encoding="utf-8")


def read_log(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
