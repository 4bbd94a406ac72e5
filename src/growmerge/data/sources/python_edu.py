"""Python-Edu (smollm-corpus ``python-edu``): its rows hold blob ids, not code.

The contents live in Software Heritage's bucket (``s3://softwareheritage/content/<blob_id>``,
gzip-compressed) and are downloaded beforehand into one local directory (README, "Python-Edu"), one
file per blob: ``<blob_id>.gz`` as downloaded, or ``<blob_id>`` decompressed. This source streams the
rows like ``hf_dataset`` (hub name, or local parquet/JSONL through ``data_files``) and joins each with
its file; nothing is fetched at run time.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterator

from growmerge.errors import GrowmergeError


def blob_text(contents: Path, blob_id: str) -> str | None:
    """The decoded contents of one blob, or None when it was not downloaded."""
    plain, packed = contents / blob_id, contents / f"{blob_id}.gz"
    if packed.is_file():
        data = gzip.decompress(packed.read_bytes())
    elif plain.is_file():
        data = plain.read_bytes()
    else:
        return None
    return data.decode("utf-8", errors="replace")


def python_edu(spec, lang: str) -> Iterator[dict]:
    from growmerge.data.sources.local import load_rows

    contents = Path(spec.contents).expanduser()
    if not contents.is_dir():
        raise GrowmergeError(f"python_edu contents directory {contents} does not exist: download the blobs "
                             "first (README, 'Python-Edu')")
    for i, row in enumerate(load_rows(spec)):
        if spec.id_field not in row:
            raise GrowmergeError(f"python_edu {spec.path}: row {i} has no field {spec.id_field!r} "
                                 f"(fields: {', '.join(row)}); set id_field")
        blob = str(row[spec.id_field])
        text = blob_text(contents, blob)
        if text is None:
            if spec.missing == "skip":
                continue
            raise GrowmergeError(f"python_edu: blob {blob} (row {i}) is not in {contents} (as {blob} or "
                                 f"{blob}.gz); download it, or set missing: skip")
        if not text.strip():
            continue
        group = str(row.get(spec.group_field, blob)) if spec.group_field else blob
        yield {"id": blob, "group": group, "lang": lang, "text": text, "source": "python_edu"}
