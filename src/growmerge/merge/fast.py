"""The default (fast) numerical mode: float32, chunked, at most two passes per tensor.

Why chunks: on CPU a fresh full-size temporary costs more in page faults than the arithmetic done
in it (a 74M-element subtraction: 0.18 s into a new tensor, 0.03 s in 4 MB chunks), and a merge
written naively makes a dozen of them per tensor. Here every input is a zero-copy view of its file
as stored, rounded to the config dtype chunk by chunk (as mergekit rounds on load), widened to
float32, combined, and written into the caller's output buffer.

Global quantities come from a first pass: TIES' threshold (the k-th largest |delta| by an in-place
introselect instead of a full argsort), DARE's masks and L1 sums, MultiSlerp's Gram matrix. For
MultiSlerp the tangent-space step is exactly zero in exact arithmetic (the weighted tangents sum to
|M| m - (sum_i w_i u_i.m) m = 0), so the result is the normalised weighted mean of the unit task
vectors times the weighted mean of their norms -- computed from the Gram matrix, never NaN.

All functions take flat input views (`xs`, `base`) and a flat `out`; the semantics and how they
differ from mergekit's are documented in ``methods``.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

CHUNK = 1 << 20


def spans(n: int):
    for start in range(0, n, CHUNK):
        yield slice(start, min(n, start + CHUNK))


def load(x: torch.Tensor, sl: slice, ctx, slot: str | None = None) -> torch.Tensor:
    """One chunk rounded to the config dtype (mergekit's load cast) and widened to the compute
    dtype -- possibly a view of the input (a read-only memory map): never modify it in place.
    With a `slot`, the result lives in that reused scratch buffer (valid until the slot's next
    load): converting into a reused buffer is ~40% cheaper than into fresh tensors."""
    chunk = x[sl]
    if slot is None:
        if ctx.rounded is not None and chunk.dtype != ctx.rounded:
            chunk = chunk.to(ctx.rounded)
        return chunk.to(ctx.compute)
    if ctx.rounded is not None and chunk.dtype != ctx.rounded:
        chunk = scratch(slot + ":rounded", chunk.numel(), ctx.rounded).copy_(chunk)
    if chunk.dtype == ctx.compute:
        return chunk
    return scratch(slot, chunk.numel(), ctx.compute).copy_(chunk)


def delta(x, b: torch.Tensor, sl: slice, ctx, slot="delta") -> torch.Tensor:
    """x - b for one chunk (b: the base chunk, already loaded), in the reused buffer `slot`."""
    return torch.sub(load(x, sl, ctx, "x"), b, out=scratch(slot, sl.stop - sl.start, ctx.compute))


def linear(xs, base, p, ctx, out) -> None:
    total = sum(p.weights) if p.normalize else 1.0
    for sl in spans(out.numel()):
        acc = load(xs[0], sl, ctx) * p.weights[0]
        for x, w in zip(xs[1:], p.weights[1:]):
            acc.add_(load(x, sl, ctx, "x"), alpha=w)
        out[sl] = acc.div_(total) if p.normalize else acc


# ---------------------------------------------------------------------------------------------
# Task arithmetic, TIES, DARE
# ---------------------------------------------------------------------------------------------
_POOL: dict = {}


def scratch(slot, n: int, dtype: torch.dtype) -> torch.Tensor:
    """A reused buffer of n elements (per slot, grown to the largest tensor seen): sparsified
    task vectors are kept between the two passes without a fresh allocation per tensor."""
    buf = _POOL.get(slot)
    if buf is None or buf.numel() < n or buf.dtype != dtype:
        buf = _POOL[slot] = torch.empty(n, dtype=dtype)
    return buf[:n]


def ones(n: int, dtype: torch.dtype) -> torch.Tensor:
    """n ones, filled once per merge rather than once per chunk."""
    buf = _POOL.get(("ones", dtype))
    if buf is None or buf.numel() < n:
        buf = _POOL[("ones", dtype)] = torch.ones(max(n, CHUNK), dtype=dtype)
    return buf[:n]


def release_scratch() -> None:
    _POOL.clear()


class TopK:
    """Exactly k largest |delta|: all above the k-th largest value t, then ties in index order.

    Pass 1 (``step`` per chunk) stores delta (slot `index`); ``finish`` writes |delta| into a slot
    shared by all models and partitions it in place."""

    def __init__(self, density: float, rescale: bool, ctx, index: int, n: int):
        self.d = scratch(index, n, ctx.compute)
        self.k, self.rescale, self.scale = max(1, int(density * n)), rescale, 1.0

    def step(self, x, sl: slice, b: torch.Tensor, ctx) -> None:
        torch.sub(load(x, sl, ctx, "x"), b, out=self.d[sl])

    def finish(self) -> None:
        n, k = self.d.numel(), self.k
        a = torch.abs(self.d, out=scratch("abs", n, self.d.dtype))
        total = float(a.sum(dtype=torch.float64)) if self.rescale else 0.0
        a.numpy().partition(n - k)  # in place: O(n) introselect; the top k end up in a[n-k:]
        self.t = float(a[n - k])
        if self.rescale:
            self.scale = l1_scale(total, float(a[n - k:].sum(dtype=torch.float64)))
        self.ties_left = k - int(torch.count_nonzero(a[n - k:] > self.t))

    def sparse(self, x, sl: slice, b: torch.Tensor, ctx) -> torch.Tensor:
        """The kept part of delta for one chunk (in place). Call once per chunk, in order: ties
        still owed are taken from the earliest chunks."""
        d = self.d[sl]
        a = torch.abs(d, out=scratch("chunk_abs", d.numel(), d.dtype))
        if self.ties_left > 0:
            keep = a > self.t
            eq = a == self.t
            count = int(torch.count_nonzero(eq))
            if count <= self.ties_left:
                keep |= eq
            else:
                keep[torch.nonzero(eq).view(-1)[: self.ties_left]] = True
            self.ties_left -= min(count, self.ties_left)
            return d.mul_(keep)
        # No ties owed: keep = sign(max(|d| - t, 0)) in float ops (1 above t, else 0), which is
        # several times cheaper than a bool comparison and a bool multiply.
        return d.mul_(a.sub_(self.t).clamp_min_(0).sign_())


def l1_scale(before: float, after: float, eps: float = 1e-7) -> float:
    """DARE's rescale (L1 norm of the task vector unchanged); mergekit skips it for tiny norms."""
    return 1.0 if before < eps or after < eps else before / after


class Dropout:
    """DARE: masks from PCG64 seeded by (seed, tensor name, model index) and the L1 scale.

    The draws: per chunk of CHUNK elements (the last one shorter), ceil(bits * len / 64) raw 64-bit
    PCG64 outputs (``random_raw``) read as little-endian `bits`-bit unsigned integers, one per
    element in order; an element is kept when its draw is below round(density * 2^16) / 2^(16 -
    bits). `bits` is 8 when that threshold is a multiple of 256 (e.g. density 0.5, 0.25) and 16
    otherwise, so the keep probability is density to within 2^-17 (exact for multiples of 2^-8),
    at a tenth of the cost of float draws.

    Pass 1 keeps only the mask (one byte per element, slot `index`); pass 2 recomputes the delta
    from the inputs, which are still mapped: cheaper than writing and re-reading a float32 delta
    the size of the embedding, and a quarter of the memory."""

    def __init__(self, density: float, rescale: bool, ctx, index: int, n: int):
        seq = np.random.SeedSequence([ctx.seed & 0xFFFFFFFF, zlib.crc32(ctx.name.encode()), index])
        self.gen = np.random.PCG64(seq)
        threshold = round(density * 65536)
        self.bits, self.draw = (8, np.uint8) if threshold % 256 == 0 else (16, np.uint16)
        self.threshold = threshold >> (16 - self.bits)
        self.keep = scratch(index, n, torch.uint8)  # uint8 multiplies faster than bool
        self.index, self.rescale, self.scale = index, rescale, 1.0
        self.before = self.after = 0.0  # float32 per-chunk sums, accumulated in float64

    def step(self, x, sl: slice, b: torch.Tensor, ctx) -> None:
        m = sl.stop - sl.start
        raw = self.gen.random_raw(-(-m * self.bits // 64)).view(self.draw)[:m]
        keep = self.keep[sl]
        np.less(raw, self.threshold, out=keep.numpy().view(np.bool_))
        if self.rescale:
            d = delta(x, b, sl, ctx)
            a = scratch("chunk_abs", m, d.dtype)
            self.before += float(torch.abs(d, out=a).sum())
            self.after += float(torch.abs(d.mul_(keep), out=a).sum())

    def finish(self) -> None:
        if self.rescale:
            self.scale = l1_scale(self.before, self.after)

    def sparse(self, x, sl: slice, b: torch.Tensor, ctx) -> torch.Tensor:
        return delta(x, b, sl, ctx, slot=("d", self.index)).mul_(self.keep[sl])


def elect(ds: list, total: torch.Tensor, weights: list, normalize: bool, floor: float | None) -> torch.Tensor:
    """TIES' sign election "sum" and disjoint mean over one chunk, in float arithmetic only
    (comparisons into bool tensors cost 3-5x a float op here). The majority sign s is that of the
    sum, +1 for 0 (-0.0 + 0.0 = +0.0, so copysign sees +0); d*s > 0 exactly where d agrees (zeros
    never agree, as in mergekit), so clamp_min(d*s, 0)*s is the agreeing part of d, bit for bit,
    and sign(clamp_min(d*s, 0)) is 1 where d agrees and 0 elsewhere. The ds are overwritten."""
    n = total.numel()  # reused chunk buffers: a fresh 4 MB tensor per chunk costs page faults
    s = torch.copysign(ones(n, total.dtype), total.add_(0.0), out=scratch("sign", n, total.dtype))
    agreeing, divisor = total, scratch("divisor", n, total.dtype)
    for j, (d, w) in enumerate(zip(ds, weights)):
        d.mul_(s).clamp_min_(0)
        if j == 0:  # the first model initialises the sums (no zero fill)
            agreeing.copy_(d)
            if normalize:
                torch.mul(d.sign_(), w, out=divisor)
        else:
            agreeing.add_(d)
            if normalize:
                divisor.add_(d.sign_(), alpha=w)
    agreeing.mul_(s)
    if normalize:
        agreeing.div_(divisor.clamp_min_(floor) if floor else divisor.masked_fill_(divisor == 0, 1))
    return agreeing


def sparsify_pass(xs, base, p, ctx, n: int, sparsify: str | None) -> list:
    """Pass 1 for the sparsified models, chunk-major so that each base chunk is rounded once and
    shared by all of them. Each model's draws and sums still run in its own chunk order."""
    kind = {"magnitude": TopK, "random": Dropout}.get(sparsify)
    masks = [kind(p.densities[i], p.rescale, ctx, i, n) if kind and p.densities[i] < 1 else None
             for i in range(len(xs))]
    if any(masks):
        for sl in spans(n):
            b = load(base, sl, ctx, "b")
            for x, mask in zip(xs, masks):
                if mask is not None:
                    mask.step(x, sl, b, ctx)
        for mask in masks:
            if mask is not None:
                mask.finish()
    return masks


def task_arithmetic_family(sparsify: str | None, consensus: bool):
    def fast(xs, base, p, ctx, out) -> None:
        n = out.numel()
        masks = sparsify_pass(xs, base, p, ctx, n, sparsify)
        scales = [m.scale if m is not None else 1.0 for m in masks]
        total = sum(p.weights)
        # With positive weights a zero divisor means no model agreed (mixed is 0 there), and any
        # other divisor is >= the smallest weight: one clamp replaces mergekit's masked fill.
        floor = min(p.weights) if min(p.weights) > 0 else None
        for sl in spans(n):
            b = load(base, sl, ctx, "b")
            ds = []
            for i, x in enumerate(xs):
                d = masks[i].sparse(x, sl, b, ctx) if masks[i] is not None else delta(x, b, sl, ctx, ("d", i))
                if scales[i] * p.weights[i] != 1:
                    d.mul_(scales[i] * p.weights[i])
                ds.append(d)
            mixed = torch.add(ds[0], ds[1], out=scratch("mixed", ds[0].numel(), ds[0].dtype)) \
                if len(ds) > 1 else ds[0].clone()
            for d in ds[2:]:
                mixed.add_(d)
            if consensus:
                mixed = elect(ds, mixed, p.weights, p.normalize, floor)
            elif p.normalize:
                mixed.div_(total if abs(total) >= 1e-8 else 1.0)
            if p.lam != 1:
                mixed.mul_(p.lam)
            out[sl] = mixed.add_(b)

    return fast


# ---------------------------------------------------------------------------------------------
# MultiSlerp
# ---------------------------------------------------------------------------------------------
def multislerp(xs, base, p, ctx, out) -> None:
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
        gram += (d @ d.T).double()
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
        acc = torch.zeros(sl.stop - sl.start, dtype=ctx.compute) if b is None else b.clone()
        for x, ci in zip(xs, coef):
            acc.add_(load(x, sl, ctx) if b is None else delta(x, b, sl, ctx), alpha=ci)
        out[sl] = acc
