"""Estonian rules over Vabamorf analyses (readings ``("lemma|POS", {POS, SG|PL, case})`` for nominals,
``{"V", tense, person, number}`` for finite verbs, ``{"V", DA|MA|CONNEG|NUD}`` for the other verb forms).

Estonian drops 1st and 2nd person subjects, so person on a verb is changed only next to an overt
subject. The rules:

- ``modifier-agreement``: an adjective or determiner pronoun before its noun in another number or
  case (*suures majas* → *suurtes majas*, *serveripoolseid hüperpilte* → *serveripoolset hüperpilte*);
  only the ten cases in which attributes agree, and never into the genitive (a genitive
  pronoun before a noun is a possessor);
- ``postposition``: the genitive a postposition governs made nominative (*klahvi abil* → *klahv abil*);
- ``negation``: a finite form after *ei* instead of the connegative (*ei saa* → *ei saab*,
  *ei saanud* → *ei sai*);
- ``subject-verb``: the verb next to a nominative personal pronoun in another person or number
  (*kui sa klõpsad* → *kui sa klõpsab*), or after a sentence-initial nominative noun (*Fail on* →
  *Fail olen*, *Lapsed mängisid* → *Lapsed mängis*);
- ``modal-infinitive``: the other infinitive after a modal (*võib teha* → *võib tegema*,
  *peab tegema* → *peab teha*).
"""

from __future__ import annotations

from growmerge.evaluate.perturb.estonian import CASES
from growmerge.evaluate.perturb.rules import Edit, Sentence, Token

AGREEING = CASES[:10]  # nominative … translative: an attribute takes the noun's case
ADJ_POS = ("A", "C", "U", "O")
DET_PRONOUNS = {"see", "too", "iga", "mõni", "selline", "niisugune", "teine", "kumbki", "missugune"}
POSTPOSITIONS = {"abil", "kohta", "jaoks", "kaudu", "tõttu", "asemel", "ajal", "suhtes", "puhul", "korral", "hulgas",
                 "juures", "järgi", "alusel", "kõrval", "poolt", "eest", "sees", "seest", "vahendusel", "käigus"}
PRONOUNS = {"ma": ("1", "SG"), "mina": ("1", "SG"), "sa": ("2", "SG"), "sina": ("2", "SG"), "me": ("1", "PL"),
            "meie": ("1", "PL"), "te": ("2", "PL"), "teie": ("2", "PL"), "nad": ("3", "PL"), "nemad": ("3", "PL"),
            "ta": ("3", "SG")}
QUANTITY = {"enamik", "osa", "hulk", "rida", "paar", "mitu", "arv", "kogus", "enamus"}
IMPERSONAL = {"tulema", "saama"}  # "tuleb/saab teha": a nominative next to them is an object, not a subject
MODALS_DA = {"võima", "tohtima", "oskama", "soovima", "tahtma"}
MODALS_MA = {"pidama", "hakkama"}
PERSONS = [(p, n) for n in ("SG", "PL") for p in ("1", "2", "3")]


def pos_of(r) -> str:
    return r[0].split("|")[1]


def lemma_of(r) -> str:
    return r[0].split("|")[0]


def case_number(f) -> tuple | None:
    c = next((x for x in f if x in CASES), None)
    n = next((x for x in f if x in ("SG", "PL")), None)
    return (c, n) if c and n else None


def only(tok: Token | None, *pos) -> bool:
    return tok is not None and bool(tok.readings) and all(pos_of(r) in pos for r in tok.readings)


def finite(f) -> tuple | None:
    """(tense, person, number) of a finite verb reading."""
    if "V" not in f:
        return None
    t = next((x for x in f if x in ("PRS", "PST")), None)
    p = next((x for x in f if x in ("1", "2", "3")), None)
    n = next((x for x in f if x in ("SG", "PL")), None)
    return (t, p, n) if t and p and n else None


def finite_verb(tok: Token | None) -> bool:
    return only(tok, "V") and all(finite(f) for _, f in tok.readings)


def modifier_agreement(sent: Sentence):
    for k in range(1, len(sent)):
        head, mod = sent[k], sent[k - 1]
        if not head.joined() or not only(head, "S"):
            continue
        cn = {case_number(f) for _, f in head.readings}
        if len(cn) != 1 or None in cn:
            continue
        case, number = next(iter(cn))
        if case not in AGREEING:
            continue
        if not (only(mod, *ADJ_POS) or only(mod, "P") and all(lemma_of(r) in DET_PRONOUNS for r in mod.readings)):
            continue
        agreeing = [(lemma, f) for lemma, f in mod.readings if case_number(f) == (case, number)]
        if not agreeing:
            continue
        lemma, f = agreeing[0]
        other_n = "PL" if number == "SG" else "SG"
        targets = [("Number", number, other_n, frozenset({pos_of((lemma, f)), other_n, case}))]
        if pos_of((lemma, f)) != "P":
            new_case = "n" if case == "p" else "p"
            targets.append(("Case", case, new_case, frozenset({pos_of((lemma, f)), number, new_case})))
        for feature, old, new, feats in targets:
            yield Edit(k - 1, k, "modifier-agreement", feature, old, new, requests=[(lemma, feats)], lemma=lemma,
                       fits=lambda rs, cn=cn: any(case_number(r[1]) in cn or not case_number(r[1]) for r in rs))


