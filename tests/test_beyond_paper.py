"""Issue 16's study options in one micro study (real offline data, tiny models): a density sweep and
the mergeability predictors, each with its figure and its findings line in the report."""

from __future__ import annotations

import json

import pytest

from growmerge.ledger.store import Results
from growmerge.report import findings
from growmerge.report.findings import FINDINGS
from growmerge.report.predictors import PREDICTORS_TEXT
from growmerge.report.sweep import DENSITY_TEXT
from growmerge.study import runner
from growmerge.study.spec import StudyConfig
from test_study import micro_config

LANGS = ["sv", "da", "fa"]  # three languages: three pairs, so the rank correlation has something to rank


def options_config(run_dir) -> dict:
    raw = micro_config(run_dir)
    raw["data"]["languages"] = LANGS
    streams = raw["data"]["streams"]
    for lang in LANGS:
        streams[lang] = {"lang": lang, "sources": [{"kind": "libreoffice_ui"}], "max_chars": 40000,
                         "eval_fraction": 0.2}
    del streams["is"]
    raw.update(scales=["1x"], multilingual=False, analysis={"predictors": True, "max_sentences": 8})
    raw["merge"] = {"methods": ["linear", "ties"], "scales": ["1x"], "sizes": [2],
                    "parameters": {"density": [0.2, 0.8], "normalize": True, "int8_mask": True}}
    raw["eval"] = {"tasks": {"ip": {"max_pairs": 10}, "la": {"pairs": 10}}, "checkpoints": "none", "off_the_shelf": []}
    return raw


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    cfg = StudyConfig.model_validate(options_config(tmp_path_factory.mktemp("options") / "run"))
    runner.run_study(cfg, echo=lambda m: None)
    return cfg.root


def test_the_density_sweep_runs_through_the_study(study):
    with Results(study) as res:
        merges = {m["name"]: m for m in res.merges()}
        rows = res.query("SELECT DISTINCT s.model FROM scores s JOIN merges m ON s.model = m.name")
    pairs = ["da+fa", "da+sv", "fa+sv"]
    expected = {f"merge/1x/{label}/{p}" for p in pairs for label in ("linear", "ties@density=0.2", "ties@density=0.8")}
    assert set(merges) == expected  # linear takes no density: merged once per pair
    assert {m["method"] for m in merges.values()} == {"linear", "ties"}
    assert len({m["fingerprint"] for m in merges.values()}) == 9
    assert {r["model"] for r in rows} == expected  # every cell scored
    assert (study / "merges" / "1x" / "ties@density=0.8" / "da+sv" / "model.safetensors").is_file()

    found = findings(Results(study))
    line = next(f for f in found if f["text"] == DENSITY_TEXT)
    assert line["number"] == len(FINDINGS) + 1
    assert "LA ties density 0.8 vs 0.2" in line["evidence"] and "LA ties density 0.8 ≈ linear" in line["evidence"]
    assert "dare_ties: not merged with a density sweep" in line["evidence"]
    html = (study / "report" / "index.html").read_text()
    assert 'id="density"' in html and (study / "report" / "density.png").is_file()
    assert DENSITY_TEXT in (study / "report" / "summary.md").read_text()


def test_the_predictors_run_through_the_study(study):
    sim = json.loads((study / "analysis" / "similarity_1x.json").read_text())
    assert sim["languages"] == sorted(LANGS) and sim["sentences"] == {lang: 8 for lang in LANGS}
    assert [p["languages"] for p in sim["pairs"]] == [["da", "fa"], ["da", "sv"], ["fa", "sv"]]
    for p in sim["pairs"]:  # tiny model: embeddings + 2 layers, each a CKA in (0, 1]
        assert len(p["cka"]) == sim["layers"] == 3 and all(0 < c <= 1 + 1e-9 for c in p["cka"])
        assert p["sentences"] == 16

    found = findings(Results(study))
    line = next(f for f in found if f["text"] == PREDICTORS_TEXT)
    assert "LA score change vs cosine: ρ=" in line["evidence"] and "(n=3" in line["evidence"]
    assert "LA score change vs cka: ρ=" in line["evidence"]
    html = (study / "report" / "index.html").read_text()
    assert 'id="predictors"' in html and (study / "report" / "predictors.png").is_file()
    assert (study / "report" / "predictors_cka_layers.png").is_file()
    table = html[html.index('id="predictors"'):]
    assert all(pair in table for pair in ("da+fa", "da+sv", "fa+sv"))


def test_without_the_options_the_findings_are_the_papers_nine(tmp_path):
    with Results(tmp_path / "run") as res:
        assert [f["number"] for f in findings(res)] == list(range(1, len(FINDINGS) + 1))
