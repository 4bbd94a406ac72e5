"""Safetensors in and out, one tensor at a time.

Reading: ``ModelTensors`` maps tensor names to shards of a local HF directory and reads one tensor on
demand, so a merge holds only the tensors of one name across its models. ``view`` is zero-copy: a
tensor over a private (copy-on-write) memory map of the shard, whose pages ``release`` hands back
once the tensor is merged -- no read into a buffer, and peak RSS stays that of one tensor name.

Writing: ``ShardWriter`` knows every output name, dtype and shape before the first tensor is
computed (they are the inputs'), so it writes each shard's header first and then streams tensor
data into place in order -- no shard is ever assembled in memory. The files follow the safetensors
format (8-byte little-endian header length, JSON header padded to 8 bytes, contiguous data).
"""

from __future__ import annotations

import json
import math
import mmap
from dataclasses import dataclass
from pathlib import Path

import torch

from growmerge.artifacts import check_model_dir
from growmerge.errors import GrowmergeError

ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
ST_NAMES = {v: k for k, v in ST_DTYPES.items()}
INDEX_FILE = "model.safetensors.index.json"


def read_header(path: Path, with_size: bool = False):
    """The tensor entries of a safetensors header (and where the data starts, if asked)."""
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as exc:
        raise GrowmergeError(f"{path}: unreadable safetensors header ({exc})") from None
    header.pop("__metadata__", None)
    return (header, 8 + n) if with_size else header


@dataclass(frozen=True)
class TensorInfo:
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class ModelTensors:
    """The tensors of one local model directory, read lazily by name."""

    def __init__(self, path: str | Path):
        self.path = check_model_dir(path)
        index = self.path / INDEX_FILE
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
        else:
            weight_map = {k: "model.safetensors" for k in read_header(self.path / "model.safetensors")}
        self.shard_of: dict[str, str] = dict(weight_map)
        self.info: dict[str, TensorInfo] = {}
        self.offset: dict[str, int] = {}  # absolute file offset of each tensor's data
        for shard in sorted(set(weight_map.values())):
            header, start = read_header(self.path / shard, with_size=True)
            for name, h in header.items():
                if h["dtype"] not in ST_DTYPES:
                    raise GrowmergeError(f"{self.path / shard}: tensor {name} has unsupported dtype {h['dtype']}")
                self.info[name] = TensorInfo(ST_DTYPES[h["dtype"]], tuple(h["shape"]))
                self.offset[name] = start + h["data_offsets"][0]
        self._handles: dict[str, object] = {}
        self._maps: dict[str, tuple] = {}  # shard -> (mmap, uint8 tensor over it)
        self.config = json.loads((self.path / "config.json").read_text())

    @property
    def tied(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", self.config.get("text_config", {}).get(
            "tie_word_embeddings", False)))

    def get(self, name: str) -> torch.Tensor:
        """A new tensor with the stored data."""
        return self.read(name, torch.empty(self.info[name].nbytes, dtype=torch.uint8))

    def read(self, name: str, buf: torch.Tensor) -> torch.Tensor:
        """The tensor read into `buf` (uint8, reused by the caller: fresh full-size allocations
        cost page faults on every tensor) and viewed with its dtype and shape."""
        info = self.info[name]
        shard = self.shard_of[name]
        if shard not in self._handles:
            self._handles[shard] = open(self.path / shard, "rb")
        fh = self._handles[shard]
        fh.seek(self.offset[name])
        view = buf[: info.nbytes]
        if fh.readinto(view.numpy()) != info.nbytes:
            raise GrowmergeError(f"{self.path / shard}: truncated safetensors file (tensor {name})")
        return view.view(info.dtype).view(info.shape)

    def _mapped(self, shard: str):
        if shard not in self._maps:
            with open(self.path / shard, "rb") as fh:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)  # writable, never written back
            self._maps[shard] = (mm, torch.frombuffer(mm, dtype=torch.uint8) if len(mm) else None)
        return self._maps[shard]

    def view(self, name: str) -> torch.Tensor:
        """The tensor as stored, without a copy (a view of the shard's memory map)."""
        info = self.info[name]
        start = self.offset[name]
        mm, raw = self._mapped(self.shard_of[name])
        if start + info.nbytes > len(mm):
            raise GrowmergeError(f"{self.path / self.shard_of[name]}: truncated safetensors file (tensor {name})")
        if info.nbytes == 0:
            return torch.empty(info.shape, dtype=info.dtype)
        return raw[start : start + info.nbytes].view(info.dtype).view(info.shape)

    def release(self, name: str) -> None:
        """Drop the pages of a viewed tensor from this process (they stay in the page cache)."""
        maps = self._maps.get(self.shard_of[name])
        if maps is None:
            return
        page = mmap.PAGESIZE
        start = self.offset[name] // page * page
        stop = min(len(maps[0]), -(-(self.offset[name] + self.info[name].nbytes) // page) * page)
        if stop > start:
            maps[0].madvise(mmap.MADV_DONTNEED, start, stop - start)

    def close(self) -> None:
        for fh in self._handles.values():
            fh.close()
        self._handles.clear()
        self._maps.clear()  # the mmaps close when the last tensor viewing them is gone


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

    def __init__(self, out_dir: Path, layout: dict[str, TensorInfo], max_shard_bytes: int = 5 << 30):
        self.out_dir = Path(out_dir)
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
            header[name] = {"dtype": ST_NAMES[info.dtype], "shape": list(info.shape),
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
