"""Estonian through Vabamorf, bundled in `estnltk`.

estnltk is installed without its dependencies, so ``import estnltk`` fails; its ``vabamorf``
subpackage is self-contained, so we import it from the package directory directly.

Covered: nouns, adjectives, pronouns and numerals (number × 14 cases), finite indicative active verbs
(present and past × person × number), the da- and ma-infinitives, the connegative and the
nud-participle. Unknown words are not guessed (a generated form must be a real word).
"""

from __future__ import annotations

import importlib.util
import sys

from growmerge.errors import GrowmergeError
from growmerge.evaluate.perturb.inflector import Inflector, Reading

CASES = ("n", "g", "p", "ill", "in", "el", "all", "ad", "abl", "tr", "ter", "es", "ab", "kom")
VERB_CODES = {  # vabamorf form code -> (tense, person, number)
    "n": ("PRS", "1", "SG"), "d": ("PRS", "2", "SG"), "b": ("PRS", "3", "SG"),
    "me": ("PRS", "1", "PL"), "te": ("PRS", "2", "PL"), "vad": ("PRS", "3", "PL"),
    "sin": ("PST", "1", "SG"), "sid": ("PST", "2", "SG"), "s": ("PST", "3", "SG"),
    "sime": ("PST", "1", "PL"), "site": ("PST", "2", "PL"),
}
PAST_3PL = ("PST", "3", "PL")  # also "sid" (syncretic with 2sg)
VERB_FEATS = {v: k for k, v in VERB_CODES.items()} | {PAST_3PL: "sid"}


def load_morf():
    """Vabamorf's ``morf`` module, imported from inside the estnltk package directory."""
    spec = importlib.util.find_spec("estnltk")
    if spec is None or not spec.submodule_search_locations:
        raise GrowmergeError("Estonian needs estnltk (pip install --no-deps estnltk==1.7.5)")
    root = spec.submodule_search_locations[0]
    if root not in sys.path:
        sys.path.insert(0, root)
    from vabamorf import morf  # noqa: E402  (the bundled package, not estnltk itself)

    return morf


NOMINALS = ("S", "A", "C", "U", "O", "N", "P")  # noun, adjective, comparative, superlative, ordinal, numeral, pronoun
VERB_FORMS = {"da": "DA", "ma": "MA", "o": "CONNEG", "nud": "NUD"}  # infinitives, connegative, nud-participle
FORM_OF = {v: k for k, v in VERB_FORMS.items()}


def to_feats(pos: str, form: str) -> list[frozenset]:
    if pos in NOMINALS:
        parts = form.split()
        if len(parts) == 2 and parts[0] in ("sg", "pl") and parts[1] in CASES:
            return [frozenset({pos, parts[0].upper(), parts[1]})]
    if pos == "V" and form in VERB_CODES:
        feats = [VERB_CODES[form]] + ([PAST_3PL] if form == "sid" else [])
        return [frozenset({"V", *f}) for f in feats]
    if pos == "V" and form in VERB_FORMS:
        return [frozenset({"V", VERB_FORMS[form]})]
    return []


def to_form(feats: frozenset) -> str | None:
    if "V" in feats:
        other = [FORM_OF[f] for f in feats if f in FORM_OF]
        if other:
            return other[0]
        key = tuple(next((f for f in feats if f in vals), None) for vals in (("PRS", "PST"), ("1", "2", "3"), ("SG", "PL")))
        return VERB_FEATS.get(key)
    number = "sg" if "SG" in feats else "pl"
    case = next((c for c in CASES if c in feats), None)
    return f"{number} {case}" if case else None


class EstonianInflector(Inflector):
    name = "vabamorf"
    dimensions = {"Number": ("SG", "PL"), "Case": CASES, "Tense": ("PRS", "PST"), "Person": ("1", "2", "3"),
                  "VForm": ("DA", "MA", "CONNEG", "NUD")}

    def __init__(self):
        self.morf = load_morf()
        self.vm = self.morf.Vabamorf.instance()
        self._cache: dict[str, list[Reading]] = {}

    def analyze_many(self, words) -> dict[str, list[Reading]]:
        todo = [w for w in set(words) if w not in self._cache and w.strip()]
        if todo:
            for w, res in zip(todo, self.vm.analyze(todo, disambiguate=False, guess=False, propername=False)):
                out = set()
                for a in res["analysis"]:
                    lemma = f"{a['lemma']}|{a['partofspeech']}"
                    for feats in to_feats(a["partofspeech"], a["form"]) or [frozenset({f"{a['partofspeech']}:{a['form']}"})]:
                        out.add((lemma, feats))
                self._cache[w] = sorted(out, key=lambda r: (r[0], sorted(r[1])))
        return {w: self._cache.get(w, []) for w in words}

    def analyze(self, word: str) -> list[Reading]:
        return self.analyze_many([word])[word]

    def generate(self, lemma: str, feats: frozenset) -> list[str]:
        word, pos = lemma.split("|")
        form = to_form(feats)
        if form is None:
            return []
        return sorted(set(self.morf.synthesize(word, form, partofspeech=pos, guess=False)))
