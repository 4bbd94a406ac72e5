"""The data stage cut into units for a cluster: every stream's split is one unit (a Slurm array task),
and so is every file group of a stream read in groups (``data.groups``).

A unit is ``split_one`` of one stream into ``data/text.partial/``, finished by its
``<stream>.done.json``; the data stage's own job then finds every stream kept and only writes the
evaluation sets, trains the tokenizer and packs. Units come in up to three waves: the file groups,
then the target languages and code side by side, then English, whose split needs the others'
evaluation pairs (``english_inputs``).
The bytes are those of a local ``data prepare``: a stream's output depends on nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

from growmerge.artifacts import write_json_atomic
from growmerge.data.groups import drop_groups, file_groups, missing_groups, read_group
from growmerge.data.prepare import (english_inputs, kill_point, open_split_work, read_stamp, split_fingerprint,
                                    split_one)
from growmerge.data.spec import DataSpec
from growmerge.data.splits import stream_order
from growmerge.errors import GrowmergeError
from growmerge.names import ENGLISH

WORK = Path("data") / "text.partial"


def pending_units(spec: DataSpec, run_dir: Path, log=lambda msg: None) -> list[list[tuple[str, int | None]]]:
    """Waves of units still to run, each wave after the one before: the file groups to read
    (stream, group), then the splits (stream, None) of the target languages and code, then English.
    Empty when ``text/`` is built. Probes every source and prepares ``text.partial/`` first, so call
    it before submitting (never from two places at once)."""
    data_dir = Path(run_dir) / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    work = open_split_work(spec, data_dir, log)
    if work is None:
        return []
    todo = [n for n in stream_order(spec) if not (work / f"{n}.done.json").is_file()]
    reads = [(n, k) for n in todo for k in missing_groups(n, spec.streams[n], work)]
    first = [(n, None) for n in todo if spec.streams[n].lang != ENGLISH]
    english = [(n, None) for n in todo if spec.streams[n].lang == ENGLISH]
    return [wave for wave in (reads, first, english) if wave]


def run_unit(spec: DataSpec, run_dir: Path, name: str, group: int | None = None, log=print) -> None:
    """Split stream `name` (or read its file group `group`) into ``text.partial/``, unless a
    finished unit left its ``.done.json`` (or group file)."""
    if name not in spec.streams:
        raise GrowmergeError(f"no stream named {name!r} in data.streams")
    work = Path(run_dir) / WORK
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

