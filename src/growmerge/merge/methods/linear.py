"""Linear: the weighted mean of the models (no base)."""

from __future__ import annotations

import torch

from growmerge.merge.fast import load, spans
from growmerge.merge.registry import Method, Param, register, weights_must_not_cancel


def compat(xs, base, p, ctx) -> torch.Tensor:
    """Weighted mean, accumulated in float32 (mergekit: addcmul into a float32 buffer)."""
    first = xs[0]
    acc_dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
    w = torch.tensor([p.weights], dtype=acc_dtype)
    shape = (1,) + (1,) * first.ndim
    acc = torch.zeros((1, *first.shape), dtype=acc_dtype)
    for x, c in zip(xs, w.unbind(1)):
        acc.addcmul_(x.unsqueeze(0), c.reshape(shape))
    if p.normalize:
        acc.div_(w.sum(dim=1).reshape(shape))
    return acc[0].to(first.dtype)


def fast(xs, base, p, ctx, out) -> None:
    total = sum(p.weights) if p.normalize else 1.0
    for sl in spans(out.numel()):
        acc = load(xs[0], sl, ctx) * p.weights[0]
        for x, w in zip(xs[1:], p.weights[1:]):
            acc.add_(load(x, sl, ctx, "x"), alpha=w)
        out[sl] = acc.div_(total) if p.normalize else acc


WEIGHT = Param("weight", per_model=True, attr="weights", help="the model's weight in the mean")

register(Method(
    "linear", params=(WEIGHT, Param("normalize", bool, True, help="divide by the sum of the weights")),
    compat=compat, fast=fast, base="forbidden", validate=weights_must_not_cancel,
    help="weighted mean of the models",
))
