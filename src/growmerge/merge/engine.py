"""The streaming merge engine: tensor by tensor from safetensors, straight into the output shards.

Tensors are processed in lexicographic name order (mergekit's execution order, which fixes the
order of DARE's random draws), inputs in config order. Only the tensors of one name across the
inputs are in memory at a time. The output directory appears in one rename when complete; an input
written by another process meanwhile, or an output tensor that is NaN or infinite, stops the merge
with one error line and nothing written (compat mode writes mergekit's NaNs, with a warning).

Every merge records a fingerprint of what produced it (its inputs' identities, method, resolved
parameters, dtypes, seed, mode): merge-grid redoes exactly the cells whose fingerprint changed.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from growmerge.artifacts import (atomic_dir, check_room, copy_tokenizer_files, ensure_free, fingerprint_of,
                                 model_identity, read_meta, write_meta)
from growmerge.merge.config import MergeSpec
from growmerge.merge.fast import release_scratch
from growmerge.merge.registry import Ctx, Method, Params, get_method
from growmerge.merge.tensorio import ModelTensors, ShardWriter, TensorInfo, merged_layout

DTYPE = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
         "float64": torch.float64}


def load_dtype(spec: MergeSpec, compat: bool) -> tuple[torch.dtype | None, torch.dtype | None]:
    """(dtype inputs are rounded to on load, dtype the method computes in; None = as stored)."""
    rounded = DTYPE.get(spec.dtype) if spec.dtype else None
    if compat:
        return rounded, rounded
    return rounded, torch.float64 if rounded == torch.float64 else torch.float32


def prepare(x: torch.Tensor, rounded: torch.dtype | None, compute: torch.dtype | None) -> torch.Tensor:
    """Round to the config dtype as mergekit does on load, then widen for the fast mode."""
    if not x.is_floating_point():
        return x
    if rounded is not None and x.dtype != rounded:
        x = x.to(rounded)
    if compute is not None and x.dtype != compute:
        x = x.to(compute)
    return x


@dataclass
class MergeJob:
    """One output model: a method, its resolved parameters, and the indices of its inputs."""

    method: Method
    params: Params
    models: list[int]  # indices into the engine's list of loaded inputs
    base: int | None
    ctx: Ctx
    out_dtype: torch.dtype | None
    out: Path | None = None  # where it is written (a temporary directory)
    label: Path | None = None  # the output as the user named it (for messages)
    writer: ShardWriter | None = field(default=None, repr=False)

    def merge_tensor(self, name: str, inputs: list, out_buf: torch.Tensor) -> torch.Tensor:
        """The merged tensor `name`. compat: `inputs` are full tensors in the config dtype; default:
        as stored, and the result is written into `out_buf` (a reused uint8 buffer)."""
        base = inputs[self.base] if self.base is not None else None
        first = base if base is not None else inputs[self.models[0]]
        if not first.is_floating_point():  # integer buffers are copied, never averaged
            return first
        self.ctx.name, self.ctx.shape = name, tuple(first.shape)
        xs = [inputs[i] for i in self.models]
        if self.ctx.compat:
            result = self.method.compat(xs, base, self.params, self.ctx)
            return result.to(self.out_dtype or first.dtype)
        info = self.writer.layout[name]
        out = out_buf[: info.nbytes].view(info.dtype)
        flat = base.reshape(-1) if base is not None else None
        self.method.fast([x.reshape(-1) for x in xs], flat, self.params, self.ctx, out)
        return out.view(first.shape)


def job_for(spec: MergeSpec, compat: bool, models: list[int], base: int | None) -> MergeJob:
    method = get_method(spec.merge_method)
    seed = spec.seed if spec.seed is not None else 0
    out = spec.out_dtype or spec.dtype
    rounded, compute = load_dtype(spec, compat)
    ctx = Ctx(compat=compat, seed=seed, rounded=rounded, compute=compute or torch.float32)
    return MergeJob(method, method.resolve(spec), models, base, ctx, DTYPE[out] if out else None)


def output_layout(layout: dict[str, TensorInfo], out_dtype: torch.dtype | None) -> dict[str, TensorInfo]:
    if out_dtype is None:
        return layout
    return {n: replace(i, dtype=out_dtype) if i.dtype.is_floating_point else i for n, i in layout.items()}


def write_config(src: ModelTensors, dst: Path, dtype: str | None) -> None:
    """The base's (or first model's) config.json, with the dtype the weights are stored in."""
    config = dict(src.config)
    if dtype:
        config.pop("torch_dtype", None)
        config["dtype"] = dtype
    (dst / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def merge_fingerprint(spec: MergeSpec, compat: bool, identity=model_identity) -> str:
    """Hash of what determines a merge's bits: the inputs' identities (not their paths), the method,
    its resolved parameters, dtypes, seed and mode. `identity`: model dir -> identity (merge-grid
    passes a memoised one)."""
    method = get_method(spec.merge_method)
    return fingerprint_of({
        "method": spec.merge_method, "params": vars(method.resolve(spec)), "dtype": spec.dtype,
        "out_dtype": spec.out_dtype, "seed": spec.seed if spec.seed is not None else 0, "compat": compat,
        "models": [identity(p) for p in spec.model_paths],
        "base": identity(spec.base_path) if spec.base_path else None,
    })


def merge_meta(spec: MergeSpec, compat: bool, warnings: list[str], extra: dict | None,
               fingerprint: str | None = None) -> dict:
    """growmerge.json of a merge. FLOPs: the sum of the merged models' cumulative FLOPs (each
    already includes its base's, so the base is not counted again)."""
    metas = [read_meta(p) for p in spec.model_paths]
    languages = sorted({lang for m in metas for lang in m.get("languages", [])})
    flops = sum(float(m.get("flops", {}).get("cumulative", 0.0)) for m in metas)
    meta = {
        "kind": "merge",
        "method": spec.merge_method,
        "inputs": [str(p) for p in spec.model_paths],
        "base": spec.base_model,
        "parents": [str(p) for p in spec.model_paths] + ([spec.base_model] if spec.base_model else []),
        "languages": languages,
        "parameters": spec.model_dump(exclude_none=True),
        "seed": spec.seed if spec.seed is not None else 0,
        "mode": "mergekit-compat" if compat else "default",
        "warnings": warnings,
        "flops": {"self": 0.0, "cumulative": flops},
        "fingerprint": fingerprint or merge_fingerprint(spec, compat),
    }
    meta.update(extra or {})
    return meta


