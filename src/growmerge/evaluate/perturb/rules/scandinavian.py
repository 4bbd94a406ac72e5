"""Swedish and Danish rules over Apertium analyses (readings ``("lemma|pos", {tags})``).

Neither language marks person or number on the verb, so there is no subject–verb rule. The rules:

- ``det-gender``: a determiner with the other gender than its noun (*ett ord* → *en ord*);
- ``det-number``: a noun with the other number than its determiner (*flera filer* → *flera fil*,
  *en fil* → *en filer*);
- ``det-definiteness``: a definite noun after an indefinite or possessive determiner or a genitive
  (*en fil* → *en filen*, *programmets inställningar* → *programmets inställningarna*); Swedish
  *den här* + indefinite noun (*den här händelsen* → *den här händelse*); Danish: any determiner
  before an adjective and a definite noun (*den valgte fil* → *den valgte filen*);
- ``adj-agreement``: an attributive adjective with the wrong gender, number or definiteness for
  its noun (*ett nytt dokument* → *ett ny dokument*, *nya filer* → *ny filer*);
- ``verb-form``: a finite verb where a modal, the infinitive marker or the perfect auxiliary
  selects an infinitive or a supine/participle (*kan välja* → *kan väljer*, *har valt* → *har väljer*);
- ``pronoun-case``: a subject pronoun as the object of a preposition (*med dig* → *med du*), or an
  object pronoun as the subject in a modal clause (*kan du välja* → *kan dig välja*);
- ``genitive``: a genitive before its head noun made nominative (*programmets inställningar* →
  *programmet inställningar*), only after a preposition, a determiner or at the start.
"""

from __future__ import annotations

from growmerge.evaluate.perturb.rules import Edit, Sentence, Token

GENDERS = ("ut", "nt")
VERB_POS = ("vblex", "vbmod", "vaux", "vbser", "vbhaver")

