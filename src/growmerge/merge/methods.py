"""Merge methods: a registry of small functions over the tensors of one name (and a base tensor).

Each method has two implementations, one per numerical mode:

* ``compat`` (``--mergekit-compat``) reproduces mergekit 0.1.5 bit for bit: inputs arrive cast to
  the config dtype and every operation runs in that dtype, in mergekit's order (linear accumulates
  in float32); TIES keeps the first ``int(density*numel)`` indices of
  ``argsort(|d|.float(), descending=True)`` -- the unstable CPU sort decides which tied magnitudes
  survive, so nothing cheaper reproduces it; DARE masks are ``bernoulli(density)`` in float32 from
  one generator per merge seeded once, tensors in lexicographic order, models in config order.
  Full reductions (DARE's L1 norms, MultiSlerp's norms) depend on torch's thread count: compare
  with mergekit at the same OMP_NUM_THREADS. SLERP follows mergekit's formula but not its chunked
  norms (it is not one of the paper's methods).
* ``fast`` (the default; ``merge.fast``) rounds the inputs to the config dtype as mergekit does on
  load, computes in float32 in chunks and casts the result to the output dtype. It differs from
  compat, by design, in:
    - rounding: float32 arithmetic instead of float16/bfloat16 (about one output ulp);
    - TIES: the same count k, chosen by threshold -- every |d| above the k-th largest value (an
      in-place introselect) plus the lowest-index elements equal to it. Deterministic; compat's
      sort may keep other tied elements, and float32 deltas tie less often than float16 ones;
    - DARE: masks from numpy's PCG64 seeded by (seed, tensor name, model index): raw 64-bit
      outputs split into 8-bit (density a multiple of 2^-8) or 16-bit draws, kept when below
      round(density*2^16) scaled to that width (``fast.Dropout`` has the exact recipe) -- ~20x
      faster than torch's bernoulli and independent of tensor order, so a grid cell equals the
      single merge; masks therefore differ from compat's (same distribution to within 2^-17, same
      L1 rescale, whose sums are float32 per chunk accumulated in float64);
    - MultiSlerp: computed in closed form from the Gram matrix of the task vectors (see
      ``merge.fast``); never NaN, where mergekit's float16 epsilon rounds to 0 and zero task
      vectors give 0/0. A zero weighted mean falls back to the weighted linear mean for any number
      of models (mergekit: only for two; compat raises a GrowmergeError as mergekit does).
  tests/test_merge.py holds the default mode to 2 float16 ulps of compat (TIES: >= 99% of elements;
  DARE: the L1 size of the merged task vector within 3%).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from growmerge.errors import GrowmergeError
from growmerge.merge import fast

REQUIRED = object()


@dataclass
class Params:
    """Resolved parameters of one merge; per-model lists are in config order (base excluded)."""

    weights: list[float]
    densities: list[float]
    normalize: bool = False
    rescale: bool = False
    lam: float = 1.0
    t: float = 0.5
    eps: float = 1e-8


@dataclass
class Ctx:
    """Per-merge execution context shared by every tensor of that merge."""

    compat: bool = False
    seed: int = 0
    rounded: torch.dtype | None = None  # the config dtype inputs are rounded to on load
    compute: torch.dtype = torch.float32  # default mode's arithmetic dtype
    generator: torch.Generator | None = None  # compat DARE: one stream per merge, seeded once
    name: str = ""  # the tensor being merged (default-mode DARE seeds from it)
    shape: tuple = ()

    def torch_generator(self) -> torch.Generator:
        if self.generator is None:
            self.generator = torch.Generator().manual_seed(self.seed)
        return self.generator


# ---------------------------------------------------------------------------------------------
# Sparsification
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


# ---------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------
def linear(xs, base, p: Params, ctx: Ctx) -> torch.Tensor:
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


def _task_vectors_compat(xs, base, p: Params, ctx: Ctx, sparsify: str | None) -> torch.Tensor:
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


def _generalized_task_arithmetic(sparsify: str | None, consensus: bool) -> Callable:
    """Task arithmetic / TIES / DARE in compat mode: sparsify each task vector, weight, elect signs
    by the sign of the sum, combine, normalise by the agreeing weights."""

    def compat(xs, base, p: Params, ctx: Ctx) -> torch.Tensor:
        deltas = _task_vectors_compat(xs, base, p, ctx, sparsify)
        n = len(xs)
        w = torch.tensor(p.weights, dtype=deltas.dtype).view(n, 1)
        flat, base_flat = deltas.view(n, -1), base.reshape(-1)
        out = torch.empty_like(base_flat)
        total = w.sum(dim=0)
        total[total.abs() < 1e-8] = 1
        # Everything below is elementwise or a sum over the model axis, so running it in column
        # chunks gives mergekit's bits without its full-size temporaries.
        for sl in fast.spans(base_flat.numel()):
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


def multislerp(xs, base, p: Params, ctx: Ctx) -> torch.Tensor:
    """Barycentric interpolation on the hypersphere of task vectors (or of the weights, no base)."""
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


def slerp(xs, base, p: Params, ctx: Ctx) -> torch.Tensor:
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
        return torch.where(n > p.eps, n, 1)

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


def slerp_fast(xs, base, p: Params, ctx: Ctx, out: torch.Tensor) -> None:
    full = slice(0, out.numel())
    out.copy_(slerp([fast.load(xs[0], full, ctx).view(ctx.shape)], fast.load(base, full, ctx).view(ctx.shape),
                    p, ctx).reshape(-1))


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
@dataclass
class Method:
    """A merge method, its parameters (mergekit names and defaults) and which of them matter."""

    name: str
    compat: Callable  # (xs, base, params, ctx) -> tensor, mergekit's operations in its order
    fast: Callable  # (flat xs, flat base, params, ctx, flat out) -> None, float32 and chunked
    base: str  # "required" | "optional" | "forbidden"
    per_model: dict[str, object] = field(default_factory=dict)  # name -> default (REQUIRED)
    shared: dict[str, object] = field(default_factory=dict)
    inert: tuple[str, ...] = ()  # accepted by mergekit, no effect on the numbers
    max_models: int | None = None

    @property
    def uses_density(self) -> bool:
        return "density" in self.per_model and "density" not in self.inert

    def check(self, spec) -> list[str]:
        """Errors for configs that cannot run; warnings for parameters that change nothing."""
        where = f"{self.name}:"
        if self.base == "required" and not spec.base_model:
            raise GrowmergeError(f"{where} needs base_model (the model the task vectors are taken from)")
        if self.base == "forbidden" and spec.base_model:
            raise GrowmergeError(
                f"{where} takes no base_model (mergekit 0.1.5 fails on it); remove base_model"
            )
        if not spec.models:
            raise GrowmergeError(f"{where} needs at least one entry under models")
        if self.max_models and len(spec.models) > self.max_models:
            raise GrowmergeError(f"{where} merges exactly {self.max_models} model(s) with the base")
        paths = [str(p.resolve()) for p in spec.model_paths]
        if spec.base_model:
            paths.append(str(spec.base_path.resolve()))
        dup = next((p for p in paths if paths.count(p) > 1), None)
        if dup:
            raise GrowmergeError(f"{where} {dup} is listed twice (models must be distinct, and not the base)")
        known = set(self.per_model) | set(self.shared)
        warnings = []
        for key in sorted({k for m in spec.models for k in m.parameters} - set(self.per_model)):
            warnings.append(f"{where} per-model parameter {key!r} is ignored by this method (as in mergekit)")
        for key in spec.parameters:
            if key not in known:
                warnings.append(f"{where} parameter {key!r} is ignored by this method (as in mergekit)")
        for key in self.inert:
            if key in spec.parameters or any(key in m.parameters for m in spec.models):
                warnings.append(f"{where} parameter {key!r} has no effect on this method (as in mergekit)")
        for name, default in self.per_model.items():
            for entry, value in zip(spec.models, spec.per_model(name, default)):
                if value is REQUIRED:
                    raise GrowmergeError(f"{where} model {entry.model} needs parameters.{name}")
        if self.uses_density:
            for entry, d in zip(spec.models, spec.per_model("density", 1.0)):
                if not 0 < float(d) <= 1:
                    raise GrowmergeError(f"{where} model {entry.model}: density {d} is outside (0, 1]")
        for name, default in self.shared.items():
            if default is REQUIRED and name not in spec.parameters:
                raise GrowmergeError(f"{where} needs parameters.{name}")
        p = self.resolve(spec)
        if p.normalize and "weight" in self.per_model and abs(sum(p.weights)) < 1e-8:
            raise GrowmergeError(f"{where} weights sum to 0, which normalize cannot divide by")
        return warnings

    def resolve(self, spec) -> Params:
        get = lambda name: spec.shared(name, self.shared.get(name))  # noqa: E731
        normalize = get("normalize_weights") if "normalize_weights" in self.shared else get("normalize")
        return Params(
            weights=[float(w) for w in spec.per_model("weight", 1.0)],
            densities=[float(d) for d in spec.per_model("density", 1.0)],
            normalize=bool(normalize),
            rescale=bool(get("rescale")),
            lam=float(get("lambda") if get("lambda") is not None else 1.0),
            t=float(get("t") if get("t") is not None else 0.5),
            eps=float(get("eps") if get("eps") is not None else 1e-8),
        )


def _gta(name: str, sparsify: str | None, consensus: bool, normalize: bool, rescale: bool) -> Method:
    # int8_mask only changes the dtype of mergekit's sign mask (same booleans): accepted silently.
    inert = ("density", "rescale") if sparsify is None else ()
    return Method(
        name, _generalized_task_arithmetic(sparsify, consensus), fast.task_arithmetic_family(sparsify, consensus),
        base="required",
        per_model={"weight": REQUIRED, "density": 1.0},
        shared={"normalize": normalize, "rescale": rescale, "lambda": 1.0, "int8_mask": False},
        inert=inert,
    )


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("linear", linear, fast.linear, base="forbidden", per_model={"weight": REQUIRED},
               shared={"normalize": True}),
        _gta("task_arithmetic", None, consensus=False, normalize=False, rescale=False),
        _gta("ties", "magnitude", consensus=True, normalize=True, rescale=False),
        _gta("dare_ties", "random", consensus=True, normalize=False, rescale=True),
        _gta("dare_linear", "random", consensus=False, normalize=False, rescale=True),
        Method("slerp", slerp, slerp_fast, base="required", shared={"t": REQUIRED}, max_models=1),
        Method("multislerp", multislerp, fast.multislerp, base="optional", per_model={"weight": REQUIRED},
               shared={"normalize_weights": True, "eps": 1e-8}),
    )
}
