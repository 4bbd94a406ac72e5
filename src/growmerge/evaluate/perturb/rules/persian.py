"""Persian rules over the verb table of ``persian.py`` and hazm's word list.

Persian drops subjects and lets an inanimate plural take a singular verb, and its adjectives do not
agree, so the rules stay with what is fixed:

- ``numeral-noun``: a plural noun after a numeral or quantifier, which take the singular
  (*دو گزینه* → *دو گزینه‌ها*, *هر فایل* → *هر فایل‌ها*);
- ``subject-verb``: the verb of a clause-initial personal pronoun in another person or number
  (*شما نمی‌توانید* → *شما نمی‌توانیم*; for *آنها* only the person);
- ``modal-control``: the subjunctive after *توانستن* in another person or number than the modal
  (*می‌توانید … تغییر دهید* → *می‌توانید … تغییر دهند*: its subject is the modal's);
- ``verb-form``: a finite verb where *می‌توان* or the future auxiliary *خواه-* selects the short
  infinitive (*نمی‌توان … جایگزین کرد* → *… جایگزین می‌کند*, *خواهد شد* → *خواهد می‌شود*);
- ``mood``: a present indicative where *باید*, a finite *توانستن* or *خواستن*, or *برای اینکه* /
  *قبل از اینکه* select the subjunctive (*باید … وارد کنید* → *باید … وارد می‌کنید*);
- ``negative-concord``: an affirmative verb in a clause with *هیچ* or *هرگز*
  (*هیچ … نمی‌شود* → *هیچ … می‌شود*).
"""

from __future__ import annotations

from functools import lru_cache

from growmerge.evaluate.perturb.rules import Edit, Sentence, Token

ZWNJ = "\u200c"
QUANTIFIERS = {"یک", "دو", "سه", "چهار", "پنج", "شش", "هفت", "هشت", "ده", "چند", "چندین", "هر", "هیچ"}
PRONOUNS = {"من": ("1", "SG"), "تو": ("2", "SG"), "او": ("3", "SG"), "ما": ("1", "PL"), "شما": ("2", "PL"),
            "ایشان": ("3", "PL"), "آنها": ("3", None), "آن‌ها": ("3", None)}
CLAUSE_START = {"اگر", "وقتی", "که", "آیا", "چون", "زیرا", "تا", "هنگامی", "و", "اما", "ولی"}
CAN = {"می‌توان", "نمی‌توان", "میتوان", "نمیتوان"}
FUTURE = {"خواهم", "خواهی", "خواهد", "خواهیم", "خواهید", "خواهند", "نخواهم", "نخواهی", "نخواهد", "نخواهیم",
          "نخواهید", "نخواهند"}
PERSONS = [(p, n) for n in ("SG", "PL") for p in ("1", "2", "3")]
BOUNDARY = set("،,.;:؛!?؟()«»\"")


@lru_cache(maxsize=1)
def nouns() -> frozenset:
    """Words hazm's list tags as nouns and not as plural, numeral, verb or classifier."""
    from growmerge.evaluate.perturb.persian import hazm_data

    out = set()
    path = hazm_data() / "words.dat"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                tags = set(parts[2].split(","))
                if "N" in tags and not tags & {"PL", "NUM", "V", "CL", "P", "ADV"}:
                    out.add(parts[0])
    return frozenset(out)


# بودن: hazm lists its present stem as است, whose table forms (*می‌استد) are no words
NO_FORMS = {"بود#است"}


def verb_readings(tok: Token):
    return [(lemma, f) for lemma, f in tok.readings if "V" in f and lemma not in NO_FORMS]


def person_number(f) -> tuple:
    return (next((t for t in f if t in ("1", "2", "3")), None), next((t for t in f if t in ("SG", "PL")), None))


def only_verb(tok: Token) -> bool:
    return bool(tok.readings) and all("V" in f for _, f in tok.readings)


def clause(sent: Sentence, i: int, limit: int = 10):
    """Tokens after i up to the next punctuation (at most `limit`)."""
    for j in range(i + 1, min(len(sent), i + 1 + limit)):
        if set(sent[j].gap) & BOUNDARY:
            return
        yield j


def numeral_noun(sent: Sentence):
    for i, tok in enumerate(sent.tokens):
        if tok.text not in QUANTIFIERS:
            continue
        k = i + 1
        if tok.text == "هر" and k < len(sent) and sent[k].text in QUANTIFIERS:
            k += 1  # "هر دو" (both)
        if k >= len(sent) or not sent[k].joined():
            continue
        n = sent[k]
        after = sent.after(k)
        if n.text not in nouns() or n.readings or after[:1] not in ("", " ") and after[:1] not in BOUNDARY:
            continue  # a verb form, or a noun with an ezafe or a suffix attached
        yield Edit(k, i, "numeral-noun", "Number", "SG", "PL", forms=[n.text + ZWNJ + "ها"], known=True,
                   lemma=n.text)


