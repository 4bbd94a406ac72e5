"""`growmerge pairs export-lm-eval`: lm-eval scores the exported task with growmerge's accuracy."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from growmerge.errors import GrowmergeError
from growmerge.evaluate.export import export_lm_eval

LA_SV = [  # a generated-style LA set: own JSONL, scored without a leading space
    ("Katten sover i soffan.", "Katten sova i soffan.", "Tense"),
    ("Jag har ett hus.", "Jag har en hus.", "Gender"),
    ("De stora husen är gamla.", "De stora husen är gammal.", "Number"),
    ("Hon läste boken igår.", "Hon läser boken igår.", "Tense"),
    ("Vi bor i ett rött hus.", "Vi bor i ett röd hus.", "Gender"),
    ("Barnen leker ute.", "Barnet leker ute.", "Number"),
    ("Han har skrivit ett brev.", "Han har skriva ett brev.", "Tense"),
    ("Det är en fin dag.", "Det är ett fin dag.", "Gender"),
    ("Mina vänner kommer snart.", "Min vänner kommer snart.", "Number"),
    ("Solen skiner idag.", "Solen skina idag.", "Tense"),
    ("Ett litet barn sover.", "En litet barn sover.", "Gender"),
    ("Två hundar skäller.", "Två hund skäller.", "Number"),
]
FK_EN = [  # an FK-style set with leading-space BLiMP convention, to cover target_delimiter " "
    ("The capital of Sweden is Stockholm.", "The capital of Sweden is Oslo."),
    ("The capital of Norway is Oslo.", "The capital of Norway is Helsinki."),
    ("Paris is located in France.", "Paris is located in Germany."),
    ("Berlin is located in Germany.", "Berlin is located in Spain."),
    ("The dogs run.", "The dogs runs."),
    ("She has eaten.", "She have eaten."),
    ("They were here.", "They was here."),
    ("A cat sleeps.", "A cat sleep."),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from conftest import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("export") / "tiny", layers=2, hidden=64, seed=3)


def test_exported_tasks_score_like_growmerge_in_lm_eval(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from growmerge.cli import app
    from growmerge.evaluate.pairs import read_pairs, score_pairs
    from growmerge.evaluate.scorer import Scorer

    la = tmp_path / "la" / "sv.jsonl"
    la.parent.mkdir()
    la.write_text("".join(json.dumps({"good": g, "bad": b, "phenomenon": f, "lang": "sv"}, ensure_ascii=False) + "\n"
                          for g, b, f in LA_SV), encoding="utf-8")
    blimp = tmp_path / "blimp_like.jsonl"
    blimp.write_text("".join(json.dumps({"sentence_good": g, "sentence_bad": b, "UID": "x"}) + "\n" for g, b in FK_EN))
    from test_readers import mpararel_fixture

    fk = tmp_path / "fk" / "sv.jsonl"  # FK from mParaRel (every pattern x every tuple), as `pairs fk` writes it
    r = CliRunner().invoke(app, ["pairs", "fk", "--lang", "sv", "--source", str(mpararel_fixture(tmp_path / "mp")),
                                 "--out", str(fk), "--k", "2"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "tasks"
    assert export_lm_eval(fk, out, name="gm_fk_sv")["pairs"] == 28
    r = CliRunner().invoke(app, ["pairs", "export-lm-eval", str(la), str(out), "--name", "gm_la_sv"])
    assert r.exit_code == 0 and "12 pairs -> task gm_la_sv" in r.output, r.output
    info = export_lm_eval(blimp, out)
    assert info["task"] == "growmerge_blimp_like" and info["space_prefix"]
    spec = yaml.safe_load((out / "gm_la_sv.yaml").read_text())
    assert spec["target_delimiter"] == "" and spec["doc_to_choice"] == "{{[good, bad]}}"
    assert yaml.safe_load((out / "growmerge_blimp_like.yaml").read_text())["target_delimiter"] == " "

    scorer = Scorer.from_dir(model_dir)
    ours = {"gm_la_sv": score_pairs(scorer, read_pairs(la)), "gm_fk_sv": score_pairs(scorer, read_pairs(fk)),
            "growmerge_blimp_like": score_pairs(scorer, read_pairs(blimp))}

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=str(model_dir), batch_size=16, device="cpu", dtype="float32")
    res = lm_eval.simple_evaluate(model=lm, tasks=list(ours), task_manager=TaskManager(include_path=str(out)),
                                  log_samples=True, verbosity="ERROR")
    for task, mine in ours.items():
        theirs = [int(s["acc"]) for s in sorted(res["samples"][task], key=lambda s: s["doc_id"])]
        mine_correct = [int(g >= b) for g, b in mine["scores"]]
        assert mine_correct == theirs, task  # identical decisions, pair by pair
        assert res["results"][task]["acc,none"] == pytest.approx(mine["accuracy"], abs=1e-12)
        assert 0 < sum(theirs) < len(theirs), task  # a real mix of decisions was compared


def test_export_bad_inputs(tmp_path):
    with pytest.raises(GrowmergeError, match=r"missing.jsonl: no such pair file"):
        export_lm_eval(tmp_path / "missing.jsonl", tmp_path / "out")
    s = tmp_path / "s.jsonl"
    s.write_text('{"good": "a b", "bad": "b a"}\n')
    with pytest.raises(GrowmergeError, match=r"task name '1bad name'"):
        export_lm_eval(s, tmp_path / "out", name="1bad name")
    (tmp_path / "file").write_text("")
    with pytest.raises(GrowmergeError, match=r"file: exists and is not a directory"):
        export_lm_eval(s, tmp_path / "file")
    assert not (tmp_path / "out").exists()
