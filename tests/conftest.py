"""Shared test fixtures: tiny random Llama models saved as real HF directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests share 2 cores with each other and with other processes: one thread each is fastest overall.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

TOKENIZER_TEXT = (
    "The quick brown fox jumps over the lazy dog. Hunden springer över staketet. "
    "Koer hüppab üle aia. Hundurinn stökk yfir girðinguna. def f(x): return x + 1\n"
) * 20


def shared_path(*parts: str) -> Path:
    """A file under ../shared, or skip the test with the reason (a user's clone has no ../shared)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (../shared is only beside the repo on the team's machines)")
    return path


def tiny_tokenizer(vocab_size: int = 320):
    """A byte-level BPE trained on a few sentences: real merges, every byte encodable."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|bos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TOKENIZER_TEXT], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|endoftext|>")


def make_tiny_llama(path: Path, hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
                    intermediate: int = 128, vocab: int = 320, tied: bool = True, seed: int = 0,
                    with_tokenizer: bool = True) -> Path:
    """A random LlamaForCausalLM saved as an HF directory (safetensors + tokenizer)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = tiny_tokenizer(vocab) if with_tokenizer else None
    config = LlamaConfig(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads, intermediate_size=intermediate, vocab_size=vocab,
        tie_word_embeddings=tied, max_position_embeddings=256, rms_norm_eps=1e-5,
        bos_token_id=tok.bos_token_id if tok else 1, eos_token_id=tok.eos_token_id if tok else 0,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # random norms too, so tests notice a norm handled wrong
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(path, safe_serialization=True)
    if tok is not None:
        tok.save_pretrained(path)
    return path


def make_family_model(path: Path, arch: str) -> Path:
    """A tiny model of another Llama-family architecture (mistral, qwen2, qwen3), saved at `path`, with
    norms and biases drawn away from 1/0 so that qwen2's q/k/v biases and qwen3's q/k norms matter."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(arch, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, intermediate_size=96, vocab_size=200,
                                  tie_word_embeddings=True, head_dim=16, max_position_embeddings=128)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "bias" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(path)
    return path


@pytest.fixture
def tiny_llama(tmp_path):
    """Factory fixture: tiny_llama(name='m', **kwargs) -> path of a saved tiny model."""

    def make(name: str = "model", **kwargs) -> Path:
        return make_tiny_llama(tmp_path / name, **kwargs)

    return make
