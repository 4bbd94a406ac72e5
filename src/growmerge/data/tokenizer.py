"""The tokenizer: a byte-level BPE trained on a balanced sample of every language and code, or any
Hugging Face tokenizer by name or path. Saved as a HF tokenizer directory with BOS and EOS set."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable, Iterator

from growmerge.errors import GrowmergeError

EOS, BOS = "<|endoftext|>", "<|bos|>"


def tokenizer_hash(tok_dir: Path) -> str:
    return hashlib.sha256((Path(tok_dir) / "tokenizer.json").read_bytes()).hexdigest()[:16]


def balanced_sample(files_by_lang: dict[str, list[Path]], chars_per_lang: int) -> Iterator[str]:
    """Up to `chars_per_lang` characters of training text per language, interleaved."""
    for lang, files in files_by_lang.items():
        budget = chars_per_lang
        for f in files:
            with open(f, encoding="utf-8") as fh:
                for line in fh:
                    text = json.loads(line)["text"][:budget]
                    budget -= len(text)
                    yield text
                    if budget <= 0:
                        break
            if budget <= 0:
                break


def train_bpe(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE (every byte encodable, so no unknown tokens in any language)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, BOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS)


def load_pretrained(name: str, vocab_size: int):
    """A HF tokenizer (local path or hub name); it must be fast (packing uses tokenizer.json),
    have an EOS (documents are separated by it) and fit the model's vocabulary."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise GrowmergeError(f"tokenizer {name}: cannot load ({str(exc).splitlines()[0]})") from None
    if not tok.is_fast:
        raise GrowmergeError(f"tokenizer {name} has no fast (tokenizer.json) version; use one that does")
    if tok.eos_token is None:
        raise GrowmergeError(f"tokenizer {name} has no EOS token; set eos_token in its tokenizer_config.json")
    if tok.bos_token is None:
        tok.bos_token = tok.eos_token  # a model needs a BOS id; EOS doubles as one (as in GPT-2)
    if len(tok) > vocab_size:
        raise GrowmergeError(f"tokenizer {name} has {len(tok)} tokens but data.tokenizer.vocab_size is "
                             f"{vocab_size}; raise vocab_size to at least {len(tok)}")
    return tok
