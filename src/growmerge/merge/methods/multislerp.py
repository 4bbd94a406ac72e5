"""MultiSlerp: barycentric interpolation on the hypersphere of task vectors (or of the models
themselves without a base)."""

from __future__ import annotations

import math

import torch

from growmerge.errors import GrowmergeError
from growmerge.merge.fast import delta, load, spans
from growmerge.merge.registry import Method, Param, register, weights_must_not_cancel


def compat(xs, base, p, ctx) -> torch.Tensor:
    """mergekit's formula in the config dtype (NaN where it gives NaN)."""
    if len(xs) == 1:
        return xs[0]
    x = torch.stack(xs, dim=0)
    if base is not None:
        x -= base
    flat = x.view(x.shape[0], -1)
    w = torch.tensor(p.weights, dtype=x.dtype)
    if p.normalize:
        w = w / w.sum()
    norms = torch.norm(flat, dim=-1, keepdim=True)
    unit = flat / (norms + p.eps)
    mean = (unit * w.view(-1, 1)).sum(0)
    mean_norm = torch.norm(mean)
    if mean_norm < p.eps:
        if len(xs) != 2:
            raise GrowmergeError(
                f"multislerp: the weighted mean of the unit task vectors of {ctx.name} is zero "
                "(antipodal inputs); change the weights or drop --mergekit-compat"
            )
        res = x[0] * w[0]
        for xi, wi in zip(x[1:], w[1:]):
            res = res + xi * wi
        return res + base if base is not None else res
    mean = mean / mean_norm
    dots = (unit * mean).sum(-1, keepdim=True)
    tangent = ((unit - dots * mean) * w.view(-1, 1)).sum(0)
    # compat: in float16 eps rounds to 0, so a tangent norm of exactly 0 gives 0/0 = NaN, as
    # in mergekit. The default mode runs in float32 where eps survives (sin(eps)/eps = 1).
    tnorm = torch.norm(tangent) + p.eps
    res = mean * torch.cos(tnorm) + tangent * (torch.sin(tnorm) / tnorm)
    res = (res * (norms.squeeze(-1) * w).sum()).view(x.shape[1:])
    return res + base if base is not None else res


def fast(xs, base, p, ctx, out) -> None:
    """Closed form: the tangent-space step is exactly zero in exact arithmetic (the weighted
    tangents sum to |M| m - (sum_i w_i u_i.m) m = 0), so the result is the normalised weighted
    mean of the unit task vectors times the weighted mean of their norms -- computed from the
    Gram matrix of the task vectors (pass 1), never NaN."""
    n, k = out.numel(), len(xs)
    w = torch.tensor(p.weights, dtype=torch.float64)
    if p.normalize:
        w = w / w.sum()
    if k == 1:
        for sl in spans(n):
            out[sl] = load(xs[0], sl, ctx)
        return
    gram = torch.zeros(k, k, dtype=torch.float64)
    for sl in spans(n):
        b = load(base, sl, ctx, "b") if base is not None else None
        d = torch.stack([load(x, sl, ctx) if b is None else delta(x, b, sl, ctx, ("d", i)) for i, x in enumerate(xs)])
        gram += (d @ d.T).double().cpu()
    norms = gram.diagonal().clamp_min(0).sqrt()
    c = w / (norms + p.eps)  # unit vectors u_i = d_i / (|d_i| + eps)
    mean_norm = math.sqrt(max(float(c @ gram @ c), 0.0))
    if mean_norm < p.eps:
        coef = w  # antipodal or all-zero task vectors: the weighted linear mean (never NaN)
    else:
        coef = c * float((norms * w).sum()) / mean_norm
    coef = coef.tolist()
    for sl in spans(n):
        b = load(base, sl, ctx, "b") if base is not None else None
        acc = torch.zeros(sl.stop - sl.start, dtype=ctx.compute, device=ctx.device) if b is None else b.clone()
        for x, ci in zip(xs, coef):
            acc.add_(load(x, sl, ctx) if b is None else delta(x, b, sl, ctx), alpha=ci)
        out[sl] = acc


register(Method(
    "multislerp",
    params=(Param("weight", per_model=True, attr="weights", help="the model's weight"),
            Param("normalize_weights", bool, True, attr="normalize", help="divide the weights by their sum"),
            Param("eps", default=1e-8, low=0, open_low=True, help="added to norms before dividing")),
    compat=compat, fast=fast, base="optional", validate=weights_must_not_cancel,
    help="barycentric interpolation on the hypersphere (of task vectors with a base)",
))
