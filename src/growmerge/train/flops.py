"""The FLOP ledger: one formula for the training cost of a token, as in Nanotron.

Per token, forward + backward (= 3x forward), for a Llama with L layers, hidden d, h query heads of
size h_d, k KV heads, MLP width f, vocabulary V, sequence length s::

    3 * L * [2d(h*h_d + 2k*h_d)    # Q, K, V projections
             + 4*h*h_d*s           # attention scores and weighted values (full, not causal-halved)
             + 2*h*h_d*d           # output projection
             + 6*d*f]              # gate, up, down
    + 3 * 2*d*V                    # logits

For the paper's 180M and 572M shapes at s=2048 this is 1.505 and 4.284 GFLOP/token. A run's cost is
this times the tokens it trained on; every checkpoint also carries the cumulative cost of its
lineage (seed -> base -> clone -> adapt), which is what the compute-matched comparison reads.
"""

from __future__ import annotations


def flops_per_token(config, seq_len: int) -> float:
    d = config.hidden_size
    h = config.num_attention_heads
    k = getattr(config, "num_key_value_heads", None) or h
    hd = getattr(config, "head_dim", None) or d // h
    f = config.intermediate_size
    layer = 2 * d * (h * hd + 2 * k * hd) + 4 * h * hd * seq_len + 2 * h * hd * d + 6 * d * f
    return float(3 * config.num_hidden_layers * layer + 3 * 2 * d * config.vocab_size)