def _verb_edits(sent: Sentence, v: int, controller: int, person: str, number: str | None, rule: str, mood=None):
    tok = sent[v]
    reading = next(((lemma, f) for lemma, f in verb_readings(tok)
                    if person_number(f)[0] == person and (number is None or person_number(f)[1] == number)
                    and (mood is None or mood in f)), None)
    if reading is None:
        return
    lemma, f = reading
    p0, n0 = person_number(f)
    for p, n in PERSONS:
        if (p, n) == (p0, n0) or number is None and p == person:
            continue
        feats = (f - {p0, n0}) | {p, n}

        def fits(rs, person=person, number=number):
            return any("V" in r[1] and person_number(r[1])[0] == person
                       and (number is None or person_number(r[1])[1] == number) for r in rs)

        yield Edit(v, controller, rule, "Person" if p != p0 else "Number", f"{p0}{n0.lower()}", f"{p}{n.lower()}",
                   requests=[(lemma, frozenset(feats))], lemma=lemma, fits=fits)


def subject_verb(sent: Sentence):
    for i, tok in enumerate(sent.tokens):
        if tok.text not in PRONOUNS or tok.readings:
            continue
        if i > 0 and not (sent[i - 1].text in CLAUSE_START or set(tok.gap) & BOUNDARY):
            continue
        if i + 1 < len(sent) and sent[i + 1].text == "را":
            continue
        person, number = PRONOUNS[tok.text]
        for j in clause(sent, i):
            if any("V" in f for _, f in sent[j].readings):  # the clause's first verb form decides
                if only_verb(sent[j]):
                    yield from _verb_edits(sent, j, i, person, number, "subject-verb")
                break


def modal_control(sent: Sentence):
    for i, tok in enumerate(sent.tokens):
        modal = [(lemma, f) for lemma, f in verb_readings(tok) if lemma == "توانست#توان" and "IND" in f]
        if not modal:
            continue
        person, number = person_number(modal[0][1])
        for j in clause(sent, i):
            if verb_readings(sent[j]):
                if only_verb(sent[j]) and any("SBJV" in f for _, f in sent[j].readings):
                    yield from _verb_edits(sent, j, i, person, number, "modal-control", mood="SBJV")
                break


def verb_form(sent: Sentence):
    for i, tok in enumerate(sent.tokens):
        if tok.text in FUTURE:
            scope = [i + 1] if i + 1 < len(sent) and sent[i + 1].joined() else []
        elif tok.text in CAN:
            scope = list(clause(sent, i))
        else:
            continue
        for j in scope:
            if not verb_readings(sent[j]):
                continue
            if only_verb(sent[j]):
                short = next(((lemma, f) for lemma, f in verb_readings(sent[j])
                              if {"PST", "3", "SG", "IND"} <= f and "NEG" not in f), None)
                if short is not None:
                    lemma, f = short
                    yield Edit(j, i, "verb-form", "VerbForm", "short-infinitive", "finite",
                               requests=[(lemma, (f - {"PST"}) | {"PRS"})], lemma=lemma,
                               fits=lambda rs: any({"PST", "3", "SG"} <= r[1] for r in rs))
            break


SUBJUNCTIVE_CONJ = {("قبل", "از", "اینکه"), ("پیش", "از", "اینکه"), ("برای", "اینکه"), ("بدون", "اینکه")}


def mood(sent: Sentence):
    """A present indicative where باید, a finite توانستن or خواستن, or a purpose/anteriority
    conjunction selects the subjunctive."""
    for i, tok in enumerate(sent.tokens):
        lemmas = {lemma for lemma, f in verb_readings(tok) if "IND" in f}
        words = tuple(t.text for t in sent.tokens[max(0, i - 2):i + 1])
        if not (tok.text in ("باید", "نباید") or lemmas and lemmas <= {"توانست#توان", "خواست#خواه"}
                or any(words[-len(c):] == c for c in SUBJUNCTIVE_CONJ)):
            continue
        for j in clause(sent, i):
            if verb_readings(sent[j]):
                sbjv = next(((lemma, f) for lemma, f in verb_readings(sent[j]) if "SBJV" in f), None)
                if only_verb(sent[j]) and sbjv is not None:
                    lemma, f = sbjv
                    yield Edit(j, i, "mood", "Mood", "SBJV", "IND", requests=[(lemma, (f - {"SBJV"}) | {"IND", "PRS"})],
                               lemma=lemma, fits=lambda rs: any("SBJV" in r[1] for r in rs))
                break


NEGATIVE = {"هیچ", "هیچ‌کس", "هیچ‌گاه", "هرگز", "هیچکس", "هیچگاه"}


def negative_concord(sent: Sentence):
    """هیچ and هرگز need a negative verb: the clause's verb made affirmative."""
    for i, tok in enumerate(sent.tokens):
        if tok.text not in NEGATIVE:
            continue
        for j in clause(sent, i, limit=12):
            neg = next(((lemma, f) for lemma, f in sent[j].readings if "NEG" in f), None)
            if verb_readings(sent[j]):
                if neg is not None and only_verb(sent[j]):
                    lemma, f = neg
                    yield Edit(j, i, "negative-concord", "Polarity", "NEG", "POS",
                               requests=[(lemma, (f - {"NEG"}) | {"POS"})], lemma=lemma,
                               fits=lambda rs: any("NEG" in r[1] for r in rs))
                break


RULES = [numeral_noun, subject_verb, modal_control, verb_form, mood, negative_concord]
