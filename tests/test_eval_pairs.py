"""Pair readers (BLiMP, MultiBLiMP, own, mParaRel, CLDR), evaluate_model rows, and bad inputs."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import shared_path, tiny_tokenizer
from growmerge.errors import GrowmergeError
from growmerge.evaluate.pairs import cldr_facts, read_blimp, read_mpararel, read_multiblimp, read_own, read_pairs
from growmerge.evaluate.run import evaluate_model


def run_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """The console entry point in-process: exit code, stdout, stderr."""
    from growmerge import cli

    monkeypatch.setattr(sys, "argv", ["growmerge", *map(str, args)])
    capsys.readouterr()  # drop what fixtures printed
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(result, needle):
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], err


def test_blimp_reader_keeps_uid_and_leading_space():
    ps = read_blimp(shared_path("blimp", "anaphor_gender_agreement.jsonl"))
    assert len(ps.pairs) == 1000 and ps.space_prefix
    assert ps.pairs[0]["good"] == "Katherine can't help herself." and ps.pairs[0]["phenomenon"] == "anaphor_gender_agreement"


def test_multiblimp_tsv_and_own_jsonl(tmp_path):
    tsv = tmp_path / "isl.tsv"
    tsv.write_text("sen\twrong_sen\tphenomenon\nÉg fer.\tÉg ferð.\tSV-#\nHann fer.\tHann fer.\tSV-#\n")
    ps = read_pairs(tsv)
    assert not ps.space_prefix and len(ps.pairs) == 1 and ps.skipped == 1  # identical pair skipped, counted
    own = tmp_path / "own.jsonl"
    own.write_text(json.dumps({"good": "a b", "bad": "a c", "feature": "Number"}) + "\n")
    assert read_pairs(own).pairs[0]["phenomenon"] == "Number"


def test_mpararel_pairs_are_true_vs_wrong_object_of_the_relation():
    ps = read_mpararel(shared_path("mpararel"), "sv", seed=1)
    assert len(ps.pairs) > 100
    objects: dict[str, set] = {}
    root = shared_path("mpararel", "tuples", "sv")
    for f in root.glob("P*.jsonl"):
        objects[f.stem] = {json.loads(line)["obj_label"] for line in f.read_text().splitlines() if line.strip()}
    for p in ps.pairs[:200]:
        assert p["good"] != p["bad"]
        wrong = [o for o in objects[p["phenomenon"]] if p["bad"].endswith(o)]
        assert wrong, p  # the wrong object comes from the same relation
    assert read_mpararel(shared_path("mpararel"), "sv", seed=1).pairs == ps.pairs  # seeded


def test_cldr_facts_are_real_relations():
    ps = cldr_facts("sv")
    goods = {p["good"] for p in ps.pairs}
    assert "Det officiella språket i Frankrike är franska." in goods
    assert "Valutan i Sverige är svensk krona." in goods
    assert {p["phenomenon"] for p in ps.pairs} == {"language", "currency"}


def test_evaluate_model_rows(tiny_llama, tmp_path):
    model = tiny_llama()
    la = tmp_path / "la.jsonl"
    la.write_text("".join(json.dumps({"good": g, "bad": b, "phenomenon": ph}) + "\n" for g, b, ph in
                          [("Hunden sover.", "Hunden sova.", "Tense"), ("Koer magab.", "Koer magavad.", "Number")]))
    par = tmp_path / "par.jsonl"
    par.write_text(json.dumps({"id": 0, "en": "The dog sleeps.", "tgt": "Hunden sover.", "lang": "sv"}) + "\n")
    rows = evaluate_model(model, "sv", ip_file=par, la_files=[la], fk_files=["cldr"], reference=model,
                          cache_dir=tmp_path / "cache")
    keys = {(r["task"], r["metric"]) for r in rows}
    assert {("ip", "ip"), ("la", "accuracy"), ("la", "accuracy/Tense"), ("fk", "accuracy")} <= keys
    keys = {"model", "lang", "boundary", "task", "dataset", "metric", "value", "n"}
    assert all(set(r) == keys | ({"detail"} if r["metric"] == "decisions" else set()) for r in rows)
    assert {r["boundary"] for r in rows} == {"lm-eval"}  # a model from elsewhere: lm-eval's convention
    decisions = next(r for r in rows if r["task"] == "la" and r["metric"] == "decisions")["detail"]
    assert len(decisions) == 2 and set(decisions) <= {"0", "1"}
    la_acc = next(r for r in rows if r["task"] == "la" and r["metric"] == "accuracy")
    assert la_acc["n"] == 2 and la_acc["value"] in (0.0, 0.5, 1.0)


def test_eval_cli_table_and_json(tiny_llama, tmp_path, monkeypatch, capsys):
    model = tiny_llama()
    out = tmp_path / "rows.json"
    code, stdout, _ = run_main(monkeypatch, capsys, "eval", model, "--lang", "en", "--la",
                               shared_path("blimp", "superlative_quantifiers_1.jsonl"), "--json", out)
    assert code == 0 and "blimp/superlative_quantifiers_1" in stdout
    rows = json.loads(out.read_text())
    assert rows[0]["n"] == 1000 and rows[0]["task"] == "la"


def test_bad_inputs_are_one_line(tiny_llama, tmp_path, monkeypatch, capsys):
    model = tiny_llama()
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(json.dumps({"good": "a", "bad": "b"}) + "\n{not json\n")
    assert_one_line_error(run_main(monkeypatch, capsys, "eval", model, "--lang", "sv", "--la", bad_json), "bad.jsonl:2")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert_one_line_error(run_main(monkeypatch, capsys, "eval", model, "--lang", "sv", "--la", empty), "empty")
    same = tmp_path / "same.jsonl"
    same.write_text(json.dumps({"good": "a b", "bad": "a b"}) + "\n")
    assert_one_line_error(run_main(monkeypatch, capsys, "eval", model, "--lang", "sv", "--la", same), "identical")
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"good": "a b"}) + "\n")
    assert_one_line_error(run_main(monkeypatch, capsys, "eval", model, "--lang", "sv", "--la", missing), "bad")
    par = tmp_path / "par.jsonl"
    par.write_text(json.dumps({"id": 0, "en": "The dog.", "tgt": ""}) + "\n")
    assert_one_line_error(run_main(monkeypatch, capsys, "eval", model, "--lang", "sv", "--ip", par,
                                   "--reference", model), "par.jsonl:1")
    assert_one_line_error(run_main(monkeypatch, capsys, "eval", model, "--lang", "sv", "--ip", par), "--reference")
    assert_one_line_error(run_main(monkeypatch, capsys, "eval", model, "--lang", "sv"), "nothing to evaluate")
    sentences = tmp_path / "s.txt"
    sentences.write_text("Hunden sover.\n")
    assert_one_line_error(run_main(monkeypatch, capsys, "pairs", "generate", "--lang", "sv", "--sentences", sentences,
                                   "--out", tmp_path / "o.jsonl", "--backend", "nosuch"), "unknown inflector")
    assert_one_line_error(run_main(monkeypatch, capsys, "pairs", "generate", "--lang", "xx", "--sentences", sentences,
                                   "--out", tmp_path / "o.jsonl"), "no default inflector")


def test_model_and_tokenizer_that_disagree(tiny_llama, tmp_path, monkeypatch, capsys):
    model = tiny_llama(vocab=100, with_tokenizer=False)
    tiny_tokenizer(320).save_pretrained(model)  # ids up to 320 cannot index a 100-row embedding
    la = tmp_path / "la.jsonl"
    la.write_text(json.dumps({"good": "a b", "bad": "a c"}) + "\n")
    assert_one_line_error(run_main(monkeypatch, capsys, "eval", model, "--lang", "sv", "--la", la),
                          "do not belong together")


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(GrowmergeError, match="sen, wrong_sen"):
        (tmp_path / "x.tsv").write_text("a\tb\n1\t2\n")
        read_multiblimp(tmp_path / "x.tsv")
    with pytest.raises(GrowmergeError, match="no patterns/xx"):
        read_mpararel(tmp_path, "xx")
    with pytest.raises(GrowmergeError, match="no CLDR fact templates"):
        cldr_facts("zz")
    with pytest.raises(GrowmergeError, match="sentence_bad"):
        (tmp_path / "b.jsonl").write_text(json.dumps({"sentence_good": "x"}) + "\n")
        read_blimp(tmp_path / "b.jsonl")
    with pytest.raises(GrowmergeError, match="no usable"):
        (tmp_path / "o.jsonl").write_text(json.dumps({"good": "", "bad": "x"}) + "\n")
        read_own(tmp_path / "o.jsonl")
