"""Agreement- and government-breaking minimal pairs: per-language rules over analysed sentences.

A rule looks at one analysed sentence and proposes edits: replace the word at position *i* by a form
that breaks its agreement or government with a *controller* word (a determiner and its noun, a
preposition and its object, a subject and its verb, a modal and the infinitive it selects). An
edit names the new form either as inflector features to generate (``requests``) or directly
(``forms``, for closed-class words), and carries a check ``fits(readings)`` that says whether a
reading of the new form would still fit the context; such a form is dropped, as is one the
analyser does not know or one that shares a reading with the original word. A feature that is a
free choice (tense, mood, the number of a noun nothing agrees with, person without an overt
subject, degree) is never changed.

The rule sets live in one module per language family (``RULESETS``); each pair records its rule,
the changed feature, the controller word and both positions.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Iterable

from growmerge.errors import GrowmergeError
from growmerge.evaluate.perturb.generate import WORD, round_robin

# language -> module in this package that defines RULES (and optionally make_filter)
RULESETS = {"sv": "scandinavian", "da": "scandinavian", "et": "estonian", "is": "icelandic", "fa": "persian",
            "en": "english"}


@dataclass
class Token:
    i: int
    start: int
    end: int
    text: str
    readings: list  # [(lemma, frozenset feats)] of the word as written, else of its lowercase
    gap: str  # the text between the previous token and this one ("" for the first)

    @property
    def low(self) -> str:
        return self.text.lower()

    def pos(self) -> set[str]:
        """Parts of speech of the readings (the part of the lemma key after '|')."""
        return {lemma.split("|")[1] if "|" in lemma else "" for lemma, _ in self.readings}

    def joined(self) -> bool:
        """Only spaces between this token and the previous one (no punctuation)."""
        return self.i > 0 and self.gap.strip() == ""


@dataclass
class Sentence:
    text: str
    tokens: list[Token]
    lang: str = ""

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> Token:
        return self.tokens[i]

    def after(self, i: int) -> str:
        """The text right after token i up to the next token (or the end)."""
        end = self.tokens[i + 1].start if i + 1 < len(self.tokens) else len(self.text)
        return self.text[self.tokens[i].end:end]

    def next_joined(self, i: int) -> Token | None:
        """The next token if only spaces separate it from token i."""
        return self.tokens[i + 1] if i + 1 < len(self.tokens) and self.tokens[i + 1].joined() else None

    def prev_joined(self, i: int) -> Token | None:
        return self.tokens[i - 1] if i > 0 and self.tokens[i].joined() else None


@dataclass
class Edit:
    """One proposed change of token `target`, breaking its relation to token `controller`."""

    target: int
    controller: int
    rule: str
    feature: str  # the feature whose agreement/government breaks, e.g. "Gender"
    old: str  # its value in the good sentence
    new: str  # its value in the bad one
    requests: list = field(default_factory=list)  # [(lemma, feats)] to generate
    forms: list = field(default_factory=list)  # new forms given directly
    fits: Callable[[list], bool] | None = None  # does a reading of the new form still fit the context?
    known: bool = False  # the form is a closed-class word: no need for the analyser to know it
    lemma: str = ""


def tokenize(text: str, analyses: dict) -> list[Token]:
    toks, prev = [], 0
    for i, m in enumerate(WORD.finditer(text)):
        w = m.group()
        toks.append(Token(i, m.start(), m.end(), w, analyses.get(w) or analyses.get(w.lower()) or [],
                          text[prev:m.start()]))
        prev = m.end()
    return toks


def match_case(template: str, form: str) -> str:
    if template[:1].isupper() and form[:1].islower():
        return form[0].upper() + form[1:]
    if template[:1].islower() and form[:1].isupper() and not form.isupper():
        return form[0].lower() + form[1:]
    return form


def load_rules(lang: str):
    """The rule module of a language, or None if the language has no rules."""
    if lang not in RULESETS:
        return None
    return importlib.import_module(f"growmerge.evaluate.perturb.rules.{RULESETS[lang]}")


@dataclass
class Candidate:
    sentence: int
    target: int
    start: int
    end: int
    word: str
    form: str
    edit: Edit
    controller_word: str


def analyse(sentences: list[str], inflector, lang: str = "") -> list[Sentence]:
    words = {m.group() for s in sentences for m in WORD.finditer(s)}
    analyses = inflector.analyze_many(words | {w.lower() for w in words})
    return [Sentence(s, tokenize(s, analyses), lang) for s in sentences]


def candidates(sentences: list[str], inflector, lang: str, rules: Iterable | None = None) -> list[Candidate]:
    """Every valid edit that the language's rules propose in every sentence."""
    module = load_rules(lang)
    if rules is None:
        if module is None:
            raise GrowmergeError(f"no agreement rules for language {lang!r} (rules exist for "
                                 f"{', '.join(sorted(RULESETS))})")
        rules = module.rules_for(lang) if hasattr(module, "rules_for") else module.RULES
    # A module may count only readings of the edited lemma as syncretic (lemminflect lists stray
    # readings such as "print" as a plural noun); `fits` still checks every reading against the context.
    lemma_only = getattr(module, "SYNCRETISM", "any") == "lemma"
    parsed = analyse(sentences, inflector, lang)
    proposals: list[tuple[int, Edit]] = []
    for si, sent in enumerate(parsed):
        for rule in rules:
            for e in rule(sent):
                proposals.append((si, e))
    requests = {r for _, e in proposals for r in e.requests}
    generated = inflector.generate_many(requests) if requests else {}
    new_forms = set()
    for si, e in proposals:
        new_forms.update(e.forms)
        for r in e.requests:
            new_forms.update(generated.get(r, ()))
    form_readings = inflector.analyze_many(new_forms | {f.lower() for f in new_forms})

    out, seen = [], set()
    for si, e in proposals:
        sent = parsed[si]
        tok = sent[e.target]
        forms = list(e.forms) + [f for r in e.requests for f in generated.get(r, ())]
        original = set(tok.readings)
        for form in forms:
            form = match_case(tok.text, form)
            if form.lower() == tok.low or (si, e.target, form) in seen:
                continue
            readings = form_readings.get(form) or form_readings.get(form.lower()) or []
            if not readings and not e.known:
                continue  # not a word the analyser knows
            shared = set(readings) & original
            if lemma_only:
                shared = {r for r in shared if r[0] == e.lemma}
            if shared:
                continue  # syncretic: the "bad" sentence may be the good one under another analysis
            if e.fits is not None and e.fits(readings):
                continue  # another reading of the new form still agrees
            seen.add((si, e.target, form))
            out.append(Candidate(si, e.target, tok.start, tok.end, tok.text, form, e, sent[e.controller].text))
    return out


