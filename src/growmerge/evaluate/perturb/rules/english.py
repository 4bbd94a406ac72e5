"""English rules over lemminflect analyses (readings ``("lemma|UPOS", {tags})``, see ``english.py``).

- ``det-noun-number``: a noun with the other number than its determiner (*this page* → *this
  pages*, *several files* → *several file*);
- ``subject-verb``: a present-tense verb right after its subject in the other agreement form (*it
  prints* → *it print*, *the printer prints* → *the printer print*, *they print* → *they prints*);
- ``verb-form``: a finite form where a modal or *do* selects the base form (*can print* → *can
  prints*, *does not support* → *does not supports*), or a simple past where *have* selects the
  participle (*has written* → *has wrote*).
"""

from __future__ import annotations

from growmerge.evaluate.perturb.rules import Edit, Sentence, Token

SYNCRETISM = "lemma"  # lemminflect's stray readings ("print" as a plural noun) do not make a form syncretic
SINGULAR = {"a", "an", "this", "each", "every", "another", "one", "either", "neither"}
PLURAL = {"these", "those", "many", "several", "two", "three", "four", "five", "six", "few", "both", "various",
          "multiple", "numerous"}
SUBJECT_3SG = {"he", "she", "it"}
SUBJECT_NON3SG = {"i", "you", "we", "they"}
ARTICLES = {"the", "a", "an", "this", "that", "each", "every", "its", "his", "her", "their", "our", "your", "my"}
MODALS = {"can", "could", "will", "would", "shall", "should", "may", "might", "must"}
DO = {"do", "does", "did"}
HAVE = {"has", "have", "had"}
SKIP = {"not", "also", "only", "then", "always", "never", "now", "still", "just", "first", "automatically"}


def upos(r) -> str:
    return r[0].split("|")[1]


def readings(tok: Token, *tags):
    return [(lemma, f) for lemma, f in tok.readings if set(tags) <= f]


def adjectival(tok: Token) -> bool:
    return any(upos(r) == "ADJ" for r in tok.readings) and not readings(tok, "N")


def noun_after(sent: Sentence, i: int) -> int | None:
    """The first noun after token i, over at most two adjectives (spaces only between)."""
    j = i + 1
    while j < len(sent) and sent[j].joined() and j <= i + 3:
        nxt = sent.next_joined(j)
        modifier = any(upos(r) == "ADJ" for r in sent[j].readings) and nxt is not None and readings(nxt, "N")
        if readings(sent[j], "N") and not modifier:
            return j
        if not adjectival(sent[j]):
            return None
        j += 1
    return None


def det_noun_number(sent: Sentence):
    for i, tok in enumerate(sent.tokens):
        number = "SG" if tok.low in SINGULAR else "PL" if tok.low in PLURAL else None
        if number is None:
            continue
        k = noun_after(sent, i)
        if k is None:
            continue
        nouns = readings(sent[k], "N")
        if {n for _, f in nouns for n in f & {"SG", "PL"}} != {number}:
            continue
        other = "PL" if number == "SG" else "SG"
        lemma = nouns[0][0]
        yield Edit(k, i, "det-noun-number", "Number", number, other, requests=[(lemma, frozenset({"N", other}))],
                   lemma=lemma, fits=lambda rs, number=number: any("N" in r[1] and number in r[1] for r in rs))


def clitic(sent: Sentence, i: int) -> bool:
    """Token i is cut off before an apostrophe (don't, it's): not a word of its own."""
    return sent.after(i)[:1] in ("'", "’")


def _agreement_edit(sent: Sentence, v: int, controller: int, have: str):
    verb = readings(sent[v], "V", "PRS", have)
    if not verb or clitic(sent, v):
        return
    other = "NON3SG" if have == "3SG" else "3SG"
    lemma = verb[0][0]
    yield Edit(v, controller, "subject-verb", "Agreement", have, other, requests=[(lemma, frozenset({"V", "PRS", other}))],
               lemma=lemma, fits=lambda rs: any("V" in r[1] and have in r[1] for r in rs))


def subject_verb(sent: Sentence):
    for i, tok in enumerate(sent.tokens):
        nxt = sent.next_joined(i)
        if nxt is None:
            continue
        if tok.low in SUBJECT_3SG:
            yield from _agreement_edit(sent, i + 1, i, "3SG")
        elif tok.low in SUBJECT_NON3SG:
            yield from _agreement_edit(sent, i + 1, i, "NON3SG")
        elif tok.low in ARTICLES:
            k = noun_after(sent, i)
            if k is None or k + 1 >= len(sent) or not sent[k + 1].joined():
                continue
            numbers = {n for _, f in readings(sent[k], "N") for n in f & {"SG", "PL"}}
            if len(numbers) != 1 or readings(sent[k], "V") or readings(sent[k + 1], "N"):
                continue
            yield from _agreement_edit(sent, k + 1, k, "3SG" if numbers == {"SG"} else "NON3SG")


def verb_form(sent: Sentence):
    for i, tok in enumerate(sent.tokens):
        if tok.low not in MODALS | DO | HAVE:
            continue
        j = i + 1
        while j < len(sent) and sent[j].joined() and sent[j].low in SKIP and j <= i + 2:
            j += 1
        if j >= len(sent) or not sent[j].joined():
            continue
        v = sent[j]
        if clitic(sent, j):
            continue
        if tok.low in HAVE:
            part = readings(v, "V", "PTCP")
            if part and not readings(v, "N"):
                lemma = part[0][0]
                yield Edit(j, i, "verb-form", "VerbForm", "PTCP", "FIN", requests=[(lemma, frozenset({"V", "PST", "FIN"}))],
                           lemma=lemma, fits=lambda rs: any("PTCP" in r[1] for r in rs))
            continue
        base = readings(v, "V", "INF")
        if not base or readings(v, "N") and tok.low in DO:
            continue
        lemma = base[0][0]
        yield Edit(j, i, "verb-form", "VerbForm", "INF", "3SG", requests=[(lemma, frozenset({"V", "PRS", "3SG"}))],
                   lemma=lemma, fits=lambda rs: any("INF" in r[1] or "NON3SG" in r[1] for r in rs))


RULES = [det_noun_number, subject_verb, verb_form]
