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
