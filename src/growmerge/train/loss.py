"""The training loss: next-token cross-entropy fused with the output projection, in chunks.

With a large vocabulary the logits dominate memory and much of the time (8 x 512 tokens x 16k vocab
is 67M floats, materialised several times over by cast, log-softmax and its backward). Here the
logits of a chunk of tokens are computed, turned into the loss *and* the gradients of the hidden
states and the output matrix at once, and dropped; the backward only scales the saved gradients.
Matmuls run in `dtype` (bf16 under mixed precision), softmax math and gradient sums in float32.

``CausalLMLoss`` wraps a ``LlamaForCausalLM`` so the loop calls one module: under FSDP2 the wrapper
is the root, whose group (embeddings, final norm, tied lm_head) is gathered for its forward.
"""

from __future__ import annotations

import torch
from torch import nn

CHUNK_ELEMENTS = 1 << 22  # logits per chunk (16 MB in float32): fits a cache-friendly working set


class FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        n = h.shape[0]
        chunk = max(64, CHUNK_ELEMENTS // w.shape[0])
        hc, wc = h.to(dtype), w.to(dtype)
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(w.shape, dtype=torch.float32, device=w.device)
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for s in range(0, n, chunk):
            y = labels[s:s + chunk]
            logits = (hc[s:s + chunk] @ wc.T).float()
            lse = logits.logsumexp(-1)
            total += (lse - logits.gather(1, y[:, None]).squeeze(1)).sum()
            g = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
            g[torch.arange(len(y), device=g.device), y] -= 1.0
            g = g.div_(n).to(dtype)  # d(mean loss)/d(logits)
            grad_h[s:s + chunk] = g @ wc
            grad_w += (g.T @ hc[s:s + chunk]).float()
        ctx.save_for_backward(grad_h, grad_w.to(w.dtype))
        return total / n

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_out, grad_w * grad_out, None, None


def fused_cross_entropy(h: torch.Tensor, w: torch.Tensor, labels: torch.Tensor,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Mean cross-entropy of softmax(h @ w.T) against labels; h [N, d], w [V, d], labels [N]."""
    with torch.autocast(h.device.type, enabled=False):
        return FusedLinearCrossEntropy.apply(h, w, labels, dtype)


class CausalLMLoss(nn.Module):
    """forward(input_ids) -> mean next-token loss of the wrapped causal LM."""

    def __init__(self, lm: nn.Module, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.lm, self.dtype = lm, dtype

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.lm.model(input_ids=input_ids).last_hidden_state[:, :-1]
        return fused_cross_entropy(h.reshape(-1, h.shape[-1]), self.lm.lm_head.weight,
                                   input_ids[:, 1:].reshape(-1), self.dtype)
