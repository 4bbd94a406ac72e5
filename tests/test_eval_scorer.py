"""The scorer against lm-eval-harness's loglikelihood, prefix sharing, and Information Parity."""

from __future__ import annotations

import json
import random

import pytest
import torch

from conftest import shared_path
from growmerge.evaluate.pairs import read_blimp, read_own, score_pairs
from growmerge.evaluate.parity import information_parity, reference_nll
from growmerge.evaluate.scorer import Scorer

BLIMP_PER_PARADIGM = 25  # 12 paradigms × 25 pairs = 300 pairs (600 lm-eval requests)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from conftest import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("eval") / "tiny", layers=2, hidden=64)


@pytest.fixture(scope="module")
def lm_eval_model(model_dir):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(model_dir), batch_size=32, device="cpu", dtype="float32")


def lm_eval_pair_scores(lm, pairs: list[tuple[str, str]]) -> list[tuple[float, float]]:
    """What lm-eval's multiple_choice tasks send: empty context, each sentence as a continuation."""
    from lm_eval.api.instance import Instance

    reqs = [Instance(request_type="loglikelihood", doc={}, arguments=("", s), idx=i)
            for i, p in enumerate(pairs) for s in p]
    lls = [r[0] for r in lm.loglikelihood(reqs, disable_tqdm=True)]
    return list(zip(lls[0::2], lls[1::2]))


def blimp_sample() -> list[dict]:
    rows = []
    for f in sorted(shared_path("blimp").glob("*.jsonl")):
        rows += read_blimp(f).pairs[:BLIMP_PER_PARADIGM]
    return rows


def assert_same_decisions(ours, theirs):
    import numpy as np

    # lm-eval's acc: argmax over [good, bad]; np.argmax picks the first (good) on a tie.
    lm_correct = [int(np.argmax([g, b]) == 0) for g, b in theirs]
    our_correct = [int(g >= b) for g, b in ours]
    assert our_correct == lm_correct
    gaps = [abs((g - b) - (tg - tb)) for (g, b), (tg, tb) in zip(ours, theirs)]
    assert max(gaps) < 1e-4
    assert 0 < sum(our_correct) < len(our_correct)  # a real mix of decisions was compared


@pytest.mark.parametrize("share", [True, False])
def test_blimp_decisions_match_lm_eval(model_dir, lm_eval_model, share):
    rows = blimp_sample()
    assert len(rows) == 12 * BLIMP_PER_PARADIGM
    scorer = Scorer.from_dir(model_dir, share_prefix=share, token_budget=512)
    result = score_pairs(scorer, rows, space_prefix=True)  # lm-eval `blimp`: target delimiter " "
    theirs = lm_eval_pair_scores(lm_eval_model, [(" " + r["good"], " " + r["bad"]) for r in rows])
    assert_same_decisions(result["scores"], theirs)
    assert result["n"] == len(rows)


@pytest.mark.parametrize("share", [True, False])
def test_total_log_probs_match_lm_eval(model_dir, lm_eval_model, share):
    pairs = [(" " + r["good"], " " + r["bad"]) for r in blimp_sample()[::5]]
    ours = Scorer.from_dir(model_dir, share_prefix=share).score_minimal_pairs(pairs)
    theirs = lm_eval_pair_scores(lm_eval_model, pairs)
    assert max(abs(a - b) for p, q in zip(ours, theirs) for a, b in zip(p, q)) < 1e-4


