"""Every agreement/government rule on hand-written sentences, per language: a pair it must make and a
sentence where it must not fire; the Icelandic parser filter; the method switch of the generator."""

from __future__ import annotations

import json
from functools import lru_cache

import pytest

from growmerge.errors import GrowmergeError
from growmerge.evaluate.perturb.inflector import get_inflector
from growmerge.evaluate.perturb.rules import candidates, make_pair
from test_perturb import apertium_available

# (language, rule, sentence, a bad sentence the rule must make)
MUST = [
    ("sv", "det-gender", "Markera en händelse i listan.", "Markera ett händelse i listan."),
    ("sv", "det-number", "Det finns flera filer i mappen.", "Det finns flera fil i mappen."),
    ("sv", "det-definiteness", "Öppna en fil nu.", "Öppna en filen nu."),
    ("sv", "det-definiteness", "Den här händelsen inträffar ofta.", "Den här händelse inträffar ofta."),
    ("sv", "det-definiteness", "Klicka på programmets ikon.", "Klicka på programmets ikonen."),
    ("sv", "adj-agreement", "Vi köpte en ny bil.", "Vi köpte en nytt bil."),
    ("sv", "verb-form", "Du kan välja en fil.", "Du kan väljer en fil."),
    ("sv", "pronoun-case", "Han talar med dig.", "Han talar med du."),
    ("sv", "pronoun-case", "Du kan välja en fil.", "Dig kan välja en fil."),
    ("sv", "genitive", "Klicka på programmets ikon.", "Klicka på programmet ikon."),
    ("da", "det-gender", "Marker en begivenhed i listen.", "Marker et begivenhed i listen."),
    ("da", "det-number", "Der er flere biler i garagen.", "Der er flere bil i garagen."),
    ("da", "det-definiteness", "Den nye bil er rød.", "Den nye bilen er rød."),
    ("da", "adj-agreement", "Den nye bil er rød.", "Den ny bil er rød."),
    ("da", "verb-form", "Du kan skrive en tekst.", "Du kan skriver en tekst."),
    ("da", "verb-form", "Han har sovet længe.", "Han har sover længe."),
    ("da", "pronoun-case", "Han taler med dig.", "Han taler med du."),
    ("da", "genitive", "Klik på programmets ikon.", "Klik på programmet ikon."),
    ("et", "modifier-agreement", "Me elame suures majas.", "Me elame suurtes majas."),
    ("et", "postposition", "Muuda seda lahtri abil.", "Muuda seda lahter abil."),
    ("et", "negation", "See ei saa olla.", "See ei saab olla."),
    ("et", "subject-verb", "Kui sa klõpsad nuppu.", "Kui sa klõpsab nuppu."),
    ("et", "subject-verb", "Laps mängib õues.", "Laps mängivad õues."),
    ("et", "modal-infinitive", "Ta võib teha seda.", "Ta võib tegema seda."),
    ("et", "modal-infinitive", "Ta peab tegema tööd.", "Ta peab teha tööd."),
    ("is", "prep-case", "Veldu atriði úr listanum.", "Veldu atriði úr listans."),
    ("is", "modifier-agreement", "Hann las þessa bók.", "Hann las þetta bók."),
    ("is", "subject-verb", "Hluturinn styður ekki neinar aðgerðir.", "Hluturinn styðja ekki neinar aðgerðir."),
    ("is", "subject-verb", "Þú hefur valið skrá.", "Þú hef valið skrá."),
    ("is", "verb-form", "Ekki er hægt að keyra forritið.", "Ekki er hægt að keyrir forritið."),
    ("is", "verb-form", "Þú hefur valið skrá.", "Þú hefur velur skrá."),
    ("fa", "numeral-noun", "دو گزینه وجود دارد.", "دو گزینه\u200cها وجود دارد."),
    ("fa", "subject-verb", "شما نمی‌توانید این کار را انجام دهید.", "شما نمی‌توانیم این کار را انجام دهید."),
    ("fa", "modal-control", "می‌توانید فایل را باز کنید.", "می‌توانید فایل را باز کنند."),
    ("fa", "verb-form", "این مقدار محاسبه خواهد شد.", "این مقدار محاسبه خواهد می‌شود."),
    ("fa", "verb-form", "نمی‌توان جدول را ذخیره کرد.", "نمی‌توان جدول را ذخیره می‌کند."),
    ("fa", "mood", "باید کلید را فشار دهید.", "باید کلید را فشار می‌دهید."),
    ("fa", "negative-concord", "هیچ برنامه‌ای اجرا نمی‌شود.", "هیچ برنامه‌ای اجرا می‌شود."),
    ("en", "det-noun-number", "Click this button to print.", "Click this buttons to print."),
    ("en", "det-noun-number", "Several files are open.", "Several file are open."),
    ("en", "subject-verb", "It prints the pages.", "It print the pages."),
    ("en", "subject-verb", "They print pages.", "They prints pages."),
    ("en", "subject-verb", "The printer appears on top.", "The printer appear on top."),
    ("en", "verb-form", "You can print the file.", "You can prints the file."),
    ("en", "verb-form", "She has written three letters.", "She has wrote three letters."),
]

