"""Icelandic through BÍN (PyPI `islenska`).

Covered: nouns (case × number × definiteness) and active finite verbs (mood × tense × person ×
number). BÍN marks are parsed into UniMorph-style tags; generation asks BÍN for the variant of the
lemma with the wanted mark and keeps only exact matches (impersonal ``OP-`` readings excluded).
"""

from __future__ import annotations

import re
from functools import lru_cache

from growmerge.evaluate.perturb.inflector import Inflector, Reading

NOUN_CATS = ("kk", "kvk", "hk")
NOUN_MARK = re.compile(r"^(NF|ÞF|ÞGF|EF)(ET|FT)(gr)?$")
VERB_MARK = re.compile(r"^GM-(FH|VH)-(NT|ÞT)-(1P|2P|3P)-(ET|FT)$")
CASE = {"NF": "NOM", "ÞF": "ACC", "ÞGF": "DAT", "EF": "GEN"}
NUMBER = {"ET": "SG", "FT": "PL"}
MOOD = {"FH": "IND", "VH": "SBJV"}
TENSE = {"NT": "PRS", "ÞT": "PST"}
PERSON = {"1P": "1", "2P": "2", "3P": "3"}
INVERSE = {v: k for table in (CASE, NUMBER, MOOD, TENSE, PERSON) for k, v in table.items()}


def mark_to_feats(cat: str, mark: str) -> frozenset | None:
    if cat in NOUN_CATS:
        m = NOUN_MARK.match(mark)
        if m:
            return frozenset({"N", CASE[m[1]], NUMBER[m[2]], "DEF" if m[3] else "INDF"})
    elif cat == "so":
        m = VERB_MARK.match(mark)
        if m:
            return frozenset({"V", MOOD[m[1]], TENSE[m[2]], PERSON[m[3]], NUMBER[m[4]]})
    return None


def feats_to_tags(feats: frozenset) -> tuple[str, ...]:
    """The BÍN inflection tags for `lookup_variants`."""
    tags = [INVERSE[f] for f in sorted(feats) if f in INVERSE]
    if "N" in feats:
        tags.append("gr" if "DEF" in feats else "nogr")
    else:
        tags.append("GM")
    return tuple(tags)


class IcelandicInflector(Inflector):
    name = "islenska"
    dimensions = {"Case": ("NOM", "ACC", "DAT", "GEN"), "Number": ("SG", "PL"), "Definiteness": ("DEF", "INDF"),
                  "Mood": ("IND", "SBJV"), "Tense": ("PRS", "PST"), "Person": ("1", "2", "3")}

    def __init__(self):
        from islenska import Bin

        self.bin = Bin()

    @lru_cache(maxsize=None)
    def analyze(self, word: str) -> list[Reading]:
        out = set()
        for e in self.bin.lookup(word)[1]:
            if e.bmynd != word:  # BÍN also matches other spellings (capitalisation); keep exact forms
                continue
            # Readings we do not inflect stay as one opaque tag: they still count for ambiguity.
            feats = mark_to_feats(e.ofl, e.mark) or frozenset({f"{e.ofl}:{e.mark}"})
            out.add((f"{e.ord}|{e.ofl}|{e.bin_id}", feats))
        return sorted(out, key=lambda r: (r[0], sorted(r[1])))

    def generate(self, lemma: str, feats: frozenset) -> list[str]:
        word, cat, bin_id = lemma.split("|")
        variants = self.bin.lookup_variants(word, cat, feats_to_tags(feats), bin_id=int(bin_id))
        return sorted({v.bmynd for v in variants if mark_to_feats(v.ofl, v.mark) == feats})