def test_multiblimp_style_own_jsonl_matches_lm_eval(model_dir, lm_eval_model, tmp_path):
    # MultiBLiMP-style agreement pairs in several languages, scored without a leading space.
    base = [("Hundurinn sefur.", "Hundurinn sofa."), ("Koer magab.", "Koer magavad."),
            ("Hunden sover.", "Hunden sova."), ("The dogs sleep.", "The dogs sleeps."),
            ("Ég fer heim.", "Ég ferð heim."), ("Me elame siin.", "Me elab siin.")]
    rng = random.Random(0)
    lines = []
    for i in range(60):
        good, bad = base[i % len(base)]
        extra = rng.choice(["", " Í dag", " Nu", " Today"])
        lines.append(json.dumps({"good": good[:-1] + extra + ".", "bad": bad[:-1] + extra + ".", "phenomenon": f"p{i % 3}"}))
    path = tmp_path / "own.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ps = read_own(path)
    result = score_pairs(Scorer.from_dir(model_dir), ps)
    theirs = lm_eval_pair_scores(lm_eval_model, [(r["good"], r["bad"]) for r in ps.pairs])
    assert_same_decisions(result["scores"], theirs)
    assert set(result["per_phenomenon"]) == {"p0", "p1", "p2"}


def test_prefix_sharing_equals_unshared(tiny_llama):
    scorer = Scorer.from_dir(tiny_llama(hidden=64, layers=3), token_budget=96)  # many small batches
    groups = [
        ["The dog runs over the fence.", "The dog run over the fence."],
        ["Koer", "Koer hüppab"],  # one alternative is a prefix of the other
        ["Hunden springer.", "Hunden springa.", "Hunden sprang."],  # K = 3
        ["A", "B"],  # nothing shared but the BOS
        ["Hundurinn stökk yfir girðinguna og hljóp heim.", "Hundurinn stökk yfir girðinguna og hlupu heim."],
    ] * 3
    shared = scorer.score_groups(groups, share_prefix=True)
    plain = scorer.score_groups(groups, share_prefix=False)
    diffs = [abs(a - b) for g1, g2 in zip(shared, plain) for a, b in zip(g1, g2)]
    assert max(diffs) < 1e-4
    assert all(x < 0 for g in shared for x in g)
    # Conditional scores drop the common prefix: same differences, shared or not.
    for share in (True, False):
        cond = scorer.score_groups(groups, share_prefix=share, conditional=True)
        for c, full in zip(cond, plain):
            assert [x - c[0] for x in c] == pytest.approx([x - full[0] for x in full], abs=1e-4)
        assert cond[0][0] > plain[0][0] + 1e-3  # the shared "The dog ... over the fence" part is left out


def test_loglikelihood_is_a_difference_of_sequence_scores(tiny_llama):
    scorer = Scorer.from_dir(tiny_llama())
    ctx, cont = "The quick brown", " fox jumps"
    lp = scorer.loglikelihood([(ctx, cont), ("The quick brown ", "fox jumps")])
    whole, prefix = scorer.sequence_nll([ctx + cont, ctx])
    assert lp[0] == pytest.approx(prefix - whole, abs=1e-4)
    assert lp[1] == pytest.approx(lp[0], abs=1e-6)  # the trailing space moves to the continuation


def test_output_layer_runs_in_float32_on_bf16(tiny_llama):
    path = tiny_llama()
    s32 = Scorer.from_dir(path)
    s16 = Scorer.from_dir(path, dtype=torch.bfloat16)
    a, b = s32.sequence_nll(["Hunden springer över staketet."]), s16.sequence_nll(["Hunden springer över staketet."])
    assert a[0] == pytest.approx(b[0], rel=0.05)


def test_ip_is_one_for_own_reference(model_dir, tmp_path):
    par = tmp_path / "par.jsonl"
    rows = [{"id": i, "en": t, "tgt": t, "lang": "sv"} for i, t in
            enumerate(["The dog sleeps.", "Open the file menu.", "Click the button to save."])]
    par.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scorer = Scorer.from_dir(model_dir)
    ref = reference_nll(model_dir, par, tmp_path / "cache", scorer=scorer)
    ip = information_parity(scorer, rows, ref)
    assert ip["value"] == pytest.approx(1.0, abs=1e-6) and ip["std"] == pytest.approx(0.0, abs=1e-6)
    assert ip["n"] == 3
    # The reference NLLs are cached per (model fingerprint, dataset): a second call never scores.
    cached = list((tmp_path / "cache" / "reference_nll").glob("*.json"))
    assert len(cached) == 1

    class Exploding:
        def sequence_nll(self, texts):
            raise AssertionError("reference recomputed despite the cache")

    assert reference_nll(model_dir, par, tmp_path / "cache", scorer=Exploding()) == ref
    # A different target side changes IP away from 1.
    other = [dict(r, tgt=r["tgt"].upper()) for r in rows]
    assert information_parity(scorer, other, ref)["value"] != pytest.approx(1.0, abs=1e-3)