LEX = {
    "sv": {
        "gender_swap": {"en": "ett", "ett": "en", "den": "det", "det": "den", "denna": "detta", "detta": "denna",
                        "någon": "något", "något": "någon", "ingen": "inget", "inget": "ingen", "min": "mitt",
                        "mitt": "min", "din": "ditt", "ditt": "din", "sin": "sitt", "sitt": "sin", "vår": "vårt",
                        "vårt": "vår", "vilken": "vilket", "vilket": "vilken"},
        "gender_of": {"en": "ut", "ett": "nt", "den": "ut", "det": "nt", "denna": "ut", "detta": "nt", "någon": "ut",
                      "något": "nt", "ingen": "ut", "inget": "nt", "min": "ut", "mitt": "nt", "din": "ut", "ditt": "nt",
                      "sin": "ut", "sitt": "nt", "vår": "ut", "vårt": "nt", "vilken": "ut", "vilket": "nt"},
        "singular": {"en", "ett", "den", "det", "denna", "detta", "någon", "något", "ingen", "inget", "varje",
                     "min", "mitt", "din", "ditt", "sin", "sitt", "vår", "vårt", "vilken", "vilket"},
        "plural": {"flera", "många", "några", "inga", "alla", "dessa", "de", "två", "tre", "fyra", "fem", "sex",
                   "sju", "åtta", "nio", "tio", "båda", "bägge", "samtliga", "mina", "dina", "sina", "våra"},
        "indefinite": {"en", "ett", "någon", "något", "några", "ingen", "inget", "inga", "varje", "flera", "många",
                       "två", "tre", "fyra", "fem", "sex", "sju", "åtta", "nio", "tio", "vilken", "vilket", "vilka"},
        "possessive": {"min", "mitt", "mina", "din", "ditt", "dina", "sin", "sitt", "sina", "vår", "vårt", "våra",
                       "hans", "hennes", "dess", "deras"},
        "definite_det": {"den", "det", "de"},  # + adjective; + "här"/"där" for the demonstrative
        "deictic": {"här", "där"},
        "modals": {"kan", "kunde", "ska", "skall", "skulle", "måste", "vill", "ville", "bör", "borde", "får",
                   "behöver", "brukar", "kunna", "vilja"},
        "inf_marker": "att",
        "perfect": {"har", "hade", "ha"},
        "perfect_form": "supn",
        "preps": {"med", "till", "på", "i", "av", "från", "åt", "hos", "mot", "utan", "efter", "under", "över",
                  "genom", "vid", "bakom", "framför", "bland", "inför"},
        "pron_obj_to_subj": {"mig": "jag", "dig": "du", "honom": "han", "henne": "hon", "oss": "vi"},
        "subj_pronouns": {"jag": "mig", "du": "dig", "han": "honom", "hon": "henne", "vi": "oss"},
        "relative": {"som"},
    },
    "da": {
        "gender_swap": {"en": "et", "et": "en", "den": "det", "det": "den", "denne": "dette", "dette": "denne",
                        "nogen": "noget", "noget": "nogen", "min": "mit", "mit": "min", "din": "dit", "dit": "din",
                        "sin": "sit", "sit": "sin", "hver": "hvert", "hvert": "hver", "anden": "andet",
                        "andet": "anden"},
        "gender_of": {"en": "ut", "et": "nt", "den": "ut", "det": "nt", "denne": "ut", "dette": "nt", "nogen": "ut",
                      "noget": "nt", "min": "ut", "mit": "nt", "din": "ut", "dit": "nt", "sin": "ut", "sit": "nt",
                      "hver": "ut", "hvert": "nt", "anden": "ut", "andet": "nt"},
        "singular": {"en", "et", "den", "det", "denne", "dette", "noget", "min", "mit", "din", "dit", "sin",
                     "sit", "hver", "hvert", "ethvert", "enhver"},
        "plural": {"flere", "mange", "nogle", "alle", "disse", "de", "to", "tre", "fire", "fem", "seks", "syv",
                   "otte", "ni", "ti", "begge", "mine", "dine", "sine", "vore"},
        "indefinite": {"en", "et", "nogen", "noget", "nogle", "hver", "hvert", "flere", "mange", "to", "tre",
                       "fire", "fem", "seks", "syv", "otte", "ni", "ti", "enhver", "ethvert"},
        "possessive": {"min", "mit", "mine", "din", "dit", "dine", "sin", "sit", "sine", "vores", "jeres",
                       "hans", "hendes", "dens", "dets", "deres"},
        "definite_det": {"den", "det", "de", "denne", "dette", "disse"},
        "deictic": set(),
        "modals": {"kan", "kunne", "skal", "skulle", "vil", "ville", "må", "måtte", "bør", "burde"},
        "inf_marker": "at",
        "perfect": {"har", "havde"},
        "perfect_form": "pp",
        "preps": {"med", "til", "på", "i", "af", "fra", "hos", "mod", "uden", "efter", "under", "over", "gennem",
                  "ved", "bag", "foran", "blandt"},
        "pron_obj_to_subj": {"mig": "jeg", "dig": "du", "ham": "han", "hende": "hun", "os": "vi"},
        "subj_pronouns": {"jeg": "mig", "du": "dig", "han": "ham", "hun": "hende", "vi": "os"},
        "relative": {"som", "der"},
    },
}


def pos_of(reading) -> str:
    return reading[0].split("|")[1]


def only(tok: Token | None, *pos: str) -> bool:
    return tok is not None and bool(tok.readings) and all(pos_of(r) in pos for r in tok.readings)


def one(values: set):
    return next(iter(values)) if len(values) == 1 else None


def noun(tok: Token | None) -> dict | None:
    """Gender/number/definiteness/case of a word whose every reading is a noun, each a set."""
    if not only(tok, "n"):
        return None
    out = {"gender": set(), "number": set(), "def": set(), "case": set()}
    for _, f in tok.readings:
        out["gender"] |= f & {"ut", "nt", "un"}
        out["number"] |= f & {"sg", "pl"}
        out["def"] |= f & {"def", "ind"}
        out["case"] |= f & {"nom", "gen"}
    return out


def adjective(tok: Token | None) -> bool:
    """A positive-degree adjective or participle in every reading (comparatives and superlatives out)."""
    return only(tok, "adj") and all(f & {"pst", "pp"} and not f & {"comp", "sup"} for _, f in tok.readings)


