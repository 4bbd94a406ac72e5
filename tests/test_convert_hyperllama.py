"""`growmerge convert hyperllama`: the authors' upscaled checkpoints (model_type hyperllama, whose output
layer divides the tied weight by lm_head_normalization_factor at run time) as a plain LlamaForCausalLM."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from conftest import make_tiny_llama

from growmerge.convert import convert_hyperllama
from growmerge.errors import GrowmergeError


def cli(capsys, *args) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of the CLI as a user runs it (errors as one line on stderr)."""
    from growmerge.cli import run_app

    capsys.readouterr()  # only this command's output
    code = run_app([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def as_hyperllama(model_dir: Path, factor) -> Path:
    """The authors' on-disk format: a Llama checkpoint whose config names the remote-code class. The
    auto_map points at a module that does not exist here: converting must not need it."""
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    config.update(model_type="hyperllama", lm_head_normalization_factor=factor,
                  architectures=["HyperLlamaForCausalLM"],
                  auto_map={"AutoConfig": "configuration_hyperllama.HyperLlamaConfig",
                            "AutoModelForCausalLM": "modeling_hyperllama.HyperLlamaForCausalLM"})
    path.write_text(json.dumps(config))
    return model_dir


def scaled_head_logits(model_dir: Path, factor: float, ids: torch.Tensor) -> torch.Tensor:
    """Reference: the hyperllama forward in plain torch — the Llama body, then x·(W/k)ᵀ with W the
    output weight (the embedding when tied)."""
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaForCausalLM

    raw = json.loads((model_dir / "config.json").read_text())
    config = LlamaConfig(**{k: v for k, v in raw.items() if k not in ("model_type", "lm_head_normalization_factor",
                                                                      "auto_map", "architectures")})
    state = load_file(model_dir / "model.safetensors")
    body = LlamaForCausalLM(config).model.eval()
    body.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    weight = state["model.embed_tokens.weight"] if config.tie_word_embeddings else state["lm_head.weight"]
    with torch.no_grad():
        hidden = body(input_ids=ids).last_hidden_state
        return torch.nn.functional.linear(hidden, weight / factor)


def digest(path: Path) -> dict:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(path.iterdir())}


@pytest.mark.parametrize("tied,factor", [(True, 2), (False, 2), (True, 3.0)])
def test_converted_matches_the_scaled_head(tmp_path, tied, factor):
    from transformers import AutoModelForCausalLM

    src = as_hyperllama(make_tiny_llama(tmp_path / "src", tied=tied, seed=3), factor)
    before = digest(src)
    out = convert_hyperllama(src, tmp_path / "out")
    assert digest(src) == before  # the input is untouched
    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.tie_word_embeddings == tied
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"
    assert "auto_map" not in json.loads((out / "config.json").read_text())
    ids = torch.randint(0, 320, (3, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model(input_ids=ids).logits
    want = scaled_head_logits(src, factor, ids)
    assert (got - want).abs().max().item() < 1e-5
    # the factor matters: the same weights read as a plain Llama give other logits
    assert (scaled_head_logits(src, 1, ids) - want).abs().max().item() > 1e-2
    assert (out / "tokenizer.json").is_file()
    meta = json.loads((out / "growmerge.json").read_text())
    assert meta["spec"] == {"converted_from": "hyperllama", "lm_head_normalization_factor": float(factor)}


def test_bad_inputs_are_one_line_and_leave_nothing(tmp_path, capsys):
    plain = make_tiny_llama(tmp_path / "plain", with_tokenizer=False)
    with pytest.raises(GrowmergeError, match=r"config.json: model_type is 'llama', not 'hyperllama'"):
        convert_hyperllama(plain, tmp_path / "o1")
    for bad in (0, -2, "two", True):
        src = as_hyperllama(make_tiny_llama(tmp_path / f"k{bad}", with_tokenizer=False), bad)
        with pytest.raises(GrowmergeError, match="lm_head_normalization_factor must be a positive number"):
            convert_hyperllama(src, tmp_path / "o2")
    src = as_hyperllama(make_tiny_llama(tmp_path / "untied", tied=False, with_tokenizer=False), 2)
    from safetensors.torch import load_file, save_file

    state = load_file(src / "model.safetensors")
    del state["lm_head.weight"]
    save_file(state, src / "model.safetensors")
    with pytest.raises(GrowmergeError, match="no tensor lm_head.weight"):
        convert_hyperllama(src, tmp_path / "o3")
    assert not any((tmp_path / f"o{i}").exists() for i in (1, 2, 3))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("x")
    good = as_hyperllama(make_tiny_llama(tmp_path / "good", with_tokenizer=False), 2)
    before = digest(good)
    code, _, err = cli(capsys, "convert", "hyperllama", good, tmp_path / "taken")
    assert code == 2 and "exists and is not empty" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "convert", "hyperllama", good, good / "inside")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    code, _, err = cli(capsys, "convert", "hyperllama", tmp_path / "nowhere", tmp_path / "o4")
    assert code == 2 and "no such model directory" in err
    code, out, err = cli(capsys, "convert", "hyperllama", good, tmp_path / "o5")
    assert code == 0 and (tmp_path / "o5" / "model.safetensors").is_file(), err
    assert digest(good) == before


def test_a_study_reference_in_hyperllama_format_is_converted(tmp_path):
    """eval.off_the_shelf may name the authors' checkpoints: the reference stage converts them first."""
    from test_study import micro_config

    from growmerge.ledger import Results
    from growmerge.study.spec import StudyConfig
    from growmerge.study.stages import Context, ReferenceStage

    src = as_hyperllama(make_tiny_llama(tmp_path / "authors", seed=5), 2)
    with Results(tmp_path / "run" / "results.sqlite") as results:
        data = StudyConfig.model_validate(micro_config(tmp_path / "run")).data
        ctx = Context(root=tmp_path / "run", data=data, results=results)
        ReferenceStage(id="authors_2x_is", source=str(src)).run(ctx)
        path = ctx.model_path("authors_2x_is")
        assert path == ctx.model_dir("authors_2x_is") and results.models(name="authors_2x_is")[0]["kind"] == "reference"
    assert json.loads((path / "config.json").read_text())["model_type"] == "llama"
    assert json.loads((src / "config.json").read_text())["model_type"] == "hyperllama"  # input untouched
