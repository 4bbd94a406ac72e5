"""A merge method declared in one file, as a new method would be (tests/test_merge_registry.py).

toy_max: base + gain * max_i(weight_i * (model_i - base)), elementwise. Importing this module
registers it; nothing else in growmerge names it.
"""

from __future__ import annotations

import torch

from growmerge.merge.fast import delta, load, spans
from growmerge.merge.registry import Method, Param, register


def compat(xs, base, p, ctx) -> torch.Tensor:
    """In the config dtype, as the inputs arrive."""
    top = torch.stack([w * (x - base) for x, w in zip(xs, p.weights)]).amax(dim=0)
    return base + p.gain * top


def fast(xs, base, p, ctx, out) -> None:
    """float32 chunks of the flat views, written into `out`."""
    for sl in spans(out.numel()):
        b = load(base, sl, ctx, "b")
        top = torch.stack([delta(x, b, sl, ctx, ("d", i)) * w for i, (x, w) in enumerate(zip(xs, p.weights))])
        out[sl] = b + p.gain * top.amax(dim=0)


TOY = register(Method(
    "toy_max",
    params=(Param("weight", per_model=True, attr="weights"),
            Param("gain", default=1.0, low=0, high=4, help="scale of the largest weighted task vector")),
    compat=compat, fast=fast, base="required",
    help="largest weighted task vector, elementwise (a test method)",
))