def noun_phrase(sent: Sentence, i: int, max_adj: int = 3) -> tuple[list[int], int] | None:
    """From token i (right after a determiner): adjectives (joined by spaces only) then a noun.
    Returns (adjective positions, noun position)."""
    adjs, j = [], i
    while j < len(sent) and sent[j].joined() and adjective(sent[j]) and len(adjs) < max_adj:
        adjs.append(j)
        j += 1
    if j < len(sent) and sent[j].joined() and noun(sent[j]) is not None:
        return adjs, j
    return None


def determiners(lex: dict) -> set[str]:
    return set(lex["gender_of"]) | lex["plural"] | lex["singular"] | lex["possessive"]


def det_rules(lang: str):
    lex = LEX[lang]
    dets = determiners(lex)

    def det_phrases(sent: Sentence):
        """(det position, adjective positions, noun position, det word) for each determiner + NP."""
        for i, tok in enumerate(sent.tokens):
            w = tok.low
            if w not in dets:
                continue
            start = i + 1
            deictic = start < len(sent) and sent[start].low in lex["deictic"] and sent[start].joined()
            if deictic:
                start += 1
            np = noun_phrase(sent, start)
            if np is None:
                continue
            adjs, k = np
            if w in lex["definite_det"] and not adjs and not deictic:
                continue  # "det"/"den" right before a noun is too often a pronoun
            # A relative clause licenses "den + indefinite noun" in Swedish: stay away from it.
            if k + 1 < len(sent) and sent[k + 1].low in lex["relative"]:
                continue
            yield i, adjs, k, w, deictic

    def det_gender(sent: Sentence):
        for i, adjs, k, w, deictic in det_phrases(sent):
            if w not in lex["gender_swap"]:
                continue
            nf = noun(sent[k])
            g = one(nf["gender"])
            if g not in GENDERS or "sg" not in nf["number"] or lex["gender_of"][w] != g:
                continue
            new = lex["gender_swap"][w]
            yield Edit(i, k, "det-gender", "Gender", g, "nt" if g == "ut" else "ut", forms=[new], known=True,
                       lemma=w)

    def det_number(sent: Sentence):
        for i, adjs, k, w, deictic in det_phrases(sent):
            number = "pl" if w in lex["plural"] else "sg" if w in lex["singular"] else None
            nf = noun(sent[k])
            if number is None or nf["number"] != {number} or len(nf["def"]) != 1:
                continue
            other = "sg" if number == "pl" else "pl"
            reqs = [(lemma, (f - {number}) | {other}) for lemma, f in sent[k].readings if "nom" in f]
            if not reqs:
                continue
            yield Edit(k, i, "det-number", "Number", number, other, requests=reqs, lemma=reqs[0][0],
                       fits=lambda rs, number=number: any(pos_of(r) == "n" and number in r[1] for r in rs))

    def det_definiteness(sent: Sentence):
        for i, adjs, k, w, deictic in det_phrases(sent):
            nf = noun(sent[k])
            if len(nf["def"]) != 1 or len(nf["number"]) != 1:
                continue
            cur = one(nf["def"])
            if lang == "sv":
                if deictic and cur == "def":
                    want_bad = "ind"
                elif (w in lex["indefinite"] or w in lex["possessive"]) and cur == "ind":
                    want_bad = "def"
                else:
                    continue
            else:
                if cur == "ind" and (w in lex["indefinite"] or w in lex["possessive"]
                                     or (w in lex["definite_det"] and adjs)):
                    want_bad = "def"
                else:
                    continue
            reqs = [(lemma, (f - {cur}) | {want_bad}) for lemma, f in sent[k].readings if "nom" in f]
            if reqs:
                yield Edit(k, i, "det-definiteness", "Definiteness", cur, want_bad, requests=reqs, lemma=reqs[0][0],
                           fits=lambda rs, cur=cur: any(pos_of(r) == "n" and cur in r[1] for r in rs))

    def genitive_definiteness(sent: Sentence):
        """A genitive noun + (adjectives) + an indefinite noun: the head made definite."""
        for i, tok in enumerate(sent.tokens):
            nf = noun(tok)
            if nf is None or nf["case"] != {"gen"}:
                continue
            np = noun_phrase(sent, i + 1)
            if np is None:
                continue
            adjs, k = np
            hf = noun(sent[k])
            if hf["def"] != {"ind"} or hf["case"] != {"nom"} or len(hf["number"]) != 1:
                continue
            reqs = [(lemma, (f - {"ind"}) | {"def"}) for lemma, f in sent[k].readings]
            yield Edit(k, i, "det-definiteness", "Definiteness", "ind", "def", requests=reqs, lemma=reqs[0][0],
                       fits=lambda rs: any(pos_of(r) == "n" and "ind" in r[1] for r in rs))

    return [det_gender, det_number, det_definiteness, genitive_definiteness]


