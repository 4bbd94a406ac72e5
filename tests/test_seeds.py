"""Several seeds (issue 16 item 1): ``seeds: [0, 1]`` repeats every training stage and everything
downstream per seed; the findings judge each claim on a paired bootstrap interval over seeds and
cells, and the report shows the spread across seeds. One seed keeps every id and fingerprint."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from growmerge.ledger import Cell, mean_cell
from growmerge.ledger.seeds import seed_results, study_seeds
from growmerge.ledger.store import Results
from growmerge.report.findings import FAILS, HOLDS, INCONCLUSIVE, greater
from growmerge.report.seeds import bootstrap_interval, combine
from growmerge.study import runner
from growmerge.study.plan import build_plan
from growmerge.study.spec import StudyConfig, load_study
from test_study import ROOT, micro_config


def seeds_config(run_dir, seeds=(0, 1)) -> dict:
    raw = micro_config(run_dir)
    raw.update(scales=["1x", "1x_cloned"], multilingual=False)
    raw["train"]["checkpoints"] = 2
    raw["merge"] = {"methods": ["linear"]}
    raw["eval"]["tasks"] = {"ip": {"max_pairs": 10}, "la": {"pairs": 10}}
    if seeds is not None:
        raw["seeds"] = list(seeds)
    return raw


def test_one_seed_keeps_every_id_and_fingerprint(tmp_path):
    demo = load_study(ROOT / "configs" / "demo.yaml")
    listed = StudyConfig.model_validate({**demo.model_dump(mode="json", exclude_unset=True), "seeds": [demo.seed]})
    assert [(s.id, s.fingerprint) for s in build_plan(listed)] == [(s.id, s.fingerprint) for s in build_plan(demo)]


def test_later_seeds_repeat_the_training_and_what_follows(tmp_path):
    one = {s.id: s for s in build_plan(StudyConfig.model_validate(seeds_config(tmp_path, seeds=None)))}
    two = {s.id: s for s in build_plan(StudyConfig.model_validate(seeds_config(tmp_path)))}
    for sid, stage in one.items():  # the first seed's stages keep their ids; their fingerprints too unless
        assert sid in two  # they read the ledger (eval_merges, matched keep to their seed)
        if stage.kind not in ("eval_merges", "matched", "report"):
            assert two[sid].fingerprint == stage.fingerprint, sid
    later = {sid for sid in two if sid not in one}
    assert later == {f"{sid}_s1" for sid, s in one.items()
                     if s.kind not in ("data", "pairs", "reference", "control", "report")}
    assert two["1x_is_s1"].spec.seed == 1 and two["1x_is_s1"].init == "base_1x_s1"
    assert two["merge_1x_s1"].suffix == "_s1" and two["merge_1x_s1"].base == "base_1x_s1"
    assert two["eval_1x_is_s1"].reference == "base_1x" and two["eval_1x_is_s1"].seed == 0  # the same sets
    assert two["eval_matched_s1"].model_seed == 1 and two["eval_matched"].model_seed == 0


@pytest.mark.parametrize("bad, says", [({"seeds": [0, 0]}, "listed twice"), ({"seeds": [], }, "at least 1"),
                                       ({"seed": 3, "seeds": [0, 1]}, "give one")])
def test_bad_seed_lists_are_refused(tmp_path, bad, says):
    with pytest.raises(ValidationError, match=says):
        StudyConfig.model_validate({**seeds_config(tmp_path, seeds=None), **bad})


def test_a_claim_over_seeds_is_judged_on_its_bootstrap_interval():
    def side(values):
        return mean_cell(Cell(v, 0.01, 100) for v in values)

    clear = {s: greater("a vs b", side([0.7 + d, 0.72, 0.69]), side([0.5, 0.52 + d, 0.49]))
             for s, d in ((0, 0.0), (1, 0.01))}
    one, row = combine(clear)
    assert one.status == HOLDS and row["ci"][0] > 0 and len(row["values"]) == 2
    assert "95% CI" in one.text and "2 seeds" in one.text
    flipped = {0: clear[0], 1: greater("a vs b", side([0.5, 0.52, 0.49]), side([0.7, 0.72, 0.69]))}
    assert combine(flipped)[0].status == INCONCLUSIVE  # the seeds disagree: the interval spans 0
    worse = {s: greater("a vs b", side([0.5, 0.52, 0.49]), side([0.7, 0.72, 0.69])) for s in (0, 1)}
    assert combine(worse)[0].status == FAILS
    assert bootstrap_interval([(0.1, 0.2), (0.3,)]) == bootstrap_interval([(0.1, 0.2), (0.3,)])  # deterministic


def test_a_seeds_view_of_the_ledger(tmp_path):
    with Results(tmp_path) as res:
        res.add_model("1x_is", "adapt", setup="1x", scale="1x", languages=["is"])  # recorded before seeds were
        res.add_model("1x_is_s1", "adapt", setup="1x", scale="1x", languages=["is"], seed=1)
        res.add_model("smollm2", "reference")
        res.add_merge("merge/1x/linear/fa+is", "linear", "1x", ["fa", "is"])
        res.add_merge("merge/1x_s1/linear/fa+is", "linear", "1x", ["fa", "is"], seed=1)
        res.add_model("1x_fa", "adapt", setup="1x", scale="1x", languages=["fa"], seed=0)
        assert study_seeds(res) == [0, 1]
        first, later = seed_results(res, 0), seed_results(res, 1)  # no plan: the smallest seed is the first
        assert {m["name"] for m in first.models(kind="adapt")} == {"1x_is", "1x_fa"}
        assert {m["name"] for m in later.models(kind="adapt")} == {"1x_is_s1"}
        assert {m["name"] for m in later.models(kind="reference")} == {"smollm2"}  # shared by every seed
        assert [m["name"] for m in first.merges()] == ["merge/1x/linear/fa+is"]
        assert [m["name"] for m in later.merges()] == ["merge/1x_s1/linear/fa+is"]
        assert len(res.models(setup="1x")) == 3  # the ledger itself is unfiltered


def test_an_older_ledger_without_seeds_read_only(tmp_path):
    import sqlite3

    conn = sqlite3.connect(tmp_path / "results.sqlite")  # a ledger of an older run: no seed column
    conn.execute("CREATE TABLE models (name TEXT PRIMARY KEY, kind TEXT NOT NULL)")
    conn.commit()
    conn.close()
    assert study_seeds(Results(tmp_path, read_only=True)) == []
    with Results(tmp_path) as res:  # opened for writing, it gets the column
        assert study_seeds(res) == []
        assert "seed" in {r[1] for r in res.conn.execute("PRAGMA table_info(models)")}


def test_micro_study_with_two_seeds(tmp_path):
    from growmerge.report import build_report, findings
    from growmerge.report.seeds import several_seeds

    cfg = StudyConfig.model_validate(seeds_config(tmp_path / "run"))
    runner.run_study(cfg, echo=lambda m: None)
    root = cfg.root
    for scale in ("1x", "1x_s1", "1x_cloned", "1x_cloned_s1"):
        assert (root / "merges" / scale / "linear" / "fa+is").is_dir()
    with Results(root) as res:
        assert study_seeds(res) == [0, 1]
        seeds = {m["name"]: m["seed"] for m in res.models()}
        assert seeds["1x_is"] == 0 and seeds["1x_is_s1"] == 1 and seeds["base_1x_cloned_s1"] == 1
        assert seeds["merge/1x_s1/linear/fa+is"] == 1
        scored = {r["model"] for r in res.query("SELECT DISTINCT model FROM scores")}
        assert {"1x_is", "1x_is_s1", "merge/1x/linear/fa+is", "merge/1x_s1/linear/fa+is"} <= scored
        one = seed_results(res, 1)  # a seed's view: one model per setup and language again
        assert {m["name"] for m in one.models(setup="1x")} == {"1x_is_s1", "1x_fa_s1"}
        assert [m["name"] for m in one.merges() if m["scale"] == "1x"] == ["merge/1x_s1/linear/fa+is"]
        found = findings(res)
        spread = several_seeds(res).spread
    assert len(found) == 9
    assert all(len(r["values"]) == 2 and len(r["marks"].split()) == 2 for r in spread)  # a column per seed
    assert "95% CI" in found[1]["evidence"] and "over 2 seeds" in found[1]["evidence"]  # 2x ≥ 1x_cloned ≥ 1x …
    assert "seeds" in found.note
    html = build_report(root).read_text(encoding="utf-8")
    assert "Spread across seeds" in html and 'alt="seeds.png"' in html and "95% CI" in html
    assert (root / "report" / "seeds.png").is_file()
    summary = (root / "report" / "summary.md").read_text(encoding="utf-8")
    assert "| seed 0 | seed 1 |" in summary