# (language, rule, a sentence where it must not fire: the feature is free there, or nothing controls it)
MUST_NOT = [
    ("sv", "det-gender", "Han sa det igen."),  # "det" as a pronoun
    ("sv", "det-number", "Filerna finns i mappen."),  # no determiner: noun number is free
    ("sv", "det-definiteness", "Filen är öppen."),
    ("sv", "adj-agreement", "Bilen är ny."),  # predicative
    ("sv", "verb-form", "Du väljer en fil."),  # no modal: tense is free
    ("sv", "pronoun-case", "Jag ser dig."),
    ("sv", "genitive", "Programmet startar."),
    ("da", "det-gender", "Han sagde det igen."),
    ("da", "det-number", "Bilerne er i garagen."),
    ("da", "det-definiteness", "Bilen er rød."),
    ("da", "adj-agreement", "Bilen er ny."),
    ("da", "verb-form", "Du skriver en tekst."),
    ("da", "pronoun-case", "Jeg ser dig."),
    ("da", "genitive", "Programmet starter."),
    ("et", "modifier-agreement", "Maja on suur."),
    ("et", "postposition", "Abi on vajalik."),
    ("et", "negation", "See saab olla."),
    ("et", "subject-verb", "Klõpsad nuppu."),  # no overt subject: person is free
    ("et", "subject-verb", "Nurk tuleb anda radiaanides."),  # impersonal: the nominative is an object
    ("et", "modal-infinitive", "Ta tahab kohvi."),
    ("is", "prep-case", "Listinn er langur."),
    ("is", "modifier-agreement", "Bókin er góð."),
    ("is", "subject-verb", "Ekki tókst að opna skrána."),  # no nominative subject
    ("is", "verb-form", "Hann fór að ánni."),  # "að" the preposition
    ("fa", "numeral-noun", "گزینه‌ها وجود دارند."),
    ("fa", "subject-verb", "به شما کمک می‌کند."),  # شما after a preposition
    ("fa", "modal-control", "فایل را باز کنید."),
    ("fa", "verb-form", "جدول ذخیره شد."),
    ("fa", "mood", "فایل را باز کنید."),
    ("fa", "negative-concord", "برنامه اجرا نمی‌شود."),
    ("en", "det-noun-number", "Buttons are useful."),
    ("en", "subject-verb", "Let it print."),
    ("en", "verb-form", "You print the file."),
]


@lru_cache(maxsize=None)
def inflector(lang):
    return get_inflector(None, lang)


