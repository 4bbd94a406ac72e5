"""Icelandic through BÍN (PyPI `islenska`).

Covered: nouns (gender × case × number × definiteness), adjectives (degree/declension × gender × case
× number), determiners, articles and numerals (gender × case × number), personal pronouns (case ×
number), active finite verbs (mood × tense × person × number), the infinitive, the supine and the past
participle (declined like an adjective). BÍN
marks are parsed into UniMorph-style tags; generation looks the lemma's paradigm up by its BÍN id and
keeps the forms whose mark parses to exactly the wanted tags (impersonal ``OP-`` readings excluded).
"""

from __future__ import annotations

import re
from functools import lru_cache

from growmerge.evaluate.perturb.inflector import Inflector, Reading

NOUN_CATS = ("kk", "kvk", "hk")
NOUN_MARK = re.compile(r"^(NF|ÞF|ÞGF|EF)(ET|FT)(gr)?$")
VERB_MARK = re.compile(r"^GM-(FH|VH)-(NT|ÞT)-(1P|2P|3P)-(ET|FT)$")
ADJ_MARK = re.compile(r"^(FSB|FVB|MST|ESB|EVB)-(KK|KVK|HK)-(NF|ÞF|ÞGF|EF)(ET|FT)$")
PTCP_MARK = re.compile(r"^LHÞT-(SB|VB)-(KK|KVK|HK)-(NF|ÞF|ÞGF|EF)(ET|FT)$")
DET_MARK = re.compile(r"^(KK|KVK|HK)-(NF|ÞF|ÞGF|EF)(ET|FT)$")
PRO_MARK = re.compile(r"^(NF|ÞF|ÞGF|EF)(ET|FT)$")
CASE = {"NF": "NOM", "ÞF": "ACC", "ÞGF": "DAT", "EF": "GEN"}
NUMBER = {"ET": "SG", "FT": "PL"}
MOOD = {"FH": "IND", "VH": "SBJV"}
TENSE = {"NT": "PRS", "ÞT": "PST"}
PERSON = {"1P": "1", "2P": "2", "3P": "3"}
GENDER = {"kk": "MASC", "kvk": "FEM", "hk": "NEUT", "KK": "MASC", "KVK": "FEM", "HK": "NEUT"}
DEGREE = {"FSB": "STRONG", "FVB": "WEAK", "MST": "CMPR", "ESB": "SPRL", "EVB": "SPRL_WEAK"}
INVERSE = {v: k for table in (CASE, NUMBER, MOOD, TENSE, PERSON) for k, v in table.items()}
DET_CATS = {"fn": "DET", "gr": "ART", "to": "NUM"}


def mark_to_feats(cat: str, mark: str) -> frozenset | None:
    if cat in NOUN_CATS:
        m = NOUN_MARK.match(mark)
        if m:
            return frozenset({"N", GENDER[cat], CASE[m[1]], NUMBER[m[2]], "DEF" if m[3] else "INDF"})
    elif cat == "so":
        m = VERB_MARK.match(mark)
        if m:
            return frozenset({"V", MOOD[m[1]], TENSE[m[2]], PERSON[m[3]], NUMBER[m[4]]})
        if mark == "GM-NH":
            return frozenset({"V", "INF"})
        if mark == "GM-SAGNB":
            return frozenset({"V", "SUP"})
        m = PTCP_MARK.match(mark)
        if m:  # the past participle declines like an adjective
            return frozenset({"ADJ", "PTCP", "STRONG" if m[1] == "SB" else "WEAK", GENDER[m[2]], CASE[m[3]],
                              NUMBER[m[4]]})
    elif cat == "lo":
        m = ADJ_MARK.match(mark)
        if m:
            return frozenset({"ADJ", DEGREE[m[1]], GENDER[m[2]], CASE[m[3]], NUMBER[m[4]]})
    elif cat in DET_CATS:
        m = DET_MARK.match(mark)
        if m:
            return frozenset({DET_CATS[cat], GENDER[m[1]], CASE[m[2]], NUMBER[m[3]]})
    elif cat == "pfn":
        m = PRO_MARK.match(mark)
        if m:
            return frozenset({"PRO", CASE[m[1]], NUMBER[m[2]]})
    return None


class IcelandicInflector(Inflector):
    name = "islenska"
    dimensions = {"Case": ("NOM", "ACC", "DAT", "GEN"), "Number": ("SG", "PL"), "Definiteness": ("DEF", "INDF"),
                  "Mood": ("IND", "SBJV"), "Tense": ("PRS", "PST"), "Person": ("1", "2", "3"),
                  "Gender": ("MASC", "FEM", "NEUT"), "VForm": ("INF", "SUP")}

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

    @lru_cache(maxsize=None)
    def paradigm(self, bin_id: int, cat: str) -> dict[frozenset, tuple[str, ...]]:
        table: dict[frozenset, set[str]] = {}
        for e in self.bin.lookup_id(bin_id):
            feats = mark_to_feats(e.ofl, e.mark) if e.ofl == cat else None
            if feats is not None:
                table.setdefault(feats, set()).add(e.bmynd)
        return {f: tuple(sorted(forms)) for f, forms in table.items()}

    def generate(self, lemma: str, feats: frozenset) -> list[str]:
        word, cat, bin_id = lemma.split("|")
        return list(self.paradigm(int(bin_id), cat).get(frozenset(feats), ()))
