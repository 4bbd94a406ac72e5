"""What predicts mergeability (issue 16, item 3): linear CKA of hidden states, the rank correlation,
and the option's plan."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from growmerge.analysis.similarity import cka_by_pair, linear_cka, pooled_states
from growmerge.config import parse
from growmerge.errors import GrowmergeError
from growmerge.report.predictors import ranks, spearman
from growmerge.study.plan import build_plan
from growmerge.study.spec import StudyConfig
from test_study import micro_config


def feature_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """The definition, in the feature form: |Bc^T Ac|_F^2 / (|Ac^T Ac|_F |Bc^T Bc|_F)."""
    a, b = a.double() - a.double().mean(0), b.double() - b.double().mean(0)
    return float((b.T @ a).pow(2).sum() / ((a.T @ a).norm() * (b.T @ b).norm()))


def test_linear_cka_is_one_for_equal_representations_up_to_rotation_and_scale():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 8, generator=g)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q + 5.0) == pytest.approx(1.0)  # rotation, scale, shift
    noise = torch.randn(40, 8, generator=g)
    near, far = linear_cka(x, x + 0.1 * noise), linear_cka(x, noise)
    assert 0.9 < near < 1.0 and far < 0.6
    # the definition, on both of its branches: more examples than features, and fewer
    for n, d1, d2 in ((30, 5, 7), (6, 20, 12)):
        a, b = torch.randn(n, d1, generator=g), torch.randn(n, d2, generator=g)
        assert linear_cka(a, b) == pytest.approx(feature_cka(a, b), rel=1e-9)
    assert math.isnan(linear_cka(torch.ones(5, 3), torch.randn(5, 3, generator=g)))  # constant: undefined
    with pytest.raises(GrowmergeError, match="same examples"):
        linear_cka(torch.randn(5, 3), torch.randn(6, 3))


def test_spearman_ranks_ties_and_permutation_p_value():
    assert list(ranks(np.array([3.0, 1.0, 3.0, 2.0]))) == [3.5, 1.0, 3.5, 2.0]
    rho, p, n = spearman([1, 2, 3, 4, 5], [10, 20, 30, 40, 50])
    assert (rho, n) == (pytest.approx(1.0), 5) and p == pytest.approx(2 / 120)  # exact: 2 of 5! as extreme
    rho, p, _ = spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])
    assert rho == pytest.approx(-1.0) and p == pytest.approx(2 / 120)
    rho, p, _ = spearman(range(12), [x ** 3 for x in range(12)])  # monotone: 1 whatever the shape
    assert rho == pytest.approx(1.0) and 0 < p < 0.001
    rho, p, _ = spearman([1, 2, 3, 4], [2, 1, 4, 3])
    assert rho == pytest.approx(0.6) and p > 0.2
    assert all(math.isnan(v) for v in spearman([1, 2], [3, 4])[:2])
    assert all(math.isnan(v) for v in spearman([1, 2, 3], [7, 7, 7])[:2])


def test_cka_of_tiny_models_pair_by_pair(tmp_path, tiny_llama):
    a = tiny_llama("a", seed=1, layers=2)
    same = tiny_llama("a_copy", seed=1, layers=2)
    other = tiny_llama("b", seed=2, layers=2)
    sentences = {"is": ["Hundurinn stökk yfir girðinguna.", "Koer hüppab.", "def f(x): return x"],
                 "sv": ["Hunden springer över staketet.", "The quick brown fox.", "Koer hüppab üle aia."],
                 "fa": ["The lazy dog.", "return x + 1", "Hunden springer."]}
    states = pooled_states(a, sentences["is"])
    assert len(states) == 3 and states[0].shape == (3, 64)  # embeddings + 2 layers, one row per sentence
    result = cka_by_pair({"is": a, "sv": same, "fa": other}, sentences)
    by_pair = {"+".join(p["languages"]): p for p in result["pairs"]}
    assert set(by_pair) == {"fa+is", "fa+sv", "is+sv"} and result["layers"] == 3
    assert by_pair["is+sv"]["cka"] == pytest.approx([1.0] * 3)  # the same weights: the same states
    assert by_pair["is+sv"]["sentences"] == 6  # the two languages' sentences
    assert all(0 < c < 1 for c in by_pair["fa+is"]["cka"][1:])
    assert by_pair["fa+is"]["cka_mean"] == pytest.approx(np.mean(by_pair["fa+is"]["cka"][1:]))
    with pytest.raises(GrowmergeError, match="no parallel sentences for sv"):
        cka_by_pair({"is": a, "sv": same}, {"is": sentences["is"]})


def test_the_option_plans_a_similarity_stage_per_merged_scale_and_needs_ip(tmp_path):
    raw = micro_config(tmp_path / "run")
    assert not [s for s in build_plan(StudyConfig.model_validate(raw)) if s.kind == "similarity"]  # off by default
    raw["analysis"] = {"predictors": True}
    stages = {s.id: s for s in build_plan(StudyConfig.model_validate(raw))}
    sims = [s for s in stages.values() if s.kind == "similarity"]
    assert [s.id for s in sims] == ["similarity_1x", "similarity_1x_cloned", "similarity_2x"]
    assert set(stages["similarity_2x"].deps) == {"2x_is", "2x_fa", "pairs"} and "similarity_2x" in stages["report"].deps
    raw["eval"]["tasks"] = {"la": {"pairs": 10}}
    with pytest.raises(GrowmergeError, match="analysis.predictors needs the ip task"):
        parse(StudyConfig, raw, "study.yaml")


def predictor_results(run_dir, sign: float):
    """Two scales x three pairs: the pair's LA score change is -0.1 * rank; cosine and CKA follow the
    rank with `sign` (+1: the more similar, the better the merge)."""
    import json
    from itertools import combinations

    from growmerge.ledger.store import Results

    res = Results(run_dir)
    langs = ["da", "fa", "sv"]
    score = lambda model, lang, v: dict(model=model, step=-1, lang=lang, task="la", dataset="set",  # noqa: E731
                                        metric="accuracy", value=v, n=20000)
    scores = []
    (run_dir / "analysis").mkdir(parents=True)
    for s, scale in enumerate(("1x", "2x")):
        for lang in langs:
            res.add_model(f"{scale}_{lang}", "adapt", setup=scale, scale=scale, languages=[lang])
            scores.append(score(f"{scale}_{lang}", lang, 0.9))
        pairs, cos = [], [[1.0] * 3 for _ in langs]
        for i, (a, b) in enumerate(combinations(langs, 2)):
            rank = 3 * s + i  # 0..5 over both scales
            name = f"merge/{scale}/linear/{a}+{b}"
            res.add_merge(name, "linear", scale, [a, b])
            scores += [score(name, lang, 0.9 - 0.05 * rank) for lang in (a, b)]
            sim = 0.5 - sign * 0.05 * rank
            pairs.append({"languages": [a, b], "cka": [1.0, sim, sim], "cka_mean": sim, "sentences": 16})
            cos[langs.index(a)][langs.index(b)] = cos[langs.index(b)][langs.index(a)] = sim - 0.4
        (run_dir / "analysis" / f"similarity_{scale}.json").write_text(json.dumps(
            {"languages": langs, "layers": 3, "sentences": {x: 8 for x in langs}, "pairs": pairs}))
        (run_dir / "analysis" / f"vectors_{scale}.json").write_text(json.dumps(
            {"languages": langs, "overall": {"cosine": cos, "norm": [1.0] * 3}}))
    res.add_scores(scores)
    return res


def test_the_predictors_line_and_figure_follow_the_numbers(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from growmerge.report import findings
    from growmerge.report.findings import FAILS, HOLDS
    from growmerge.report.predictors import PREDICTORS_TEXT, fig_predictors
    from growmerge.report.view import StudyView

    for sign, status in ((1.0, HOLDS), (-1.0, FAILS)):
        with predictor_results(tmp_path / f"run{sign:+.0f}", sign) as res:
            line = next(f for f in findings(res) if f["text"] == PREDICTORS_TEXT)
            assert line["status"] == status, line["evidence"]
            assert f"vs cosine: ρ={sign:+.2f} (n=6, p=0.003)" in line["evidence"]
            assert f"vs cka: ρ={sign:+.2f} (n=6, p=0.003)" in line["evidence"]
            fig = fig_predictors(StudyView(res), tmp_path)
            assert fig.files == ["predictors.png", "predictors_cka_layers.png"]
            assert all((tmp_path / name).is_file() for name in fig.files)
            assert len(fig.table["rows"]) == 6 and fig.table["rows"][0][:4] == ["1x", "da+fa", "0.100", "0.500"]
