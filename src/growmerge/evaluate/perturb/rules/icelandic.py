"""Icelandic rules over BÍN analyses (readings ``("lemma|cat|bin_id", {tags})``, see ``icelandic.py``),
and a check by the parser ``reynir`` (Greynir).

- ``prep-case``: the object of a preposition in a case the preposition does not govern
  (*úr listanum* → *úr listans*, *til dæmis* → *til dæmi*);
- ``modifier-agreement``: an adjective, determiner, article or numeral before its noun in another
  gender or number (*ótengdri mynd* → *ótengdum mynd*, *þessa töflu* → *þessar töflu*);
- ``subject-verb``: a finite verb next to a nominative personal pronoun, or right after a
  sentence-initial nominative noun, in another person or number (*Hluturinn er* → *Hluturinn eru*);
- ``verb-form``: a finite verb where the infinitive marker *að* or a modal selects an infinitive,
  or *hafa*/*geta* a supine (*til að halda* → *til að heldur*, *hefur valið* → *hefur velur*).

The parser is a filter, not an oracle (it reanalyses many bad sentences): a pair is kept only if
the good sentence parses and the bad one does not, or parses only with another structure.
"""

from __future__ import annotations

from growmerge.errors import GrowmergeError
from growmerge.evaluate.perturb.rules import Edit, Sentence, Token

CASES = ("NOM", "ACC", "DAT", "GEN")
GENDERS = ("MASC", "FEM", "NEUT")
NOMINAL = {"N", "ADJ", "DET", "ART", "NUM", "PRO"}
MODIFIER = {"ADJ", "DET", "ART", "NUM"}
PREPOSITIONS = {
    "til": {"GEN"}, "án": {"GEN"}, "meðal": {"GEN"}, "vegna": {"GEN"}, "auk": {"GEN"}, "innan": {"GEN"},
    "utan": {"GEN"}, "milli": {"GEN"}, "sökum": {"GEN"},
    "frá": {"DAT"}, "af": {"DAT"}, "úr": {"DAT"}, "hjá": {"DAT"}, "gegn": {"DAT"}, "handa": {"DAT"},
    "ásamt": {"DAT"}, "samkvæmt": {"DAT"}, "nálægt": {"DAT"}, "undan": {"DAT"}, "meðfram": {"DAT"},
    "um": {"ACC"}, "gegnum": {"ACC"}, "kringum": {"ACC"}, "umfram": {"ACC"},
    "á": {"ACC", "DAT"}, "í": {"ACC", "DAT"}, "með": {"ACC", "DAT"}, "undir": {"ACC", "DAT"},
    "yfir": {"ACC", "DAT"}, "eftir": {"ACC", "DAT"}, "fyrir": {"ACC", "DAT"},
}
PRONOUNS = {"ég": ("1", "SG"), "þú": ("2", "SG"), "hann": ("3", "SG"), "hún": ("3", "SG"), "þið": ("2", "PL"),
            "þeir": ("3", "PL"), "þær": ("3", "PL"), "þau": ("3", "PL")}
MODALS = {"skal", "skulu", "skuli", "mun", "munu", "myndi", "mundi", "má", "mega", "megi", "vill", "vilja", "vilt"}
SUPINE_AUX = {"hefur", "hef", "hafa", "hafði", "höfðu", "hafi", "hefðu", "hefði", "getur", "get", "geta", "gat",
              "gæti", "gætu", "getið"}
PERSONS = [(p, n) for n in ("SG", "PL") for p in ("1", "2", "3")]


def cat_of(r) -> str:
    return r[0].split("|")[1]


def kind(f) -> str | None:
    return next((t for t in f if t in NOMINAL or t == "V"), None)


def case_of(f):
    return next((t for t in f if t in CASES), None)


def gnc(f) -> tuple:
    return (next((t for t in f if t in GENDERS), None), case_of(f), next((t for t in f if t in ("SG", "PL")), None))


def only(tok: Token | None, kinds: set) -> bool:
    return tok is not None and bool(tok.readings) and all(kind(f) in kinds for _, f in tok.readings)


def finite(f):
    if "V" not in f:
        return None
    m = next((t for t in f if t in ("IND", "SBJV")), None)
    t = next((x for x in f if x in ("PRS", "PST")), None)
    p = next((x for x in f if x in ("1", "2", "3")), None)
    n = next((x for x in f if x in ("SG", "PL")), None)
    return (m, t, p, n) if m and t and p and n else None


def prep_case(sent: Sentence):
    for i, tok in enumerate(sent.tokens):
        governed = PREPOSITIONS.get(tok.low)
        if governed is None:
            continue
        k = i + 1
        while k < len(sent) and sent[k].joined() and only(sent[k], MODIFIER) and k - i <= 3:
            k += 1
        if k >= len(sent) or not sent[k].joined() or not only(sent[k], {"N", "PRO"}):
            continue
        head = sent[k]
        readings = [(lemma, f) for lemma, f in head.readings if case_of(f) in governed]
        if not readings:
            continue
        lemma, f = readings[0]
        for case in CASES:
            if case in governed:
                continue
            feats = (f - {case_of(f)}) | {case}
            yield Edit(k, i, "prep-case", "Case", case_of(f), case, requests=[(lemma, frozenset(feats))], lemma=lemma,
                       fits=lambda rs, governed=governed: any(case_of(r[1]) in governed for r in rs
                                                              if kind(r[1]) in NOMINAL))


