"""One large stream read by several processes: its files cut into groups of consecutive files.

A stream with ``file_groups: N`` and one source, `files` or an `hf_dataset` with a list (or glob) of
`data_files`, is read in N units, each one group of
consecutive files (balanced by bytes), side by side in processes or Slurm array tasks. A unit writes
its documents, with the paragraphs already cut and keyed (``splits.paragraph_keys``, the costly part
of cleaning), to ``text.partial/<stream>.g<k>of<N>.docs.jsonl`` in one atomic rename: a finished group
is never read again. The split then reads the groups in file order, which is the order one reader
sees, so the bytes are those of a stream read by one process; it deletes the group files once its own
``.done.json`` is written.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Iterator

from growmerge.data.sources.local import expand_files, files, hf_dataset
from growmerge.data.spec import StreamSpec
from growmerge.data.splits import paragraph_keys
from growmerge.data.text import text_key
from growmerge.names import CODE


def file_groups(stream: StreamSpec) -> list[list]:
    """The stream's files in `file_groups` runs of consecutive files of about equal bytes ([] when the
    stream is read whole); fewer groups when there are fewer files or one file outweighs a share."""
    if not stream.file_groups:
        return []
    weighted = source_files(stream.sources[0])
    n, total, acc = stream.file_groups, sum(w for _, w in weighted) or 1, 0
    groups: list[list] = [[] for _ in range(n)]
    for path, weight in weighted:
        groups[min(n - 1, acc * n // total)].append(path)  # the group its first byte falls in
        acc += weight
    return [g for g in groups if g]  # a file larger than a share leaves a group empty


def source_files(source) -> list[tuple[Path | str, int]]:
    """(file, bytes) of a `files` source, or of an `hf_dataset`'s `data_files` in the order given (a
    local glob: its files, sorted; a remote file weighs 1: its size is not asked for)."""
    if source.kind == "files":
        return [(p, p.stat().st_size) for p in expand_files(source)]
    out: list[tuple[Path | str, int]] = []
    for entry in [source.data_files] if isinstance(source.data_files, str) else source.data_files:
        if "://" in entry:
            out.append((entry, 1))
        elif any(ch in entry for ch in "*?["):
            out += [(p, os.path.getsize(p)) for p in sorted(glob.glob(os.path.expanduser(entry), recursive=True))]
        else:
            local = Path(entry).expanduser()
            out.append((entry, local.stat().st_size if local.is_file() else 1))
    return out


def group_documents(source, lang: str, group: list) -> Iterator[dict]:
    if source.kind == "files":
        return files(source, lang, group)
    return hf_dataset(source.model_copy(update={"data_files": [str(p) for p in group]}), lang)


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
        for doc in group_documents(stream.sources[0], stream.lang, groups[k]):
            if stream.lang == CODE:
                doc["key"] = text_key(doc["text"])
            else:  # the split reads the paragraphs, not the text: written once
                doc["pars"] = paragraph_keys(doc.pop("text"))
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
                yield from map(json.loads, fh)  # "pars" as [paragraph, key] lists: unpacked alike

    return docs()


def drop_groups(name: str, stream: StreamSpec, work: Path) -> None:
    """Delete the stream's group files (after its split is done: they are inputs, not outputs)."""
    for path in work.glob(f"{name}.g*of*.docs.jsonl*"):
        path.unlink(missing_ok=True)
