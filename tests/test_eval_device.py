"""Scoring takes a device: the model and the IP reference model are both loaded where the command
(`growmerge eval --device`) or the study (`device:`) says."""

from __future__ import annotations

import pytest
from test_readers import write_jsonl

from growmerge.errors import GrowmergeError
from growmerge.evaluate.run import score_model
from growmerge.evaluate.scorer import Scorer
from growmerge.evaluate.tasks import ScoreEnv

PARALLEL = [{"id": 1, "en": "The dog sleeps.", "tgt": "Hunden sover.", "lang": "sv"},
            {"id": 2, "en": "The fox jumps over the fence.", "tgt": "Räven hoppar över staketet.", "lang": "sv"}]


def test_the_ip_reference_is_loaded_on_the_scoring_device(tiny_llama, tmp_path):
    model, reference = tiny_llama("model", seed=1), tiny_llama("reference", seed=2)
    parallel = write_jsonl(tmp_path / "sv.jsonl", PARALLEL)
    scorer = Scorer.from_dir(model, device="cpu")

    def ip(device: str, cache: str) -> float:
        env = ScoreEnv(reference=reference, cache_dir=tmp_path / cache, device=device)
        rows = score_model(model, "sv", {"ip": [parallel]}, env, scorer=scorer)
        return next(r["value"] for r in rows if r["metric"] == "ip")

    # the model is already on the CPU: only the reference can be the one asked for on a GPU
    with pytest.raises(GrowmergeError, match="device cuda: torch sees no CUDA device"):
        ip("cuda", "c1")
    assert ip("cpu", "c2") == ip("auto", "c3") > 0  # explicit cpu scores as auto does on this machine


def test_eval_command_passes_the_device_to_the_reference(tiny_llama, tmp_path, capsys):
    from growmerge.cli import run_app

    model, reference = tiny_llama("model", seed=1), tiny_llama("reference", seed=2)
    parallel = write_jsonl(tmp_path / "sv.jsonl", PARALLEL)
    args = ["eval", str(model), "--lang", "sv", "--ip", str(parallel), "--reference", str(reference),
            "--cache-dir", str(tmp_path / "cache")]
    capsys.readouterr()
    assert run_app(args + ["--device", "cpu"]) == 0
    assert "ip" in capsys.readouterr().out
    assert run_app(args + ["--device", "cuda:1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "torch sees no CUDA device" in err
