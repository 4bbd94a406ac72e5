"""SLERP: spherical interpolation between the base and one other model (beyond the paper)."""

from __future__ import annotations

from dataclasses import replace

import torch

from growmerge.merge.fast import load
from growmerge.merge.registry import Method, Param, register

EPS = 1e-8  # mergekit's constant: slerp has no eps parameter there


def compat(xs, base, p, ctx) -> torch.Tensor:
    """Spherical interpolation from the base (t=0) to the one other model (t=1), over the whole
    tensor as one vector; norms and dot products in float32 chunks of 2^20 (mergekit's order),
    near-collinear pairs (|cos| > 0.9995) interpolated linearly."""
    v0, v1 = base, xs[0]
    dtype = torch.float64 if v0.dtype == torch.float64 else torch.float32
    a, b = v0.reshape(1, -1), v1.reshape(1, -1)
    t = torch.tensor([p.t], dtype=torch.float32).reshape(-1, 1).to(dtype)
    parts = [slice(s, s + (1 << 20)) for s in range(0, a.shape[1], 1 << 20)]
    if not parts:
        return ((1 - t) * a + t * b).reshape(v0.shape).to(v0.dtype)

    def norm(x):
        chunks = [torch.linalg.vector_norm(x[:, c].to(dtype), dim=1, keepdim=True) for c in parts]
        n = torch.linalg.vector_norm(torch.stack(chunks), dim=0)
        return torch.where(n > EPS, n, 1)

    na, nb = norm(a), norm(b)
    dot = torch.stack([((a[:, c].to(dtype) / na) * (b[:, c].to(dtype) / nb)).sum(dim=1, keepdim=True)
                       for c in parts]).sum(dim=0).clamp(-1, 1)
    lin = dot.abs() > 0.9995
    theta = torch.acos(torch.where(lin, 0, dot))
    s = torch.sin(theta)
    ca = torch.where(lin, 1 - t, torch.sin((1 - t) * theta) / s)
    cb = torch.where(lin, t, torch.sin(t * theta) / s)
    result = torch.empty_like(a)
    for c in parts:
        result[:, c] = ca * a[:, c].to(dtype) + cb * b[:, c].to(dtype)
    return result.reshape(v0.shape)


def fast(xs, base, p, ctx, out) -> None:
    """The compat formula on float32 inputs: slerp needs global norms, so no chunked rewrite
    (and it stays on the CPU: it is not one of the paper's methods)."""
    full, ctx = slice(0, out.numel()), replace(ctx, device=None)
    out.copy_(compat([load(xs[0], full, ctx).view(ctx.shape)], load(base, full, ctx).view(ctx.shape),
                     p, ctx).reshape(-1))


register(Method(
    "slerp", params=(Param("t", help="interpolation factor: 0 is the base, 1 the other model"),),
    compat=compat, fast=fast, base="required", max_models=1,
    help="spherical interpolation between the base and one model",
))
