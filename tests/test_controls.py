"""The document-boundary convention of scoring and the unigram control: the scorer's units, a micro
study whose ledger and report carry the controls, and a demo-sized model scored under both conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import tiny_tokenizer
from growmerge.errors import GrowmergeError
from growmerge.evaluate.controls import UNIGRAM, UnigramScorer, entropy, log_probs
from growmerge.evaluate.pairs import score_pairs
from growmerge.evaluate.scorer import DOCUMENT, LM_EVAL, Scorer, boundary_of


def counts_of(tok, text: str) -> np.ndarray:
    counts = np.zeros(len(tok), dtype=np.int64)
    np.add.at(counts, tok.encode(text, add_special_tokens=False), 1)
    return counts


# ---------------------------------------------------------------------------------------------
# The unigram scorer
# ---------------------------------------------------------------------------------------------
def test_unigram_prefers_the_sentence_of_more_frequent_tokens():
    tok = tiny_tokenizer()
    # "fox" is frequent in the training tokens, "dog" rare: the control prefers the ungrammatical
    # sentence built of the frequent word, which is the blind spot it exists to expose.
    counts = counts_of(tok, "the fox " * 50 + "the dog ")
    scorer = UnigramScorer(counts, tok)
    good, bad = "the dog jumps", "the fox fox"
    (lg, lb), = scorer.score_minimal_pairs([(good, bad)], conditional=True)
    assert lb > lg
    result = score_pairs(scorer, [{"good": good, "bad": bad, "phenomenon": "x"}, {"good": bad, "bad": good}])
    assert result["accuracy"] == 0.5 and result["scores"][0][0] < result["scores"][0][1]


def test_unigram_log_probs_are_add_half_and_conditional_keeps_every_gap():
    tok = tiny_tokenizer()
    counts = counts_of(tok, "Hunden springer över staketet. The quick brown fox. " * 3)
    scorer = UnigramScorer(counts, tok)
    n, v = counts.sum(), len(counts)
    text = "Hunden springer."
    ids = tok.encode(text, add_special_tokens=False)
    expected = sum(math.log((counts[i] + 0.5) / (n + 0.5 * v)) for i in ids)
    assert scorer.sequence_nll([text]) == [pytest.approx(-expected, abs=1e-9)]
    assert math.isclose(np.exp(log_probs(counts)).sum(), 1.0, abs_tol=1e-9)
    pairs = [("Hunden springer över.", "Hunden springa över."), ("The quick fox.", "The quick foxes.")]
    full, cond = scorer.score_minimal_pairs(pairs), scorer.score_minimal_pairs(pairs, conditional=True)
    for (a, b), (c, d) in zip(full, cond):
        assert a - b == pytest.approx(c - d, abs=1e-9) and c > a  # the common prefix is left out
    # the entropy of a uniform distribution over V tokens is log V
    assert entropy(np.zeros(64, dtype=np.int64)) == pytest.approx(math.log(64))


def test_unigram_refuses_counts_of_another_tokenizer():
    with pytest.raises(GrowmergeError, match="do not belong together"):
        UnigramScorer(np.ones(10, dtype=np.int64), tiny_tokenizer())


# ---------------------------------------------------------------------------------------------
# The document-boundary convention
# ---------------------------------------------------------------------------------------------
def test_boundary_follows_the_sidecar_and_matches_lm_eval_with_that_prefix(tiny_llama):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from growmerge.artifacts import read_meta, write_meta

    path = tiny_llama()
    assert boundary_of(path) == LM_EVAL and boundary_of("org/some-hub-model") == LM_EVAL
    write_meta(path, {**read_meta(path), "kind": "adapt"})  # as if growmerge had trained it
    assert boundary_of(path) == DOCUMENT
    ours = Scorer.from_dir(path)
    assert ours.boundary == DOCUMENT and ours.bos == ours.tokenizer.eos_token_id != ours.tokenizer.bos_token_id
    with pytest.raises(GrowmergeError, match="document-boundary convention"):
        Scorer.from_dir(path, boundary="bos")
    # lm-eval's HFLM with its prefix token set to the EOS makes the same decisions: the convention is
    # only which token every text follows.
    pairs = [("Hunden springer över staketet.", "Hunden springa över staketet."),
             ("The quick brown fox jumps.", "The quick brown fox jump."), ("Koer hüppab.", "Koer hüppavad.")] * 4
    lm = HFLM(pretrained=str(path), batch_size=8, device="cpu", dtype="float32",
              prefix_token_id=ours.tokenizer.eos_token_id)
    reqs = [Instance(request_type="loglikelihood", doc={}, arguments=("", s), idx=i)
            for i, p in enumerate(pairs) for s in p]
    ll = [r[0] for r in lm.loglikelihood(reqs, disable_tqdm=True)]
    mine = ours.score_minimal_pairs(pairs)
    assert max(abs(a - b) for a, b in zip([x for p in mine for x in p], ll)) < 1e-4
    other = Scorer.from_dir(path, boundary=LM_EVAL).score_minimal_pairs(pairs)
    assert max(abs(a - b) for p, q in zip(mine, other) for a, b in zip(p, q)) > 1e-3  # a different context


# ---------------------------------------------------------------------------------------------
# A micro study: the control stage, the ledger, the report
# ---------------------------------------------------------------------------------------------
def micro_config(run_dir) -> dict:
    """One target language, the 1x scale only, a demo-sized model (demo-small), a few steps."""
    return {
        "name": "controls", "seed": 0, "run_dir": str(run_dir),
        "model": {"init": "demo-small", "factor": 2},
        "data": {
            "languages": ["is"], "seq_len": 64, "tokenizer": {"vocab_size": 512, "sample_chars": 40000},
            "streams": {
                "code": {"lang": "code", "sources": [{"kind": "python_code"}], "max_chars": 30000},
                "en": {"lang": "en", "sources": [{"kind": "libreoffice_help"}], "max_chars": 60000,
                       "split": {"en_seed": 0.8, "en_base": 0.2}},
                "is": {"lang": "is", "sources": [{"kind": "libreoffice_ui"}], "max_chars": 60000, "eval_fraction": 0.2},
            },
        },
        "train": {"global_batch": 8, "checkpoints": 2, "threads": 1, "lr": 3.0e-3},
        "phases": {"seed_code": {"steps": 10}, "seed_mixed": {"steps": 30}, "base": {"steps": 10},
                   "adapt": {"steps": 30}, "multi": {"steps": 2}},
        "scales": ["1x"], "multilingual": False,
        "merge": {"methods": []},
        "eval": {"tasks": {"ip": {"max_pairs": 20}, "la": {"pairs": 40}, "fk": {"pairs": 40}}, "off_the_shelf": [],
                 "checkpoints": "none"},
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from growmerge.study import runner
    from growmerge.study.spec import StudyConfig

    cfg = StudyConfig.model_validate(micro_config(tmp_path_factory.mktemp("controls") / "run"))
    runner.run_study(cfg, echo=lambda m: None)
    return cfg.root


def test_micro_study_records_the_unigram_control_and_the_convention(study):
    from growmerge.evaluate.controls import read_counts
    from growmerge.ledger import Results

    with Results(study) as res:
        assert res.models(name=UNIGRAM)[0]["kind"] == "control"
        rows = res.query("SELECT * FROM scores WHERE model = ? AND metric = 'accuracy'", (UNIGRAM,))
        assert {(r["lang"], r["task"]) for r in rows} == {("is", "la"), ("is", "fk"), ("en", "la"), ("en", "fk")}
        assert {r["boundary"] for r in rows} == {"none"}
        own = res.query("SELECT DISTINCT model, boundary FROM scores WHERE model != ?", (UNIGRAM,))
        assert own and {r["boundary"] for r in own} == {DOCUMENT}  # our models: the EOS convention
        decisions = res.query("SELECT model, detail, n FROM scores WHERE lang = 'is' AND task = 'la' "
                              "AND metric = 'decisions'")
        assert {r["model"] for r in decisions} >= {UNIGRAM, "1x_is", "base_1x"}
        assert all(len(r["detail"]) == r["n"] for r in decisions)
    counts = read_counts(study / "controls" / UNIGRAM)
    assert set(counts) == {"code", "en", "is"} and all(len(c) == 512 for c in counts.values())
    # every training token of the language was counted: its shard's tokens
    import json

    meta = json.loads((study / "data" / "is" / "train.meta.json").read_text())
    assert int(counts["is"].sum()) == meta["tokens"]


def test_report_shows_the_controls_and_the_loss_vs_entropy_table(study):
    html = (study / "report" / "index.html").read_text(encoding="utf-8")
    for section in ('id="controls-la"', 'id="controls-fk"', 'id="la-phenomena"', 'id="loss-entropy"'):
        assert section in html
    part = html[html.index('id="controls-la"'):html.index('id="controls-fk"')]
    assert ">1x_is</td>" in part and ">base_1x</td>" in part and "agrees with control" in part
    assert "no data" not in part and "figure failed" not in html
    loss = html[html.index('id="loss-entropy"'):]
    assert ">1x_is</td><td class=\"\">is</td>" in loss and "unigram entropy" in loss
    assert "Within noise of the unigram control" in html  # the findings table's column


def test_a_demo_sized_model_under_both_conventions(study, capsys):
    """IP and LA of the adapted demo-small model under its own convention (EOS, the token its training
    documents follow) and under lm-eval's (the tokenizer's BOS, never seen in training)."""
    from growmerge.evaluate.run import score_model
    from growmerge.evaluate.tasks import ScoreEnv
    from growmerge.ledger import Results

    model = study / "models" / "1x_is"
    sets = {"ip": [study / "eval" / "ip" / "is.jsonl"], "la": [study / "eval" / "la" / "is.jsonl"]}
    env = ScoreEnv(reference=study / "models" / "base_1x", cache_dir=study / "cache")
    got = {}
    for boundary in (DOCUMENT, LM_EVAL):
        rows = score_model(model, "is", sets, env, scorer=Scorer.from_dir(model, boundary=boundary))
        got[boundary] = {r["task"]: r["value"] for r in rows if r["metric"] in ("ip", "accuracy")}
    with capsys.disabled():
        print(f"\n1x_is (demo-small): document (EOS) {got[DOCUMENT]}; lm-eval (BOS) {got[LM_EVAL]}")
    with Results(study) as res:
        stored = {r["task"]: r["value"] for r in res.query(
            "SELECT task, value FROM scores WHERE model = '1x_is' AND lang = 'is' AND metric IN ('ip', 'accuracy') "
            "AND task IN ('ip', 'la')")}
    assert stored == pytest.approx(got[DOCUMENT], abs=1e-9)  # the study scored it under its own convention
    assert got[DOCUMENT]["ip"] != pytest.approx(got[LM_EVAL]["ip"], abs=1e-6)
    # the trained model predicts a document's first tokens better after the EOS than after the untrained BOS
    texts = [line for line in (study / "data" / "eval" / "sentences" / "is.txt").read_text().splitlines()[:40] if line]
    nll = {b: sum(Scorer.from_dir(model, boundary=b).sequence_nll(texts, skip_too_long=True)) for b in (DOCUMENT, LM_EVAL)}
    assert nll[DOCUMENT] < nll[LM_EVAL]


# ---------------------------------------------------------------------------------------------
# The ledger and the findings
# ---------------------------------------------------------------------------------------------
def test_an_older_ledger_gains_the_new_columns_and_stays_readable(tmp_path):
    import sqlite3

    from growmerge.ledger import Results

    old = sqlite3.connect(tmp_path / "results.sqlite")  # the scores table as older runs wrote it
    old.execute("CREATE TABLE scores (model TEXT NOT NULL, step INTEGER NOT NULL, lang TEXT NOT NULL, task TEXT NOT "
                "NULL, dataset TEXT NOT NULL, metric TEXT NOT NULL, value REAL, n INTEGER, fingerprint TEXT, "
                "PRIMARY KEY (model, step, lang, task, dataset, metric))")
    old.execute("INSERT INTO scores VALUES ('m', -1, 'sv', 'la', 'd', 'accuracy', 0.7, 10, 'f')")
    old.commit()
    old.close()
    row = dict(model="m", step=-1, lang="da", task="la", dataset="d", metric="accuracy", value=0.6, n=10)
    with Results(tmp_path) as res:
        got = res.query("SELECT lang, value, boundary, detail FROM scores ORDER BY lang")
        assert got == [{"lang": "sv", "value": 0.7, "boundary": None, "detail": None}]
        res.add_scores([{**row, "boundary": DOCUMENT}])
        assert res.query("SELECT boundary FROM scores WHERE lang = 'da'") == [{"boundary": DOCUMENT}]
        with pytest.raises(GrowmergeError, match="unknown document-boundary convention 'bos'"):
            res.add_scores([{**row, "boundary": "bos"}])


def test_findings_mark_claims_within_noise_of_the_unigram_control(tmp_path):
    from test_report import LANGS, N, TASK_BASE, build_study

    from growmerge.report import findings
    from growmerge.report.view import StudyView

    res = build_study(tmp_path)  # the control far below every model: nothing marked
    assert all(f["control"] == "" and "unigram control" not in f["evidence"] for f in findings(res))
    view = StudyView(res)
    assert view.agreement("sv-1x", "sv", "la") == (0.75, 4)  # "1110" vs the control's "1100"
    # The control as good as the 1x runs on LA: finding 1's LA claim rests on a frequency-level score.
    off = {"sv": 0.02, "da": 0.0, "fa": -0.04}
    res.add_scores([dict(model=UNIGRAM, step=-1, lang=lang, task="la", dataset="set", metric="accuracy",
                         value=TASK_BASE["la"] + off[lang] - 0.001, n=N) for lang in LANGS])
    found = findings(res)
    assert found[0]["status"] == "✓" and found[0]["control"] == "1 of 2 claims ≈ unigram"
    assert "LA 1x vs the strongest of 1 reference(s), smollm2: 0.693 vs 0.500" in found[0]["evidence"]
    assert "[≈ unigram control: 0.693 vs 0.692]" in found[0]["evidence"]


def test_shard_counts_whole_and_on_evenly_spaced_sequences(tmp_path):
    from growmerge.artifacts import write_json_atomic
    from growmerge.data.shards import meta_path
    from growmerge.evaluate.controls import shard_counts

    tokens = (np.arange(40 * 8) % 7).astype(np.uint16).reshape(40, 8)
    tokens[::4] = 3  # every 4th sequence is all 3s
    path = tmp_path / "train.bin"
    path.write_bytes(tokens.tobytes())
    write_json_atomic(meta_path(path), {"dtype": "uint16", "seq_len": 8, "sequences": 40, "tokens": 320, "complete": True})
    assert (shard_counts(path, 10) == np.bincount(tokens.reshape(-1), minlength=10)).all()
    sampled = shard_counts(path, 10, max_tokens=80)  # every 4th sequence: the all-3 ones
    assert sampled.tolist() == [0, 0, 0, 80, 0, 0, 0, 0, 0, 0]