def adj_rule(lang: str):
    lex = LEX[lang]
    dets = determiners(lex)

    def adj_agreement(sent: Sentence):
        for k, tok in enumerate(sent.tokens):
            nf = noun(tok)
            if nf is None or len(nf["number"]) != 1 or len(nf["def"]) != 1:
                continue
            # The adjectives right before the noun, and what stands before them.
            j = k
            while j > 0 and sent[j].joined() and adjective(sent[j - 1]):
                j -= 1
            if j == k:
                continue
            before = sent[j - 1].low if j > 0 and sent[j].joined() else None
            if before in lex["relative"] or before in lex["modals"] or before in lex["perfect"]:
                continue
            number = one(nf["number"])
            gender = one(nf["gender"])
            if lang == "sv":
                definite = "def" in nf["def"] or before in lex["definite_det"] or before in lex["possessive"] \
                    or before in lex["deictic"]
            else:
                definite = before in lex["definite_det"] or before in lex["possessive"]
            if before is not None and sent[j - 1].readings and noun(sent[j - 1]) and "gen" in noun(sent[j - 1])["case"]:
                definite = True
            if before in lex["indefinite"] and definite:
                continue
            if number == "sg" and not definite and gender not in GENDERS:
                continue
            ctx = ("def" if definite else "ind", number, gender)

            def agrees(rs, ctx=ctx):
                d, n, g = ctx
                for r in rs:
                    f = r[1]
                    if pos_of(r) != "adj":
                        continue
                    if d == "def" and "def" in f and (n in f or "sp" in f):
                        return True
                    if d == "ind" and n == "pl" and "pl" in f:
                        return True
                    if d == "ind" and n == "sg" and "sg" in f and "ind" in f and (g in f or "un" in f):
                        return True
                    if "sg" not in f and "pl" not in f and "sp" not in f:
                        return True  # an uninflected reading fits anywhere
                return False

            for a in range(j, k):
                for lemma, f in sent[a].readings:
                    if not agrees([(lemma, f)]):
                        continue  # the reading this context selects
                    base = f - {"ut", "nt", "un", "fn", "sg", "pl", "sp", "def", "ind"}
                    d, n, g = ctx
                    if d == "ind" and n == "sg":
                        other = "nt" if g == "ut" else "ut"
                        targets = [("Number", "sg", "pl", base | {"un", "pl", "ind"})]
                        # The neuter -t form is also the adverb: only between a determiner and its noun.
                        if other == "ut" or before in dets:
                            targets.append(("Gender", g, other, base | {other, "sg", "ind"}))
                    elif d == "ind":
                        targets = [("Number", "pl", "sg", base | {gender if gender in GENDERS else "ut", "sg", "ind"})]
                    else:
                        g2 = gender if gender in GENDERS else "ut"
                        targets = [("Definiteness", "def", "ind", base | {g2 if n == "sg" else "ut", "sg", "ind"})]
                    for feature, old, new, feats in targets:
                        yield Edit(a, k, "adj-agreement", feature, old, new, requests=[(lemma, frozenset(feats))],
                                   lemma=lemma, fits=agrees)

    return [adj_agreement]