def test_ip_skips_and_counts_texts_too_long_for_the_model(model_dir, tmp_path):
    par = tmp_path / "par.jsonl"
    rows = [{"id": 0, "en": "Short.", "tgt": "Kort."}, {"id": 1, "en": "Long. " * 200, "tgt": "Lång. " * 200}]
    par.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scorer = Scorer.from_dir(model_dir)
    ref = reference_nll(model_dir, par, tmp_path / "cache", scorer=scorer)
    assert ref[0] > 0 and ref[1] is None  # 1,200 characters exceed the tiny model's 256 positions
    ip = information_parity(scorer, rows, ref)
    assert ip["n"] == 1 and ip["skipped"] == 1


def test_tiled_logsumexp_equals_a_full_log_softmax_normaliser(monkeypatch):
    from growmerge.evaluate import scorer as sc

    monkeypatch.setattr(sc, "HEAD_TILE_VOCAB", 64)  # 1000 = 15 full tiles and a ragged one
    torch.manual_seed(0)
    x, w, bias = torch.randn(37, 16), torch.randn(1000, 16), torch.randn(1000)
    for b, cap in [(None, None), (bias, 3.0)]:
        logits = torch.nn.functional.linear(x.double(), w.double(), None if b is None else b.double())
        if cap:
            logits = torch.tanh(logits / cap) * cap
        got = sc._tiled_logsumexp(x, w, b, cap).double()
        assert torch.allclose(got, torch.logsumexp(logits, -1), atol=1e-5)


def test_head_tiles_and_row_queue_change_no_score(tiny_llama, monkeypatch):
    from growmerge.evaluate import scorer as sc

    scorer = Scorer.from_dir(tiny_llama(hidden=64, layers=2))
    groups = [["The dog runs over the fence.", "The dog run over the fence."],
              ["Hunden springer.", "Hunden springa.", "Hunden sprang."], ["A", "B"]] * 4
    default = {s: scorer.score_groups(groups, share_prefix=s, conditional=s) for s in (True, False)}
    # Tiny tiles, a ragged last vocabulary tile (320 = 3 × 100 + 20) and a queue flushed mid-batch.
    monkeypatch.setattr(sc, "HEAD_TILE_VOCAB", 100)
    monkeypatch.setattr(sc, "HEAD_CHUNK_ROWS", 7)
    monkeypatch.setattr(sc, "HEAD_QUEUE_ROWS", 5)
    for s in (True, False):
        small = scorer.score_groups(groups, share_prefix=s, conditional=s)
        assert [x for g in small for x in g] == pytest.approx([x for g in default[s] for x in g], abs=1e-5)
    # And both equal the model's own logits, log-softmaxed in float64.
    text = "Hunden springer över staketet."
    ids = [scorer.bos] + scorer.encode(text)
    with torch.no_grad():
        logp = scorer.model(torch.tensor([ids])).logits[0].double().log_softmax(-1)
    manual = sum(float(logp[t - 1, ids[t]]) for t in range(1, len(ids)))
    assert scorer.sequence_nll([text])[0] == pytest.approx(-manual, abs=1e-4)


def test_onednn_linears_are_exact_and_restored(tiny_llama):
    from growmerge.evaluate.scorer import _onednn_linears

    model = Scorer.from_dir(tiny_llama()).model
    ids = torch.tensor([[1, 5, 9, 200, 7]])
    with torch.no_grad():
        plain = model(ids).logits
        with _onednn_linears(model):
            inside = model(ids).logits
    assert torch.allclose(plain, inside, atol=1e-5)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and not any("forward" in vars(m) for m in linears)
