"""Auditing LA sets: sample, judgement file, validity in the set's metadata, the committed judgements
of the demo's sets, the LA task's validity row and the report's use of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from growmerge.errors import GrowmergeError
from growmerge.evaluate.perturb import audit
from growmerge.evaluate.perturb.sets import write_jsonl
from test_eval_pairs import run_main
from test_perturb import apertium_available

JUDGED = Path(__file__).parent / "data" / "la_judgements"
DEMO_LANGS = ("sv", "da", "et", "is", "fa")


def pair_set(tmp_path, n=20) -> Path:
    rows = [{"good": f"Good sentence {i}.", "bad": f"Bad sentence {i}.", "rule": "r"} for i in range(n)]
    return write_jsonl(rows, tmp_path / "la" / "sv.jsonl")


def test_audit_cli_samples_then_reads_judgements_back(tmp_path, monkeypatch, capsys):
    s = pair_set(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, "pairs", "audit", s, "--sample", "5", "--seed", "1")
    assert code == 0, err
    judge = s.with_name("sv.judge.jsonl")
    rows = [json.loads(line) for line in judge.read_text().splitlines()]
    assert len(rows) == 5 and all(r["judgement"] == "" for r in rows) and "[" in out
    assert rows == audit.sample(audit.read_set(s), 5, 1)  # seeded: the same sample again
    code, out, err = run_main(monkeypatch, capsys, "pairs", "audit", s, "--judgements", judge)
    assert code == 2 and err.count("\n") == 1 and "judgement must be one of good, bad, unsure" in err
    for r, verdict in zip(rows, ["good", "good", "good", "bad", "unsure"]):
        r["judgement"] = verdict
    write_jsonl(rows, judge)
    code, out, err = run_main(monkeypatch, capsys, "pairs", "audit", s, "--judgements", judge)
    assert code == 0 and "validity 0.600" in out
    meta = audit.read_meta(s)
    assert meta["validity"]["rate"] == 0.6 and meta["validity"]["judged"] == 5 and meta["validity"]["unsure"] == 1
    # Judgements of another set match nothing: one line, no metadata change.
    other = write_jsonl([{"good": "x", "bad": "y", "judgement": "good"}], tmp_path / "other.jsonl")
    code, out, err = run_main(monkeypatch, capsys, "pairs", "audit", s, "--judgements", other)
    assert code == 2 and "none of its 1 judged pairs is in the set" in err
    code, out, err = run_main(monkeypatch, capsys, "pairs", "audit", tmp_path / "nope.jsonl")
    assert code == 2 and "no such pair set" in err


@pytest.mark.parametrize("lang", DEMO_LANGS)
def test_committed_judgements_of_the_demo_sets(lang):
    """50 pairs per language judged on the demo's set (growmerge pairs audit --sample 50 --seed 0),
    the rate at least 0.9; the previous generator's set judged the same way."""
    after = audit.read_judgements(JUDGED / f"{lang}.jsonl")
    before = audit.read_judgements(JUDGED / "before" / f"{lang}.jsonl")
    assert len(after) == len(before) == 50
    rate = sum(j["judgement"] == "good" for j in after) / len(after)
    assert rate >= 0.9
    assert rate > sum(j["judgement"] == "good" for j in before) / len(before)


@pytest.mark.parametrize("lang", DEMO_LANGS)
def test_the_rules_still_make_the_judged_pairs(lang):
    """A judged pair that today's rules no longer make would make the judgement file stale."""
    if lang in ("sv", "da") and not apertium_available():
        pytest.skip("Apertium not installed or unpacked")
    from growmerge.evaluate.perturb.inflector import get_inflector
    from growmerge.evaluate.perturb.rules import candidates, make_pair

    judged = audit.read_judgements(JUDGED / f"{lang}.jsonl")
    goods = sorted({j["good"] for j in judged})
    made = {(make_pair(goods[c.sentence], c)["good"], make_pair(goods[c.sentence], c)["bad"])
            for c in candidates(goods, get_inflector(None, lang), lang)}
    assert [j["bad"] for j in judged if (j["good"], j["bad"]) not in made] == []


def test_la_task_records_validity_beside_accuracy(tmp_path, monkeypatch):
    from growmerge.evaluate.tasks import PrepareEnv, ScoreEnv, get_task
    from growmerge.evaluate import pairs as pairs_module

    task = get_task("la")
    src = tmp_path / "data" / "eval" / "sentences"
    src.mkdir(parents=True)
    (src / "et.txt").write_text("Me elame suures majas.\nSee ei saa olla.\n", encoding="utf-8")
    said = []
    env = PrepareEnv(tmp_path, 0, said.append)
    generated = env.set_file("la", "et")
    # Judge the set it will make: every pair valid but the first.
    task.prepare(task.Options.model_validate({"pairs": 10}), "et", env)
    rows = audit.sample(audit.read_set(generated), 10, 0)
    for i, r in enumerate(rows):
        r["judgement"] = "bad" if i == 0 else "good"
    judge = write_jsonl(rows, tmp_path / "et.judge.jsonl")
    task.prepare(task.Options.model_validate({"pairs": 10, "judgements": {"et": str(judge)}}), "et", env)
    assert any("validity" in s for s in said)
    data = task.load(generated, "et", 0)
    assert data.meta["validity"]["judged"] == len(rows)
    monkeypatch.setattr(pairs_module, "score_pairs", lambda scorer, d: {"accuracy": 0.75, "ties": 0.0, "n": len(d.pairs),
                                                                     "skipped": 0, "per_phenomenon": {}})
    scored = task.score(None, data, "et", tmp_path, ScoreEnv())
    validity = [r for r in scored if r["metric"] == "validity"]
    assert validity == [{"task": "la", "dataset": "et", "metric": "validity", "value": (len(rows) - 1) / len(rows),
                         "n": len(rows)}]
    with pytest.raises(GrowmergeError, match="no such judgement file"):
        task.prepare(task.Options.model_validate({"judgements": {"et": str(tmp_path / "none.jsonl")}}), "et", env)


def test_findings_leave_out_sets_below_the_validity_threshold(tmp_path):
    from test_report import build_study

    from growmerge.report import build_report, findings
    from growmerge.report.findings import findings_text
    from growmerge.report.validity import classify, valid_results
    from growmerge.report.view import StudyView

    res = build_study(tmp_path)
    res.add_scores([dict(model="sv-1x", step=-1, lang=lang, task="la", dataset="set", metric="validity", value=v, n=50)
                    for lang, v in (("sv", 0.96), ("da", 0.5))])
    sets = classify(res)
    assert [(s["lang"], s["validity"]) for s in sets.left_out] == [("da", 0.5)]
    assert [s["lang"] for s in sets.unmeasured] == ["en", "fa"] and [s["lang"] for s in sets.used] == ["sv"]
    view = StudyView(valid_results(res))
    assert view.final("da-1x", "da", "la") is None and view.final("da-1x", "da", "ip") is not None
    assert view.final("sv-1x", "sv", "la") is not None
    found = findings(res)
    assert len(found) == 9 and "left out (validity below 0.8): da/set 0.50" in found.note
    assert "used without a measured validity: en/set, fa/set" in findings_text(found)
    assert "da/set" not in findings(res, min_validity=0.4).note
    res.close()
    page = build_report(tmp_path).read_text(encoding="utf-8")
    assert "LA sets: validity and accuracy" in page and "left out (&lt; 0.8)" in page and 'id="la-sets"' in page