def verb_rules(lang: str):
    lex = LEX[lang]
    subj = set(lex["subj_pronouns"]) | {"man", "den", "det", "de", "ni", "dette"}

    def skippable(tok: Token) -> bool:
        return tok.low in subj or only(tok, "adv")

    def selected_verb(sent: Sentence, i: int):
        """The first verb after token i, over at most two adverbs or subject pronouns."""
        j = i + 1
        while j < len(sent) and j <= i + 3 and sent[j].joined():
            if only(sent[j], *VERB_POS):
                return j
            if not skippable(sent[j]):
                return None
            j += 1
        return None

    def verb_form(sent: Sentence):
        for i, tok in enumerate(sent.tokens):
            w = tok.low
            if w in lex["modals"] or w == lex["inf_marker"]:
                want = "inf"
            elif w in lex["perfect"]:
                want = lex["perfect_form"]
            else:
                continue
            if w in lex["modals"] and not any(pos_of(r) in VERB_POS for r in tok.readings):
                continue
            j = i + 1 if w == lex["inf_marker"] else selected_verb(sent, i)
            if j is None or j >= len(sent) or not sent[j].joined():
                continue
            v = sent[j]
            if not only(v, *VERB_POS) and not (want == "pp" and only(v, *VERB_POS, "adj")):
                continue
            verb_readings = [(lemma, f) for lemma, f in v.readings if pos_of((lemma, f)) in VERB_POS and want in f]
            if not verb_readings:
                continue
            reqs = []
            for lemma, f in verb_readings:
                voice = f & {"actv", "pasv"} or {"actv"}
                for finite in ("pres", "past"):
                    reqs.append((lemma, frozenset({pos_of((lemma, f)), finite} | voice)))

            def fits(rs, want=want):
                return any(want in r[1] or pos_of(r) in ("n", "adj") or "inf" in r[1] or "imp" in r[1] for r in rs)

            yield Edit(j, i, "verb-form", "VerbForm", want, "finite", requests=reqs, lemma=verb_readings[0][0],
                       fits=fits)

    def pronoun_case(sent: Sentence):
        for i, tok in enumerate(sent.tokens):
            w = tok.low
            nxt = sent.next_joined(i)
            if w in lex["preps"] and nxt is not None and nxt.low in lex["pron_obj_to_subj"]:
                yield Edit(i + 1, i, "pronoun-case", "Case", "acc", "nom",
                           forms=[lex["pron_obj_to_subj"][nxt.low]], known=True, lemma=nxt.low)
            if w in lex["modals"] and nxt is not None and nxt.low in lex["subj_pronouns"]:
                after = sent.next_joined(i + 1)
                if after is not None and only(after, *VERB_POS) and any("inf" in f for _, f in after.readings):
                    yield Edit(i + 1, i, "pronoun-case", "Case", "nom", "acc",
                               forms=[lex["subj_pronouns"][nxt.low]], known=True, lemma=nxt.low)
            if i == 0 and w in lex["subj_pronouns"] and nxt is not None and nxt.low in lex["modals"]:
                after = sent.next_joined(i + 1)
                if after is not None and only(after, *VERB_POS) and any("inf" in f for _, f in after.readings):
                    yield Edit(i, i + 1, "pronoun-case", "Case", "nom", "acc",
                               forms=[lex["subj_pronouns"][w]], known=True, lemma=w)

    return [verb_form, pronoun_case]


def genitive_rule(lang: str):
    lex = LEX[lang]
    dets = determiners(lex)

    def genitive(sent: Sentence):
        for i, tok in enumerate(sent.tokens):
            nf = noun(tok)
            if nf is None or nf["case"] != {"gen"} or len(nf["number"]) != 1:
                continue
            if i > 0 and not (sent[i - 1].low in lex["preps"] or sent[i - 1].low in dets or adjective(sent[i - 1])):
                continue
            np = noun_phrase(sent, i + 1)
            if np is None:
                continue
            reqs = [(lemma, (f - {"gen"}) | {"nom"}) for lemma, f in tok.readings]
            yield Edit(i, np[1], "genitive", "Case", "gen", "nom", requests=reqs, lemma=reqs[0][0],
                       fits=lambda rs: any("gen" in r[1] for r in rs))

    return [genitive]


def rules_for(lang: str) -> list:
    return det_rules(lang) + adj_rule(lang) + verb_rules(lang) + genitive_rule(lang)