def non_finite_warning(job: "MergeJob") -> list[str]:
    """compat mode writes mergekit's NaNs (its float16 MultiSlerp): said, never silent."""
    bad = job.writer.non_finite
    if not bad:
        return []
    msg = (f"{len(bad)} tensor(s) hold NaN or infinite values, as mergekit 0.1.5 writes them (e.g. {bad[0]}); "
           "the default mode never does")
    print(f"warning: {job.label or job.out}: {msg}", file=sys.stderr)
    return [msg]


def open_inputs(spec: MergeSpec) -> tuple[list[ModelTensors], int | None]:
    """Readers for the base (index 0, if any) followed by the models in config order."""
    paths = ([spec.base_path] if spec.base_path else []) + spec.model_paths
    return open_readers(paths), (0 if spec.base_path else None)


def open_readers(paths: list[Path]) -> list[ModelTensors]:
    readers: list[ModelTensors] = []
    try:
        for p in paths:
            readers.append(ModelTensors(p))
    except BaseException:
        for r in readers:
            r.close()
        raise
    return readers


class BackgroundWriter:
    """Writes output tensors on a second thread while the next one is computed (file writes
    release the GIL), from a small pool of reused output buffers: a buffer goes back to the pool
    once its tensor is on disk. A failed write is raised in the caller at its next call."""

    def __init__(self, nbytes: int, depth: int = 2):
        self.free: queue.Queue = queue.Queue()
        for _ in range(depth):
            self.free.put(torch.empty(nbytes, dtype=torch.uint8))
        self.todo: queue.Queue = queue.Queue(maxsize=depth)  # bounds compat results in flight too
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="merge-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.todo.get()) is not None:
            writer, name, tensor, buf = item
            try:
                if self.error is None:
                    writer.write(name, tensor)
            except BaseException as exc:  # handed to the main thread
                self.error = exc
            finally:
                del tensor
                if buf is not None:
                    self.free.put(buf)

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def buffer(self) -> torch.Tensor:
        self._check()
        return self.free.get()

    def write(self, writer: ShardWriter, name: str, tensor: torch.Tensor, buf: torch.Tensor | None) -> None:
        self._check()
        self.todo.put((writer, name, tensor, buf))

    def close(self) -> None:
        """Wait for every queued write; raise the first failure."""
        self.todo.put(None)
        self.thread.join()
        self._check()


