"""The opt-in arms beyond the paper (issue 16 items 4 and 5) in a micro study: depth growth
("1x_deep": base_1x deepened, then adapted) and from-scratch models ("scratch": each language trained
from one shared random initialisation with the adaptation budget) are trained, merged, evaluated and
compute-matched like the paper's scales, and the report has their figure and findings lines; the
default plan (the demo's) has neither."""

from __future__ import annotations

import torch

from growmerge.artifacts import read_meta
from growmerge.ledger.matching import compute_matched_pairs
from growmerge.ledger.store import Results
from growmerge.names import PAPER_SCALES, SCALES
from growmerge.study import runner
from growmerge.study.plan import build_plan
from growmerge.study.spec import StudyConfig, load_study
from test_study import ROOT, micro_config


def test_the_demo_plan_has_no_opt_in_arm():
    cfg = load_study(ROOT / "configs" / "demo.yaml")
    assert cfg.scales == list(PAPER_SCALES)
    kinds = {s.kind for s in build_plan(cfg)}
    assert "deepen" not in kinds and "init" not in kinds
    assert not any(s.id.startswith(("1x_deep", "scratch")) for s in build_plan(cfg))


def arms_config(run_dir) -> dict:
    raw = micro_config(run_dir)
    raw.update(scales=["1x", "1x_deep", "scratch"], multilingual=False)
    raw["model"]["depth"] = 2
    raw["merge"] = {"methods": ["linear", "task_arithmetic"]}
    raw["eval"]["tasks"] = {"ip": {"max_pairs": 10}, "la": {"pairs": 10}}
    raw["train"]["checkpoints"] = 2
    return raw


def test_micro_study_with_depth_and_scratch_arms(tmp_path):
    from transformers import AutoModelForCausalLM

    from growmerge.grow.hyperclone import max_logit_diff
    from growmerge.report import findings

    cfg = StudyConfig.model_validate(arms_config(tmp_path / "run"))
    stages = {s.id: s for s in build_plan(cfg)}
    assert stages["base_1x_deep"].src == "base_1x" and stages["1x_deep_is"].init == "base_1x_deep"
    assert stages["scratch_fa"].init == "scratch_init" and stages["scratch_fa"].spec == stages["1x_fa"].spec
    assert stages["merge_scratch"].base == "scratch_init" and stages["merge_1x_deep"].base == "base_1x_deep"
    runner.run_study(cfg, echo=lambda m: None)
    models = cfg.root / "models"

    def load(name):
        return AutoModelForCausalLM.from_pretrained(models / name, dtype=torch.float32).eval()

    # depth growth in the study: twice the layers, the same function as the base it grew from
    base, deep = load("base_1x"), load("base_1x_deep")
    assert deep.config.num_hidden_layers == 2 * base.config.num_hidden_layers
    ids = torch.randint(0, base.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    assert max_logit_diff(base, deep, ids) == 0.0
    assert read_meta(models / "base_1x_deep")["flops"]["cumulative"] == read_meta(models / "base_1x")["flops"]["cumulative"]
    # from scratch: one shared random init, no inherited pretraining cost, the adaptation budget
    assert read_meta(models / "scratch_init")["flops"]["cumulative"] == 0.0
    for lang in ("is", "fa"):
        meta = read_meta(models / f"scratch_{lang}")
        assert meta["flops"]["cumulative"] == meta["flops"]["self"] > 0
        assert meta["tokens"] == read_meta(models / f"1x_{lang}")["tokens"]
    with Results(cfg.root / "results.sqlite") as res:
        merges = res.merges()
        assert {m["scale"] for m in merges} == {"1x", "1x_deep", "scratch"} and len(merges) == 2 * 3
        scored = {r["model"] for r in res.query("SELECT DISTINCT model FROM scores")}
        assert {"1x_deep_is", "scratch_fa", "merge/scratch/linear/fa+is", "merge/1x_deep/linear/fa+is"} <= scored
        pairs, excluded = compute_matched_pairs(res, SCALES)
        labels = {p.label for p in pairs} | {e.as_dict()["pair"] for e in excluded}
        assert any("1x_deep" in label for label in labels) and any("scratch" in label for label in labels)
        found = findings(res)
    assert len(found) == 11
    depth, scratch = found[9], found[10]
    assert "Depth growth" in depth["text"] and "1x_deep ≥ 1x" in depth["evidence"]
    assert "from-scratch" in scratch["text"] and "scratch merges ≈ chance" in scratch["evidence"]
    assert "no data" not in scratch["evidence"].split(";")[0]
    html = (cfg.root / "report" / "index.html").read_text()
    assert "arms_unmerged_vs_merged.png" in html and (cfg.root / "report" / "arms_unmerged_vs_merged.png").is_file()
    assert "Merging from-scratch models collapses" in html and "Depth growth (1x_deep" in html
