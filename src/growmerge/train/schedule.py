"""The WSD learning-rate schedule: linear warm-up, constant, linear decay to 0.

Warm-up lasts max(warmup_min_steps, ceil(warmup_fraction * T)) steps and decay the last
round(decay_fraction * T) steps; the same curve as ``transformers.get_wsd_schedule(...,
decay_type="linear")`` (whose default decay is cosine, not the paper's).
"""

from __future__ import annotations

import math
from functools import partial


def wsd_phases(total_steps: int, warmup_fraction: float = 0.002, warmup_min_steps: int = 10,
               decay_fraction: float = 0.2) -> tuple[int, int]:
    """(warm-up steps, decay steps) for a run of `total_steps`."""
    warmup = max(warmup_min_steps, math.ceil(warmup_fraction * total_steps))
    decay = round(decay_fraction * total_steps)
    return min(warmup, total_steps), min(decay, total_steps)


def wsd_lambda(step: int, total_steps: int, warmup_steps: int, decay_steps: int) -> float:
    """LR multiplier at `step` (0 at step 0, 1 from `warmup_steps`, 0 at `total_steps`)."""
    warm = step / warmup_steps if step < warmup_steps else 1.0
    decay_start = total_steps - decay_steps
    cool = (total_steps - step) / decay_steps if step > decay_start and decay_steps > 0 else 1.0
    return max(0.0, min(warm, cool))


def wsd_scheduler(optimizer, total_steps: int, warmup_fraction: float = 0.002, warmup_min_steps: int = 10,
                  decay_fraction: float = 0.2):
    from torch.optim.lr_scheduler import LambdaLR

    warmup, decay = wsd_phases(total_steps, warmup_fraction, warmup_min_steps, decay_fraction)
    return LambdaLR(optimizer, partial(wsd_lambda, total_steps=total_steps, warmup_steps=warmup,
                                       decay_steps=decay))
