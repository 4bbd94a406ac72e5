"""Safetensors in and out, one tensor at a time.

Reading: ``artifacts.ModelTensors`` maps tensor names to shards of a local HF directory (headers
checked against the files) and reads one tensor on demand into a reused buffer, so a merge holds only
the tensors of one name across its models.

Writing: ``ShardWriter`` knows every output name, dtype and shape before the first tensor is
computed (they are the inputs'), so it writes each shard's header first and then streams tensor
data into place in order -- no shard is ever assembled in memory. The files follow the safetensors
format (8-byte little-endian header length, JSON header padded to 8 bytes, contiguous data). Each
tensor is checked for NaN and infinities as it is written (after the cast to the output dtype, which
can overflow float16).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from growmerge.artifacts import INDEX_FILE, SAFETENSORS_DTYPES, ModelTensors, TensorInfo, check_finite, non_finite
from growmerge.errors import GrowmergeError

__all__ = ["ModelTensors", "TensorInfo", "ShardWriter", "merged_layout"]


def merged_layout(readers: list[ModelTensors]) -> dict[str, TensorInfo]:
    """Names (sorted) and shapes shared by all inputs; the first difference is one clear error.

    The layout is the first reader's (the base if there is one). A tied lm_head is dropped: it is
    the embedding, and from_pretrained re-ties it (mergekit does not write it either).
    """
    first = readers[0]
    names = sorted(first.info)
    if first.tied:
        names = [n for n in names if n != "lm_head.weight"]
    for other in readers[1:]:
        other_names = set(other.info) - ({"lm_head.weight"} if first.tied else set())
        missing = next((n for n in names if n not in other_names), None)
        extra = next((n for n in sorted(other_names) if n not in first.info), None)
        if missing or extra:
            which = f"{missing} is missing from {other.path}" if missing else f"{other.path} has an extra tensor {extra}"
            raise GrowmergeError(f"models differ: {which} (all models must share one architecture)")
        bad = next((n for n in names if other.info[n].shape != first.info[n].shape), None)
        if bad:
            raise GrowmergeError(
                f"models differ: {bad} is {list(first.info[bad].shape)} in {first.path} but "
                f"{list(other.info[bad].shape)} in {other.path} (all models must share one architecture)"
            )
    return {n: first.info[n] for n in names}


class ShardWriter:
    """Streams tensors, in the declared order, into pre-laid-out safetensors shards."""

    def __init__(self, out_dir: Path, layout: dict[str, TensorInfo], max_shard_bytes: int = 5 << 30,
                 strict: bool = True, label: str | Path | None = None):
        """`strict`: a NaN or infinite output tensor is an error naming `label` (the output as the user
        knows it); otherwise (mergekit-compat mode, which reproduces mergekit's NaNs bit for bit) its
        name is recorded in `non_finite`."""
        self.out_dir = Path(out_dir)
        self.label = label or self.out_dir
        self.strict = strict
        self.non_finite: list[str] = []
        self.layout = layout
        shards: list[list[str]] = [[]]
        size = 0
        for name, info in layout.items():
            if shards[-1] and size + info.nbytes > max_shard_bytes:
                shards.append([])
                size = 0
            shards[-1].append(name)
            size += info.nbytes
        n = len(shards)
        self.files = ["model.safetensors"] if n == 1 else [
            f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)
        ]
        self.shards = shards
        self.file_of = {name: f for f, names in zip(self.files, shards) for name in names}
        self.order = list(layout)
        self.pos = 0
        self.fh = None

    def _open(self, shard: int) -> None:
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name in self.shards[shard]:
            info = self.layout[name]
            header[name] = {"dtype": SAFETENSORS_DTYPES[info.dtype], "shape": list(info.shape),
                            "data_offsets": [offset, offset + info.nbytes]}
            offset += info.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.fh = open(self.out_dir / self.files[shard], "wb")
        self.fh.write(len(raw).to_bytes(8, "little"))
        self.fh.write(raw)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        expected = self.order[self.pos]
        info = self.layout[name]
        if name != expected or tuple(tensor.shape) != info.shape:
            raise RuntimeError(f"writer expected {expected} {info.shape}, got {name} {tuple(tensor.shape)}")
        shard = self.files.index(self.file_of[name])
        if self.fh is None or self.fh.name != str(self.out_dir / self.files[shard]):
            self.close_file()
            self._open(shard)
        data = tensor.to(info.dtype).contiguous().reshape(-1)
        if self.strict:
            check_finite(name, data, self.label)
        elif non_finite(data):
            self.non_finite.append(name)
        self.fh.write(data.view(torch.uint8).numpy().data)
        self.pos += 1

    def close_file(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None

    def finish(self) -> None:
        self.close_file()
        if self.pos != len(self.order):
            raise RuntimeError(f"writer got {self.pos} of {len(self.order)} tensors")
        if len(self.files) > 1:
            index = {"metadata": {"total_size": sum(i.nbytes for i in self.layout.values())},
                     "weight_map": self.file_of}
            (self.out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
