"""English through `lemminflect` (a packaged lemma and inflection lexicon with Penn tags).

Covered: noun number (NN ↔ NNS), present-tense agreement (VBZ ↔ VBP), past finite vs
participle (VBD ↔ VBN) and the base form (VB). Penn tags map to feature sets so that each of these is one feature.
"""

from __future__ import annotations

from functools import lru_cache

from growmerge.evaluate.perturb.inflector import Inflector, Reading

PENN = {
    "NN": {"N", "SG"}, "NNS": {"N", "PL"},
    "VBZ": {"V", "PRS", "3SG"}, "VBP": {"V", "PRS", "NON3SG"},
    "VBD": {"V", "PST", "FIN"}, "VBN": {"V", "PST", "PTCP"}, "VB": {"V", "INF"},
}
UPOS = {"NOUN": ("NN", "NNS"), "VERB": ("VB", "VBZ", "VBP", "VBD", "VBN")}
TAG_OF = {frozenset(v): k for k, v in PENN.items()}


class EnglishInflector(Inflector):
    name = "lemminflect"
    dimensions = {"Number": ("SG", "PL"), "Agreement": ("3SG", "NON3SG"), "Finiteness": ("FIN", "PTCP")}
    # "INF" (the base form) is no dimension value: the paper's one-feature changes never produce it.

    def __init__(self):
        import lemminflect

        self.lm = lemminflect

    @lru_cache(maxsize=None)
    def analyze(self, word: str) -> list[Reading]:
        out = set()
        for upos, lemmas in self.lm.getAllLemmas(word).items():
            for lemma in lemmas:
                tags = UPOS.get(upos)
                if tags is None:  # other parts of speech still count for ambiguity
                    out.add((f"{lemma}|{upos}", frozenset({upos})))
                    continue
                table = self.lm.getAllInflections(lemma, upos=upos)
                for tag in tags:
                    if word in table.get(tag, ()):
                        out.add((f"{lemma}|{upos}", frozenset(PENN[tag])))
        return sorted(out, key=lambda r: (r[0], sorted(r[1])))

    def generate(self, lemma: str, feats: frozenset) -> list[str]:
        word, upos = lemma.split("|")
        tag = TAG_OF.get(frozenset(feats))
        if tag is None:
            return []
        # The first form is lemminflect's preferred spelling (e.g. NNS of "dog" lists "dogs", "dog").
        forms = self.lm.getAllInflections(word, upos=upos).get(tag, ())
        return list(forms[:1])
