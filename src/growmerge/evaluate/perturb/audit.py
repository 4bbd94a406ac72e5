"""Auditing a pair set by hand: a seeded sample to judge, a judgement file read back, a validity rate.

A judgement file is JSONL, one row per sampled pair: ``{id, good, bad, rule, judgement, note}``, where
`id` is the pair's line number (0-based) in the set and `judgement` is what a person says about the
*bad* sentence: ``good`` (the pair is valid: the bad sentence is really ungrammatical), ``bad`` (the
"bad" sentence is a grammatical sentence) or ``unsure``. The validity rate is
``good / (good + bad + unsure)``: an unsure pair does not count as valid.

A set's validity lives in its metadata file beside it (``<set>.meta.json``), which the LA task reads
when it scores the set, so the rate reaches the results and the report.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from growmerge.errors import GrowmergeError

VERDICTS = ("good", "bad", "unsure")


def meta_path(set_file: str | Path) -> Path:
    set_file = Path(set_file)
    return set_file.with_name(f"{set_file.stem}.meta.json")


def read_meta(set_file: str | Path) -> dict:
    path = meta_path(set_file)
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GrowmergeError(f"{path}: not a readable metadata file ({exc})") from None
    if not isinstance(meta, dict):
        raise GrowmergeError(f"{path}: expected a JSON object")
    return meta


def write_meta(set_file: str | Path, **fields) -> Path:
    """Merge `fields` into the set's metadata file (written atomically)."""
    path = meta_path(set_file)
    meta = read_meta(set_file) | fields
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_set(set_file: str | Path) -> list[dict]:
    from growmerge.evaluate.pairs import jsonl_rows

    set_file = Path(set_file)
    if not set_file.is_file():
        raise GrowmergeError(f"{set_file}: no such pair set")
    rows = [r for _, r in jsonl_rows(set_file)]
    for no, r in enumerate(rows, 1):
        if not isinstance(r.get("good"), str) or not isinstance(r.get("bad"), str):
            raise GrowmergeError(f"{set_file}:{no}: a pair needs text fields good and bad")
    if not rows:
        raise GrowmergeError(f"{set_file}: empty pair set")
    return rows


def sample(pairs: list[dict], n: int, seed: int = 0) -> list[dict]:
    """A seeded random sample of `n` pairs as judgement rows (judgement left empty), in set order."""
    if n < 1:
        raise GrowmergeError(f"--sample must be at least 1, not {n}")
    ids = sorted(random.Random(seed).sample(range(len(pairs)), min(n, len(pairs))))
    return [{"id": i, "good": pairs[i]["good"], "bad": pairs[i]["bad"],
             "rule": pairs[i].get("rule") or pairs[i].get("feature") or pairs[i].get("phenomenon", ""),
             "change": f"{pairs[i].get('word', '')} → {pairs[i].get('replacement', '')}",
             "judgement": "", "note": ""} for i in ids]


def read_judgements(path: str | Path) -> list[dict]:
    """Judgement rows, each with a verdict; any unjudged or malformed row is one error."""
    from growmerge.evaluate.pairs import jsonl_rows

    path = Path(path)
    if not path.is_file():
        raise GrowmergeError(f"{path}: no such judgement file")
    rows = []
    for no, r in jsonl_rows(path):
        if not isinstance(r.get("good"), str) or not isinstance(r.get("bad"), str):
            raise GrowmergeError(f"{path}:{no}: a judgement row needs the pair's good and bad text")
        if r.get("judgement") not in VERDICTS:
            raise GrowmergeError(f"{path}:{no}: judgement must be one of {', '.join(VERDICTS)}, "
                                 f"not {r.get('judgement')!r}")
        rows.append(r)
    if not rows:
        raise GrowmergeError(f"{path}: no judgements")
    return rows


def validity(pairs: list[dict], judgements: list[dict], source: str = "") -> dict:
    """The validity of a set from the judged pairs it contains (matched by their text)."""
    in_set = {(p["good"], p["bad"]) for p in pairs}
    matched = [j for j in judgements if (j["good"], j["bad"]) in in_set]
    if not matched:
        raise GrowmergeError(f"{source or 'the judgement file'}: none of its {len(judgements)} judged pairs "
                             f"is in the set (judged on another set?)")
    counts = {v: sum(j["judgement"] == v for j in matched) for v in VERDICTS}
    return {"rate": counts["good"] / len(matched), "judged": len(matched), **counts,
            "unmatched": len(judgements) - len(matched), "source": source}


def format_sample(rows: list[dict]) -> str:
    out = []
    for r in rows:
        out.append(f"[{r['id']}] {r['rule']}  ({r['change']})\n   good: {r['good']}\n   bad:  {r['bad']}")
    return "\n".join(out)
