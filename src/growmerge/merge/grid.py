"""Every language subset x every method in one pass over the tensors.

The paper merges every pair, triple, ... of its languages with five methods. Run one by one, each
merge re-reads (and re-casts) every input tensor; here the engine reads each tensor name once for
all pending merges and streams each result into its own output directory.

A parameter given as a list (``density: [0.1, 0.5, 0.9]``) is a sweep: every method that takes it
merges once per value (the product when several are lists), into ``<method>@density=0.1/...``; a
method that does not take it merges once, as ``<method>/``. Scalars keep the plain ``<method>/``.
"""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from typing import Callable

from growmerge.artifacts import atomic_dir, check_apart, check_name, model_identity, own_kind, read_meta
from growmerge.errors import GrowmergeError
from growmerge.merge.config import MergeSpec, parse_spec
from growmerge.merge.engine import (finish_dir, job_for, merge_fingerprint, merge_meta, non_finite_warning,
                                    open_readers, run_jobs)
from growmerge.merge.registry import REQUIRED, get_method, parameter_names

SPEC_KEYS = ("dtype", "out_dtype", "seed")


def subset_name(langs) -> str:
    return "+".join(sorted(langs))


def subsets(langs: list[str], sizes: list[int] | None) -> list[tuple[str, ...]]:
    """All subsets of the given sizes (default: 2 .. all), languages sorted within each."""
    langs = sorted(langs)
    if len(langs) < 2:
        raise GrowmergeError(f"merging needs at least two models, got {len(langs)}")
    sizes = sizes or list(range(2, len(langs) + 1))
    bad = [s for s in sizes if not 1 <= s <= len(langs)]
    if bad:
        raise GrowmergeError(f"subset size {bad[0]} is impossible with {len(langs)} models")
    return [c for s in sorted(set(sizes)) for c in itertools.combinations(langs, s)]


VARIANT = "@"  # <method>@<name>=<value>,<name>=<value>: a cell of a parameter sweep


def sweep_names(method: str, params: dict) -> list[str]:
    """The list-valued parameters that change `method`'s numbers (those it sweeps), sorted."""
    takes = {p.name for m in (True, False) for p in get_method(method).effective(per_model=m)}
    return sorted(k for k, v in params.items() if isinstance(v, list) and k in takes)


def value_text(value) -> str:
    """A parameter value as it appears in a variant label: round-trippable, so values never collide."""
    return str(value).lower() if isinstance(value, bool) else repr(value)


def method_variants(method: str, params: dict) -> list[tuple[str, dict]]:
    """(label, scalar parameters) of each cell `method` merges with: one per combination of the values
    of the lists it takes (label ``<method>@k=v,...``), or one labelled `method` when it sweeps nothing.
    Lists of parameters it does not take are dropped: they would not change its numbers."""
    swept = sweep_names(method, params)
    fixed = {k: v for k, v in params.items() if not isinstance(v, list)}
    if not swept:
        return [(method, fixed)]
    out = []
    for values in itertools.product(*(params[k] for k in swept)):
        cell = dict(zip(swept, values))
        out.append((method + VARIANT + ",".join(f"{k}={value_text(v)}" for k, v in cell.items()), {**fixed, **cell}))
    return out


def parse_variant(label: str) -> tuple[str, dict]:
    """`ties@density=0.3` -> ("ties", {"density": 0.3}); a plain method name -> (name, {})."""
    import ast

    method, _, rest = label.partition(VARIANT)
    values = {}
    for item in filter(None, rest.split(",")):
        key, _, text = item.partition("=")
        values[key] = text == "true" if text in ("true", "false") else ast.literal_eval(text)
    return method, values


def check_sweep(params: dict) -> None:
    """A list value is a sweep: non-empty, each value valid for the parameter, none twice."""
    from growmerge.merge.registry import find_param

    for name, value in params.items():
        if not isinstance(value, list):
            continue
        if name in SPEC_KEYS or not value:
            raise GrowmergeError(f"merge parameter {name}: " + ("a list must hold at least one value" if not value
                                 else "takes one value, not a list"))
        converted = [find_param(name).convert(v, "merge") for v in value]
        if len(set(map(value_text, converted))) != len(converted):
            raise GrowmergeError(f"merge parameter {name}: {value} lists a value twice")