def modifier_agreement(sent: Sentence):
    for k in range(1, len(sent)):
        head, mod = sent[k], sent[k - 1]
        if not head.joined() or not only(head, {"N"}) or not only(mod, MODIFIER):
            continue
        targets = {gnc(f) for _, f in head.readings}
        agreeing = [(lemma, f) for lemma, f in mod.readings if gnc(f) in targets]
        if not agreeing:
            continue
        lemma, f = agreeing[0]
        g, c, n = gnc(f)

        def fits(rs, targets=targets):
            return any(gnc(r[1]) in targets for r in rs if kind(r[1]) in MODIFIER)

        for g2 in GENDERS:
            if g2 != g:
                yield Edit(k - 1, k, "modifier-agreement", "Gender", g, g2, requests=[(lemma, (f - {g}) | {g2})],
                           lemma=lemma, fits=fits)
        n2 = "PL" if n == "SG" else "SG"
        yield Edit(k - 1, k, "modifier-agreement", "Number", n, n2, requests=[(lemma, (f - {n}) | {n2})], lemma=lemma,
                   fits=fits)


def _verb_edits(sent: Sentence, v: int, controller: int, person: str, number: str, only_number: bool = False):
    verb = sent[v]
    if not verb.readings or not all(cat_of(r) == "so" for r in verb.readings):
        return
    reading = next(((lemma, f) for lemma, f in verb.readings if finite(f) and finite(f)[2:] == (person, number)), None)
    if reading is None:
        return
    lemma, f = reading
    mood, tense = finite(f)[:2]
    for p, n in PERSONS:
        if (p, n) == (person, number) or only_number and p != person:
            continue
        yield Edit(v, controller, "subject-verb", "Person" if p != person else "Number", f"{person}{number.lower()}",
                   f"{p}{n.lower()}", requests=[(lemma, frozenset({"V", mood, tense, p, n}))], lemma=lemma,
                   fits=lambda rs: any(finite(r[1]) and finite(r[1])[2:] == (person, number) for r in rs))


def subject_verb(sent: Sentence):
    for i, tok in enumerate(sent.tokens):
        if tok.low in PRONOUNS and only(tok, {"PRO"}) and all(case_of(f) == "NOM" for _, f in tok.readings):
            person, number = PRONOUNS[tok.low]
            for v in (i + 1, i - 1):
                if 0 <= v < len(sent) and sent[max(v, i)].joined():
                    yield from _verb_edits(sent, v, i, person, number)
    if len(sent) > 1 and only(sent[0], {"N"}) and all(case_of(f) == "NOM" for _, f in sent[0].readings) \
            and sent[1].joined():
        numbers = {gnc(f)[2] for _, f in sent[0].readings}
        if len(numbers) == 1:
            yield from _verb_edits(sent, 1, 0, "3", numbers.pop(), only_number=True)


def verb_form(sent: Sentence):
    for i, tok in enumerate(sent.tokens):
        if tok.low == "að" or tok.low in MODALS:
            want = "INF"
        elif tok.low in SUPINE_AUX:
            want = "SUP"
        else:
            continue
        v = sent.next_joined(i)
        if v is None or not v.readings:
            continue
        # An infinitive after "að" could be a dative noun after the preposition "að": not if no reading is one.
        if want == "INF" and not all(cat_of(r) == "so" or kind(r[1]) == "N" and case_of(r[1]) != "DAT"
                                     for r in v.readings):
            continue
        reading = next(((lemma, f) for lemma, f in v.readings if want in f), None)
        if reading is None:
            continue
        yield Edit(v.i, i, "verb-form", "VerbForm", want, "finite",
                   requests=[(reading[0], frozenset({"V", "IND", "PRS", "3", "SG"}))], lemma=reading[0],
                   fits=lambda rs: any("INF" in r[1] or "SUP" in r[1] for r in rs))


RULES = [prep_case, modifier_agreement, subject_verb, verb_form]


class ReynirFilter:
    """Keep a pair only if Greynir parses the good sentence and rejects or flags the bad one: the bad
    sentence does not parse, or parses only with another constituent structure than the good one
    (the parser had to reanalyse it; the same structure means it took the changed word as fitting)."""

    name = "reynir"

    def __init__(self):
        try:
            from reynir import Greynir
        except ImportError:
            raise GrowmergeError("Icelandic pairs need the parser reynir (pip install reynir==3.10.0)") from None
        self.g = Greynir()
        self._parses: dict[str, str | None] = {}
        self.removed = {"good does not parse": 0, "bad parses alike": 0}

    def skeleton(self, text: str) -> str | None:
        """The parse's nonterminals in order (terminals dropped), or None if it does not parse."""
        if text not in self._parses:
            tree = self.g.parse_single(text).tree
            self._parses[text] = None if tree is None else " ".join(
                t for t in tree.flat.split() if t[:1].isupper() or t.startswith("/"))
        return self._parses[text]

    def __call__(self, good: str, bad: str) -> bool:
        g = self.skeleton(good)
        if g is None:
            self.removed["good does not parse"] += 1
            return False
        if self.skeleton(bad) == g:
            self.removed["bad parses alike"] += 1
            return False
        return True


def make_filter():
    return ReynirFilter()
