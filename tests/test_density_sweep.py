"""A merge-parameter sweep (issue 16, item 2): a list in merge.parameters expands into the grid, each
cell with its own directory, ledger name and fingerprint; scalars keep today's ids."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from conftest import make_tiny_llama
from growmerge.artifacts import read_meta
from growmerge.config import parse
from growmerge.errors import GrowmergeError
from growmerge.merge.grid import merge_grid, method_variants, parse_variant
from growmerge.study.plan import build_plan
from growmerge.study.spec import StudyConfig
from test_study import ROOT, micro_config

SWEEP = {"density": [0.1, 0.5, 0.9], "normalize": True, "int8_mask": True}


def test_a_list_sweeps_only_the_methods_that_take_the_parameter():
    labels = {m: [label for label, _ in method_variants(m, SWEEP)]
              for m in ("linear", "task_arithmetic", "ties", "dare_ties", "multislerp")}
    assert labels["ties"] == ["ties@density=0.1", "ties@density=0.5", "ties@density=0.9"]
    assert labels["dare_ties"] == ["dare_ties@density=0.1", "dare_ties@density=0.5", "dare_ties@density=0.9"]
    # density changes nothing for these (inert or not declared): one merge each, under today's name
    assert labels["linear"] == ["linear"] and labels["task_arithmetic"] == ["task_arithmetic"]
    assert labels["multislerp"] == ["multislerp"]
    cells = dict(method_variants("ties", SWEEP))
    assert cells["ties@density=0.5"] == {"density": 0.5, "normalize": True, "int8_mask": True}
    assert all(not isinstance(v, list) for _, p in method_variants("linear", SWEEP) for v in p.values())
    # two lists: their product, both values in the label, which parses back
    two = [label for label, _ in method_variants("ties", {"density": [0.2, 0.8], "normalize": [True, False]})]
    assert len(two) == 4 and "ties@density=0.2,normalize=false" in two
    assert parse_variant("ties@density=0.2,normalize=false") == ("ties", {"density": 0.2, "normalize": False})
    assert parse_variant("linear") == ("linear", {})
    # a scalar is no sweep: today's label
    assert [label for label, _ in method_variants("ties", {"density": 0.5})] == ["ties"]


def test_a_scalar_study_keeps_todays_plan_and_a_sweep_changes_only_merges_downstream(tmp_path):
    raw = micro_config(tmp_path / "run")
    before = {s.id: s for s in build_plan(StudyConfig.model_validate(raw))}
    raw["merge"]["parameters"] = {**SWEEP}
    after = {s.id: s for s in build_plan(StudyConfig.model_validate(raw))}
    assert before.keys() == after.keys()  # the same stages: the sweep lives inside each merge stage
    assert after["merge_1x"].parameters["density"] == [0.1, 0.5, 0.9]
    changed = {k for k in before if before[k].fingerprint != after[k].fingerprint}
    assert changed == {"merge_1x", "merge_1x_cloned", "merge_2x", "eval_merge_1x", "eval_merge_1x_cloned",
                       "eval_merge_2x", "report"}


@pytest.mark.parametrize("density, message", [
    ([], "at least one value"),
    ([0.3, 0.3], "lists a value twice"),
    ([0.5, 1.5], "outside"),
    (["x"], "must be a number"),
])
def test_bad_sweeps_are_one_error_naming_the_parameter(tmp_path, density, message):
    raw = micro_config(tmp_path / "run")
    raw["merge"]["parameters"] = {"density": density}
    with pytest.raises(GrowmergeError, match=message) as err:
        parse(StudyConfig, raw, "study.yaml")
    assert "merge.parameters" in str(err.value) and "\n" not in str(err.value)


def finetuned(path: Path, base: Path, seed: int) -> Path:
    other = make_tiny_llama(path, seed=seed, layers=1, hidden=32, intermediate=64, heads=2, kv_heads=1)
    b, o = load_file(base / "model.safetensors"), load_file(other / "model.safetensors")
    save_file({k: b[k] + 0.05 * (o[k] - b[k]) for k in b}, other / "model.safetensors", metadata={"format": "pt"})
    return path


def test_merge_grid_writes_one_cell_per_value_and_skips_the_unchanged(tmp_path):
    base = make_tiny_llama(tmp_path / "en", layers=1, hidden=32, intermediate=64, heads=2, kv_heads=1)
    models = {lang: finetuned(tmp_path / lang, base, seed) for seed, lang in enumerate(("is", "fa"), start=1)}
    params = {"density": [0.2, 0.9], "normalize": True, "int8_mask": True, "weight": 1.0, "dtype": "float32"}
    outs = merge_grid(models, base, ["linear", "ties"], None, tmp_path / "grid", params)
    rel = sorted(str(p.relative_to(tmp_path / "grid")) for p in outs)
    assert rel == ["linear/fa+is", "ties@density=0.2/fa+is", "ties@density=0.9/fa+is"]
    metas = {r: read_meta(tmp_path / "grid" / r) for r in rel}
    assert len({m["fingerprint"] for m in metas.values()}) == 3
    sparse = load_file(tmp_path / "grid" / "ties@density=0.2" / "fa+is" / "model.safetensors")
    dense = load_file(tmp_path / "grid" / "ties@density=0.9" / "fa+is" / "model.safetensors")
    name = "model.layers.0.mlp.up_proj.weight"
    assert not sparse[name].equal(dense[name])  # the density reached the method
    # a cell of the sweep is exactly the scalar merge with that density
    single = merge_grid(models, base, ["ties"], None, tmp_path / "single", {**params, "density": 0.9})
    assert [p.parent.name for p in single] == ["ties"]
    assert load_file(single[0] / "model.safetensors")[name].equal(dense[name])
    assert read_meta(single[0])["fingerprint"] == metas["ties@density=0.9/fa+is"]["fingerprint"]
    # a wider sweep merges only the new value
    stamp = (tmp_path / "grid" / "ties@density=0.2" / "fa+is" / "model.safetensors").stat().st_mtime_ns
    merge_grid(models, base, ["ties"], None, tmp_path / "grid", {**params, "density": [0.2, 0.5, 0.9]})
    assert (tmp_path / "grid" / "ties@density=0.2" / "fa+is" / "model.safetensors").stat().st_mtime_ns == stamp
    assert (tmp_path / "grid" / "ties@density=0.5" / "fa+is" / "model.safetensors").is_file()
    with pytest.raises(GrowmergeError, match="takes one value, not a list"):
        merge_grid(models, base, ["ties"], None, tmp_path / "grid", {**params, "dtype": ["float32", "float16"]})


def test_the_demo_config_plans_as_before():
    """The demo's merge stage carries its scalar parameters, so its cells keep their <method>/ names."""
    from growmerge.study.spec import load_study

    cfg = load_study(ROOT / "configs" / "demo.yaml")
    merge = next(s for s in build_plan(cfg) if s.id == "merge_1x")
    assert merge.parameters == {"density": 0.5, "normalize": True, "int8_mask": True}
    assert [label for m in merge.methods for label, _ in method_variants(m, merge.parameters)] == merge.methods


