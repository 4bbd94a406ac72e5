"""Controls: what a minimal-pair score is worth next to a model that knows only word frequencies.

A model far from converged can prefer the good sentence of a pair just because its tokens are more
frequent (the bad one of a generated pair often has a rarer inflection). The **unigram control** of a
language is the add-0.5 unigram model of that language's training tokens, exactly as the data stage
packed them with the study's tokenizer (EOS separators included: they are training tokens):
p(t) = (c_t + 0.5) / (N + 0.5·V). It scores a sentence as the sum of log p over its tokens, with no
context token (``boundary`` "none"), so its decisions are a frequency comparison and nothing else.

The control stage writes ``controls/unigram/`` (counts per language in ``counts.safetensors``, the
tokenizer, a ``growmerge.json``), records the model ``unigram`` (kind ``control``) in the ledger and
scores every minimal-pair set of every language with it, through the same task code as every model:
its rows (accuracy, per phenomenon, per-pair decisions) sit in ``scores`` under the model ``unigram``.
The report sets them beside each model's bars and computes how often a model decides as the control.
The counts also give each language's unigram entropy, the loss a model that learned only frequencies
would reach: the report's loss-vs-entropy table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from growmerge.errors import GrowmergeError
from growmerge.evaluate.scorer import NO_CONTEXT

UNIGRAM = "unigram"  # the control's model name in the ledger
CONTROL_KIND = "control"  # its kind in the ledger (names.MODEL_KINDS)
ADD = 0.5  # add-k smoothing: a token never seen in training still has a finite log-probability
COUNTS_FILE = "counts.safetensors"
CHUNK = 1 << 24  # tokens per bincount: a shard of billions of tokens is counted in bounded memory
# Tokens counted per shard at most: a paper-scale shard (10^11 tokens) is counted on evenly spaced
# sequences of it, which estimate frequencies to far below the noise of a 300-pair set; the demo's
# shards are counted whole.
MAX_TOKENS = 1 << 31


# ---------------------------------------------------------------------------------------------
# Counts
# ---------------------------------------------------------------------------------------------
def shard_counts(bin_path: Path, vocab_size: int, max_tokens: int = MAX_TOKENS) -> np.ndarray:
    """Occurrences of every token id in one packed shard (int64 [vocab_size]); of evenly spaced
    sequences of it when it holds more than `max_tokens` tokens."""
    from growmerge.data.shards import open_shard

    arr, _ = open_shard(bin_path)
    rows, seq_len = arr.shape
    step = max(1, -(-rows * seq_len // max_tokens))  # every `step`-th sequence
    counts = np.zeros(vocab_size, dtype=np.int64)
    per_chunk = max(1, CHUNK // seq_len)
    for start in range(0, rows, per_chunk * step):
        block = np.asarray(arr[start:start + per_chunk * step:step]).reshape(-1)
        counts += np.bincount(block, minlength=vocab_size)[:vocab_size]
    return counts


def language_counts(run_dir: Path, vocab_size: int) -> dict[str, np.ndarray]:
    """Counts of the training tokens of every language of a prepared run (data/manifest.json): the
    training shards of all streams of that language summed (English: both halves of its split)."""
    from growmerge.data.card import read_manifest

    run_dir = Path(run_dir)
    out: dict[str, np.ndarray] = {}
    for stream in read_manifest(run_dir)["streams"].values():
        counts = shard_counts(run_dir / stream["train"]["shard"], vocab_size)
        out[stream["lang"]] = out.get(stream["lang"], 0) + counts
    return out


def log_probs(counts: np.ndarray) -> np.ndarray:
    """Add-0.5 unigram log-probabilities (float64)."""
    counts = np.asarray(counts, dtype=np.float64)
    return np.log(counts + ADD) - math.log(counts.sum() + ADD * len(counts))


def entropy(counts: np.ndarray) -> float:
    """Entropy (nats per token) of the smoothed unigram distribution of `counts`: the cross-entropy a
    model that knows only token frequencies reaches on this data, comparable to a training loss."""
    lp = log_probs(counts)
    return float(-(np.exp(lp) * lp).sum())


def write_unigram(run_dir: Path, out: Path) -> dict[str, np.ndarray]:
    """Count every language's training tokens and write the control's directory `out` atomically."""
    from safetensors.numpy import save_file

    from growmerge.artifacts import atomic_dir, copy_tokenizer_files, fingerprint_of, write_meta
    from growmerge.data.card import read_manifest

    manifest = read_manifest(run_dir)
    counts = language_counts(run_dir, int(manifest["vocab_size"]))
    with atomic_dir(out, force=True) as tmp:
        save_file({lang: c for lang, c in sorted(counts.items())}, str(tmp / COUNTS_FILE))
        copy_tokenizer_files(Path(run_dir) / manifest["tokenizer"], tmp)
        # The identity of the control (score fingerprints): the data it counted, by its manifest's
        # fingerprint and every language's token total.
        write_meta(tmp, {"kind": CONTROL_KIND, "add": ADD, "languages": sorted(counts),
                         "tokens": {lang: int(c.sum()) for lang, c in counts.items()},
                         "fingerprint": fingerprint_of({"data": manifest.get("fingerprint"), "add": ADD,
                                                        "tokens": {k: int(c.sum()) for k, c in counts.items()}})})
    return counts


def read_counts(control_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path = Path(control_dir) / COUNTS_FILE
    if not path.is_file():
        raise GrowmergeError(f"{path}: missing (the control stage writes it)")
    return load_file(str(path))


# ---------------------------------------------------------------------------------------------
# The scorer
# ---------------------------------------------------------------------------------------------
class UnigramScorer:
    """Scores texts as the sum of add-0.5 unigram log-probabilities of their tokens (no context).

    The methods the evaluation tasks call, with the Scorer's signatures: a task scores the control
    exactly as it scores a model."""

    boundary = NO_CONTEXT

    def __init__(self, counts: np.ndarray, tokenizer):
        if len(tokenizer) > len(counts):
            raise GrowmergeError(f"tokenizer has {len(tokenizer)} tokens but the unigram counts cover {len(counts)}: "
                                 "they do not belong together")
        self.tokenizer = tokenizer
        self.logp = log_probs(counts)

    @classmethod
    def from_dir(cls, control_dir: Path, lang: str) -> "UnigramScorer":
        from growmerge.artifacts import load_tokenizer

        counts = read_counts(control_dir)
        if lang not in counts:
            raise GrowmergeError(f"{control_dir}: no training tokens of language {lang!r} "
                                 f"(counted: {', '.join(sorted(counts))})")
        return cls(counts[lang], load_tokenizer(control_dir, required=True))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def text_logprob(self, tokens: Sequence[int]) -> float:
        return float(self.logp[list(tokens)].sum()) if len(tokens) else 0.0

    def sequence_nll(self, texts: Sequence[str], skip_too_long: bool = False) -> list[float | None]:
        return [-self.text_logprob(self.encode(t)) for t in texts]

    def loglikelihood(self, requests: Iterable[tuple[str, str]]) -> list[float]:
        """log p(continuation): a unigram model ignores the context."""
        out = []
        for context, continuation in requests:
            whole, ctx = self.encode(context + continuation), len(self.encode(context)) if context else 0
            out.append(self.text_logprob(whole[ctx:]))
        return out

    def score_minimal_pairs(self, pairs: Sequence[tuple[str, str]], share_prefix: bool | None = None,
                            conditional: bool = False) -> list[tuple[float, float]]:
        groups = self.score_groups([list(p) for p in pairs], conditional=conditional)
        return [(g[0], g[1]) for g in groups]

    def score_groups(self, groups: Sequence[Sequence[str]], share_prefix: bool | None = None,
                     conditional: bool = False) -> list[list[float]]:
        """Log-probability of each alternative; `conditional` leaves out the group's common token
        prefix, as the Scorer does (the same amount in every alternative: no decision changes)."""
        out = []
        for group in groups:
            toks = [self.encode(t) for t in group]
            skip = _common_prefix(toks) if conditional else 0
            out.append([self.text_logprob(t[skip:]) for t in toks])
        return out


def _common_prefix(seqs: list[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    i = 0
    while i < n and all(s[i] == seqs[0][i] for s in seqs):
        i += 1
    return i


# ---------------------------------------------------------------------------------------------
# The study stage's work
# ---------------------------------------------------------------------------------------------
def pair_tasks(tasks: dict[str, dict]) -> dict[str, dict]:
    """The minimal-pair tasks among a study's tasks (the control has nothing to say about IP)."""
    from growmerge.evaluate.tasks import get_task
    from growmerge.evaluate.tasks.minimal_pairs import MinimalPairTask

    return {name: opts for name, opts in tasks.items() if isinstance(get_task(name), MinimalPairTask)}


def run_unigram_control(stage, ctx) -> None:
    """The control stage: count, write, record, and score every minimal-pair set of `stage.languages`
    (``stage`` is a ``study.stages.ControlStage``: its ``evaluate`` is the eval stages' own)."""
    out = ctx.root / "controls" / UNIGRAM
    counts = write_unigram(ctx.root, out)
    ctx.results.add_model(UNIGRAM, CONTROL_KIND, languages=sorted(counts), path=out,
                          tokens=int(sum(int(c.sum()) for c in counts.values())))
    from growmerge.artifacts import load_tokenizer

    tokenizer = load_tokenizer(out, required=True)
    scoring = stage.model_copy(update={"tasks": pair_tasks(stage.tasks)})
    for lang in stage.languages:
        if lang not in counts:
            ctx.say(f"control: no training tokens of {lang}: no unigram control")
            continue
        scoring.evaluate(ctx, UNIGRAM, out, [lang], scorer=UnigramScorer(counts[lang], tokenizer))
    ctx.say("control: unigram entropy (nats/token) " +
            ", ".join(f"{lang} {entropy(c):.2f}" for lang, c in sorted(counts.items())))
