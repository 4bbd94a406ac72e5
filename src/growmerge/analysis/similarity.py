"""Activation-space similarity of per-language models: linear CKA of their hidden states, layer by
layer, on the parallel evaluation sentences (beyond the paper: the companion paper's claim that
representational similarity predicts which models merge well).

Every model of a scale reads the same sentences: for each language, the first `max_sentences` target
sides of the IP task's parallel held-out set. A sentence's representation at a layer is the mean of
its hidden states over its tokens (after one BOS, as the scorer reads text). Two models A and B are
compared on the sentences of their own two languages, so neither is judged on text it never saw.
Models of one scale share an architecture, so layer i of A is compared with layer i of B.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from growmerge.errors import GrowmergeError

MAX_TOKENS = 128  # per sentence: pooled states of a long sentence change little after this


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two representations of the same n examples (n x d1 and
    n x d2): <K, L>_F / (|K|_F |L|_F) with K, L the Gram matrices of the centred rows. 1 for
    representations equal up to rotation and scale; NaN when one is constant (undefined)."""
    if x.shape[0] != y.shape[0]:
        raise GrowmergeError(f"CKA needs the same examples on both sides: {x.shape[0]} vs {y.shape[0]} rows")
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    if x.shape[0] < max(x.shape[1], y.shape[1]):  # the cheaper side of the identity |Y^T X|^2 = <XX^T, YY^T>
        k, l = x @ x.T, y @ y.T
        num, den = (k * l).sum(), k.norm() * l.norm()
    else:
        num, den = (y.T @ x).pow(2).sum(), (x.T @ x).norm() * (y.T @ y).norm()
    return float(num / den) if den > 0 else float("nan")


def parallel_sentences(path: Path, limit: int) -> list[str]:
    """The target sides of the first `limit` rows of a parallel set."""
    from growmerge.evaluate.parity import read_parallel

    return [r["tgt"] for r in read_parallel(path)[:limit]]


@torch.no_grad()
def pooled_states(model_dir: Path, texts: list[str], device: str = "cpu", batch: int = 16) -> list[torch.Tensor]:
    """Per layer (embeddings first), the token-mean hidden state of each text: [n x hidden] * (layers + 1)."""
    from growmerge.evaluate.scorer import Scorer

    scorer = Scorer.from_dir(model_dir, device=device)
    model, dev = scorer.model.base_model, scorer.device  # the body: no logits over the vocabulary
    cap = min(MAX_TOKENS, scorer.max_len)
    seqs = [([scorer.bos] + scorer.encode(t))[:cap] for t in texts]
    layers: list[list[torch.Tensor]] = []
    for start in range(0, len(seqs), batch):
        chunk = seqs[start:start + batch]
        width = max(map(len, chunk))
        ids = torch.tensor([s + [scorer.bos] * (width - len(s)) for s in chunk], device=dev)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in chunk], device=dev)
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        weights = (mask / mask.sum(1, keepdim=True)).unsqueeze(-1).float()  # right padding is left out
        for i, h in enumerate(hidden):
            if len(layers) <= i:
                layers.append([])
            layers[i].append((h.float() * weights).sum(1).cpu())
    return [torch.cat(parts) for parts in layers]


def cka_by_pair(models: dict[str, Path], sentences: dict[str, list[str]], device: str = "cpu") -> dict:
    """Linear CKA per layer of every pair of models, each pair on the sentences of its two languages.

    models: language -> model dir; sentences: language -> texts (the same for every model)."""
    langs = sorted(models)
    if len(langs) < 2:
        raise GrowmergeError("CKA needs at least two models")
    missing = [lang for lang in langs if not sentences.get(lang)]
    if missing:
        raise GrowmergeError(f"no parallel sentences for {', '.join(missing)}: CKA needs the IP task's sets")
    texts = [t for lang in langs for t in sentences[lang]]
    rows, at = {}, 0
    for lang in langs:  # which rows of `texts` are each language's
        rows[lang] = slice(at, at + len(sentences[lang]))
        at += len(sentences[lang])
    states = {lang: pooled_states(models[lang], texts, device) for lang in langs}
    depth = {len(s) for s in states.values()}
    if len(depth) != 1:
        raise GrowmergeError(f"models of one scale differ in depth ({sorted(depth)} hidden-state layers)")
    pairs = []
    for a, b in itertools.combinations(langs, 2):
        idx = torch.cat([torch.arange(len(texts))[rows[a]], torch.arange(len(texts))[rows[b]]])
        per_layer = [linear_cka(sa[idx], sb[idx]) for sa, sb in zip(states[a], states[b])]
        body = per_layer[1:] or per_layer  # the transformer layers; the embeddings are layer 0
        pairs.append({"languages": [a, b], "cka": per_layer, "cka_mean": sum(body) / len(body),
                      "sentences": len(idx)})
    return {"languages": langs, "layers": depth.pop(), "sentences": {k: len(v) for k, v in sentences.items()},
            "pairs": pairs}