def postposition(sent: Sentence):
    for k in range(1, len(sent)):
        if sent[k].low not in POSTPOSITIONS or not sent[k].joined():
            continue
        dep = sent[k - 1]
        if not dep.readings or not all(pos_of(r) in ("S", "P") + ADJ_POS and (case_number(r[1]) or ("",))[0] == "g"
                                       for r in dep.readings):
            continue
        reqs = [(lemma, frozenset({pos_of((lemma, f)), case_number(f)[1], "n"})) for lemma, f in dep.readings]
        yield Edit(k - 1, k, "postposition", "Case", "g", "n", requests=reqs, lemma=reqs[0][0],
                   fits=lambda rs: any((case_number(r[1]) or ("",))[0] == "g" or not case_number(r[1]) for r in rs))


def negation(sent: Sentence):
    for i in range(len(sent) - 1):
        if sent[i].low != "ei":
            continue
        v = sent.next_joined(i)
        if v is None or not only(v, "V"):
            continue
        for lemma, f in v.readings:
            if "CONNEG" in f:
                old, new = "CONNEG", frozenset({"V", "PRS", "3", "SG"})
            elif "NUD" in f:
                old, new = "NUD", frozenset({"V", "PST", "3", "SG"})
            else:
                continue
            yield Edit(i + 1, i, "negation", "VerbForm", old, "finite", requests=[(lemma, new)], lemma=lemma,
                       fits=lambda rs: any(r[1] & {"CONNEG", "NUD"} for r in rs))
            break


def _person_edits(sent: Sentence, v: int, controller: int, person: str, number: str, what: str):
    """Edits of finite verb v to every other person/number (same tense) than the subject's."""
    verb = sent[v]
    reading = next(((lemma, f) for lemma, f in verb.readings if finite(f) and finite(f)[1:] == (person, number)), None)
    if reading is None:
        return
    lemma, f = reading
    tense = finite(f)[0]
    for p, n in PERSONS:
        if (p, n) == (person, number):
            continue
        if what == "noun" and p != "3" and n != number:
            continue
        feature = "Person" if p != person else "Number"
        yield Edit(v, controller, "subject-verb", feature, f"{person}{number.lower()}", f"{p}{n.lower()}",
                   requests=[(lemma, frozenset({"V", tense, p, n}))], lemma=lemma,
                   fits=lambda rs: any(finite(r[1]) and finite(r[1])[1:] == (person, number) for r in rs))


def subject_verb(sent: Sentence):
    for i, tok in enumerate(sent.tokens):
        if tok.low in PRONOUNS and only(tok, "P") and all(case_number(f) and case_number(f)[0] == "n"
                                                          for _, f in tok.readings):
            person, number = PRONOUNS[tok.low]
            for v in (i + 1, i - 1):
                if 0 <= v < len(sent) and (sent[max(v, i)].joined()) and finite_verb(sent[v]):
                    yield from _person_edits(sent, v, i, person, number, "pronoun")
    # A sentence-initial nominative noun and the finite verb right after it.
    if len(sent) > 1 and only(sent[0], "S") and sent[0].low not in QUANTITY and sent[1].joined() \
            and finite_verb(sent[1]) and not {lemma_of(r) for r in sent[1].readings} & IMPERSONAL:
        cn = {case_number(f) for _, f in sent[0].readings}
        if len(cn) == 1 and next(iter(cn))[0] == "n":
            yield from _person_edits(sent, 1, 0, "3", next(iter(cn))[1], "noun")


def modal_infinitive(sent: Sentence):
    for i, tok in enumerate(sent.tokens):
        lemmas = {lemma_of(r) for r in tok.readings if finite(r[1])}
        if not only(tok, "V") or not lemmas or not lemmas <= MODALS_DA | MODALS_MA:
            continue
        want = "DA" if lemmas <= MODALS_DA else "MA" if lemmas <= MODALS_MA else None
        if want is None:
            continue
        j = i + 1
        if j < len(sent) and sent[j].joined() and only(sent[j], "D") and sent[j].low in ("ka", "ainult", "vaid", "veel"):
            j += 1
        v = sent[j] if j < len(sent) and sent[j].joined() else None
        if v is None or not only(v, "V"):
            continue
        reading = next(((lemma, f) for lemma, f in v.readings if want in f), None)
        if reading is None:
            continue
        other = "MA" if want == "DA" else "DA"
        yield Edit(j, i, "modal-infinitive", "VerbForm", want, other, requests=[(reading[0], frozenset({"V", other}))],
                   lemma=reading[0], fits=lambda rs, want=want: any(want in r[1] for r in rs))


RULES = [modifier_agreement, postposition, negation, subject_verb, modal_infinitive]
