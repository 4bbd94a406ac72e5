"""One large stream read by several processes: its `files` source cut into groups of consecutive files.

A stream with ``file_groups: N`` (and one `files` source) is read in N units, each one group of
consecutive files (balanced by bytes), side by side in processes or Slurm array tasks. A unit writes
its documents, with the paragraphs already cut and keyed (``splits.paragraph_keys``, the costly part
of cleaning), to ``text.partial/<stream>.g<k>of<N>.docs.jsonl`` in one atomic rename: a finished group
is never read again. The split then reads the groups in file order, which is the order one reader
sees, so the bytes are those of a stream read by one process; it deletes the group files once its own
``.done.json`` is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from growmerge.data.sources.local import expand_files, files
from growmerge.data.spec import StreamSpec
from growmerge.data.splits import paragraph_keys
from growmerge.data.text import text_key
from growmerge.names import CODE


def file_groups(stream: StreamSpec) -> list[list[Path]]:
    """The stream's files in `file_groups` runs of consecutive files of about equal bytes ([] when the
    stream is read whole); fewer groups when there are fewer files or one file outweighs a share."""
    if not stream.file_groups:
        return []
    paths = list(expand_files(stream.sources[0]))
    sizes = [p.stat().st_size for p in paths]
    n, total, acc = stream.file_groups, sum(sizes) or 1, 0
    groups: list[list[Path]] = [[] for _ in range(n)]
    for path, size in zip(paths, sizes):
        groups[min(n - 1, acc * n // total)].append(path)  # the group its first byte falls in
        acc += size
    return [g for g in groups if g]  # a file larger than a share leaves a group empty


def group_path(work: Path, name: str, k: int, n: int) -> Path:
    return work / f"{name}.g{k}of{n}.docs.jsonl"


def read_group(name: str, stream: StreamSpec, work: Path, k: int) -> Path:
    """Read group `k` of stream `name` into its docs file (kept when an earlier unit finished it)."""
    groups = file_groups(stream)
    out = group_path(work, name, k, len(groups))
    if out.is_file():
        return out
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for doc in files(stream.sources[0], stream.lang, groups[k]):
            if stream.lang == CODE:
                doc["key"] = text_key(doc["text"])
            else:
                doc["pars"] = paragraph_keys(doc["text"])
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    return out


def missing_groups(name: str, stream: StreamSpec, work: Path) -> list[int]:
    groups = file_groups(stream)
    return [k for k in range(len(groups)) if not group_path(work, name, k, len(groups)).is_file()]


def grouped_documents(name: str, stream: StreamSpec, work: Path) -> Iterator[dict] | None:
    """The stream's documents from its group files, in file order (None: the stream is read whole).
    A group not read yet is read here."""
    n = len(file_groups(stream))
    if not n:
        return None

    def docs() -> Iterator[dict]:
        for k in range(n):
            with open(read_group(name, stream, work, k), encoding="utf-8") as fh:
                for line in fh:
                    doc = json.loads(line)
                    if "pars" in doc:
                        doc["pars"] = [tuple(p) for p in doc["pars"]]
                    yield doc

    return docs()


def drop_groups(name: str, stream: StreamSpec, work: Path) -> None:
    """Delete the stream's group files (after its split is done: they are inputs, not outputs)."""
    for path in work.glob(f"{name}.g*of*.docs.jsonl*"):
        path.unlink(missing_ok=True)
