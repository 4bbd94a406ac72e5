"""The paper's custom BLiMP: replace one word by a form of its lemma that differs in one feature
(``--method one-feature``; for any backend, e.g. a UniMorph table). The rules of ``rules/`` do
better where a language has them: a free feature (tense, mood, number) makes a grammatical "bad"
sentence about half the time.

A candidate (word → form) is kept only if the form is a real word (the inflector analyses it) and
is not syncretic: no reading of the new form is also a reading of the original word (otherwise the
"bad" sentence could be the same sentence under another analysis). Pairs are balanced round-robin
over the changed feature dimension and seeded; every pair changes one word of one sentence.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from growmerge.errors import GrowmergeError

WORD = re.compile(r"[^\W\d_](?:[\w\u200c-]*\w)?")  # letters first; ZWNJ and hyphens inside (Persian, compounds)


@dataclass
class Candidate:
    sentence: int
    start: int
    end: int
    word: str
    form: str
    lemma: str
    feats: frozenset
    dimension: str
    old: str
    new: str


def _match_case(template: str, form: str) -> str:
    return form[0].upper() + form[1:] if template[:1].isupper() and form[:1].islower() else form


def _readings(inflector, analyses: dict, word: str):
    """Readings of a word as written, else of its lowercase (sentence-initial capitals)."""
    return analyses.get(word) or analyses.get(word.lower()) or []


def candidates(sentences: list[str], inflector) -> list[Candidate]:
    """Every valid one-feature replacement in every sentence."""
    spans = [[(m.start(), m.end(), m.group()) for m in WORD.finditer(s)] for s in sentences]
    words = {w for sp in spans for _, _, w in sp}
    analyses = inflector.analyze_many(words | {w.lower() for w in words})

    changes = {}  # (word) -> list of (lemma, feats, dim, old, new, new_feats)
    requests = set()
    for w in words:
        readings = _readings(inflector, analyses, w)
        if len({lemma for lemma, _ in readings}) > 1:
            continue  # a word of two lemmas (e.g. a pronoun that is also a noun): which one changed is unclear
        if any(not any(inflector.dimension_of(t) for t in feats) for _, feats in readings):
            continue  # a reading the backend does not model (e.g. an imperative): the change may not be one feature
        for lemma, feats in readings:
            for dim, old, new, new_feats in inflector.one_feature_changes(feats):
                changes.setdefault(w, []).append((lemma, feats, dim, old, new, new_feats))
                requests.add((lemma, new_feats))
    generated = inflector.generate_many(requests)
    new_forms = {f for fs in generated.values() for f in fs}
    form_analyses = inflector.analyze_many(new_forms | {f.lower() for f in new_forms})

    valid: dict[str, list[tuple]] = {}
    for w, opts in changes.items():
        original = set(_readings(inflector, analyses, w))
        seen = set()
        for lemma, feats, dim, old, new, new_feats in opts:
            for form in generated.get((lemma, new_feats), ()):
                form = _match_case(w, form)
                if form.lower() == w.lower() or (form, dim) in seen:
                    continue
                readings = set(_readings(inflector, form_analyses, form))
                if not readings or readings & original:  # not a real word, or syncretic
                    continue
                seen.add((form, dim))
                valid.setdefault(w, []).append((form, lemma, feats, dim, old, new))
    out = []
    for i, sp in enumerate(spans):
        for a, b, w in sp:
            for form, lemma, feats, dim, old, new in valid.get(w, ()):
                out.append(Candidate(i, a, b, w, form, lemma, feats, dim, old, new))
    return out


def round_robin(cands: list, group, slot, make, n: int, seed: int = 0) -> list[dict]:
    """Up to `n` pairs from candidates, balanced round-robin over `group(c)` and seeded. Each pass
    uses a sentence (``c.sentence``) at most once, so a sentence gets a second pair only when one
    per sentence is not enough; a `slot(c)` is used once. `make(c)` returns the pair, or None to
    veto the candidate (a parser filter)."""
    rng = random.Random(seed)
    pending: dict[str, list] = {}
    for c in cands:
        pending.setdefault(group(c), []).append(c)
    for key in sorted(pending):
        rng.shuffle(pending[key])
    used, out = set(), []
    while len(out) < n and any(pending.values()):
        in_pass, deferred = set(), {k: [] for k in pending}
        while len(out) < n and any(pending.values()):
            for key in sorted(pending):
                queue = pending[key]
                while queue:
                    c = queue.pop()
                    if slot(c) in used:
                        continue
                    if c.sentence in in_pass:
                        deferred[key].append(c)
                        continue
                    pair = make(c)
                    if pair is None:
                        continue
                    in_pass.add(c.sentence)
                    used.add(slot(c))
                    out.append(pair)
                    break
                if len(out) >= n:
                    break
        pending = {k: q[::-1] for k, q in deferred.items()}
    return out


def generate_pairs(sentences: list[str], inflector, n: int, seed: int = 0) -> list[dict]:
    """Up to `n` minimal pairs ``{good, bad, phenomenon=feature dimension, ...}``, balanced
    round-robin over the changed dimension, one pair per word position."""
    return round_robin(candidates(sentences, inflector), lambda c: c.dimension, lambda c: (c.sentence, c.start),
                       lambda c: _pair(sentences[c.sentence], c), n, seed)


def _pair(sentence: str, c: Candidate) -> dict:
    return {"good": sentence, "bad": sentence[:c.start] + c.form + sentence[c.end:], "phenomenon": c.dimension,
            "feature": c.dimension, "from": c.old, "to": c.new, "lemma": c.lemma, "feats": sorted(c.feats),
            "word": c.word, "replacement": c.form, "sentence_id": c.sentence}


def read_sentences(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise GrowmergeError(f"{path}: no such sentence file (one sentence per line)")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise GrowmergeError(f"{path}: no sentences (one sentence per line)")
    return lines
