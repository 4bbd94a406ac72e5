"""Checkpoints: one directory per exported step, resumable state inside it, SIGKILL-safe, no pickle.

``<work>/checkpoints/step-N/`` is a loadable HF directory (safetensors, config, tokenizer,
``growmerge.json`` with the cumulative FLOPs at step N). Its ``state/`` holds what a resume needs, as
safetensors + JSON only (nothing in it is ever unpickled, so a crafted run directory cannot run code):

* ``rank-<r>-of-<w>.safetensors``: the model weights and the optimizer's tensors (AdamW's moments
  and step counts) each process holds. Under FSDP2 every process writes its own dim-0 shards, in
  parallel, with no gather (measured against a gathered save on the paper's 572M shape: see
  ``GATHERED``); under DDP and on one process the replicas are equal, so only rank 0 writes.
* ``state.json``: which tensors are sharded and their full shapes (the optimizer's hyperparameters
  are the spec's, which the run's fingerprint pins).
* ``trainer.json`` (written last): step, consumed samples (the data position), the CPU RNG state,
  the run's fingerprint, and the size of every state file.

Everything is written into ``step-N.tmp``, fsynced and renamed when complete, so a kill at any moment
leaves either no ``step-N`` or a complete one. A resume validates the newest state (JSON, every file's
header and size) and falls back to the previous complete one when it is damaged. A resume may use
another number of processes than the run that saved (shards are re-cut along dim 0, FSDP2's
``torch.chunk`` layout). Only the newest ``keep_last`` states are kept; every exported HF directory is
(compute matching needs them).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_state_dict,
                                                     set_state_dict)

from growmerge.artifacts import (fsync_path, fsync_tree, naming, read_json, read_safetensors_header,
                                 write_json_atomic, write_meta, write_safetensors)
from growmerge.errors import GrowmergeError
from growmerge.train.distributed import Dist

STEP_DIR = re.compile(r"step-(\d+)")
STEP_RANK = re.compile(r"rank-(\d+)-of-\d+\.safetensors")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja")
STATE_FORMAT = "growmerge-state-1"
# FSDP2 state saved gathered on rank 0 (True) or as each rank's shards (False). Measured on the
# paper's 572M shape, 2 CPU processes (gloo), fsync included, four saves each: sharded 3.5-9.9 s,
# 6.87 GB, no memory beyond the training state's 4.6 GB per rank; gathered 13.3-22.6 s, 7.46 GB (the
# tie is lost in the gather), 7 GB more on rank 0 (the whole optimizer state). Loads: 0.7-2.2 s vs
# 1.0-3.0 s. Sharded it is; a resume may use another number of processes (load_state re-cuts).
GATHERED = False


def step_dirs(work: Path) -> list[tuple[int, Path]]:
    """Complete checkpoint directories, oldest first."""
    root = work / "checkpoints"
    found = [(int(m.group(1)), p) for p in root.glob("step-*") if (m := STEP_DIR.fullmatch(p.name))]
    return sorted(found)


def latest_state(work: Path, say=None) -> Path | None:
    """The newest complete, undamaged resumable state (`None` if there is none). A damaged one is
    reported through `say` and skipped: the previous complete state is used instead."""
    for _, p in reversed(step_dirs(work)):
        if not (p / "state").is_dir():
            continue
        problem = state_problem(p / "state")
        if problem is None:
            return p / "state"
        if say is not None:
            say(f"warning: {p / 'state'} is unusable ({problem}); falling back to the previous checkpoint")
    return None


def state_problem(state: Path) -> str | None:
    """Why a state directory cannot be resumed from (None: it can), reading only JSON and headers."""
    try:
        trainer = read_json(state / "trainer.json", dict)
        files = trainer.get("files")
        if trainer.get("format") != STATE_FORMAT or not isinstance(files, dict) or not files:
            return "written by an older growmerge (not safetensors + JSON); it is never unpickled"
        meta = read_json(state / "state.json", dict)
        tensors = meta.get("tensors")
        if not isinstance(tensors, dict):
            return "state.json lists no tensors"
        held: dict[str, set] = {}
        for name, size in files.items():
            f = state / name
            if not STEP_RANK.fullmatch(name) or not f.is_file():
                return f"{name} is missing"
            if f.stat().st_size != size:
                return f"{name} has {f.stat().st_size} bytes, {size} were written"
            held[name] = set(read_safetensors_header(f)[0])
        for key, entry in tensors.items():
            owners = [n for n in held if entry.get("alias", key) in held[n]]
            if not owners or (entry.get("sharded") and len(owners) != meta.get("world")):
                return f"tensor {key} is missing"
        for key in ("step", "consumed_samples", "fingerprint", "rng"):
            if key not in trainer:
                return f"trainer.json has no {key}"
    except GrowmergeError as exc:
        return str(exc)
    return None


def remove_partial(work: Path) -> None:
    """Leftovers of a checkpoint that was being written when the process died."""
    for p in [*(work / "checkpoints").glob("step-*.tmp"), *(work / "checkpoints").glob("step-*/state.del")]:
        shutil.rmtree(p, ignore_errors=True)


def remove_after(work: Path, step: int) -> None:
    """Checkpoints newer than the state a run resumes from (a damaged one and its successors): the
    resumed run writes them again."""
    for s, p in step_dirs(work):
        if s > step:
            shutil.rmtree(p, ignore_errors=True)


def link_tokenizer(src: Path | None, dst: Path) -> None:
    """Tokenizer files of `src` into `dst` (hard links: a 128k-vocab tokenizer.json is 17 MB per copy)."""
    if src is None:
        return
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            link_or_copy(src / name, dst / name)


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (files of a finished export are never modified), or a copy where links are refused."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def export_hf(model, d: Dist, out: Path, tokenizer_src: Path | None, meta: dict) -> None:
    """Write a plain HF directory (float32 safetensors) from a possibly sharded model into `out`.
    A model with a NaN or infinite weight is refused (the run stops, earlier checkpoints stay).

    Collective: every rank calls it, rank 0 writes.
    """
    from growmerge.artifacts import check_finite
    from growmerge.train.distributed import unwrapped

    inner = unwrapped(model)
    if d.world > 1:
        sd = get_model_state_dict(inner, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if getattr(inner.config, "tie_word_embeddings", False):
            # Gathered shards are separate copies, so save_pretrained cannot see the tie; the HF format omits it.
            sd.pop("lm_head.weight", None)
    else:
        sd = inner.state_dict()
    if d.main:
        from transformers.utils import logging as hf_logging

        for name, t in sd.items():
            check_finite(name, t, out.parent.parent.parent)
        was = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a "Writing model shards" bar per checkpoint is noise
        try:
            inner.save_pretrained(out, state_dict=sd, safe_serialization=True)
        finally:
            if was:
                hf_logging.enable_progress_bar()
        link_tokenizer(tokenizer_src, out)
        write_meta(out, meta)


# ---------------------------------------------------------------------------------------------
# Resumable state as safetensors + JSON
# ---------------------------------------------------------------------------------------------
def _flat(msd: dict, osd: dict) -> dict[str, torch.Tensor]:
    """Model and optimizer state as one flat {key: tensor} (keys name the parameter by its FQN)."""
    flat = {f"model/{k}": v for k, v in msd.items() if isinstance(v, torch.Tensor)}
    for fqn, state in osd.get("state", {}).items():
        for k, v in state.items():
            if not isinstance(v, torch.Tensor):
                raise GrowmergeError(f"optimizer state {fqn}.{k} is not a tensor; it cannot be saved as safetensors")
            flat[f"optim/{fqn}/{k}"] = v
    return flat


def _is_sharded(t: torch.Tensor) -> bool:
    return hasattr(t, "to_local") and hasattr(t, "placements")


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if _is_sharded(t) else t


def _aliases(flat: dict[str, torch.Tensor]) -> dict[str, str]:
    """Keys whose tensor is another key's (a tied embedding is one parameter under two names): the
    tensor is written once (on the paper's 572M shape, 0.59 of 7.46 GB)."""
    seen: dict[tuple, str] = {}
    aliases = {}
    for key, t in flat.items():
        local = _local(t)
        if not local.numel():
            continue
        ident = (local.data_ptr(), tuple(local.shape), local.dtype)
        if ident in seen:
            aliases[key] = seen[ident]
        else:
            seen[ident] = key
    return aliases


def save_state(state: Path, model, optimizer, d: Dist, trainer: dict) -> None:
    """Write `state/` (see the module docstring). Collective: every rank calls it."""
    from growmerge.train.distributed import unwrapped

    inner = unwrapped(model)
    gathered = GATHERED and d.world > 1
    options = StateDictOptions(full_state_dict=True, cpu_offload=True) if gathered else None
    msd, osd = get_state_dict(inner, optimizer, options=options)
    flat = _flat(msd, osd)
    aliases = _aliases(flat)
    sharded = any(_is_sharded(t) for t in flat.values())
    name = f"rank-{d.rank}-of-{d.world}.safetensors"
    if sharded or d.main:  # replicas (DDP, one process, a gathered state) are written once
        write_safetensors(state / name, {k: _local(t) for k, t in flat.items() if k not in aliases}, finite=False)
    d.barrier()
    if d.main:
        writers = range(d.world) if sharded else [0]
        files = {f"rank-{r}-of-{d.world}.safetensors": (state / f"rank-{r}-of-{d.world}.safetensors").stat().st_size
                 for r in writers}
        tensors = {k: {"shape": list(t.shape), "sharded": _is_sharded(t),
                       **({"alias": aliases[k]} if k in aliases else {})} for k, t in flat.items()}
        write_json_atomic(state / "state.json", {"world": d.world, "tensors": tensors})
        write_json_atomic(state / "trainer.json", {**trainer, "format": STATE_FORMAT, "files": files})


def load_state(state: Path, model, optimizer, d: Dist) -> dict:
    """Restore model, optimizer and RNG from `state` (any number of processes saved it); return
    trainer.json. Only safetensors and JSON are read."""
    from safetensors import safe_open

    from growmerge.train.distributed import unwrapped

    inner = unwrapped(model)
    meta = read_json(state / "state.json", dict)
    trainer = read_json(state / "trainer.json", dict)
    saved_world = int(meta["world"])
    handles = {int(STEP_RANK.fullmatch(f).group(1)): safe_open(str(state / f), framework="pt")
               for f in trainer["files"]}
    msd, osd = get_state_dict(inner, optimizer)  # this run's layout; the optimizer's state initialised
    with torch.no_grad():
        for key, target in _flat(msd, osd).items():
            entry = meta["tensors"].get(key)
            if entry is None:
                raise GrowmergeError(f"{state}: holds no {key} (a different model or optimizer)")
            local, stored = _local(target), entry.get("alias", key)
            if not entry["sharded"]:
                full = handles[min(handles)].get_tensor(stored)
            elif saved_world == d.world and _is_sharded(target):
                local.copy_(handles[d.rank].get_tensor(stored))
                continue
            else:  # saved by another number of processes: the full tensor from every rank's piece
                full = torch.cat([handles[r].get_tensor(stored) for r in range(saved_world)], dim=0)
            if list(full.shape) != entry["shape"]:
                raise GrowmergeError(f"{state}: {key} is {list(full.shape)}, state.json says {entry['shape']}")
            piece = full.chunk(d.world, dim=0)[d.rank] if _is_sharded(target) else full
            local.copy_(piece.reshape(local.shape))
    set_state_dict(inner, optimizer, model_state_dict=msd, optim_state_dict=osd)
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(trainer["rng"])), dtype=torch.uint8))
    return trainer


def save_checkpoint(work: Path, step: int, model, optimizer, d: Dist, trainer: dict, tokenizer_src: Path | None,
                    meta: dict) -> Path:
    final = work / "checkpoints" / f"step-{step}"
    tmp = final.with_name(final.name + ".tmp")
    if d.main:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "state").mkdir(parents=True)
    d.barrier()
    with naming(final):
        export_hf(model, d, tmp, tokenizer_src, meta)
        save_state(tmp / "state", model, optimizer, d, trainer)
    d.barrier()
    if d.main:
        fsync_tree(tmp)
        os.replace(tmp, final)
        fsync_path(final.parent)
    d.barrier()
    return final


def rng_state() -> str:
    """The CPU RNG state for trainer.json (nothing in the loop draws from it today; kept for dropout)."""
    return base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()


def prune_states(work: Path, keep_last: int) -> None:
    """Drop all but the newest `keep_last` resumable states (the HF exports stay)."""
    with_state = [p for _, p in step_dirs(work) if (p / "state").is_dir()]
    for p in with_state[: len(with_state) - keep_last]:
        gone = p / "state.del"
        os.replace(p / "state", gone)  # one rename: a state is either whole or not there
        shutil.rmtree(gone, ignore_errors=True)