def made(lang: str, rule: str, sentence: str) -> set[str]:
    if lang in ("sv", "da") and not apertium_available():
        pytest.skip("Apertium not installed or unpacked (growmerge pairs generate --lang sv fetches it)")
    return {make_pair(sentence, c)["bad"] for c in candidates([sentence], inflector(lang), lang)
            if c.edit.rule == rule}


@pytest.mark.parametrize("lang,rule,sentence,bad", MUST, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(MUST)])
def test_rule_makes_the_pair(lang, rule, sentence, bad):
    assert bad in made(lang, rule, sentence)


@pytest.mark.parametrize("lang,rule,sentence", MUST_NOT, ids=[f"{c[0]}-{c[1]}" for c in MUST_NOT])
def test_rule_does_not_fire_where_the_feature_is_free(lang, rule, sentence):
    assert made(lang, rule, sentence) == set()


def test_every_rule_is_tested():
    from growmerge.evaluate.perturb.rules import RULESETS, load_rules

    for lang in RULESETS:
        module = load_rules(lang)
        rules = module.rules_for(lang) if hasattr(module, "rules_for") else module.RULES
        # a rule function's name is its rule with dashes (det_definiteness / genitive_definiteness share one)
        names = {r.__name__.replace("_", "-").replace("genitive-definiteness", "det-definiteness") for r in rules}
        assert names <= {c[1] for c in MUST if c[0] == lang}, lang
        assert names <= {c[1] for c in MUST_NOT if c[0] == lang}, lang


def test_pairs_record_rule_controller_and_positions():
    pairs = [make_pair(s, c) for s in ["Me elame suures majas."] for c in candidates([s], inflector("et"), "et")]
    p = next(p for p in pairs if p["replacement"] == "suurtes")
    assert (p["rule"], p["feature"], p["word"], p["position"], p["controller"], p["controller_position"]) == \
        ("modifier-agreement", "Number", "suures", 2, "majas", 3)


def test_reynir_keeps_a_rejected_bad_sentence_and_drops_one_it_parses_alike():
    from growmerge.evaluate.perturb.rules.icelandic import ReynirFilter

    keep = ReynirFilter()
    assert keep("Textinn var því styttur.", "Textarnir var því styttur.")  # the bad one does not parse
    assert not keep("Veldu hljóð úr safninu.", "Veldu hljóð úr safni.")  # a grammatical variant: same parse
    assert not keep("Textarnir var því styttur.", "Textinn var því styttur.")  # the good one must parse
    assert keep.removed == {"good does not parse": 1, "bad parses alike": 1}


def test_generate_file_uses_the_rules_and_writes_metadata(tmp_path):
    from growmerge.evaluate.perturb.audit import read_meta
    from growmerge.evaluate.perturb.sets import generate_file

    src = tmp_path / "et.txt"
    src.write_text("Me elame suures majas.\nSee ei saa olla.\nKui sa klõpsad nuppu.\nMaja on suur.\n", encoding="utf-8")
    report = generate_file("et", src, tmp_path / "la" / "et.jsonl", n=10)
    rows = [json.loads(line) for line in (tmp_path / "la" / "et.jsonl").read_text(encoding="utf-8").splitlines()]
    assert report["method"] == "rules" and {r["rule"] for r in rows} == {"modifier-agreement", "negation", "subject-verb"}
    assert all(r["good"] != r["bad"] and r["lang"] == "et" for r in rows)
    meta = read_meta(tmp_path / "la" / "et.jsonl")
    assert meta["pairs"] == len(rows) and meta["validity"] is None and meta["rules"] == report["rules"]
    old = generate_file("et", src, tmp_path / "old.jsonl", n=10, method="one-feature")
    assert old["method"] == "one-feature"
    with pytest.raises(GrowmergeError, match="unknown pair method"):
        generate_file("et", src, tmp_path / "x.jsonl", method="nope")
    with pytest.raises(GrowmergeError, match="use --method one-feature"):
        generate_file("et", src, tmp_path / "x.jsonl", backend="unimorph:/nonexistent", method="rules")
