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


METHODS = ("auto", "rules", "one-feature")


def generate_file(lang: str, sentences: str | Path, out: str | Path, n: int = 1000, seed: int = 0,
                  backend: str | None = None, method: str = "auto") -> dict:
    """Generate pairs for one language from a sentence file; returns a short report, which also goes
    into the set's metadata file (``<set>.meta.json``).

    `method`: ``rules`` breaks agreement or government (the language's rules, its default backend);
    ``one-feature`` is the paper's change of any one feature (any backend, e.g. a UniMorph table);
    ``auto`` takes the rules when the language has them and the backend is its default."""
    from growmerge.evaluate.perturb.audit import write_meta
    from growmerge.evaluate.perturb.rules import RULESETS, rule_pairs

    if method not in METHODS:
        raise GrowmergeError(f"unknown pair method {method!r}; choose one of {', '.join(METHODS)}")
    default = backend is None or backend == DEFAULT_BACKEND.get(lang)
    if method == "auto":
        method = "rules" if lang in RULESETS and default else "one-feature"
    if method == "rules" and (lang not in RULESETS or not default):
        raise GrowmergeError(f"agreement rules exist for {', '.join(sorted(RULESETS))} with their default "
                             f"backends, not for {lang!r} with {backend or 'no backend'}; use --method one-feature")
    inflector = get_inflector(backend, lang)
    texts = read_sentences(sentences)
    extra = {}
    if method == "rules":
        found, extra = rule_pairs(texts, inflector, lang, n, seed)
    else:
        found = generate_pairs(texts, inflector, n, seed)
    pairs = [dict(p, lang=lang) for p in found]
    if not pairs:
        raise GrowmergeError(f"{sentences}: no minimal pair could be generated (backend {inflector.name})")
    write_jsonl(pairs, out)
    report = {"lang": lang, "pairs": len(pairs), "out": str(out), "backend": inflector.name, "method": method,
              "sentences": len(texts), "features": dict(Counter(p["feature"] for p in pairs)),
              "rules": dict(Counter(p.get("rule", p["feature"]) for p in pairs)), **extra}
    write_meta(out, **{k: v for k, v in report.items() if k != "out"}, validity=None)
    return report


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
