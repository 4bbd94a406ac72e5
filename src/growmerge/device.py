"""Where a command computes: one function decides (``pick_device``), every command asks it.

    --device auto | cpu | cuda | cuda:N      (auto = the GPU when torch sees one, else the CPU)

``train``, ``eval`` and ``clone --verify`` take ``--device`` (its form is checked by ``check_spec``
while the command line is parsed); the training spec has ``device:``; ``Scorer.from_dir`` takes
``device=``.
Under torchrun, ``auto`` and ``cuda`` mean the GPU of this process's LOCAL_RANK, so N processes on a
node use N GPUs. torch is imported lazily: the CLI imports this module for its option type.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from growmerge.errors import GrowmergeError

if TYPE_CHECKING:
    import torch

FORMS = "auto, cpu, cuda or cuda:N"
_SPEC = re.compile(r"auto|cpu|cuda(?::\d+)?")


def check_spec(spec: str) -> str:
    """`spec` if it has one of the accepted forms (no hardware is looked at: a spec is checked where it
    is written, a job YAML or a command line, and resolved where the work runs)."""
    s = str(spec).strip().lower()
    if not _SPEC.fullmatch(s):
        raise GrowmergeError(f"device {spec!r} is not one of {FORMS}")
    return s


def pick_device(spec: str | torch.device = "auto") -> torch.device:
    """The device `spec` (``auto``, ``cpu``, ``cuda``, ``cuda:N`` or a torch.device) means on this machine."""
    import torch

    s = check_spec(str(spec))
    if s == "cpu" or (s == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise GrowmergeError(f"device {s}: torch sees no CUDA device here (build {torch.__version__}): "
                             "use --device cpu or auto")
    # torchrun starts one process per GPU and tells each its LOCAL_RANK; alone, a process takes GPU 0.
    local = os.environ.get("LOCAL_RANK")
    index = int(s.partition(":")[2]) if ":" in s else int(local or 0)
    count = torch.cuda.device_count()
    if index >= count:
        why = f"LOCAL_RANK {local}: start at most {count} processes per node" if ":" not in s and local else \
            f"use cuda:0 to cuda:{count - 1}"
        raise GrowmergeError(f"device cuda:{index} does not exist: this machine has {count} CUDA device(s) ({why})")
    return torch.device("cuda", index)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision in `dtype` on the device's own autocast (off for float32 or None)."""
    import torch

    on = dtype is not None and dtype != torch.float32
    return torch.autocast(device.type, dtype=dtype if on else torch.bfloat16, enabled=on)


def enable_tf32(device: torch.device) -> bool:
    """TF32 matmuls and convolutions on a CUDA device (what Ampere+ GPUs are fast at); nothing elsewhere.

    Training only: scoring and clone verification stay IEEE float32, since their job is to be exact.
    """
    import torch

    if device.type != "cuda":
        return False
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    return True


# For typer: `typer.Option("auto", parser=check_spec, metavar=METAVAR, help=DEVICE_HELP)` checks the form
# while the command line is parsed; a bad one is our one-line error (not click's multi-line usage text).
METAVAR = "auto|cpu|cuda|cuda:N"
DEVICE_HELP = "auto (the GPU when there is one), cpu, cuda or cuda:N"
