"""Many off-the-shelf references: eval.off_the_shelf takes any number; finding 1 is checked against
all of them and names the strongest."""

from __future__ import annotations

import json

from conftest import make_tiny_llama
from test_report import build_study, rows
from test_study import micro_config

from growmerge.ledger import Results
from growmerge.report import findings
from growmerge.report.findings import FAILS, HOLDS
from growmerge.study.plan import build_plan
from growmerge.study.spec import StudyConfig
from growmerge.study.stages import Context, EvalStage, ReferenceStage


def add_reference(res: Results, name: str, la: float, ip: float = 0.3) -> None:
    res.add_model(name, "reference")
    for lang in ("sv", "da", "fa"):
        res.add_scores(rows(name, lang, lambda t: {"la": la, "ip": ip, "fk": 0.5}[t]))


def test_finding_1_is_checked_against_the_strongest_reference(tmp_path):
    res = build_study(tmp_path, smollm2=0.5)  # 1x: LA 0.693 over sv, da, fa
    add_reference(res, "gemma3_270m", la=0.66)
    f1 = findings(res)[0]
    assert f1["status"] == HOLDS, f1["evidence"]
    assert "LA 1x vs the strongest of 2 reference(s), gemma3_270m (others: smollm2 0.500)" in f1["evidence"]
    add_reference(res, "qwen3_1_7b", la=0.80)  # beats 1x: the finding fails, and says against which
    f1 = findings(res)[0]
    assert f1["status"] == FAILS
    assert "strongest of 3 reference(s), qwen3_1_7b (others: gemma3_270m 0.660, smollm2 0.500)" in f1["evidence"]
    assert "0.693 vs 0.800" in f1["evidence"]


def test_micro_study_with_two_local_reference_dirs(tmp_path):
    """Two local model directories as references: planned, recorded, scored, and both in finding 1."""
    refs = [make_tiny_llama(tmp_path / name, seed=seed) for name, seed in (("ref_a", 1), ("ref_b", 2))]
    mine = make_tiny_llama(tmp_path / "mine", seed=3)
    raw = micro_config(tmp_path / "run")
    raw["eval"]["tasks"] = {"la": {"pairs": 10}}
    raw["eval"]["off_the_shelf"] = [{"name": "ref_a", "source": str(refs[0]), "max_pairs": 6},
                                    {"name": "ref_b", "source": str(refs[1]), "max_pairs": 6}]
    cfg = StudyConfig.model_validate(raw)
    by_id = {s.id: s for s in build_plan(cfg)}
    assert isinstance(by_id["ref_a"], ReferenceStage) and by_id["ref_b"].source == str(refs[1])
    evals = {s.target: s for s in by_id.values() if isinstance(s, EvalStage)}
    assert evals["ref_a"].max_pairs == 6 and evals["ref_b"].languages == evals["ref_a"].languages

    la = cfg.root / "eval" / "la" / "is.jsonl"
    la.parent.mkdir(parents=True)
    pairs = [("The quick brown fox jumps.", "The quick brown fox jump."), ("Hunden springer.", "Hunden springa."),
             ("def f(x): return x + 1", "def f(x) return x + 1"), ("The dog sleeps.", "The dog sleep."),
             ("Koer hüppab üle aia.", "Koer hüppavad üle aia."), ("It is lazy.", "It are lazy.")] * 2
    la.write_text("".join(json.dumps({"good": g, "bad": b, "phenomenon": "agr"}) + "\n" for g, b in pairs))
    with Results(cfg.root / "results.sqlite") as results:
        ctx = Context(root=cfg.root, data=cfg.data, results=results, device="cpu", say=lambda _: None)
        for ref in ("ref_a", "ref_b"):
            by_id[ref].run(ctx)
            by_id[f"eval_{ref}"].model_copy(update={"languages": ["is"]}).run(ctx)
        results.add_model("is-1x", "adapt", setup="1x", scale="1x", languages=["is"], path=mine)
        EvalStage(id="eval_is-1x", target="is-1x", languages=["is"], tasks=evals["ref_a"].tasks,
                  reference=evals["ref_a"].reference).run(ctx)
        scored = {r["model"]: (r["value"], r["n"]) for r in results.query(
            "SELECT * FROM scores WHERE metric = 'accuracy' AND lang = 'is'")}
        f1 = findings(results)[0]
    assert set(scored) == {"ref_a", "ref_b", "is-1x"}
    assert scored["ref_a"][1] == scored["ref_b"][1] == 6 and scored["is-1x"][1] == 12  # max_pairs for references
    strongest = max(("ref_a", "ref_b"), key=lambda r: scored[r][0])
    other = {"ref_a": "ref_b", "ref_b": "ref_a"}[strongest]
    assert f"LA 1x vs the strongest of 2 reference(s), {strongest} (others: {other} {scored[other][0]:.3f})" in f1["evidence"]
