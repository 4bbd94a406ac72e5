"""The training loop: continued pretraining of a LlamaForCausalLM over a mixture of packed shards.

Readable first (nanoGPT-style): build the model, plan the steps, then for each step set the WSD
learning rate, accumulate gradients over micro-batches, clip, step AdamW, log, and checkpoint.

A run works in ``<out>.partial/`` (checkpoints, train_log.jsonl, TensorBoard events) and, when done,
writes the final HF model there and renames it to ``<out>`` in one step, so ``<out>`` exists only
when finished. A finished ``<out>`` with the same fingerprint makes ``train`` a no-op. A step whose
loss or gradient norm is NaN or infinite stops the run before the update, with its checkpoints kept.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from growmerge.artifacts import (check_apart, fsync_path, fsync_tree, is_local, load_model, load_tokenizer,
                                 model_identity, read_json, read_meta)
from growmerge.data.mixture import Mixture
from growmerge.device import autocast as device_autocast
from growmerge.device import enable_tf32
from growmerge.errors import GrowmergeError
from growmerge.train import checkpoint as ckpt
from growmerge.train.distributed import Dist, grad_sync, setup, wrap
from growmerge.train.flops import flops_per_token
from growmerge.train.loss import CausalLMLoss
from growmerge.train.observe import Observer
from growmerge.train.schedule import wsd_lambda, wsd_phases
from growmerge.train.spec import PRESETS, TrainSpec, preset_config
from growmerge.train.stream import Stream, describe, open_stream

DEFAULT_CHECKPOINTS = 10  # exports per run when the spec names no cadence (compute matching needs ~10-20)


@dataclass
class Plan:
    total_steps: int
    per_rank: int  # sequences per rank per step
    micro: int
    accum: int
    seq_len: int
    flops_per_step: float  # all ranks
    checkpoint_steps: set[int]


def set_threads(spec_threads: int | None, d: Dist) -> None:
    """One OpenMP thread per process when several run: 2 threads each collapse ~7x on a shared 2-core box."""
    if spec_threads is not None:
        torch.set_num_threads(spec_threads)
    elif d.world > 1:
        torch.set_num_threads(1)


def init_identity(init: str) -> dict | str:
    """How the fingerprint names the init: a preset by name, a directory by its identity (the
    fingerprint of the run or clone that made it: retrain it and this run is stale)."""
    if init in PRESETS:
        return init
    p = Path(init)
    if not p.is_dir():
        return init  # hub id
    return {"model": model_identity(p), "cumulative_flops": read_meta(p).get("flops", {}).get("cumulative", 0.0)}


def tokenizer_source(init: str, tokenizer_dir: Path | None) -> Path | None:
    if tokenizer_dir is not None:
        return Path(tokenizer_dir)
    p = Path(init)
    has_tokenizer = (p / "tokenizer.json").is_file() or (p / "tokenizer.model").is_file()
    return p if p.is_dir() and has_tokenizer else None


def build_model(init: str, spec: TrainSpec, stream: Stream, tok_src: Path | None):
    """The starting model (fp32) and the cumulative FLOPs of its lineage."""
    tok = load_tokenizer(tok_src, required=True) if tok_src is not None else None
    if init in PRESETS:
        from transformers import LlamaForCausalLM

        vocab = len(tok) if tok is not None else stream.vocab_size
        config = preset_config(init, vocab, getattr(tok, "bos_token_id", None), getattr(tok, "eos_token_id", None))
        torch.manual_seed(spec.seed)
        model, prior = LlamaForCausalLM(config), 0.0
    else:
        if is_local(init) and not Path(init).is_dir():
            raise GrowmergeError(f"init {init!r} is neither a model directory nor a preset ({', '.join(PRESETS)})")
        model, prior = load_model(init), float(read_meta(init).get("flops", {}).get("cumulative", 0.0))
    v = model.config.vocab_size
    if stream.vocab_size > v:
        raise GrowmergeError(f"the shards were tokenized with a {stream.vocab_size}-token vocabulary but the model has "
                             f"{v}: use the tokenizer the model was trained with")
    if tok is not None and len(tok) > v:
        raise GrowmergeError(f"tokenizer {tok_src} has {len(tok)} tokens but the model's vocabulary is {v}: "
                             "pass the model's own tokenizer")
    return model.train(), prior


def make_plan(spec: TrainSpec, stream: Stream, config, d: Dist) -> Plan:
    if spec.seq_len is not None and spec.seq_len != stream.seq_len:
        raise GrowmergeError(f"spec seq_len {spec.seq_len} differs from the shards' {stream.seq_len}: "
                             "re-pack the data or drop seq_len from the spec")
    if spec.global_batch % d.world:
        raise GrowmergeError(f"global_batch {spec.global_batch} does not divide over {d.world} ranks: "
                             f"use a multiple of {d.world}")
    per_rank = spec.global_batch // d.world
    micro = min(spec.micro_batch or per_rank, per_rank)
    if per_rank % micro:
        raise GrowmergeError(f"micro_batch {micro} does not divide the {per_rank} sequences per rank "
                             f"(global_batch {spec.global_batch} over {d.world} ranks)")
    s = stream.seq_len
    if spec.steps is not None:
        total = spec.steps
    elif spec.tokens is not None:
        total = math.ceil(spec.tokens / (spec.global_batch * s))
    else:
        total = len(stream) // spec.global_batch
        if total == 0:
            raise GrowmergeError(f"the mixture has {len(stream)} sequences, fewer than one global batch "
                                 f"({spec.global_batch}): lower global_batch or add data")
    fps = flops_per_token(config, s) * spec.global_batch * s
    return Plan(total, per_rank, micro, per_rank // micro, s, fps, checkpoint_steps(spec, total, fps))


def checkpoint_steps(spec: TrainSpec, total: int, flops_per_step: float) -> set[int]:
    steps = {total}
    if spec.checkpoint_every_steps:
        steps |= set(range(spec.checkpoint_every_steps, total + 1, spec.checkpoint_every_steps))
    if spec.checkpoint_every_flops:
        per = spec.checkpoint_every_flops
        steps |= {min(total, math.ceil(k * per / flops_per_step)) for k in range(1, int(total * flops_per_step // per) + 1)}
    n = spec.checkpoints or (DEFAULT_CHECKPOINTS if not (spec.checkpoint_every_steps or spec.checkpoint_every_flops) else 0)
    steps |= {max(1, round(total * i / n)) for i in range(1, n + 1)} if n else set()
    return steps


def no_op_if_finished(out: Path, fingerprint: str, force: bool, d: Dist) -> bool:
    if not out.exists():
        return False
    meta = read_meta(out) if (out / "config.json").is_file() else {}
    if meta.get("fingerprint") == fingerprint:
        return True
    if not force:
        raise GrowmergeError(f"{out} already holds something else than this run's result (different spec, init or "
                             "data): pick another output directory or pass --force to replace it")
    if "step" not in meta or "fingerprint" not in meta:  # --force replaces a previous run's model, nothing else
        raise GrowmergeError(f"{out} is not a model trained by growmerge (no growmerge.json with a step and a "
                             "fingerprint): --force replaces only that; remove it yourself or pick another output")
    d.barrier()  # every rank has looked before rank 0 deletes
    if d.main:
        shutil.rmtree(out)
    return False


def claim_work_dir(work: Path, fingerprint: str, resume: bool, force: bool, d: Dist) -> Path | None:
    """The state to resume from (None: start fresh), after checking it belongs to this run. A damaged
    newest state falls back to the previous complete one; checkpoints after the one resumed from are
    removed (the run writes them again)."""
    state = ckpt.latest_state(work, say=warn if d.main else None) if resume else None
    found = read_json(state / "trainer.json", dict)["fingerprint"] if state is not None else None
    discard = False
    if state is not None and found != fingerprint:
        if not force:
            raise GrowmergeError(f"{work} was started with a different spec, init or data (fingerprint {found}, "
                                 f"this run {fingerprint}): resume with the original spec or pass --force to restart")
        state, discard = None, True
    elif work.exists() and not resume:
        if not force:
            raise GrowmergeError(f"{work} holds an unfinished run: pass --resume to continue it or --force to restart")
        discard = True
    d.barrier()  # every rank has looked before rank 0 changes anything
    if d.main and discard:
        shutil.rmtree(work)
    elif d.main and work.exists():
        ckpt.remove_after(work, int(read_json(state / "trainer.json", dict)["step"]) if state is not None else 0)
    d.barrier()
    return state


def warn(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr)


def param_groups(model, spec: TrainSpec) -> list[dict]:
    """Weight decay on matrices only (not on norms/biases) unless the spec says otherwise."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 or spec.decay_norms_and_biases else no_decay).append(p)
    return [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def sidecar(meta: dict | None, init: str, spec: TrainSpec, fingerprint: str, step: int, tokens: int,
            per_stream: dict, self_flops: float, prior: float, loss: float | None) -> dict:
    out = dict(meta or {})
    out.setdefault("kind", "base")
    out.setdefault("parents", [] if init in PRESETS else [str(init)])
    out.update(tokens=tokens, tokens_per_stream=per_stream, step=step, final_loss=loss, fingerprint=fingerprint,
               flops={"self": self_flops, "cumulative": prior + self_flops},
               spec=spec.model_dump(mode="json"), init=str(init))
    return out


def train(init: str | Path | None, mixture: Mixture, spec: TrainSpec, out_dir: Path,
          tokenizer_dir: Path | None = None, meta: dict | None = None, *, resume: bool = False,
          force: bool = False, progress: bool = True) -> Path:
    """Train `init` (an HF dir, hub id or preset name; default spec.init) on `mixture`; return `out_dir`."""
    d = setup(spec.device)
    set_threads(spec.threads, d)
    enable_tf32(d.device)
    init = str(init or spec.init or "")
    if not init:
        raise GrowmergeError("no init: give an HF model directory or a preset name (spec `init:`)")
    out = Path(out_dir)
    check_apart(out, [init])  # --force deletes `out`: never the model it starts from
    check_apart(out.with_name(out.name + ".partial"), [init])
    stream = open_stream(mixture, spec.seed)
    fingerprint = spec.fingerprint(init_identity(init), describe(mixture))
    if no_op_if_finished(out, fingerprint, force, d):
        return out
    work = out.with_name(out.name + ".partial")
    state = claim_work_dir(work, fingerprint, resume, force, d)

    tok_src = tokenizer_source(init, tokenizer_dir)
    model, prior = build_model(init, spec, stream, tok_src)
    plan = make_plan(spec, stream, model.config, d)
    model.to(d.device)
    if spec.compile:
        model.model.compile()  # the decoder body; the fused loss is a hand-written kernel already
    amp = torch.bfloat16 if spec.dtype == "bf16" else torch.float32
    module = wrap(CausalLMLoss(model, amp), d, spec.fsdp)
    optimizer = torch.optim.AdamW(param_groups(module, spec), lr=spec.lr, betas=spec.betas, eps=spec.eps,
                                  fused=d.device.type == "cuda" or d.world == 1)
    step, consumed = 0, 0
    if state is not None:
        trainer = ckpt.load_state(state, module, optimizer, d)
        step, consumed = trainer["step"], trainer["consumed_samples"]
    if d.main:
        (work / "checkpoints").mkdir(parents=True, exist_ok=True)
        ckpt.remove_partial(work)
    d.barrier()
    warmup, decay = wsd_phases(plan.total_steps, spec.warmup_fraction, spec.warmup_min_steps, spec.decay_fraction)
    autocast = device_autocast(d.device, amp)
    obs = Observer(work, plan.total_steps, step, d.main, progress)
    params = [p for p in module.parameters() if p.requires_grad]
    loss_value = None
    t0, tokens0 = time.perf_counter(), consumed * plan.seq_len
    try:
        while step < plan.total_steps:
            lr = spec.lr * wsd_lambda(step, plan.total_steps, warmup, decay)
            for group in optimizer.param_groups:
                group["lr"] = lr
            first = consumed + d.rank * plan.per_rank  # this rank's slice of the global batch
            loss_value = d.mean(accumulate_gradients(module, stream, first, plan, autocast, d))
            grad_norm = grad_norm_after_clip(params, spec.grad_clip)
            if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):  # the same on every rank
                raise diverged(work, step + 1, loss_value, grad_norm, lr)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            consumed += spec.global_batch
            tokens = consumed * plan.seq_len
            if step % spec.log_every == 0 or step == plan.total_steps:
                elapsed = time.perf_counter() - t0
                obs.step(dict(step=step, loss=loss_value, lr=lr, grad_norm=grad_norm, tokens=tokens,
                              flops=prior + step * plan.flops_per_step, elapsed=elapsed,
                              tokens_per_s=(tokens - tokens0) / max(elapsed, 1e-9)))
            if step in plan.checkpoint_steps:
                per_stream = stream.tokens_per_stream(consumed)
                side = sidecar(meta, init, spec, fingerprint, step, tokens, per_stream,
                               step * plan.flops_per_step, prior, loss_value)
                trainer = dict(step=step, consumed_samples=consumed, fingerprint=fingerprint, loss=loss_value,
                               rng=ckpt.rng_state())
                obs.flush()
                ckpt.save_checkpoint(work, step, module, optimizer, d, trainer, tok_src, side)
                if d.main:
                    ckpt.prune_states(work, spec.keep_last)
    finally:
        obs.close()
    return finish(work, out, d)


