"""Language vectors (model - base): are they near-orthogonal, like task vectors?

One streaming pass accumulates the Gram matrix of the vectors, overall, per module type
(``self_attn.q_proj``, ``mlp.up_proj``, ``embed_tokens``, ...) and per layer; cosines and norms
follow from it. Chunks of 2^20 elements are multiplied in float32 and summed in float64, so
10^8-element tensors neither lose precision nor need float64 copies.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from growmerge.errors import GrowmergeError
from growmerge.merge.engine import open_readers
from growmerge.merge.tensorio import ModelTensors, merged_layout

CHUNK = 1 << 20
LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def module_type(name: str) -> str:
    """`model.layers.3.self_attn.q_proj.weight` -> `self_attn.q_proj`; `model.norm.weight` -> `norm`."""
    stem = name.removesuffix(".weight").removesuffix(".bias")
    m = LAYER.search(stem)
    return stem[m.end():] if m else stem.removeprefix("model.")


def layer_of(name: str) -> str:
    m = LAYER.search(name)
    return m.group(1) if m else "other"


def _summary(gram: torch.Tensor) -> dict:
    norms = gram.diagonal().clamp_min(0).sqrt()
    denom = norms[:, None] * norms[None, :]
    cos = torch.where(denom > 0, gram / denom.clamp_min(1e-300), torch.zeros_like(gram))
    return {"cosine": cos.tolist(), "norm": norms.tolist()}


def vector_similarity(base: str | Path, models: dict[str, str | Path]) -> dict:
    """Cosine similarity matrix and norms of (model - base), overall / per module type / per layer."""
    if len(models) < 2:
        raise GrowmergeError("analyze vectors needs at least two models (lang=dir ...)")
    langs = list(models)
    readers = open_readers([Path(base)] + [Path(models[lang]) for lang in langs])
    try:
        return _similarity(readers, base, langs)
    finally:
        for r in readers:
            r.close()


def _similarity(readers: list[ModelTensors], base: str | Path, langs: list[str]) -> dict:
    layout = merged_layout(readers)
    n = len(langs)
    overall = torch.zeros(n, n, dtype=torch.float64)
    by_module: dict[str, torch.Tensor] = {}
    by_layer: dict[str, torch.Tensor] = {}
    for name, info in layout.items():
        if not info.dtype.is_floating_point:
            continue
        b = readers[0].get(name).float().reshape(-1)
        flat = [r.get(name).float().reshape(-1) for r in readers[1:]]
        g = torch.zeros_like(overall)
        for start in range(0, b.numel(), CHUNK):  # float32 products, float64 running sums
            d = torch.stack([x[start:start + CHUNK] for x in flat]) - b[start:start + CHUNK]
            g += (d @ d.T).double()
        overall += g
        by_module.setdefault(module_type(name), torch.zeros_like(overall)).add_(g)
        by_layer.setdefault(layer_of(name), torch.zeros_like(overall)).add_(g)
    layer_key = lambda k: (k == "other", int(k) if k.isdigit() else math.inf)  # noqa: E731
    return {
        "languages": langs,
        "base": str(base),
        "overall": _summary(overall),
        "by_module": {k: _summary(v) for k, v in sorted(by_module.items())},
        "by_layer": {k: _summary(by_layer[k]) for k in sorted(by_layer, key=layer_key)},
    }


def write_heatmap(result: dict, path: str | Path) -> Path:
    """PNG: the overall cosine matrix plus one small panel per module type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("overall", result["overall"])] + list(result["by_module"].items())
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    langs = result["languages"]
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (title, summary) in zip(axes.flat, panels):
        im = ax.imshow(summary["cosine"], vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(len(langs)), langs, fontsize=7, rotation=90)
        ax.set_yticks(range(len(langs)), langs, fontsize=7)
        for i, row in enumerate(summary["cosine"]):
            for j, v in enumerate(row):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="cosine(model - base)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