def grid_spec(method: str, paths: list[Path], base: Path | None, params: dict) -> dict:
    """A mergekit-style spec for one cell: equal weights unless given, and the parameters that
    change this method's numbers (others in `params` are meant for other methods of the grid)."""
    m = get_method(method)
    params = {"weight": 1.0, **params}
    per_model = {p.name: params.get(p.name, p.default) for p in m.effective(per_model=True)}
    per_model = {k: v for k, v in per_model.items() if v is not REQUIRED}  # check() names what is missing
    shared_names = {p.name for p in m.effective(per_model=False)}
    shared = {k: v for k, v in params.items() if k in shared_names}
    spec = {"merge_method": method, "models": [{"model": str(p), "parameters": per_model} for p in paths],
            "parameters": shared, **{k: params[k] for k in SPEC_KEYS if params.get(k) is not None}}
    if base is not None and m.base != "forbidden":
        spec["base_model"] = str(base)
    return spec


def merge_grid(models: dict[str, Path], base: Path | None, methods: list[str], sizes: list[int] | None,
               out_root: Path, params: dict, compat: bool = False,
               progress: Callable[[int], Callable[[], None]] | None = None, device: str = "cpu") -> list[Path]:
    """Merge every subset with every method into out_root/<method>/<lang+lang+...>/ (a swept method:
    out_root/<method>@<param>=<value>/..., one directory per value; see `method_variants`).

    A cell whose output already carries the same fingerprint (same inputs, method and parameters) is
    kept; a previous merge with another fingerprint is redone; anything else in the way is an error.
    Returns all output directories (kept ones too). `progress(total)` may return a callback called
    once per tensor name. `device`: where the default mode computes (auto, cpu, cuda, cuda:N).
    """
    for lang in models:
        check_name(lang, "language")  # it becomes a path component, joined by '+'
    for method in methods:
        get_method(method)
    allowed = [*parameter_names(), *SPEC_KEYS]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise GrowmergeError(f"unknown merge-grid parameter {unknown[0]!r}; use one of {', '.join(allowed)}")
    check_sweep(params)
    langs = sorted(models)
    combos = subsets(langs, sizes)
    order = ([base] if base else []) + [Path(models[lang]) for lang in langs]
    identities: dict[str, str] = {}

    def identity(path: Path) -> str:
        return identities.setdefault(str(path), model_identity(path))

    cells: list[tuple[MergeSpec, Path, list[int], str]] = []
    outputs = []
    for method, label, cell_params in ((m, *v) for m in methods for v in method_variants(m, params)):
        for combo in combos:
            out = Path(out_root) / label / subset_name(combo)
            check_apart(out, order)
            outputs.append(out)
            spec = parse_spec(grid_spec(method, [models[c] for c in combo], base, cell_params),
                              f"{label}/{subset_name(combo)}")
            fingerprint = merge_fingerprint(spec, compat, identity)
            if out.exists() and not (out.is_dir() and not any(out.iterdir())):
                if own_kind(out) != "merge":
                    raise GrowmergeError(f"{out} is in the way and is not a merge (no growmerge.json of kind merge): "
                                         "remove it or choose another --out")
                if read_meta(out).get("fingerprint") == fingerprint:
                    continue  # done before from the same inputs and parameters
            offset = 1 if base else 0
            cells.append((spec, out, [offset + langs.index(c) for c in combo], fingerprint))
    if not cells:
        return outputs
    readers = open_readers(order)
    with contextlib.ExitStack() as stack:
        jobs = []
        for spec, out, idx, fingerprint in cells:
            uses_base = spec.base_model is not None
            job = job_for(spec, compat, idx, 0 if uses_base else None)
            job.out = stack.enter_context(atomic_dir(out, force=True, kind="merge", inputs=order))
            job.label = out
            jobs.append((job, spec, fingerprint))
        run_jobs(readers, [j for j, _, _ in jobs], compat, jobs[0][0].ctx.rounded, progress, device)
        for job, spec, fingerprint in jobs:
            donor = readers[job.base if job.base is not None else job.models[0]]
            finish_dir(job.out, donor, spec.out_dtype or spec.dtype,
                       merge_meta(spec, compat, non_finite_warning(job), None, fingerprint))
    return outputs