def select(cands: list[Candidate], sentences: list[str], n: int, seed: int = 0,
           keep: Callable[[str, str], bool] | None = None) -> tuple[list[dict], int]:
    """Up to `n` pairs balanced round-robin over the rules, a word position used at most once per
    rule; `keep(good, bad)` may veto a pair (a parser filter). Returns the pairs and how many the
    veto removed."""
    vetoed = 0

    def make(c: Candidate) -> dict | None:
        nonlocal vetoed
        pair = make_pair(sentences[c.sentence], c)
        if keep is not None and not keep(pair["good"], pair["bad"]):
            vetoed += 1
            return None
        return pair

    pairs = round_robin(cands, lambda c: c.edit.rule, lambda c: (c.sentence, c.target, c.edit.rule), make, n, seed)
    return pairs, vetoed


def make_pair(sentence: str, c: Candidate) -> dict:
    e = c.edit
    return {"good": sentence, "bad": sentence[:c.start] + c.form + sentence[c.end:], "phenomenon": e.rule,
            "rule": e.rule, "feature": e.feature, "from": e.old, "to": e.new, "word": c.word,
            "replacement": c.form, "position": c.target, "controller": c.controller_word,
            "controller_position": e.controller, "lemma": e.lemma, "sentence_id": c.sentence}


def rule_pairs(sentences: list[str], inflector, lang: str, n: int, seed: int = 0) -> tuple[list[dict], dict]:
    """Pairs from the language's rules, and a report: candidates per rule, pairs the filter removed."""
    module = load_rules(lang)
    cands = candidates(sentences, inflector, lang)
    keep = module.make_filter() if hasattr(module, "make_filter") else None
    pairs, vetoed = select(cands, sentences, n, seed, keep)
    by_rule: dict[str, int] = {}
    for c in cands:
        by_rule[c.edit.rule] = by_rule.get(c.edit.rule, 0) + 1
    return pairs, {"candidates": by_rule, "filtered": vetoed, "filter": getattr(keep, "name", None),
                   "filter_reasons": dict(getattr(keep, "removed", {}))}
