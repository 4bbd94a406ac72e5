"""The data stage cut into units for a cluster (Slurm array tasks): every stream's split, every file
group of a stream read in groups (``data.groups``), the tokenizer, every packed shard.

Every unit is idempotent: a finished one left its output (a stream's ``<stream>.done.json``, a
group's docs file, the tokenizer's stamp, a complete shard), and running it again does nothing. The
waves: file groups; the target languages' and code's splits side by side; English, whose split needs
the others' evaluation pairs (``english_inputs``); the evaluation sets and tokenizer; the shards side
by side. The data stage's own job then finds everything kept and writes the manifest and card. The
bytes are those of a local ``data prepare``: every unit's output depends only on its inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

from growmerge.artifacts import write_json_atomic
from growmerge.data.groups import drop_groups, file_groups, missing_groups, read_group
from growmerge.data.packing import Packer
from growmerge.data.prepare import (build_splits, build_tokenizer, english_inputs, kill_point, open_split_work,
                                    read_stamp, shard_of, shard_input, split_fingerprint, split_one,
                                    tokenizer_facts)
from growmerge.data.shards import meta_path
from growmerge.data.spec import DataSpec
from growmerge.data.splits import stream_order
from growmerge.errors import GrowmergeError
from growmerge.names import ENGLISH

WORK = Path("data") / "text.partial"
SPLITS = ("train", "eval")


def pending_units(spec: DataSpec, run_dir: Path, log=lambda msg: None) -> list[list[str]]:
    """Waves of units still to run (keys for `run_unit`), each wave after the one before: the file
    groups to read (``read:<stream>:<k>``), the splits of the target languages and code
    (``split:<stream>``), English's, the evaluation sets and the tokenizer (``tokenizer``), then the
    shards of each packed stream (``pack:<stream>``, its train and eval shards). Probes every source and prepares ``text.partial/`` first,
    so call it before submitting (never from two places at once)."""
    run_dir = Path(run_dir)
    data_dir = run_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    waves: list[list[str]] = []
    work = open_split_work(spec, data_dir, log)
    if work is not None:
        todo = [n for n in stream_order(spec) if not (work / f"{n}.done.json").is_file()]
        waves.append([f"read:{n}:{k}" for n in todo for k in missing_groups(n, spec.streams[n], work)])
        waves.append([f"split:{n}" for n in todo if spec.streams[n].lang != ENGLISH])
        waves.append([f"split:{n}" for n in todo if spec.streams[n].lang == ENGLISH])
    tokenizer_ready = work is None and read_stamp(run_dir / "tokenizer").get("fingerprint") == tokenizer_fingerprint(spec)
    waves.append([] if tokenizer_ready else ["tokenizer"])
    fingerprint = split_fingerprint(spec)
    waves.append([f"pack:{stream}" for stream in spec.output_streams()
                  if not tokenizer_ready or not all(shard_done(run_dir, fingerprint, stream, s) for s in SPLITS)])
    return [wave for wave in waves if wave]


def tokenizer_fingerprint(spec: DataSpec) -> str:
    return split_fingerprint(spec) + spec.fingerprint("tokenizer")  # as build_tokenizer stamps it


def shard_done(run_dir: Path, fingerprint: str, stream: str, split: str) -> bool:
    meta = meta_path(run_dir / "data" / stream / f"{split}.bin")
    if not meta.is_file():
        return False
    meta = json.loads(meta.read_text(encoding="utf-8"))
    return bool(meta.get("complete")) and meta.get("input_hash") == shard_input({"fingerprint": fingerprint}, stream, split)


def run_unit(spec: DataSpec, run_dir: Path, key: str, log=print) -> None:
    """Run one unit of `pending_units` (a no-op when a finished unit left its output)."""
    run_dir = Path(run_dir)
    kind, _, arg = key.partition(":")
    if kind in ("read", "split"):
        name, _, group = arg.partition(":")
        if name not in spec.streams:
            raise GrowmergeError(f"unit {key!r}: no stream named {name!r} in data.streams")
        if group and not group.isdigit():
            raise GrowmergeError(f"unit {key!r}: the file group is a number")
        split_unit(spec, run_dir, name, int(group) if group else None, log)
    elif key == "tokenizer":
        build_tokenizer(spec, run_dir, build_splits(spec, run_dir / "data", log))
        log("tokenizer: ready")
    elif kind == "pack" and arg in spec.output_streams():
        pack_unit(spec, run_dir, arg, log)
    else:
        raise GrowmergeError(f"unit {key!r}: not a unit of the data stage (read:<stream>:<k>, split:<stream>, "
                             "tokenizer, pack:<packed stream>)")


def pack_unit(spec: DataSpec, run_dir: Path, stream: str, log) -> None:
    """Pack the train and eval shards of `stream` (each kept when complete with the same inputs)."""
    text = run_dir / "data" / "text"
    tok_dir = run_dir / "tokenizer"
    if read_stamp(text).get("fingerprint") != split_fingerprint(spec) or \
            read_stamp(tok_dir).get("fingerprint") != tokenizer_fingerprint(spec):
        raise GrowmergeError(f"unit pack:{stream}: the text and tokenizer are not ready (unit tokenizer)")
    kill_point(f"unit:pack:{stream}")
    eos_id, vocab_size, thash = tokenizer_facts(tok_dir)
    shards = [shard_of(spec, run_dir, read_stamp(text), stream, split, vocab_size, thash) for split in SPLITS]
    with Packer(tok_dir / "tokenizer.json", spec.workers, eos_id) as packer:
        packer.pack_all(shards, on_done=lambda shard, meta: log(f"pack {stream}/{shard.bin_path.stem}: "
                                                                 f"{meta['tokens']:,} tokens"))


def split_unit(spec: DataSpec, run_dir: Path, name: str, group: int | None, log) -> None:
    """Split stream `name` (or read its file group `group`) into ``text.partial/``, unless a
    finished unit left its ``.done.json`` (or group file)."""
    work = Path(run_dir) / WORK
    if read_stamp(Path(run_dir) / "data" / "text").get("fingerprint") == split_fingerprint(spec):
        log(f"split {name}: kept (the text is built)")
        return
    if read_stamp(work).get("fingerprint") != split_fingerprint(spec):
        raise GrowmergeError(f"{work}: not prepared for this data config (submit the study again)")
    done = work / f"{name}.done.json"
    if done.is_file():
        log(f"split {name}: kept from an earlier run")
        return
    kill_point(f"unit:{name}" + ("" if group is None else f":{group}"))
    if group is not None:
        n = len(file_groups(spec.streams[name]))
        if not 0 <= group < n:
            raise GrowmergeError(f"stream {name!r} has {n} file groups; there is no group {group}")
        log(f"read {read_group(name, spec.streams[name], work, group).name}")
        return
    blocked, before = set(), {}
    if spec.streams[name].lang == ENGLISH:
        records = {}
        for other in stream_order(spec):
            if spec.streams[other].lang != ENGLISH:
                path = work / f"{other}.done.json"
                if not path.is_file():
                    raise GrowmergeError(f"split {name}: stream {other!r} is not split yet ({path} missing)")
                records[other] = json.loads(path.read_text(encoding="utf-8"))
        blocked, before = english_inputs(spec, records)
    write_json_atomic(done, split_one(name, spec, work, blocked, before))
    drop_groups(name, spec.streams[name], work)
    log(f"split {name}: done")

