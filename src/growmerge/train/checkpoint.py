"""Checkpoints: one directory per exported step, resumable state inside it, SIGKILL-safe.

``<work>/checkpoints/step-N/`` is a loadable HF directory (safetensors, config, tokenizer,
``growmerge.json`` with the cumulative FLOPs at step N). Its ``state/`` holds what a resume needs:
model + optimizer via ``torch.distributed.checkpoint`` (each rank writes its own shard, so the same
code serves 1 process, DDP and FSDP2) and ``trainer.json`` (step, consumed samples, fingerprint).
Everything is written into ``step-N.tmp`` and renamed when complete, so a kill at any moment leaves
either no ``step-N`` or a complete one. Only the newest ``keep_last`` states are kept; every exported
HF directory is (compute matching needs them).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_state_dict,
                                                     set_state_dict)

from growmerge.artifacts import write_json_atomic, write_meta
from growmerge.train.distributed import Dist

STEP_DIR = re.compile(r"step-(\d+)")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja")


def step_dirs(work: Path) -> list[tuple[int, Path]]:
    """Complete checkpoint directories, oldest first."""
    root = work / "checkpoints"
    found = [(int(m.group(1)), p) for p in root.glob("step-*") if (m := STEP_DIR.fullmatch(p.name))]
    return sorted(found)


def latest_state(work: Path) -> Path | None:
    """The newest complete resumable state (`None` if there is none)."""
    for _, p in reversed(step_dirs(work)):
        if (p / "state" / "trainer.json").is_file():
            return p / "state"
    return None


def remove_partial(work: Path) -> None:
    """Leftovers of a checkpoint that was being written when the process died."""
    for p in [*(work / "checkpoints").glob("step-*.tmp"), *(work / "checkpoints").glob("step-*/state.del")]:
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

    Collective: every rank calls it, rank 0 writes.
    """
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

        was = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a "Writing model shards" bar per checkpoint is noise
        try:
            inner.save_pretrained(out, state_dict=sd, safe_serialization=True)
        finally:
            if was:
                hf_logging.enable_progress_bar()
        link_tokenizer(tokenizer_src, out)
        write_meta(out, meta)


def save_checkpoint(work: Path, step: int, model, optimizer, d: Dist, trainer: dict, tokenizer_src: Path | None,
                    meta: dict) -> Path:
    from growmerge.train.distributed import unwrapped

    final = work / "checkpoints" / f"step-{step}"
    tmp = final.with_name(final.name + ".tmp")
    if d.main:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "state").mkdir(parents=True)
    d.barrier()
    export_hf(model, d, tmp, tokenizer_src, meta)
    msd, osd = get_state_dict(unwrapped(model), optimizer)
    with warnings.catch_warnings():  # single process: DCP warns that it saves without a process group
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(tmp / "state"))
    d.barrier()
    if d.main:
        write_json_atomic(tmp / "state" / "trainer.json", trainer)
        os.replace(tmp, final)
    d.barrier()
    return final


def load_checkpoint(state: Path, model, optimizer, d: Dist) -> dict:
    """Restore model, optimizer and RNG from `state`; return its trainer.json."""
    from growmerge.train.distributed import unwrapped

    inner = unwrapped(model)
    msd, osd = get_state_dict(inner, optimizer)
    blob = {"model": msd, "optim": osd}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(blob, checkpoint_id=str(state))
    set_state_dict(inner, optimizer, model_state_dict=blob["model"], optim_state_dict=blob["optim"])
    trainer = json.loads((state / "trainer.json").read_text())
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(trainer["rng"])), dtype=torch.uint8))
    return trainer


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
