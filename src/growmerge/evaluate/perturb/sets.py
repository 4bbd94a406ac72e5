"""Generated LA sets for a run: ``<run>/data/eval/sentences/<lang>.txt`` → ``<run>/data/eval/la/<lang>.jsonl``."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from growmerge.errors import GrowmergeError
from growmerge.evaluate.perturb.generate import generate_pairs, read_sentences
from growmerge.evaluate.perturb.inflector import DEFAULT_BACKEND, get_inflector


def write_jsonl(rows: list[dict], out: str | Path) -> Path:
    """All rows or nothing: a temporary file renamed into place."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    return out


def generate_file(lang: str, sentences: str | Path, out: str | Path, n: int = 1000, seed: int = 0,
                  backend: str | None = None) -> dict:
    """Generate pairs for one language from a sentence file; returns a short report."""
    inflector = get_inflector(backend, lang)
    pairs = [dict(p, lang=lang) for p in generate_pairs(read_sentences(sentences), inflector, n, seed)]
    if not pairs:
        raise GrowmergeError(f"{sentences}: no minimal pair could be generated (backend {inflector.name})")
    write_jsonl(pairs, out)
    return {"lang": lang, "pairs": len(pairs), "out": str(out), "backend": inflector.name,
            "features": dict(Counter(p["feature"] for p in pairs)),
            "changes": dict(Counter(f"{p['feature']}:{p['from']}>{p['to']}" for p in pairs).most_common())}


def build_la_sets(run_dir: str | Path, langs: list[str] | None = None, n: int = 1000, seed: int = 0) -> list[dict]:
    """One generated LA set per language that has held-out sentences in the run."""
    src = Path(run_dir) / "data" / "eval" / "sentences"
    if not src.is_dir():
        raise GrowmergeError(f"{src}: no held-out sentences (run the data stage first)")
    langs = langs or sorted(p.stem for p in src.glob("*.txt") if p.stem in DEFAULT_BACKEND)
    if not langs:
        raise GrowmergeError(f"{src}: no <lang>.txt for a language with an inflector ({', '.join(DEFAULT_BACKEND)})")
    out_dir = Path(run_dir) / "data" / "eval" / "la"
    return [generate_file(lang, src / f"{lang}.txt", out_dir / f"{lang}.jsonl", n, seed) for lang in langs]
