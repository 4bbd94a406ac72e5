"""Deduplicate, split by group into train/eval, keep evaluation text out of training, cap.

Per stream, evaluation documents are read first (pass 1): their paragraphs, and for English also the
English side of every evaluation pair of every language, become a blocked set; training documents
(pass 2) lose every paragraph in it, so the same sentence appearing on a training page, in the Python
docs or in a man page is not trained on either. Paragraphs repeat a lot in help text: within a split
each normalised paragraph is kept once (code is deduplicated by whole file instead).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from growmerge.data.sources import documents
from growmerge.data.spec import DataSpec, StreamSpec
from growmerge.names import CODE, ENGLISH
from growmerge.data.text import normalise, paragraphs, sentences, text_key, unit_hash
from growmerge.errors import GrowmergeError


@dataclass
class SplitState:
    """What crosses streams: English text of evaluation pairs must be blocked from English training."""

    blocked_en: set[int] = field(default_factory=set)
    pairs: dict[str, list[dict]] = field(default_factory=dict)
    sentences: dict[str, list[str]] = field(default_factory=dict)


def interleave(spec: StreamSpec, lang: str) -> Iterator[dict]:
    """Round-robin over the stream's sources, so a character cap takes some of each."""
    its = [documents(s, lang) for s in spec.sources]
    while its:
        for it in list(its):
            doc = next(it, None)
            if doc is None:
                its.remove(it)
            else:
                yield doc


class NoMemory(set):
    """The `seen` set of a stream without dedup: remembers nothing, so memory stays flat."""

    def add(self, key) -> None:
        pass


class BoundedSeen:
    """The `seen` set of a deduplicated stream in a fixed number of bytes: a Bloom filter over the
    64-bit paragraph keys (7 probes by double hashing). Memory is `megabytes` however long the stream;
    the price is a false positive, a distinct paragraph taken for a repeat, at a rate of about
    (1 - e^(-7n/m))^7 for n paragraphs in m bits: 4e-7 at 10 M paragraphs in 64 MB, 6e-3 at 50 M."""

    PROBES = 7

    def __init__(self, megabytes: int):
        self.bits = bytearray(megabytes << 20)
        self.m = len(self.bits) * 8

    def _positions(self, key: int) -> list[int]:
        h1, h2 = key & 0xFFFFFFFF, (key >> 32) | 1
        return [(h1 + i * h2) % self.m for i in range(self.PROBES)]

    def __contains__(self, key: int) -> bool:
        return all(self.bits[p >> 3] >> (p & 7) & 1 for p in self._positions(key))

    def add(self, key: int) -> None:
        for p in self._positions(key):
            self.bits[p >> 3] |= 1 << (p & 7)


def clean_text(doc: dict, lang: str, blocked: set[int], seen: set[int]) -> str:
    """The document without blocked or already-seen paragraphs ('' if nothing is left)."""
    if lang == CODE:
        key = doc["key"] if "key" in doc else text_key(doc["text"])
        if key in seen:
            return ""
        seen.add(key)
        return doc["text"]
    return "\n\n".join(par for par, _ in clean_pars(doc, blocked, seen))


def clean_pars(doc: dict, blocked: set[int], seen: set[int]) -> list[tuple[str, int]]:
    """(paragraph, key) of a prose document's paragraphs neither blocked nor already seen."""
    keep = []
    for par, key in doc["pars"] if "pars" in doc else paragraph_keys(doc["text"]):
        if key not in blocked and key not in seen:
            seen.add(key)
            keep.append((par, key))
    return keep


def paragraph_keys(text: str) -> list[tuple[str, int]]:
    """(stripped paragraph, its key) for each paragraph: the costly part of cleaning a document,
    done ahead by the readers of file groups (``data.groups``)."""
    return [(par.strip(), text_key(par)) for par in paragraphs(text)]