def compute_device(spec: str, compat: bool) -> torch.device | None:
    """Where the default mode computes; None is the CPU path as it always was. compat stays on the
    CPU: mergekit's bits (its argsort, its bernoulli draws) are the CPU's."""
    if compat or spec == "cpu":
        return None
    from growmerge.device import pick_device  # only needed off the CPU

    device = pick_device(spec)
    return None if device.type == "cpu" else device


def run_jobs(readers: list[ModelTensors], jobs: list[MergeJob], compat: bool, rounded, progress=None,
             device: str = "cpu") -> None:
    """Stream every tensor name once through all jobs: each input tensor is read once.

    Inputs are zero-copy views of the files (leased, and released after each name; see
    artifacts.ModelTensors) and default-mode results go into reused output buffers: fresh full-size
    tensors would pay page faults on every tensor. `progress(total)` may return a callback that is
    called after each tensor name. `device` (auto, cpu, cuda, cuda:N): where the default mode
    computes, chunk by chunk; results are always written from the CPU. The readers are closed at the
    end, whatever happens (which releases their leases)."""
    try:
        for r in readers:
            r.lease()
        _run_jobs(readers, jobs, compat, rounded, progress, device)
        for r in readers:  # before anything is published: an input written meanwhile spoils the merge
            r.check_unchanged()
    finally:
        for r in readers:
            r.close()
        release_scratch()


def _run_jobs(readers: list[ModelTensors], jobs: list[MergeJob], compat: bool, rounded, progress,
              device: str) -> None:
    dev = compute_device(device, compat)
    for job in jobs:
        job.ctx.device = dev
    layout = merged_layout(readers)
    for job in jobs:
        job.writer = ShardWriter(job.out, output_layout(layout, job.out_dtype), strict=not compat, label=job.label)
    check_room(sum(i.nbytes for job in jobs for i in job.writer.layout.values()), jobs[0].out.parent,
               f"writing {len(jobs)} merged model(s)")
    tick = progress(len(layout)) if progress else None
    needed = sorted({i for job in jobs for i in job.models + ([job.base] if job.base is not None else [])})
    writes = BackgroundWriter(max(i.nbytes for job in jobs for i in job.writer.layout.values()))
    try:
        for name in layout:
            inputs: list = [None] * len(readers)
            for i in needed:
                inputs[i] = readers[i].view(name)
                if compat:  # the default mode rounds chunk by chunk as it loads (fast.load)
                    inputs[i] = prepare(inputs[i], rounded, None)
            for job in jobs:
                buf = None if compat else writes.buffer()
                writes.write(job.writer, name, job.merge_tensor(name, inputs, buf), buf)
            del inputs
            for i in needed:  # pages still viewed by a queued write stay valid until it is done
                readers[i].release(name)
            if tick:
                tick()
    finally:
        writes.close()
    for job in jobs:
        job.writer.finish()


def finish_dir(tmp: Path, donor: ModelTensors, out_dtype: str | None, meta: dict) -> None:
    write_config(donor, tmp, out_dtype)
    copy_tokenizer_files(donor.path, tmp)
    write_meta(tmp, meta)


def merge(spec: MergeSpec, out: Path, compat: bool = False, force: bool = False,
          meta: dict | None = None, device: str = "cpu") -> Path:
    """Merge per `spec` into the HF directory `out` (atomic); returns `out`. `device`: see run_jobs.
    `out` may not be, contain or lie inside an input; --force replaces only a previous merge."""
    warnings = spec.check()
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    inputs = [spec.base_path, *spec.model_paths]
    out = ensure_free(Path(out), force, kind="merge", inputs=inputs)
    readers, base = open_inputs(spec)
    first_model = 1 if base is not None else 0
    job = job_for(spec, compat, list(range(first_model, len(readers))), base)
    fingerprint = merge_fingerprint(spec, compat)
    with atomic_dir(out, force=force, kind="merge", inputs=inputs) as tmp:
        job.out, job.label = tmp, out
        run_jobs(readers, [job], compat, job.ctx.rounded, device=device)
        warnings += non_finite_warning(job)
        finish_dir(tmp, readers[0], spec.out_dtype or spec.dtype,
                   merge_meta(spec, compat, warnings, meta, fingerprint))
    return out
