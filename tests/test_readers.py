"""Readers of the public evaluation sets, on fixtures written in each dataset's published format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import shared_path
from typer.testing import CliRunner

from growmerge.errors import GrowmergeError
from growmerge.evaluate.pairs import read_fk, read_pairs
from growmerge.evaluate.parity import read_parallel
from growmerge.evaluate.readers import flores_parallel, pattern_ok, read_flores, read_mpararel_all
from growmerge.evaluate.tasks import get_task


def cli(*args):
    from growmerge.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# FLORES+: openlanguagedata/flores_plus, <split>/<iso639-3>_<iso15924>.parquet, one row per sentence
# ---------------------------------------------------------------------------------------------
FLORES = {
    ("eng", "Latn"): ["On Monday, scientists announced a new test.", "The cat sleeps.", "It rained all day."],
    ("swe", "Latn"): ["I måndags meddelade forskare ett nytt test.", "Katten sover.", "Det regnade hela dagen."],
    ("pes", "Arab"): ["دانشمندان روز دوشنبه آزمایش جدیدی را اعلام کردند.", "گربه می‌خوابد.", "تمام روز باران بارید."],
}


def flores_rows(lang, script, texts, ids):
    return [{"id": i, "iso_639_3": lang, "iso_15924": script, "glottocode": "xxxx1234", "text": t,
             "url": "https://en.wikinews.org/", "domain": "wikinews", "topic": "science", "has_image": False,
             "has_hyperlink": False, "last_updated": "2.1"} for i, t in zip(ids, texts)]


@pytest.fixture
def flores_root(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "flores_plus"
    for split, base in (("dev", 0), ("devtest", 100)):
        (root / split).mkdir(parents=True)
        for (lang, script), texts in FLORES.items():
            ids = [base + 1, base + 2, base + 3]
            if (lang, split) == ("swe", "devtest"):
                texts, ids = texts[1:], ids[1:]  # one sentence missing on one side: paired by id
            pq.write_table(pa.Table.from_pylist(flores_rows(lang, script, texts, ids)),
                           root / split / f"{lang}_{script}.parquet")
    return root


def test_flores_pairs_any_two_languages_by_sentence_id(flores_root, tmp_path):
    rows = flores_parallel(flores_root, "sv", "devtest")
    assert rows == [{"id": 102, "en": "The cat sleeps.", "tgt": "Katten sover.", "lang": "sv"},
                    {"id": 103, "en": "It rained all day.", "tgt": "Det regnade hela dagen.", "lang": "sv"}]
    dev = flores_parallel(flores_root, "pes_Arab", "dev", source="swe_Latn")  # any pair of languages
    assert [r["id"] for r in dev] == [1, 2, 3] and dev[1]["en"] == "Katten sover." and dev[1]["tgt"] == "گربه می‌خوابد."
    # the CLI writes what Information Parity reads
    out = tmp_path / "ip" / "fa.jsonl"
    r = cli("pairs", "flores", flores_root, "--lang", "fa", "--out", out)
    assert r.exit_code == 0, r.output
    parallel = read_parallel(out)
    assert len(parallel) == 3 and parallel[0]["tgt"] == FLORES[("pes", "Arab")][0] and parallel[0]["lang"] == "fa"
    assert get_task("ip").load(out, "fa", 0)[1] == parallel


def test_flores_bad_inputs_are_one_line_naming_the_file(flores_root, tmp_path):
    bad = write_jsonl(tmp_path / "devtest" / "swe_Latn.jsonl", flores_rows("dan", "Latn", ["Katten sover."], [1]))
    with pytest.raises(GrowmergeError, match=r"swe_Latn.jsonl:1: row is dan_Latn but the file is swe_Latn"):
        read_flores(bad)
    dup = write_jsonl(tmp_path / "d" / "swe_Latn.jsonl", flores_rows("swe", "Latn", ["a", "b"], [1, 1]))
    with pytest.raises(GrowmergeError, match=r"swe_Latn.jsonl:2: sentence id 1 appears twice"):
        read_flores(dup)
    with pytest.raises(GrowmergeError, match=r"devtest: no file for isl_Latn"):
        flores_parallel(flores_root, "is")
    with pytest.raises(GrowmergeError, match="no dev/ folder"):
        flores_parallel(tmp_path / "nothing", "sv", "dev")
    with pytest.raises(GrowmergeError, match="no FLORES\\+ code for language 'xx'"):
        flores_parallel(flores_root, "xx")
    (flores_root / "dev" / "isl_Latn.parquet").write_bytes(b"not parquet")
    with pytest.raises(GrowmergeError, match=r"isl_Latn.parquet: not a readable Parquet file"):
        flores_parallel(flores_root, "is", "dev")


# ---------------------------------------------------------------------------------------------
# BLiMP: a directory of paradigm files (alexwarstadt/blimp data/*.jsonl) or one file
# ---------------------------------------------------------------------------------------------
def blimp_row(uid, good, bad, pid):
    return {"sentence_good": good, "sentence_bad": bad, "field": "morphology", "linguistics_term": "s-v_agreement",
            "UID": uid, "simple_LM_method": True, "one_prefix_method": False, "two_prefix_method": False,
            "lexically_identical": True, "pairID": str(pid)}


def test_blimp_directory_is_one_set_by_paradigm(tmp_path):
    d = tmp_path / "blimp"
    write_jsonl(d / "regular_plural_subject_verb_agreement_1.jsonl",
                [blimp_row("regular_plural_subject_verb_agreement_1", "The dogs run.", "The dogs runs.", i)
                 for i in range(3)])
    write_jsonl(d / "anaphor_gender_agreement.jsonl",
                [blimp_row("anaphor_gender_agreement", "Mary saw herself.", "Mary saw himself.", 0),
                 blimp_row("anaphor_gender_agreement", "Same.", "Same.", 1)])  # identical: skipped, counted
    (d / "LICENSE").write_text("CC BY\n")
    ps = read_pairs(d)
    assert ps.name == "blimp/blimp" and ps.space_prefix and ps.skipped == 1 and ps.meta == {"files": 2}
    assert len(ps.pairs) == 4
    assert [p["phenomenon"] for p in ps.pairs] == ["anaphor_gender_agreement"] + \
        ["regular_plural_subject_verb_agreement_1"] * 3
    assert get_task("la").load(d, "en", 0).pairs == ps.pairs  # the YAML's eval-data/blimp works
    (d / "own.jsonl").write_text(json.dumps({"good": "a b", "bad": "b a"}) + "\n")
    with pytest.raises(GrowmergeError, match=r"own.jsonl: its format differs from anaphor_gender_agreement.jsonl"):
        read_pairs(d)
    with pytest.raises(GrowmergeError, match=r"empty: no pair files"):
        (tmp_path / "empty").mkdir()
        read_pairs(tmp_path / "empty")


def test_real_blimp_directory():
    root = shared_path("blimp")
    ps = read_pairs(root)
    files = sorted(root.glob("*.jsonl"))
    assert ps.meta["files"] == len(files) and len(ps.pairs) + ps.skipped == 1000 * len(files)
    assert {p["phenomenon"] for p in ps.pairs} == {f.stem for f in files}


# ---------------------------------------------------------------------------------------------
# MultiBLiMP 1.0: jumelet/multiblimp, <lang>/data.tsv (pandas to_csv with sep="\t", index column first)
# ---------------------------------------------------------------------------------------------
MULTIBLIMP_HEADER = ["", "sen", "verb", "verb_idx", "wrong_verb", "child", "child_idx", "head", "head_idx",
                     "phenomenon", "lang", "grammatical_feature", "ungrammatical_feature", "wrong_sen"]


def test_multiblimp_published_tsv(tmp_path):
    rows = [["0", "Hann sefur .", "sefur", "2", "sofa", "Hann", "1", "sefur", "2", "SV-#", "isl", "Sing", "Plur",
             "Hann sofa ."],
            ["1", '"Við" sögðum það .', "sögðum", "2", "sagði", "Við", "1", "sögðum", "2", "SV-P", "isl", "1", "3",
             '"Við" sagði það .']]
    path = tmp_path / "isl" / "data.tsv"
    path.parent.mkdir()
    with open(path, "w", encoding="utf-8", newline="") as fh:
        import csv

        w = csv.writer(fh, delimiter="\t")
        w.writerow(MULTIBLIMP_HEADER)
        w.writerows(rows)
    ps = read_pairs(path)
    assert ps.name == "multiblimp/isl" and not ps.space_prefix
    assert [(p["good"], p["bad"], p["phenomenon"]) for p in ps.pairs] == [
        ("Hann sefur .", "Hann sofa .", "SV-#"), ('"Við" sögðum það .', '"Við" sagði það .', "SV-P")]
    short = tmp_path / "ekk.tsv"  # the names configs/paper.yaml uses keep their stem
    short.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert read_pairs(short).name == "multiblimp/ekk"
    (tmp_path / "bad.tsv").write_text("sentence\tother\nx\ty\n")
    with pytest.raises(GrowmergeError, match=r"bad.tsv: expected a TSV with header columns sen, wrong_sen"):
        read_pairs(tmp_path / "bad.tsv")


# ---------------------------------------------------------------------------------------------
# mParaRel: patterns/<lang>/P*.jsonl and tuples/<lang>/P*.jsonl
# ---------------------------------------------------------------------------------------------
def mpararel_fixture(root: Path) -> Path:
    pats = {"P36": ["[X]s huvudstad är [Y].", "Huvudstaden i [X] är [Y].", "[X]s huvudstad]n] är [Y].",
                    "[X], det är [Y]s] huvudstad", "Huvudstaden i [X] är [Y]."],
            "P17": ["[X] ligger i [Y].", "[X] finns i [Y]."],
            "P19": ["[X] föddes i [Y]."]}  # P19 has one object: no wrong object to draw
    tups = {"P36": [("Sverige", "Stockholm"), ("Norge", "Oslo"), ("Danmark", "Köpenhamn"), ("Finland", "Helsingfors")],
            "P17": [("Lund", "Sverige"), ("Bergen", "Norge"), ("Åbo", "Finland")],
            "P19": [("Greta", "Stockholm"), ("Olof", "Stockholm")]}
    for rel, ps in pats.items():
        write_jsonl(root / "patterns" / "sv" / f"{rel}.jsonl", [{"pattern": p, "checked-by-human": True} for p in ps])
        write_jsonl(root / "tuples" / "sv" / f"{rel}.jsonl",
                    [{"sub_uri": f"Q{i}", "obj_uri": f"Q{i + 100}", "sub_label": s, "obj_label": o, "lineid": i}
                     for i, (s, o) in enumerate(tups[rel])])
    return root


def test_mpararel_every_pattern_every_tuple_k_distractors(tmp_path):
    root = mpararel_fixture(tmp_path / "mpararel")
    assert not pattern_ok("[X]s huvudstad]n] är [Y].") and pattern_ok("[X]s huvudstad är [Y].")
    one = read_mpararel_all(root, "sv", k=1, seed=3)
    # P36: 2 distinct well-formed patterns x 4 tuples, P17: 2 x 3; P19 has a single object
    assert len(one.pairs) == 2 * 4 + 2 * 3
    assert one.meta["malformed_patterns"] == 2 and one.meta["duplicate_patterns"] == 1
    assert one.meta["one_object"] == ["P19"] and one.meta["relations"] == 2
    assert not any("]" in p["good"] or "]" in p["bad"] for p in one.pairs)
    three = read_mpararel_all(root, "sv", k=3, seed=3)
    assert len(three.pairs) == 2 * 4 * 3 + 2 * 3 * 2  # P17 has only 2 wrong objects per tuple
    objects = {"P36": {"Stockholm", "Oslo", "Köpenhamn", "Helsingfors"}, "P17": {"Sverige", "Norge", "Finland"}}
    by_item: dict = {}
    for p in three.pairs:
        assert p["good"] != p["bad"]
        good_obj = next(o for o in objects[p["phenomenon"]] if p["good"].replace(".", "").endswith(o)
                        or f" {o}" in p["good"])
        bad_obj = [o for o in objects[p["phenomenon"]] if p["bad"].replace(".", "").endswith(o)]
        assert bad_obj and bad_obj[0] != good_obj  # a wrong object of the same relation
        by_item.setdefault((p["phenomenon"], p["pattern"], p["good"]), set()).add(p["bad"])
    assert all(len(v) == (3 if k[0] == "P36" else 2) for k, v in by_item.items())  # k distinct distractors
    assert read_mpararel_all(root, "sv", k=3, seed=3).pairs == three.pairs  # seeded
    assert read_fk(root, "sv", seed=3).pairs == one.pairs  # FK's mParaRel source is the full reader
    assert get_task("fk").load(root, "sv", 3).pairs == one.pairs
    out = tmp_path / "fk.jsonl"
    r = cli("pairs", "fk", "--lang", "sv", "--source", root, "--out", out, "--k", "2")
    assert r.exit_code == 0 and "2 malformed patterns skipped" in r.output, r.output
    assert len(out.read_text().splitlines()) == 2 * 4 * 2 + 2 * 3 * 2
    with pytest.raises(GrowmergeError, match=r"P17.jsonl:2: a tuple needs sub_label and obj_label"):
        (root / "tuples" / "sv" / "P17.jsonl").write_text('{"sub_label": "a", "obj_label": "b"}\n{"sub_label": 1}\n')
        read_mpararel_all(root, "sv")
    with pytest.raises(GrowmergeError, match="no patterns/xx and tuples/xx"):
        read_mpararel_all(root, "xx")


PAPER_FK = {"en": 237960, "sv": 186380, "is": 31528, "et": 73434, "fa": 108933}


def test_real_mpararel_counts():
    """Every well-formed pattern x every tuple of the reviewed data in ../shared (k=1). The paper's
    counts (eng 237,960, swe 186,380, isl 31,528, ekk 73,434, fas 108,933) are lower than ours; what
    the authors filtered further is not stated."""
    root = shared_path("mpararel")
    got = {lang: read_mpararel_all(root, lang) for lang in ("en", "sv", "is")}
    assert len(got["en"].pairs) == 262583 and got["en"].meta["malformed_patterns"] == 0
    assert len(got["sv"].pairs) == 215036 and got["sv"].meta["malformed_patterns"] == 2
    assert len(got["is"].pairs) == 51629 and got["is"].meta["malformed_patterns"] == 5
    assert "[Y]s] huvudstad" in " ".join(got["sv"].meta["malformed"])
    assert not any("[" in p["good"] or "]" in p["good"] for p in got["is"].pairs)
    assert 1.0 < len(got["en"].pairs) / PAPER_FK["en"] < 1.11


# ---------------------------------------------------------------------------------------------
# Any minimal-pair table through a column mapping (GED-style sets such as DaLAJ-GED)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_mapped_table_reads_csv_tsv_jsonl(tmp_path, fmt):
    rows = [{"original sentence": "Jag har en katt som heter Måns och han är svart .",
             "corrected sentence": "Jag har en katt som heter Måns och den är svart .", "error label": "M-Gend"},
            {"original sentence": "Hon bor i Lund, nu.", "corrected sentence": "Hon bor i Lund nu.",
             "error label": "P"},
            {"original sentence": "Det är bra .", "corrected sentence": "Det är bra .", "error label": ""}]
    table = tmp_path / f"dalaj.{fmt}"
    if fmt == "jsonl":
        write_jsonl(table, rows)
    else:
        import csv

        with open(table, "w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t" if fmt == "tsv" else ",")
            w.writeheader()
            w.writerows(rows)
    spec = tmp_path / "dalaj.pairs.yaml"
    spec.write_text(f"file: dalaj.{fmt}\ngood: corrected sentence\nbad: original sentence\nphenomenon: error label\n")
    ps = read_pairs(spec)
    assert ps.name == "dalaj" and ps.skipped == 1 and not ps.space_prefix
    assert [(p["good"], p["bad"], p["phenomenon"]) for p in ps.pairs] == [
        (rows[0]["corrected sentence"], rows[0]["original sentence"], "M-Gend"),
        ("Hon bor i Lund nu.", "Hon bor i Lund, nu.", "P")]
    assert get_task("la").load(spec, "sv", 0).pairs == ps.pairs


MAPPING_CASES = [  # (mapping YAML, table text, the one error line)
    ("file: t.tsv\ngood: correct\nbad: b\n", "a\tb\nx\ty\n",
     r"t.tsv: no column\(s\) correct \(named in m.yaml; the table has a, b\)"),
    ("file: t.tsv\ngood: a\nbad: b\n", "a\tb\nx\ty\nonly-one-column\n", r"t.tsv:3: the row's column count differs"),
    ("file: t.tsv\ngood: a\nbda: b\n", "a\tb\n", r"m.yaml: a pair mapping needs text keys file, good and bad"),
    ("file: t.tsv\ngood: a\nbad: b\ncolour: red\n", "a\tb\n", r"m.yaml: unknown key\(s\) colour"),
    ("file: missing.csv\ngood: a\nbad: b\n", "a\tb\n", r"m.yaml: its file .*missing.csv does not exist"),
    ("file: [unclosed\n", "a\tb\n", r"m.yaml: cannot read the pair mapping"),
    ("file: t.tsv\ngood: a\nbad: b\n", "a\tb\nx\tx\n", r"t.tsv: no usable minimal pairs \(1 skipped"),
]


@pytest.mark.parametrize("mapping,table,message", MAPPING_CASES)
def test_mapped_table_bad_inputs(tmp_path, mapping, table, message):
    (tmp_path / "t.tsv").write_text(table)
    (tmp_path / "m.yaml").write_text(mapping)
    with pytest.raises(GrowmergeError, match=message):
        read_pairs(tmp_path / "m.yaml")
