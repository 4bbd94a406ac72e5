"""Exact, fast sequence log-probabilities for a causal LM.

Conventions (all explicit, defaults match lm-evaluation-harness's ``loglikelihood``):

* **One boundary token as context.** Every sequence starts with exactly one ``bos_token_id``, the
  token that marks a document boundary under the model's *convention* (``boundary``):

  - ``lm-eval`` (models from elsewhere): the tokenizer's BOS, else its EOS — lm-eval's
    ``prefix_token_id``. For an empty context this is lm-eval's rule verbatim, including its quirk
    that a continuation whose first token already is the prefix token uses that token as the context.
    (For a non-empty context lm-eval adds a BOS only if the tokenizer itself does; we always add one,
    so NLLs are comparable.)
  - ``document`` (models growmerge trained, cloned or merged): the tokenizer's EOS. Our packed data
    (``data/packing.py``) separates documents by an EOS only and never contains a BOS, so the token
    a document follows in training is the EOS; a BOS there is a vector the model never trained. "No
    token" is no option: a sentence's first token would then have no context and stay unscored, and
    the two sentences of a minimal pair often differ exactly there.

  :func:`boundary_of` decides from the model directory's ``growmerge.json``; text is encoded without
  special tokens either way.
* **Context/continuation split** as lm-eval's ``_encode_pair``: trailing spaces of the context move
  to the continuation, the whole string is encoded once and split at ``len(encode(context))``.
* Log-probabilities are summed in float32 from the model's logits at exactly the positions that
  predict scored tokens: the output layer never runs on padding or on the last token of a sequence.
  Its rows are queued across batches and run in cache-sized tiles of rows × vocabulary; each row's
  log-normaliser is a float32 logsumexp over the tiles (never a full ``[B, L, V]`` log-softmax, never
  in bf16), the target logit the same dot product taken from the output embeddings.
* float32 ``nn.Linear`` layers run through oneDNN while scoring (still IEEE float32; it uses AVX-512
  where torch's default BLAS path does not). Measured against a float64 run, our good−bad gaps are
  ~1e-5 off; lm-eval's own float32 sums are ~1e-4 off on 30-token sentences.

Speed: sequences are sorted by length and batched by a token budget, right-padded (causal attention
means real tokens never see the padding, so no mask is needed — lm-eval does the same). For groups of
alternatives (minimal pairs), the longest common token prefix runs once and every alternative's
suffix runs from its KV cache with an attention mask hiding the prefix padding and explicit position
ids, which is exact.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Sequence

from growmerge.errors import GrowmergeError

DOCUMENT, LM_EVAL = "document", "lm-eval"  # the document-boundary conventions (module docstring)
BOUNDARIES = (DOCUMENT, LM_EVAL)
NO_CONTEXT = "none"  # the label of scores made without any context token (the unigram control)
RECORDED_BOUNDARIES = (*BOUNDARIES, NO_CONTEXT)  # what results.sqlite's scores.boundary may hold
OWN_KINDS = ("seed", "base", "adapt", "clone", "merge")  # growmerge.json kinds of models trained on our packing

HEAD_CHUNK_ROWS = 256  # rows per output-layer tile (large enough for an efficient matmul)
HEAD_QUEUE_ROWS = 4096  # hidden rows held back for the head at most (bounded memory)
HEAD_TILE_VOCAB = 1024  # vocabulary entries per tile: 256 × 1024 float32 logits = 1 MB, cache-sized


@dataclass
class _Seq:
    """One tokenised sequence: tokens[0] is the context start; tokens[start:] are scored."""

    tokens: list[int]
    start: int


class Scorer:
    """Scores texts with `model` and `tokenizer` (see the module docstring for the conventions)."""

    def __init__(self, model, tokenizer, token_budget: int = 1024, bos_token_id: int | None = None,
                 share_prefix: bool | None = None, device: str | None = None, boundary: str = LM_EVAL):
        import torch

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.token_budget = int(token_budget)
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.boundary = _check_boundary(boundary)  # recorded with every score this scorer makes
        self.bos = bos_token_id if bos_token_id is not None else boundary_token(tokenizer, boundary)
        # None = decide per call: prefix sharing pays off once the transformer body dominates.
        self.share_prefix = share_prefix
        self.max_len = int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30)
        _check_agreement(model, tokenizer, self.bos)

    @classmethod
    def from_dir(cls, model_dir, dtype=None, device="auto", boundary: str | None = None, **kwargs) -> "Scorer":
        """The model of `model_dir` on `device` (growmerge.device.pick_device's forms; auto = the GPU when
        there is one) in `dtype` (default float32 everywhere: scores are compared with lm-eval's, so
        bfloat16, e.g. on a GPU, is the caller's explicit choice), under the document-boundary
        convention `boundary` (default: :func:`boundary_of` the directory)."""
        from transformers.utils import logging as hf_logging

        from growmerge.artifacts import load_config, load_model, load_tokenizer
        from growmerge.device import pick_device

        dev = pick_device(device)  # before any loading: a GPU asked for on a machine without one fails at once

        hf_logging.disable_progress_bar()  # the CLI's stderr is for one-line errors
        tok = load_tokenizer(model_dir, required=True)
        vocab = getattr(load_config(model_dir), "vocab_size", None)
        if vocab is not None and len(tok) > vocab:  # checked before paying for the weights
            raise GrowmergeError(f"{model_dir}: tokenizer has {len(tok)} tokens but the model's vocabulary is "
                                 f"{vocab}: model and tokenizer do not belong together")
        boundary = _check_boundary(boundary or boundary_of(model_dir))
        return cls(load_model(model_dir, dtype=dtype).to(dev), tok, boundary=boundary, **kwargs)

    # -- tokenisation ---------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode_pair(self, context: str, continuation: str) -> _Seq:
        """lm-eval's split of (context, continuation), with one BOS in front."""
        if context == "":
            cont = self.encode(continuation)
            if not cont:
                raise GrowmergeError(f"empty continuation cannot be scored (context {context!r})")
            if cont[0] == self.bos:  # lm-eval: the continuation's own first token is the context
                return _Seq(cont, 1) if len(cont) > 1 else _Seq([self.bos] + cont, 1)
            return _Seq([self.bos] + cont, 1)
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.encode(context + continuation)
        ctx_len = len(self.encode(context))
        if ctx_len >= len(whole):
            raise GrowmergeError(f"empty continuation cannot be scored (context {context[:40]!r})")
        return _Seq([self.bos] + whole, 1 + ctx_len)

    # -- public scoring -------------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        """Total log-probability of each continuation given its context."""
        return self._score_seqs([self.encode_pair(c, x) for c, x in requests])

    def sequence_nll(self, texts: Sequence[str], skip_too_long: bool = False) -> list[float | None]:
        """Total (summed) negative log-likelihood of each text after exactly one BOS.

        A text longer than the model's positions is an error, or None with `skip_too_long`."""
        seqs = [self.encode_pair("", t) for t in texts]
        keep = [i for i, s in enumerate(seqs) if not skip_too_long or len(s.tokens) <= self.max_len]
        scores = dict(zip(keep, self._score_seqs([seqs[i] for i in keep])))
        return [-scores[i] if i in scores else None for i in range(len(seqs))]

    def score_minimal_pairs(self, pairs: Sequence[tuple[str, str]], share_prefix: bool | None = None,
                            conditional: bool = False) -> list[tuple[float, float]]:
        """(log p(good), log p(bad)) for each (good, bad) text pair; texts are scored as given.

        With `conditional`, both scores leave out the tokens of the pair's common token prefix:
        their log-probabilities are identical for the two sentences, so the difference (and every
        decision) is unchanged while the output layer never runs on those rows.
        """
        groups = self.score_groups([list(p) for p in pairs], share_prefix=share_prefix, conditional=conditional)
        return [(g[0], g[1]) for g in groups]

    def score_groups(self, groups: Sequence[Sequence[str]], share_prefix: bool | None = None,
                     conditional: bool = False) -> list[list[float]]:
        """Log-probability of each alternative text of each group (K alternatives per group)."""
        seqs = [[self.encode_pair("", t) for t in g] for g in groups]
        if any(s.start != 1 for g in seqs for s in g):  # the BOS quirk above: rare, no sharing
            share_prefix, conditional = False, False
        for g in seqs:
            for s in g:
                self._check_len(len(s.tokens))
        # Keep at least one token per alternative after the prefix so every score has a target.
        prefix = [max(1, min(_lcp([s.tokens for s in g]), min(len(s.tokens) for s in g) - 1)) for g in seqs]
        share = self._decide_sharing(seqs) if share_prefix is None else share_prefix
        if share:
            return self._score_groups_shared([[s.tokens for s in g] for g in seqs], prefix, conditional)
        if conditional:
            seqs = [[_Seq(s.tokens, p) for s in g] for g, p in zip(seqs, prefix)]
        flat = self._score_seqs([s for g in seqs for s in g])
        out, i = [], 0
        for g in seqs:
            out.append(flat[i:i + len(g)])
            i += len(g)
        return out

    # -- implementation -------------------------------------------------------------------------
    def _decide_sharing(self, groups: list[list[_Seq]]) -> bool:
        """Share when it saves a real fraction of the body's work on a model big enough to notice."""
        if self.share_prefix is not None:
            return self.share_prefix
        total = sum(len(s.tokens) for g in groups for s in g)
        saved = sum((len(g) - 1) * _lcp([s.tokens for s in g]) for g in groups)
        body = sum(p.numel() for n, p in self.model.named_parameters() if "embed" not in n and "lm_head" not in n)
        return body >= 2_000_000 and saved >= 0.2 * max(total, 1)

    def _check_len(self, n: int) -> None:
        if n > self.max_len:
            raise GrowmergeError(f"a sequence of {n} tokens exceeds the model's {self.max_len} positions; "
                                 "shorten the evaluation texts")

    def _batches(self, lengths: list[int], order: list[int]):
        """Consecutive runs of `order` (sorted longest first) whose padded size fits the budget."""
        batch: list[int] = []
        for i in order:
            width = lengths[batch[0]] if batch else lengths[i]
            if batch and width * (len(batch) + 1) > self.token_budget:
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _score_seqs(self, seqs: list[_Seq]) -> list[float]:
        """Unshared path: every sequence runs in full (minus its last token); tokens from `start` on
        are scored."""
        import torch

        out = [[0.0] for _ in seqs]
        head = _HeadRows(self, out)
        inputs = [s.tokens[:-1] for s in seqs]
        for s in seqs:
            self._check_len(len(s.tokens))
        order = sorted(range(len(seqs)), key=lambda i: -len(inputs[i]))
        with torch.inference_mode():
            for batch in self._batches([len(x) for x in inputs], order):
                ids = _right_pad([inputs[i] for i in batch], self.bos).to(self.device)
                hidden = self._body(ids)
                rows, pos, targets, dest = [], [], [], []
                for r, i in enumerate(batch):
                    s = seqs[i]
                    for t in range(s.start, len(s.tokens)):
                        rows.append(r), pos.append(t - 1), targets.append([s.tokens[t]]), dest.append([(i, 0)])
                head.add(hidden[rows, pos], targets, dest)
            head.flush()
        return [o[0] for o in out]

    def _score_groups_shared(self, groups: list[list[list[int]]], prefix_len: list[int], conditional: bool
                             ) -> list[list[float]]:
        """Shared path: the common prefix once, then each alternative's suffix from its KV cache.

        Groups are batched by prefix length (so the prefix pass has almost no padding); their
        suffixes are re-sorted by length into sub-batches that each read the rows they need from the
        prefix cache, so the suffix passes have almost no padding either.
        """
        import torch

        out = [[0.0] * len(g) for g in groups]
        cost = [prefix_len[j] + sum(len(t) - prefix_len[j] for t in g) for j, g in enumerate(groups)]
        order = sorted(range(len(groups)), key=lambda j: -prefix_len[j])
        head = _HeadRows(self, out)
        with torch.inference_mode():
            for batch in self._budget_runs(order, cost):
                self._score_group_batch(groups, prefix_len, batch, head, conditional)
            head.flush()
        return out

    def _budget_runs(self, order: list[int], cost: list[int]):
        """Consecutive runs of `order` whose summed cost fits the token budget."""
        batch, used = [], 0
        for j in order:
            if batch and used + cost[j] > self.token_budget:
                yield batch
                batch, used = [], 0
            batch.append(j)
            used += cost[j]
        if batch:
            yield batch

    def _score_group_batch(self, groups, prefix_len, batch, head, conditional) -> None:
        from transformers import DynamicCache

        prefixes = [groups[j][0][:prefix_len[j]] for j in batch]
        cache = DynamicCache()
        h_prefix = self._body(_right_pad(prefixes, self.bos).to(self.device), cache=cache)

        # Prefix rows: positions 0..P-2 predict the shared tokens 1..P-1 (counted once for every
        # alternative, or not at all when conditional); position P-1 predicts each alternative's
        # first own token — one output-layer row serves all K targets.
        rows, pos, targets, dest = [], [], [], []
        suffixes = []  # (prefix row, group, alternative, input tokens)
        for r, j in enumerate(batch):
            p = prefix_len[j]
            if not conditional:
                for t in range(1, p):
                    rows.append(r), pos.append(t - 1), targets.append([groups[j][0][t]]), dest.append([(j, None)])
            rows.append(r), pos.append(p - 1), targets.append([toks[p] for toks in groups[j]])
            dest.append([(j, k) for k in range(len(groups[j]))])
            for k, toks in enumerate(groups[j]):
                if len(toks) > p + 1:  # the suffix's last token is only a target, never an input
                    suffixes.append((r, j, k, toks[p:-1]))
        head.add(h_prefix[rows, pos], targets, dest)

        suffixes.sort(key=lambda x: -len(x[3]))
        for sub in _length_buckets(suffixes, key=lambda x: len(x[3])):
            self._score_suffixes(groups, prefix_len, cache, sub, head)

    def _score_suffixes(self, groups, prefix_len, cache, sub, head) -> None:
        import torch
        from transformers import DynamicCache

        idx = torch.tensor([r for r, _, _, _ in sub], device=self.device)
        sub_cache = DynamicCache()
        for i, layer in enumerate(cache.layers):
            sub_cache.update(layer.keys[idx], layer.values[idx], i)
        p_max = cache.get_seq_length()
        s_max = max(len(x[3]) for x in sub)
        mask = torch.zeros(len(sub), p_max + s_max, dtype=torch.long)
        positions = torch.zeros(len(sub), s_max, dtype=torch.long)
        for row, (_, j, _, s) in enumerate(sub):
            p = prefix_len[j]
            mask[row, :p] = 1  # hide the prefix padding of shorter prefixes in the same batch
            mask[row, p_max:p_max + len(s)] = 1
            positions[row] = torch.arange(p, p + s_max)
        hidden = self._body(_right_pad([x[3] for x in sub], self.bos).to(self.device), cache=sub_cache,
                            attention_mask=mask.to(self.device), position_ids=positions.to(self.device))
        rows, pos, targets, dest = [], [], [], []
        for row, (_, j, k, _) in enumerate(sub):
            toks, p = groups[j][k], prefix_len[j]
            for t in range(p + 1, len(toks)):
                rows.append(row), pos.append(t - p - 1), targets.append([toks[t]]), dest.append([(j, k)])
        head.add(hidden[rows, pos], targets, dest)

    def _body(self, ids, cache=None, attention_mask=None, position_ids=None):
        """Final hidden states (after the last norm), without running the output layer."""
        body = getattr(self.model, "model", None) or self.model.base_model
        # transformers 5 renamed `past_key_values` to `cache`; accept either model generation.
        key = "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"
        with _onednn_linears(body):
            return body(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids,
                        use_cache=cache is not None, **{key: cache}).last_hidden_state

    def _token_logprobs(self, hidden, targets: list[list[int]]) -> list[list[float]]:
        """log p(t) for the targets t of each hidden row: the output layer and a float32 log-softmax
        on these rows only (never a full [B, L, V] log-softmax).

        The output layer runs in tiles of rows × vocabulary that stay in the CPU cache, and each row's
        log-normaliser is a float32 logsumexp over those tiles: the [rows, vocab] logits are never
        written to memory as a whole, which is what makes a 49k-vocabulary head slow. The target
        logits are the same dot products taken directly from the output embeddings."""
        import torch

        head = self.model.get_output_embeddings()
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        weight, bias = head.weight, getattr(head, "bias", None)
        width = max((len(t) for t in targets), default=0)
        index = torch.tensor([t + t[-1:] * (width - len(t)) for t in targets], device=hidden.device)
        parts = []
        for a in range(0, hidden.shape[0], HEAD_CHUNK_ROWS):
            x = hidden[a:a + HEAD_CHUNK_ROWS]
            lse = _tiled_logsumexp(x, weight, bias, cap)
            picked = torch.einsum("rh,rkh->rk", x, weight[index[a:a + HEAD_CHUNK_ROWS]]).float()
            if bias is not None:
                picked = picked + bias[index[a:a + HEAD_CHUNK_ROWS]].float()
            if cap:
                picked = torch.tanh(picked / cap) * cap
            parts.append(picked - lse[:, None])
        lps = torch.cat(parts).tolist() if parts else []
        return [row[:len(t)] for row, t in zip(lps, targets)]


def _onednn_ok(x, weight) -> bool:
    import torch

    return (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and not x.requires_grad
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def _linear(x, weight, bias=None):
    """`F.linear` through oneDNN for float32 on CPU. Still IEEE float32 (only the summation order
    differs, errors ~1e-7 relative, as between any two BLAS), but oneDNN uses the CPU's widest
    vectors where torch's default BLAS path may not: measured 2x faster on an AVX-512 EPYC."""
    import torch

    if _onednn_ok(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return torch.nn.functional.linear(x, weight, bias)


@contextmanager
def _onednn_linears(module):
    """Run every nn.Linear inside `module` through `_linear` for the duration (restored after)."""
    import torch

    linears = [m for m in module.modules() if type(m) is torch.nn.Linear and "forward" not in vars(m)]
    for m in linears:
        m.forward = partial(_linear_forward, m)
    try:
        yield
    finally:
        for m in linears:
            del m.forward


def _linear_forward(m, x):
    return _linear(x, m.weight, m.bias)


def _tiled_logsumexp(x, weight, bias, cap):
    """float32 logsumexp over the vocabulary of `x @ weight.T (+ bias)`, one vocabulary tile at a
    time (each tile's logits are exponentiated in place while still in cache)."""
    import torch

    # Tiles are for a CPU cache; a GPU has none of that size and pays a kernel launch per tile.
    tile = HEAD_TILE_VOCAB if x.device.type == "cpu" else weight.shape[0]
    maxes, sums = [], []
    for b in range(0, weight.shape[0], tile):
        logits = _linear(x, weight[b:b + tile], None if bias is None else bias[b:b + tile]).float()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        m = logits.amax(1, keepdim=True)
        maxes.append(m)
        sums.append(logits.sub_(m).exp_().sum(1, keepdim=True))
    m, s = torch.cat(maxes, 1), torch.cat(sums, 1)
    top = m.amax(1, keepdim=True)
    return top[:, 0] + torch.log((s * torch.exp(m - top)).sum(1))


class _HeadRows:
    """Hidden rows waiting for the output layer, collected across batches so the head always runs
    on full tiles (the suffix passes yield few rows each); `dest` says whose log-probabilities they
    are: (group, alternative), alternative None meaning every alternative of the group."""

    def __init__(self, scorer: Scorer, out: list[list[float]]):
        self.scorer, self.out = scorer, out
        self.hidden, self.targets, self.dest, self.n = [], [], [], 0

    def add(self, hidden, targets: list[list[int]], dest: list[list[tuple]]) -> None:
        self.hidden.append(hidden)
        self.targets += targets
        self.dest += dest
        self.n += hidden.shape[0]
        if self.n >= HEAD_QUEUE_ROWS:
            self.flush()

    def flush(self) -> None:
        import torch

        if not self.n:
            return
        lps = self.scorer._token_logprobs(torch.cat(self.hidden), self.targets)
        for owners, row in zip(self.dest, lps):
            for (j, k), lp in zip(owners, row):
                if k is None:  # a shared prefix token belongs to every alternative of the group
                    for kk in range(len(self.out[j])):
                        self.out[j][kk] += lp
                else:
                    self.out[j][k] += lp
        self.hidden, self.targets, self.dest, self.n = [], [], [], 0


def _prefix_token_id(tokenizer) -> int:
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if bos is None:
        raise GrowmergeError("the tokenizer has neither a BOS nor an EOS token; pass bos_token_id explicitly")
    return bos


def boundary_token(tokenizer, boundary: str) -> int:
    """The context token of every scored text under `boundary` (module docstring)."""
    if _check_boundary(boundary) == DOCUMENT:
        if tokenizer.eos_token_id is None:
            raise GrowmergeError("the tokenizer has no EOS token, which separates the documents our models are "
                                 "trained on; score with boundary 'lm-eval' or give the tokenizer its EOS")
        return tokenizer.eos_token_id
    return _prefix_token_id(tokenizer)


def boundary_of(model_dir) -> str:
    """``document`` for a model growmerge trained, cloned or merged (its growmerge.json says so: a
    checkpoint's too), ``lm-eval`` for any other model (a conversion, a hub model, a plain HF directory)."""
    from pathlib import Path

    from growmerge.artifacts import read_meta

    path = Path(str(model_dir))
    return DOCUMENT if path.is_dir() and read_meta(path).get("kind") in OWN_KINDS else LM_EVAL


def _check_boundary(boundary: str) -> str:
    if boundary not in BOUNDARIES:
        raise GrowmergeError(f"unknown document-boundary convention {boundary!r}: use one of {', '.join(BOUNDARIES)}")
    return boundary


def _check_agreement(model, tokenizer, bos: int) -> None:
    """A tokenizer whose ids run past the model's embedding table means they do not belong together."""
    vocab = model.get_input_embeddings().weight.shape[0]
    n_tok = len(tokenizer)
    if n_tok > vocab or bos >= vocab:
        raise GrowmergeError(f"tokenizer has {n_tok} tokens but the model's vocabulary is {vocab}: "
                             "model and tokenizer do not belong together (use the tokenizer saved with the model)")


def _lcp(seqs: list[list[int]]) -> int:
    first = seqs[0]
    n = min(len(s) for s in seqs)
    i = 0
    while i < n and all(s[i] == first[i] for s in seqs):
        i += 1
    return i


def _length_buckets(items: list, key, ratio: float = 0.75):
    """Split items sorted by decreasing length into runs whose lengths stay within `ratio` of the
    run's longest, so padding stays below 1/ratio."""
    run: list = []
    for x in items:
        if run and key(x) < ratio * key(run[0]):
            yield run
            run = []
        run.append(x)
    if run:
        yield run


def _right_pad(seqs: list[list[int]], pad: int):
    import torch

    width = max(max(len(s) for s in seqs), 1)
    out = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out
