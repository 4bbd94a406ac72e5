"""The minimal-pair generator: one feature changed, no syncretism, balanced, and every backend."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from conftest import shared_path
from growmerge.errors import GrowmergeError
from growmerge.evaluate.perturb import UniMorphInflector, generate_pairs, get_inflector


def table_sentences(inflector: UniMorphInflector, n: int, seed: int = 0) -> list[str]:
    """Pseudo-sentences of real word forms from the table (the test needs words, not syntax)."""
    rng = random.Random(seed)
    forms = sorted(inflector.readings)
    return [" ".join(rng.sample(forms, 6)) + "." for _ in range(n)]


def check_one_feature(inflector, pairs):
    for p in pairs:
        good_r = {r for r in inflector.analyze(p["word"]) if r[0] == p["lemma"]}
        feats = frozenset(p["feats"])
        assert (p["lemma"], feats) in good_r
        new = (feats - {p["from"]}) | {p["to"]}
        assert p["replacement"] in inflector.generate(p["lemma"], new)
        # Exactly one feature differs, within one dimension.
        assert len(feats ^ new) == 2 and inflector.dimension_of(p["from"]) == inflector.dimension_of(p["to"]) == p["feature"]
        # Not syncretic: no reading of the new form is a reading of the original word.
        assert not set(inflector.analyze(p["replacement"])) & set(inflector.analyze(p["word"]))
        assert p["bad"] == p["good"].replace(p["word"], p["replacement"], 1) or p["good"].count(p["word"]) > 1
        assert p["good"] != p["bad"]


@pytest.mark.parametrize("lang", ["isl", "fao"])
def test_unimorph_pairs_change_exactly_one_feature(lang):
    inflector = UniMorphInflector(shared_path("unimorph", lang))
    pairs = generate_pairs(table_sentences(inflector, 300), inflector, n=200, seed=3)
    assert len(pairs) == 200
    check_one_feature(inflector, pairs)
    counts = Counter(p["feature"] for p in pairs)
    assert len(counts) >= 3 and max(counts.values()) - min(counts.values()) <= 0.5 * max(counts.values()) or \
        min(counts.values()) >= 10  # balanced across the dimensions that exist
    assert generate_pairs(table_sentences(inflector, 300), inflector, n=200, seed=3) == pairs  # seeded


def test_syncretic_forms_are_rejected(tmp_path):
    table = tmp_path / "t"
    table.write_text("x\txa\tN;NOM;SG\nx\txb\tN;ACC;SG\nx\txb\tN;NOM;SG\nx\txc\tN;DAT;SG\nx\txd\tN;NOM;PL\n")
    inf = UniMorphInflector(table)
    pairs = generate_pairs(["Look xa here.", "Again xa here.", "More xa now."], inf, n=10)
    replacements = {p["replacement"] for p in pairs}
    # xb is also NOM;SG (the original's reading): a "bad" sentence with it may be the same sentence.
    assert "xb" not in replacements
    assert replacements == {"xc", "xd"} and len(pairs) == 3  # one pair per word position
    assert {p["feature"] for p in pairs} == {"Case", "Number"}


def test_capitalised_words_keep_their_capital(tmp_path):
    table = tmp_path / "t"
    table.write_text("hestur\thestur\tN;NOM;SG\nhestur\thestar\tN;NOM;PL\n")
    pairs = generate_pairs(["Hestur hleypur."], UniMorphInflector(table), n=5)
    assert [p["bad"] for p in pairs] == ["Hestar hleypur."]


def test_unknown_backend_and_bad_table(tmp_path):
    with pytest.raises(GrowmergeError, match="unknown inflector"):
        get_inflector("nosuch")
    with pytest.raises(GrowmergeError, match="unimorph:PATH"):
        get_inflector("unimorph")
    (tmp_path / "bad").write_text("only two\tcolumns\n")
    with pytest.raises(GrowmergeError, match="bad:1"):
        UniMorphInflector(tmp_path / "bad")


SENTENCES = {
    "is": ["Hundurinn sá hestinn í gær.", "Ég fer til borgarinnar með bókina.", "Hann keypti hesta og kýr."],
    "et": ["Koer hüppab üle aia.", "Me elame suures majas.", "Lapsed mängisid õues."],
    "fa": ["من به خانه می‌روم.", "آنها کتاب را خواندند.", "لطفاً روی دکمه کلیک کنید."],
    "en": ["She has written three letters.", "The printer prints the pages."],
    "sv": ["Hunden springer över staketet.", "Vi köpte en ny bil."],
    "da": ["Hunden løber over hegnet.", "Vi købte en ny bil."],
}


def apertium_available() -> bool:
    """True if lt-proc and the swe-dan data are installed or already unpacked (tests never download)."""
    import shutil
    from pathlib import Path

    from growmerge.evaluate.perturb.apertium import PAIR_DIR, _cache_root

    return bool(shutil.which("lt-proc") and (Path("/") / PAIR_DIR).is_dir()) or (_cache_root() / "usr/bin/lt-proc").is_file()


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_language_backends(lang):
    if lang in ("sv", "da") and not apertium_available():
        pytest.skip("Apertium not installed or unpacked (growmerge pairs generate --lang sv fetches it)")
    inflector = get_inflector(None, lang)
    pairs = generate_pairs(SENTENCES[lang], inflector, n=20)
    assert pairs, lang
    for p in pairs:
        new = (frozenset(p["feats"]) - {p["from"]}) | {p["to"]}
        assert p["replacement"].lower() in [f.lower() for f in inflector.generate(p["lemma"], new)]
        readings = {r for r in inflector.analyze(p["word"]) or inflector.analyze(p["word"].lower())}
        assert (p["lemma"], frozenset(p["feats"])) in readings
        replaced = {r for r in inflector.analyze(p["replacement"]) or inflector.analyze(p["replacement"].lower())}
        assert replaced and not replaced & readings


def test_known_forms():
    assert get_inflector(None, "et").generate("maja|S", frozenset({"S", "PL", "in"})) == ["majades"]
    ice = get_inflector(None, "is")
    lemma = next(r[0] for r in ice.analyze("hestinum") if r[0].startswith("hestur|kk"))
    assert ice.generate(lemma, frozenset({"N", "MASC", "DAT", "PL", "DEF"})) == ["hestunum"]
    fa = get_inflector(None, "fa")
    assert fa.generate("رفت#رو", frozenset({"V", "IND", "PST", "POS", "1", "SG"})) == ["رفتم"]
    assert fa.generate("رفت#رو", frozenset({"V", "IND", "PRS", "POS", "3", "PL"})) == ["می\u200cروند"]
    assert fa.generate("آمد#آی", frozenset({"V", "IND", "PST", "NEG", "3", "SG"})) == ["نیامد"]
    assert get_inflector(None, "en").generate("run|VERB", frozenset({"V", "PST", "FIN"})) == ["ran"]


def test_pairs_generate_cli_writes_jsonl(tmp_path, monkeypatch, capsys):
    from test_eval_pairs import run_main

    inflector_table = shared_path("unimorph", "isl")
    sentences = tmp_path / "s.txt"
    sentences.write_text("\n".join(table_sentences(UniMorphInflector(inflector_table), 50)) + "\n")
    out = tmp_path / "pairs.jsonl"
    code, stdout, err = run_main(monkeypatch, capsys, "pairs", "generate", "--lang", "is", "--sentences", sentences,
                                 "--out", out, "--backend", f"unimorph:{inflector_table}", "--n", "30")
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 30 and all(r["lang"] == "is" and r["good"] != r["bad"] for r in rows)
