"""Helpers of the default (fast) numerical mode: float32, chunked, at most two passes per tensor.

Why chunks: on CPU a fresh full-size temporary costs more in page faults than the arithmetic done
in it (a 74M-element subtraction: 0.18 s into a new tensor, 0.03 s in 4 MB chunks), and a merge
written naively makes a dozen of them per tensor. Here every input is a zero-copy view of its file
as stored, rounded to the config dtype chunk by chunk (as mergekit rounds on load), widened to
float32, combined, and written into the caller's output buffer.

Global quantities come from a first pass: TIES' threshold (the k-th largest |delta| by an in-place
introselect instead of a full argsort), DARE's masks and L1 sums (``TopK``, ``Dropout``), MultiSlerp's
Gram matrix. The methods' fast functions (in ``merge.methods``) take flat input views (`xs`,
`base`) and a flat `out`; how they differ from mergekit's is documented in ``merge.methods``.
"""

from __future__ import annotations

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
    if ctx.device is not None:  # moved as stored (the fewest bytes), rounded and widened there
        chunk = chunk.to(ctx.device)
    if slot is None:
        if ctx.rounded is not None and chunk.dtype != ctx.rounded:
            chunk = chunk.to(ctx.rounded)
        return chunk.to(ctx.compute)
    if ctx.rounded is not None and chunk.dtype != ctx.rounded:
        chunk = scratch(slot + ":rounded", chunk.numel(), ctx.rounded, ctx.device).copy_(chunk)
    if chunk.dtype == ctx.compute:
        return chunk
    return scratch(slot, chunk.numel(), ctx.compute, ctx.device).copy_(chunk)


def delta(x, b: torch.Tensor, sl: slice, ctx, slot="delta") -> torch.Tensor:
    """x - b for one chunk (b: the base chunk, already loaded), in the reused buffer `slot`."""
    return torch.sub(load(x, sl, ctx, "x"), b, out=scratch(slot, sl.stop - sl.start, ctx.compute, ctx.device))


# ---------------------------------------------------------------------------------------------
# Reused buffers; sparsification (TIES, DARE)
# ---------------------------------------------------------------------------------------------
_POOL: dict = {}


def scratch(slot, n: int, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """A reused buffer of n elements (per slot, grown to the largest tensor seen; None: CPU):
    sparsified task vectors are kept between the two passes without a fresh allocation per tensor."""
    buf = _POOL.get(slot)
    if buf is None or buf.numel() < n or buf.dtype != dtype or buf.device != torch.device(device or "cpu"):
        buf = _POOL[slot] = torch.empty(n, dtype=dtype, device=device)
    return buf[:n]


def ones(n: int, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """n ones, filled once per merge rather than once per chunk."""
    key = ("ones", dtype, device)
    buf = _POOL.get(key)
    if buf is None or buf.numel() < n:
        buf = _POOL[key] = torch.ones(max(n, CHUNK), dtype=dtype, device=device)
    return buf[:n]


def release_scratch() -> None:
    _POOL.clear()


class TopK:
    """Exactly k largest |delta|: all above the k-th largest value t, then ties in index order.

    Pass 1 (``step`` per chunk) stores delta (slot `index`); ``finish`` writes |delta| into a slot
    shared by all models and partitions it in place."""

    def __init__(self, density: float, rescale: bool, ctx, index: int, n: int):
        self.d = scratch(index, n, ctx.compute, ctx.device)
        self.k, self.rescale, self.scale = max(1, int(density * n)), rescale, 1.0

    def step(self, x, sl: slice, b: torch.Tensor, ctx) -> None:
        torch.sub(load(x, sl, ctx, "x"), b, out=self.d[sl])

    def finish(self) -> None:
        n, k = self.d.numel(), self.k
        a = torch.abs(self.d.cpu(), out=scratch("abs", n, self.d.dtype))  # on the CPU: numpy selects
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
        a = torch.abs(d, out=scratch("chunk_abs", d.numel(), d.dtype, d.device))
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
        self.keep = scratch(index, n, torch.uint8)  # on the CPU (numpy writes it); uint8 multiplies faster than bool
        self.index, self.rescale, self.scale = index, rescale, 1.0
        self.before = self.after = 0.0  # float32 per-chunk sums, accumulated in float64

    def step(self, x, sl: slice, b: torch.Tensor, ctx) -> None:
        m = sl.stop - sl.start
        raw = self.gen.random_raw(-(-m * self.bits // 64)).view(self.draw)[:m]
        np.less(raw, self.threshold, out=self.keep[sl].numpy().view(np.bool_))
        if self.rescale:
            d = delta(x, b, sl, ctx)
            a = scratch("chunk_abs", m, d.dtype, d.device)
            self.before += float(torch.abs(d, out=a).sum())
            self.after += float(torch.abs(d.mul_(self.mask(sl, d)), out=a).sum())

    def finish(self) -> None:
        if self.rescale:
            self.scale = l1_scale(self.before, self.after)

    def sparse(self, x, sl: slice, b: torch.Tensor, ctx) -> torch.Tensor:
        d = delta(x, b, sl, ctx, slot=("d", self.index))
        return d.mul_(self.mask(sl, d))

    def mask(self, sl: slice, d: torch.Tensor) -> torch.Tensor:
        return self.keep[sl].to(d.device)  # a no-op on the CPU


def elect(ds: list, total: torch.Tensor, weights: list, normalize: bool, floor: float | None) -> torch.Tensor:
    """TIES' sign election "sum" and disjoint mean over one chunk, in float arithmetic only
    (comparisons into bool tensors cost 3-5x a float op here). The majority sign s is that of the
    sum, +1 for 0 (-0.0 + 0.0 = +0.0, so copysign sees +0); d*s > 0 exactly where d agrees (zeros
    never agree, as in mergekit), so clamp_min(d*s, 0)*s is the agreeing part of d, bit for bit,
    and sign(clamp_min(d*s, 0)) is 1 where d agrees and 0 elsewhere. The ds are overwritten."""
    n = total.numel()  # reused chunk buffers: a fresh 4 MB tensor per chunk costs page faults
    dev = total.device
    s = torch.copysign(ones(n, total.dtype, dev), total.add_(0.0), out=scratch("sign", n, total.dtype, dev))
    agreeing, divisor = total, scratch("divisor", n, total.dtype, dev)
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
