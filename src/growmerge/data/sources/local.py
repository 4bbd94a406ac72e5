"""User data: local files and Hugging Face datasets (streamed; the path real studies take)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from growmerge.errors import GrowmergeError


def records_to_docs(rows: Iterable[dict], spec, lang: str, origin: str) -> Iterator[dict]:
    for i, row in enumerate(rows):
        if spec.text_field not in row:
            raise GrowmergeError(f"{origin}: row {i} has no field {spec.text_field!r} "
                                 f"(fields: {', '.join(row)}); set text_field")
        text = row[spec.text_field]
        if not isinstance(text, str) or not text.strip():
            continue
        doc_id = str(row.get(getattr(spec, "id_field", None) or "", f"{origin}:{i}"))
        if spec.group_field and spec.group_field not in row:
            raise GrowmergeError(f"{origin}: row {i} has no group field {spec.group_field!r}; set group_field")
        group = str(row[spec.group_field]) if spec.group_field else doc_id
        yield {"id": doc_id, "group": group, "lang": lang, "text": text, "source": origin}


def read_rows(path: Path) -> Iterator[dict]:
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise GrowmergeError(f"{path} line {n}: not JSON ({exc.msg})") from None
    else:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()


def expand_files(spec) -> Iterator[Path]:
    """The files of a `files` source in the order they are read (a directory: its files, sorted)."""
    for base in spec.paths:
        base = Path(base).expanduser()
        if not base.exists():
            raise GrowmergeError(f"files source: {base} does not exist")
        if base.is_file() and base.suffix not in (".txt", ".jsonl", ".parquet"):
            raise GrowmergeError(f"files source: {base} is not .txt, .jsonl or .parquet")
        yield from sorted(p for p in base.rglob("*") if p.suffix in (".txt", ".jsonl", ".parquet")) \
            if base.is_dir() else [base]


def files(spec, lang: str, paths: Iterable[Path] | None = None) -> Iterator[dict]:
    """The documents of a `files` source (`paths`: only these of its files, e.g. a file group)."""
    for path in expand_files(spec) if paths is None else paths:
        if path.suffix == ".txt":  # the file is the document and its group
            text = path.read_text(encoding="utf-8", errors="replace")
            if text.strip():
                yield {"id": str(path), "group": str(path), "lang": lang, "text": text, "source": str(path)}
        else:
            yield from records_to_docs(read_rows(path), spec, lang, str(path))


def load_rows(spec) -> Iterator[dict]:
    """The rows of `datasets.load_dataset(spec.path, spec.name, ...)`, at most spec.max_docs."""
    import datasets

    try:
        ds = datasets.load_dataset(spec.path, spec.name, data_files=spec.data_files, split=spec.split,
                                   streaming=spec.streaming)
    except (FileNotFoundError, ValueError, ConnectionError, datasets.exceptions.DatasetNotFoundError) as exc:
        raise GrowmergeError(f"{spec.kind} {spec.path}: cannot load ({first_line(exc)})") from None
    return iter(ds) if spec.max_docs is None else (r for r, _ in zip(ds, range(spec.max_docs)))


def first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def hf_dataset(spec, lang: str) -> Iterator[dict]:
    yield from records_to_docs(load_rows(spec), spec, lang, spec.path)