def diverged(work: Path, step: int, loss: float, grad_norm: float, lr: float) -> GrowmergeError:
    """The run stops before a non-finite update: no NaN weight is ever written or trained on."""
    done = ckpt.step_dirs(work)
    last = f"{done[-1][1]} is the last good checkpoint" if done else "no checkpoint was written yet"
    return GrowmergeError(f"training diverged at step {step}: loss {loss}, gradient norm {grad_norm} (lr {lr:.3g}); "
                          f"stopped before the update. {last}: lower lr (or add grad_clip) and restart with --force")


def accumulate_gradients(module, stream: Stream, first: int, plan: Plan, autocast, d: Dist) -> float:
    """Forward/backward this rank's micro-batches of one step; return their mean loss."""
    loss_sum = 0.0
    for m in range(plan.accum):
        x = stream.batch(first + m * plan.micro, plan.micro).to(d.device, non_blocking=True)
        with grad_sync(module, m == plan.accum - 1), autocast:
            loss = module(x)
        (loss / plan.accum).backward()
        loss_sum += loss.item()
    return loss_sum / plan.accum


def grad_norm_after_clip(params, clip: float | None) -> float:
    """Clip to `clip` (if set) and return the pre-clip total norm (a plain float, also under FSDP2)."""
    norm = torch.nn.utils.clip_grad_norm_(params, clip if clip is not None else float("inf"))
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


def finish(work: Path, out: Path, d: Dist) -> Path:
    """Publish the run: the last checkpoint's export becomes the model in `work`, then `work` -> `out`."""
    last = ckpt.step_dirs(work)[-1][1]
    if d.main:
        for f in last.iterdir():
            if f.is_file() and f.name != "config.json":
                (work / f.name).unlink(missing_ok=True)
                ckpt.link_or_copy(f, work / f.name)
        # config.json last: a directory is a model only once it has one (artifacts.check_model_dir).
        shutil.copy2(last / "config.json", work / "config.json.tmp")
        os.replace(work / "config.json.tmp", work / "config.json")
        ckpt.prune_states(work, keep_last=0)  # a finished run is never resumed; optimizer states are 2x the model
        fsync_tree(work)  # on disk before the rename that publishes it (checkpoints are synced already: cheap)
        os.replace(work, out)
        fsync_path(out.parent)
    d.barrier()
    return out