class Writers:
    """One JSONL writer per (part, split), counting documents and characters."""

    def __init__(self, out_dir: Path, parts: list[str], split: str):
        self.files = {p: open(out_dir / f"{p}.{split}.jsonl", "w", encoding="utf-8") for p in parts}
        self.stats = {p: {"documents": 0, "characters": 0} for p in parts}

    def write(self, part: str, doc: dict, text: str) -> None:
        self.files[part].write(json.dumps({"id": doc["id"], "group": doc["group"], "text": text},
                                          ensure_ascii=False) + "\n")
        self.stats[part]["documents"] += 1
        self.stats[part]["characters"] += len(text)

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def split_stream(name: str, stream: StreamSpec, spec: DataSpec, out_dir: Path, state: SplitState,
                 docs: Iterable[dict] | None = None) -> dict:
    """Write `<part>.{train,eval}.jsonl` for one stream; return {part: {split: {documents, characters}}}.

    The sources are read once: evaluation documents are written as they come, training documents go
    to a local candidates file (deduplicated within training, blocked from English evaluation pairs
    of the streams before). Only when the whole stream is read is every evaluated paragraph known; a
    second pass over the local candidates then drops those and applies the character cap.
    `docs`: the stream's documents as read ahead (file groups), instead of reading its sources."""
    lang = stream.lang
    frac = stream.eval_fraction or spec.eval_fraction
    parts = stream.split or {name: 1.0}

    def part_of(group: str) -> str:
        u, acc = unit_hash(spec.seed, "part", group), 0.0
        for part, share in parts.items():
            acc += share
            if u < acc:
                return part
        return part

    def is_eval(doc: dict) -> bool:
        return unit_hash(spec.seed, "eval", doc["group"]) < frac

    # Evaluation is capped per part in proportion to the training cap (each part gets its share).
    eval_cap = {p: (stream.max_chars * frac / (1 - frac) * share if stream.max_chars else float("inf"))
                for p, share in parts.items()}
    blocked = state.blocked_en if lang == ENGLISH else set()
    eval_seen: set[int] = set()
    train_seen = (set() if stream.dedup_mb is None else BoundedSeen(stream.dedup_mb)) if stream.dedup else NoMemory()
    writers = Writers(out_dir, list(parts), "eval")
    eval_open = True  # until every part's evaluation cap is reached
    pairs, sents = [], []
    candidates = out_dir / f"{name}.candidates.jsonl"
    with open(candidates, "w", encoding="utf-8") as cand:
        for doc in interleave(stream, lang) if docs is None else docs:
            if not is_eval(doc):
                if lang == CODE:
                    text, keys = clean_text(doc, lang, blocked, train_seen), None
                else:  # the keys go along, so the second pass does not hash every paragraph again
                    pars = clean_pars(doc, blocked, train_seen)
                    text, keys = "\n\n".join(par for par, _ in pars), [key for _, key in pars]
                if text:
                    cand.write(json.dumps({"id": doc["id"], "group": doc["group"], "text": text, "keys": keys},
                                          ensure_ascii=False) + "\n")
                continue
            part = part_of(doc["group"])
            if not eval_open or writers.stats[part]["characters"] >= eval_cap[part]:
                continue
            text = clean_text(doc, lang, blocked, eval_seen)
            if not text:
                continue
            writers.write(part, doc, text)
            eval_open = not all(writers.stats[p]["characters"] >= eval_cap[p] for p in parts)
            pairs += [{"id": pid, "en": en, "tgt": tgt, "lang": lang} for pid, en, tgt in doc.get("pairs", [])]
            if lang != CODE:
                sents += sentences(text)
    if lang == ENGLISH:  # the English side of evaluation pairs is held out as well
        sents += [s for ps in state.pairs.values() for p in ps for s in sentences(p["en"])]
    writers.close()
    eval_stats = writers.stats

    writers = Writers(out_dir, list(parts), "train")
    train_chars = 0
    for doc in read_candidates(candidates):
        if stream.max_chars is not None and train_chars >= stream.max_chars:
            break
        text = doc["text"] if lang == CODE else unblocked_keys(doc["text"], doc["keys"], eval_seen)  # never train on evaluated text
        if text:
            writers.write(part_of(doc["group"]), doc, text)
            train_chars += len(text)
    writers.close()
    candidates.unlink()

    for part in parts:
        for split, stats in (("train", writers.stats[part]), ("eval", eval_stats[part])):
            if stats["documents"] == 0:
                raise GrowmergeError(f"stream {part}: no {split} documents after deduplication and "
                                     f"filtering (add data to its sources, or raise eval_fraction/max_chars)")
    state.pairs[lang] = dedup_pairs(pairs)
    state.sentences[lang] = list(dict.fromkeys(sents))
    state.blocked_en.update(text_key(p["en"]) for p in state.pairs[lang])
    return {part: {"train": writers.stats[part], "eval": eval_stats[part]} for part in parts}


def read_candidates(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def unblocked_keys(text: str, keys: list[int], blocked: set[int]) -> str:
    """`text` (a candidate: cleaned paragraphs with their `keys`) without the paragraphs in `blocked`.
    Its paragraphs were joined with a blank line and none contains one, so splitting at blank lines
    gives them back, and no paragraph is hashed twice."""
    pars = text.split("\n\n")
    assert len(pars) == len(keys), "a candidate's paragraphs and keys differ"
    return "\n\n".join(p for p, k in zip(pars, keys) if k not in blocked)


def dedup_pairs(pairs: list[dict]) -> list[dict]:
    seen, out = set(), []
    for p in pairs:
        key = (normalise(p["en"]), normalise(p["tgt"]))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def stream_order(spec: DataSpec) -> list[str]:
    """Targets first (their evaluation pairs block English), then English, then code."""
    rank = {lang: 0 for lang in spec.languages} | {ENGLISH: 1, CODE: 2}
    return sorted(spec.streams, key=lambda n: (rank.get(spec.streams[n].lang, 0), n))
