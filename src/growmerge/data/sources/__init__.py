"""Sources: each yields documents ``{id, group, lang, text, source}`` (+ ``pairs`` when aligned).

``group`` is the unit that must never be split between training and evaluation (a help page, a
file). Aligned sources add ``pairs``: ``[[pair_id, english, target], ...]`` taken from the document.
Builtin sources are registered in ``SOURCES``; their output is cached as JSONL under
``$GROWMERGE_CACHE/text`` so that a second run reads it back instead of parsing packages again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterator

from growmerge.data.debian import cache_dir
from growmerge.data.sources import debian_docs, libreoffice, local, python_edu
from growmerge.data.text import unit_hash

SOURCES: dict[str, Callable[..., Iterator[dict]]] = {
    "libreoffice_help": libreoffice.libreoffice_help,
    "libreoffice_ui": libreoffice.libreoffice_ui,
    "gnome_user_docs": debian_docs.gnome_user_docs,
    "english_docs": debian_docs.english_docs,
    "python_code": debian_docs.python_code,
    "files": local.files,
    "hf_dataset": local.hf_dataset,
    "python_edu": python_edu.python_edu,
}
# User data is already local (or streamed at scale): copying it into the cache would only cost disk.
UNCACHED = {"files", "hf_dataset", "python_edu"}
EXTRACTOR_VERSION = "3"  # bump when a parser changes what it extracts


def cache_file(spec, lang: str) -> Path:
    key = json.dumps([EXTRACTOR_VERSION, lang, spec.model_dump(mode="json")], sort_keys=True)
    if spec.kind == "python_code":  # a different interpreter has a different stdlib
        import sys
        key += sys.version
    return cache_dir() / "text" / f"{spec.kind}-{lang}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsonl"


def documents(spec, lang: str) -> Iterator[dict]:
    """The documents of one source for one language, extracted once and then read from the cache."""
    extract = SOURCES[spec.kind]
    if spec.kind in UNCACHED:
        yield from extract(spec, lang)
        return
    path = cache_file(spec, lang)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        # Seeded shuffle (builtin sources are small): a character cap then takes a sample of the
        # whole source, not the alphabetically first files.
        docs = sorted(extract(spec, lang), key=lambda d: unit_hash(0, "order", d["id"]))
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(doc, ensure_ascii=False) + "\n" for doc in docs)
        os.replace(tmp, path)
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)