def swept_results(run_dir, la_at: dict[str, dict[float, float]], linear: float = 0.80):
    """Synthetic results of a 1x density sweep on LA: la_at[method][density] is every cell's score."""
    from itertools import combinations

    from growmerge.ledger.store import Results

    res = Results(run_dir)
    langs = ("sv", "da", "fa")
    score = lambda model, lang, v: dict(model=model, step=-1, lang=lang, task="la", dataset="set",  # noqa: E731
                                        metric="accuracy", value=v, n=20000)
    scores = []
    for lang in langs:
        res.add_model(f"1x_{lang}", "adapt", setup="1x", scale="1x", languages=[lang])
        scores.append(score(f"1x_{lang}", lang, 0.85))
    for pair in combinations(sorted(langs), 2):
        cells = [("linear", linear)] + [(f"{m}@density={d!r}", v) for m, by in la_at.items() for d, v in by.items()]
        for label, value in cells:
            name = f"merge/1x/{label}/{'+'.join(pair)}"
            res.add_merge(name, label.split("@")[0], "1x", pair)
            scores += [score(name, lang, value) for lang in pair]
    res.add_scores(scores)
    return res


def finding_line(res, text):
    from growmerge.report import findings

    return next((f for f in findings(res) if f["text"] == text), None)


def test_the_density_line_follows_the_numbers(tmp_path):
    from growmerge.report.findings import FAILS, HOLDS, INCONCLUSIVE
    from growmerge.report.sweep import DENSITY_TEXT

    recovers = {"ties": {0.1: 0.55, 0.9: 0.795}, "dare_ties": {0.1: 0.50, 0.9: 0.79}}
    with swept_results(tmp_path / "a", recovers) as res:
        line = finding_line(res, DENSITY_TEXT)
        assert line["status"] == HOLDS, line["evidence"]
        assert "LA dare_ties density 0.9 vs 0.1: 0.790 vs 0.500" in line["evidence"]
        # the paper's method ranking pools the densities of a swept method (no value silently wins)
        seven = finding_line(res, "Methods: linear ≈ task arithmetic > MultiSlerp > TIES > DARE-TIES (≈ chance).")
        assert "LA TIES > DARE-TIES: 0.673 vs 0.645" in seven["evidence"]
    still_broken = {"ties": {0.1: 0.50, 0.9: 0.52}, "dare_ties": {0.1: 0.50, 0.9: 0.50}}
    with swept_results(tmp_path / "b", still_broken) as res:
        line = finding_line(res, DENSITY_TEXT)
        assert line["status"] == FAILS and "≈ linear (within 0.02): 0.520 vs 0.800" in line["evidence"]
    with swept_results(tmp_path / "c", {"ties": {0.1: 0.55, 0.9: 0.795}}) as res:
        assert finding_line(res, DENSITY_TEXT)["status"] == INCONCLUSIVE  # DARE-TIES not swept
    with swept_results(tmp_path / "d", {}) as res:
        assert finding_line(res, DENSITY_TEXT) is None  # no sweep: no line
