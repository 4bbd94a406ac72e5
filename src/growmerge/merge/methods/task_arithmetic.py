"""Task arithmetic and its sparsified variants: TIES (magnitude), DARE (random drop) with or
without TIES' sign consensus. Each task vector (model - base) is sparsified, weighted, optionally
sign-elected, summed, normalised and scaled by lambda, then added to the base."""

from __future__ import annotations

import torch

from growmerge.merge import fast as f
from growmerge.merge.registry import Method, Param, register, weights_must_not_cancel


# ---------------------------------------------------------------------------------------------
# compat: mergekit 0.1.5 bit for bit
# ---------------------------------------------------------------------------------------------
def top_k_count(density: float, numel: int) -> int:
    return max(1, int(density * numel))


def magnitude_mask_compat(d: torch.Tensor, density: float) -> torch.Tensor:
    """mergekit's TIES mask in d's dtype: 1 at the first k indices of a descending argsort."""
    mask = torch.zeros(d.numel(), dtype=d.dtype)
    order = torch.argsort(d.abs().reshape(-1).float(), descending=True)
    mask[order[: top_k_count(density, d.numel())]] = 1
    return mask.view_as(d)


def rescale_l1(before: torch.Tensor, masked: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Scale `masked` so its L1 norm equals that of `before` (DARE's rescale; mergekit's order)."""
    b, a = before.abs().sum(), masked.abs().sum()
    if b < eps or a < eps:
        return masked
    return masked * (b / a)


def bernoulli_compat(d: torch.Tensor, density: float, rescale: bool, gen: torch.Generator) -> torch.Tensor:
    """mergekit's DARE drop: float32 bernoulli mask from the merge's generator, optional L1 rescale."""
    work = torch.bfloat16 if d.dtype == torch.bfloat16 else torch.float32
    mask = torch.bernoulli(torch.full_like(d, density, dtype=work), generator=gen)
    x = d.to(work)
    masked = x * mask
    return (rescale_l1(x, masked) if rescale else masked).to(d.dtype)


def _task_vectors_compat(xs, base, p, ctx, sparsify: str | None) -> torch.Tensor:
    deltas = base.new_empty((len(xs), *base.shape))
    for i, x in enumerate(xs):
        d = x - base
        if sparsify == "magnitude" and p.densities[i] < 1:
            kept = d * magnitude_mask_compat(d, p.densities[i])
            d = rescale_l1(d, kept) if p.rescale else kept
        elif sparsify == "random" and p.densities[i] < 1:
            d = bernoulli_compat(d, p.densities[i], p.rescale, ctx.torch_generator())
        deltas[i] = d
    return deltas


def compat_family(sparsify: str | None, consensus: bool):
    """Task arithmetic / TIES / DARE in compat mode: sparsify each task vector, weight, elect signs
    by the sign of the sum, combine, normalise by the agreeing weights."""

    def compat(xs, base, p, ctx) -> torch.Tensor:
        deltas = _task_vectors_compat(xs, base, p, ctx, sparsify)
        n = len(xs)
        w = torch.tensor(p.weights, dtype=deltas.dtype).view(n, 1)
        flat, base_flat = deltas.view(n, -1), base.reshape(-1)
        out = torch.empty_like(base_flat)
        total = w.sum(dim=0)
        total[total.abs() < 1e-8] = 1
        # Everything below is elementwise or a sum over the model axis, so running it in column
        # chunks gives mergekit's bits without its full-size temporaries.
        for sl in f.spans(base_flat.numel()):
            d = flat[:, sl].mul_(w)
            if consensus:
                # Sign election "sum": the sign of the weighted sum; zeros never agree. int8 and
                # base-dtype masks give the same booleans, so int8_mask changes nothing here.
                sign = d.sign().to(torch.int8)
                majority = (d.sum(dim=0) >= 0).to(torch.int8) * 2 - 1
                agree = sign == majority
                mixed = (d * agree).sum(dim=0)
                divisor = (w * agree).sum(dim=0)
                divisor[divisor == 0] = 1
            else:
                mixed, divisor = d.sum(dim=0), total
            if p.normalize:
                mixed /= divisor
            if p.lam != 1:
                mixed *= p.lam
            out[sl] = (base_flat[sl] + mixed).to(base.dtype)
        return out.view(base.shape)

    return compat


# ---------------------------------------------------------------------------------------------
# fast: float32 in chunks, two passes when sparsified (``merge.fast`` has TopK and Dropout)
# ---------------------------------------------------------------------------------------------
def fast_family(sparsify: str | None, consensus: bool):
    def fast(xs, base, p, ctx, out) -> None:
        n = out.numel()
        masks = f.sparsify_pass(xs, base, p, ctx, n, sparsify)
        scales = [m.scale if m is not None else 1.0 for m in masks]
        total = sum(p.weights)
        # With positive weights a zero divisor means no model agreed (mixed is 0 there), and any
        # other divisor is >= the smallest weight: one clamp replaces mergekit's masked fill.
        floor = min(p.weights) if min(p.weights) > 0 else None
        for sl in f.spans(n):
            b = f.load(base, sl, ctx, "b")
            ds = []
            for i, x in enumerate(xs):
                d = masks[i].sparse(x, sl, b, ctx) if masks[i] is not None else f.delta(x, b, sl, ctx, ("d", i))
                if scales[i] * p.weights[i] != 1:
                    d.mul_(scales[i] * p.weights[i])
                ds.append(d)
            mixed = torch.add(ds[0], ds[1], out=f.scratch("mixed", ds[0].numel(), ds[0].dtype)) \
                if len(ds) > 1 else ds[0].clone()
            for d in ds[2:]:
                mixed.add_(d)
            if consensus:
                mixed = f.elect(ds, mixed, p.weights, p.normalize, floor)
            elif p.normalize:
                mixed.div_(total if abs(total) >= 1e-8 else 1.0)
            if p.lam != 1:
                mixed.mul_(p.lam)
            out[sl] = mixed.add_(b)

    return fast


# ---------------------------------------------------------------------------------------------
# Declarations
# ---------------------------------------------------------------------------------------------
def _declare(name: str, sparsify: str | None, consensus: bool, normalize: bool, rescale: bool, help: str) -> None:
    dense = sparsify is None  # density and rescale are accepted by mergekit but do nothing then
    params = (
        Param("weight", per_model=True, attr="weights", help="the task vector's weight"),
        Param("density", per_model=True, default=1.0, low=0, high=1, open_low=True, inert=dense,
              attr="densities", help="fraction of each task vector kept"),
        Param("normalize", bool, normalize, help="divide by the sum of the (agreeing) weights"),
        Param("rescale", bool, rescale, inert=dense, help="keep the L1 norm of a sparsified task vector"),
        Param("lambda", default=1.0, attr="lam", help="scale of the merged task vector"),
        # int8_mask only changes the dtype of mergekit's sign mask (same booleans): accepted silently.
        Param("int8_mask", bool, False),
    )
    register(Method(name, params, compat=compat_family(sparsify, consensus), fast=fast_family(sparsify, consensus),
                    base="required", validate=weights_must_not_cancel, help=help))


_declare("task_arithmetic", None, consensus=False, normalize=False, rescale=False,
         help="sum of the weighted task vectors")
_declare("ties", "magnitude", consensus=True, normalize=True, rescale=False,
         help="largest-magnitude entries of each task vector, sign consensus")
_declare("dare_ties", "random", consensus=True, normalize=False, rescale=True,
         help="random drop and rescale of each task vector, sign consensus")
_declare("dare_linear", "random", consensus=False, normalize=False, rescale=True,
         help="random drop and rescale of each task vector, summed")
