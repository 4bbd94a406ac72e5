"""Model directories: the contract between stages.

Every model a stage writes is a Hugging Face directory (config.json, model.safetensors, tokenizer
files) that plain ``AutoModelForCausalLM.from_pretrained`` loads, plus a ``growmerge.json`` sidecar
with lineage and FLOPs::

    {"kind": "seed|base|adapt|clone|merge|external", "parents": [...], "setup": "1x|1x_cloned|2x",
     "languages": [...], "tokens": n, "flops": {"self": x, "cumulative": y}, "spec": {...},
     "fingerprint": "..."}

``fingerprint`` hashes what produced the model (its inputs' identities and its parameters), so what is
computed from a model is recomputed exactly when the model changes (``model_identity``).

Writes are atomic and durable: a stage builds ``<out>.tmp-<host>-<pid>``, fsyncs its files and the
directory, and renames it into place when complete, so a killed process never leaves a directory that
looks finished; a later write of the same output sweeps temporary siblings whose process is gone.
Inputs are sacred: an output equal to, inside or containing an input is refused, and ``--force``
replaces only a previous output of the same command (recognised by its sidecar's ``kind``).

Reading never trusts a file: safetensors headers are checked against the file's size before any
tensor is read, and a memory-mapped input is protected by a read lease, so an input truncated under a
running command is a one-line error instead of a SIGBUS (``ModelTensors``).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from growmerge.errors import EnvironmentFault, GrowmergeError

META_FILE = "growmerge.json"
INDEX_FILE = "model.safetensors.index.json"
WEIGHT_FILES = ("model.safetensors", INDEX_FILE)
HOST = socket.gethostname()  # in temporary names: a PID means something only on its own host
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_name(name: object, what: str) -> str:
    """A language or model name that becomes a path component (and, joined with '+', a merge's)."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise GrowmergeError(f"{what} {name!r} is not a usable name: letters, digits, '_' and '-' only "
                             "(not first), at most 64 characters")
    return name


def check_names(names: Iterable[object], what: str) -> None:
    """Names that become directories side by side: each usable, none twice."""
    seen: set = set()
    for name in names:
        check_name(name, what)
        if name in seen:
            raise GrowmergeError(f"{what} {name!r} is given twice")
        seen.add(name)


# ---------------------------------------------------------------------------------------------
# Atomic, durable directories; temporary siblings and their sweeping
# ---------------------------------------------------------------------------------------------
def temp_sibling(path: Path, kind: str = "tmp") -> Path:
    return path.with_name(f"{path.name}.{kind}-{HOST}-{os.getpid()}")


def _owner_gone(suffix: str) -> bool:
    """`host-pid` (or a bare pid, as older versions named them) of a process on this host that is gone."""
    host, _, pid = suffix.rpartition("-")
    if not pid.isdigit() or host not in ("", HOST) or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep_stale(out: Path) -> None:
    """Remove `out.tmp-*` / `out.old-*` left by killed processes of this host (SIGKILL runs no cleanup)."""
    for kind in ("tmp", "old"):
        for p in out.parent.glob(f"{glob.escape(out.name)}.{kind}-*"):
            if _owner_gone(p.name[len(out.name) + len(kind) + 2:]):
                remove(p)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Every file, then every directory (deepest first), on disk before the rename that publishes them."""
    for dirpath, _, filenames in os.walk(root, topdown=False):
        for name in filenames:
            f = Path(dirpath, name)
            if not f.is_symlink():
                fsync_path(f)
        fsync_path(Path(dirpath))


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """An OSError that names no file (a write() that hits a full disk, say) is given `path`, what was
    being written: the one error line the CLI prints then says where."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def check_apart(out: str | Path, inputs: Iterable[str | Path | None]) -> None:
    """An output equal to, inside or containing an input would destroy it: refused, --force or not."""
    o = Path(out).expanduser().resolve()
    for given in inputs:
        if given is None or not Path(given).expanduser().exists():
            continue  # a hub id, or nothing there to destroy
        p = Path(given).expanduser().resolve()
        relation = "is" if o == p else "is inside" if p in o.parents else "contains" if o in p.parents else None
        if relation:
            raise GrowmergeError(f"output {out} {relation} the input {given}: inputs are never overwritten "
                                 "(with or without --force); choose another output directory")


def own_kind(out: Path) -> str | None:
    """The `kind` in a directory's own growmerge.json (None without one)."""
    if not (out / META_FILE).is_file():
        return None
    kind = read_meta(out).get("kind")
    return kind if isinstance(kind, str) else None


def ensure_free(out: str | Path, force: bool = False, kind: str | None = None,
                inputs: Iterable[str | Path | None] = ()) -> Path:
    """Checked before any work starts: `out` is apart from every input, and is new, empty, or (with
    `force`) a previous output whose growmerge.json says `kind` (None: any directory)."""
    out = Path(out)
    check_apart(out, inputs)
    if out.exists() and not out.is_dir():
        raise GrowmergeError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise GrowmergeError(f"{out} exists and is not empty (pass --force to replace it)")
        found = own_kind(out) if kind is not None else None
        if kind is not None and found != kind:
            what = f"a {found} model" if found else "not a growmerge output (no growmerge.json)"
            raise GrowmergeError(f"{out} is {what}: --force replaces only a previous {kind} output; "
                                 "remove it yourself or choose another output directory")
    return out


@contextlib.contextmanager
def atomic_dir(out: str | Path, force: bool = False, kind: str | None = None,
               inputs: Iterable[str | Path | None] = ()) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it is fsynced and replaces `out` in one rename.

    On any exception (a signal included, see cli.install_signal_handlers) the temporary directory is
    removed and `out` is left as it was.
    """
    out = ensure_free(out, force, kind, inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(out)
    tmp = temp_sibling(out)
    remove(tmp)
    tmp.mkdir()
    try:
        with naming(out):
            yield tmp
            fsync_tree(tmp)
            publish(tmp, out)
    except BaseException:
        remove(tmp)
        raise


def publish(tmp: Path, out: Path) -> None:
    """`tmp` becomes `out`; an existing `out` is moved aside first so that it is never missing *and*
    never half-written, and put back if the rename fails."""
    old = temp_sibling(out, "old") if out.exists() else None
    if old is not None:
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        raise
    fsync_path(out.parent)
    if old is not None:
        remove(old)


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        with naming(path), open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def check_room(nbytes: int, directory: str | Path, what: str) -> None:
    """Refuse before any work to write more than the filesystem under `directory` has free."""
    d = Path(directory).expanduser().absolute()
    while not d.exists():
        d = d.parent
    free = shutil.disk_usage(d).free
    if nbytes > free:
        raise EnvironmentFault(f"{what} needs {human_bytes(nbytes)} but {d} has {human_bytes(free)} free")


def human_bytes(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return ""


# ---------------------------------------------------------------------------------------------
# Safetensors: checked headers, tensors read by name, written with a finite check
# ---------------------------------------------------------------------------------------------
ST_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
MAX_HEADER = 100 << 20  # the safetensors library's own limit


def _entry_problem(e: Any) -> str | None:
    if not isinstance(e, dict):
        return "entry is not an object"
    dtype, shape, offsets = e.get("dtype"), e.get("shape"), e.get("data_offsets")
    if dtype not in ST_ITEMSIZE:
        return f"dtype {dtype!r} is not a safetensors dtype"
    ints = lambda xs: isinstance(xs, list) and all(type(x) is int and x >= 0 for x in xs)  # noqa: E731
    if not ints(shape):
        return f"shape {shape!r} is not a list of sizes"
    if not ints(offsets) or len(offsets) != 2 or offsets[0] > offsets[1]:
        return f"data_offsets {offsets!r} are not [start, end]"
    if offsets[1] - offsets[0] != math.prod(shape) * ST_ITEMSIZE[dtype]:
        return f"data_offsets span {offsets[1] - offsets[0]} bytes, shape {shape} of {dtype} needs " \
               f"{math.prod(shape) * ST_ITEMSIZE[dtype]}"
    return None


def read_safetensors_header(path: str | Path) -> tuple[dict, int]:
    """(tensor entries, offset of the data section). Every entry is checked against the file's size
    before anything is allocated: a hostile header length, an entry without dtype, or a truncated file
    is one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise GrowmergeError(f"{path}: missing safetensors file")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        first = fh.read(8)
        n = int.from_bytes(first, "little") if len(first) == 8 else -1
        if not 0 <= n <= min(MAX_HEADER, size - 8):
            raise GrowmergeError(f"{path}: not a safetensors file (header length {n} for a file of {size} bytes)")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise GrowmergeError(f"{path}: corrupt safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise GrowmergeError(f"{path}: corrupt safetensors file (its header is not a JSON object)")
    header.pop("__metadata__", None)
    for name, entry in header.items():
        problem = _entry_problem(entry)
        if problem:
            raise GrowmergeError(f"{path}: corrupt safetensors file (tensor {name}: {problem})")
        if 8 + n + entry["data_offsets"][1] > size:
            raise GrowmergeError(f"{path}: truncated safetensors file ({size} bytes, tensor {name} ends at byte "
                                 f"{8 + n + entry['data_offsets'][1]})")
    return header, 8 + n


def weight_files(model_dir: str | Path) -> list[Path]:
    """The safetensors files of a model directory: model.safetensors, or the shards its index names
    (plain file names in the directory; the index is checked, never trusted)."""
    model_dir = Path(model_dir)
    index = model_dir / INDEX_FILE
    if not index.is_file():
        return [model_dir / "model.safetensors"]
    data = read_json(index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise GrowmergeError(f"{index}: no weight_map from tensor names to shard files")
    shards = sorted(set(weight_map.values()))
    for shard in shards:
        if shard in ("", ".", "..") or Path(shard).name != shard:
            raise GrowmergeError(f"{index}: shard {shard!r} is not a file name inside {model_dir}")
        if not (model_dir / shard).is_file():
            raise GrowmergeError(f"{index}: shard {shard} is missing")
    return [model_dir / s for s in shards]


def torch_dtypes() -> dict:
    """safetensors dtype name -> torch dtype, for the dtypes growmerge reads and writes."""
    import torch

    return {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
            "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
            "BOOL": torch.bool}


@dataclass(frozen=True)
class TensorInfo:
    dtype: Any  # torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class ModelTensors:
    """The tensors of one local model directory, read by name.

    ``view`` is zero-copy: a tensor over a private memory map of the shard, whose pages ``release``
    hands back once the tensor is merged (no read into a buffer; peak RSS stays that of one tensor
    name). A mapped file truncated by another process would kill this one with SIGBUS (no message,
    nothing cleaned up), so a shard is mapped only under a read lease (``InputLeases``): another
    process that opens it for writing or truncates it waits while this one stops with one error line.
    Where no lease can be had (another filesystem, another owner, a worker thread) ``view`` reads a
    copy instead, and a truncation is a short read: one error line too. ``read``/``get`` always copy.
    """

    def __init__(self, path: str | Path):
        dtypes = torch_dtypes()
        self.path = check_model_dir(path)
        self.config = read_json(self.path / "config.json", dict)
        if not isinstance(self.config.get("model_type"), str):
            raise GrowmergeError(f"{self.path / 'config.json'}: no model_type (not a Hugging Face model config)")
        self.info: dict[str, TensorInfo] = {}
        self.offset: dict[str, int] = {}  # absolute file offset of each tensor's data
        self.file_of: dict[str, Path] = {}
        self._fds: dict[Path, int] = {}
        self._stamp: dict[Path, tuple[int, int]] = {}
        self._maps: dict[Path, tuple] = {}  # shard -> (mmap, uint8 tensor over it)
        try:
            for f in weight_files(self.path):
                header, start = read_safetensors_header(f)
                fd = self._fds[f] = os.open(f, os.O_RDONLY)
                st = os.fstat(fd)
                self._stamp[f] = (st.st_size, st.st_mtime_ns)
                for name, h in header.items():
                    if name in self.file_of:
                        raise GrowmergeError(f"{f}: tensor {name} is also in {self.file_of[name]}")
                    if h["dtype"] not in dtypes:
                        raise GrowmergeError(f"{f}: tensor {name} has unsupported dtype {h['dtype']}")
                    self.info[name] = TensorInfo(dtypes[h["dtype"]], tuple(h["shape"]))
                    self.offset[name] = start + h["data_offsets"][0]
                    self.file_of[name] = f
        except BaseException:
            self.close()
            raise

    @property
    def tied(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", self.config.get("text_config", {}).get(
            "tie_word_embeddings", False)))

    def get(self, name: str):
        """A new tensor with the stored data."""
        import torch

        return self.read(name, torch.empty(self.info[name].nbytes, dtype=torch.uint8))

    def read(self, name: str, buf):
        """The tensor read into `buf` (a uint8 tensor the caller may reuse) with its dtype and shape."""
        info, f = self.info[name], self.file_of[name]
        view = buf[: info.nbytes]
        mv, got = memoryview(view.numpy()), 0
        while got < info.nbytes:
            n = os.preadv(self._fds[f], [mv[got:]], self.offset[name] + got)
            if n == 0:
                raise GrowmergeError(f"{f}: truncated while being read (tensor {name}): another process changed "
                                     "it; run again once it is complete")
            got += n
        return view.view(info.dtype).view(info.shape)

    def _mapped(self, f: Path):
        import mmap

        import torch

        if f not in self._maps:
            mm = mmap.mmap(self._fds[f], 0, access=mmap.ACCESS_COPY)  # writable, never written back
            self._maps[f] = (mm, torch.frombuffer(mm, dtype=torch.uint8) if len(mm) else None)
        return self._maps[f]

    def view(self, name: str):
        """The tensor as stored: without a copy when its shard is leased, else a copy."""
        import torch

        info, f = self.info[name], self.file_of[name]
        if not _LEASES.holds(self._fds[f]):
            return self.get(name)
        if info.nbytes == 0:
            return torch.empty(info.shape, dtype=info.dtype)
        start = self.offset[name]
        _, raw = self._mapped(f)
        return raw[start : start + info.nbytes].view(info.dtype).view(info.shape)

    def release(self, name: str) -> None:
        """Drop the pages of a viewed tensor from this process (they stay in the page cache)."""
        import mmap

        maps = self._maps.get(self.file_of[name])
        if maps is None:
            return
        page = mmap.PAGESIZE
        start = self.offset[name] // page * page
        stop = min(len(maps[0]), -(-(self.offset[name] + self.info[name].nbytes) // page) * page)
        if stop > start:
            maps[0].madvise(mmap.MADV_DONTNEED, start, stop - start)

    def lease(self) -> None:
        """Take read leases on every shard (see the class docstring); shards without one are copied."""
        for f, fd in self._fds.items():
            _LEASES.take(fd, f)

    def check_unchanged(self) -> None:
        """One error line if a file was written in place since it was opened (a replacement by rename
        is harmless: the open file is the old one, read consistently)."""
        for f, fd in self._fds.items():
            st = os.fstat(fd)
            if (st.st_size, st.st_mtime_ns) != self._stamp[f]:
                raise GrowmergeError(f"{f}: changed while it was being read (another process wrote it); nothing "
                                     "was written: run again once it is complete")

    def close(self) -> None:
        """Close the files (which releases their leases); the maps close with the last view of them."""
        for fd in self._fds.values():
            _LEASES.drop(fd)
            os.close(fd)
        self._fds.clear()
        self._maps.clear()


class InputLeases:
    """Linux read leases on memory-mapped inputs (fcntl F_SETLEASE). While a lease is held, another
    process's open-for-writing or truncate() of the file blocks (up to /proc/sys/fs/lease-break-time)
    and this process gets SIGIO; the handler raises a GrowmergeError naming the file in the main
    thread, whose unwinding closes the file and so lets the writer go on. Only the main thread can
    install a signal handler: elsewhere, or where the filesystem or owner refuses a lease, ``take``
    returns False and the caller copies instead of mapping."""

    def __init__(self):
        self.held: dict[int, Path] = {}
        self.previous = None

    def holds(self, fd: int) -> bool:
        return fd in self.held

    def take(self, fd: int, path: Path) -> bool:
        import fcntl
        import signal
        import threading

        if fd in self.held:
            return True
        if not hasattr(fcntl, "F_SETLEASE") or threading.current_thread() is not threading.main_thread():
            return False
        if not self.held:
            self.previous = signal.signal(signal.SIGIO, self._on_sigio)
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError:  # open for writing elsewhere, another owner, a filesystem without leases
            self._restore()
            return False
        self.held[fd] = path
        return True

    def drop(self, fd: int) -> None:
        if self.held.pop(fd, None) is not None:
            self._restore()

    def _restore(self) -> None:
        import signal

        if not self.held and self.previous is not None:
            signal.signal(signal.SIGIO, self.previous)
            self.previous = None

    def _on_sigio(self, signum, frame) -> None:
        import fcntl

        broken = [p for fd, p in self.held.items() if fcntl.fcntl(fd, fcntl.F_GETLEASE) == fcntl.F_UNLCK]
        if broken:
            raise GrowmergeError(f"{broken[0]}: another process is writing it while it is read; nothing was "
                                 "written: run again once it is complete")
        if callable(self.previous):
            self.previous(signum, frame)


_LEASES = InputLeases()


def non_finite(tensor) -> bool:
    """Whether a floating tensor holds a NaN or an infinity: its min and max in one pass (NaN
    propagates through both), ~20x cheaper than ``isfinite(t).all()`` and without a temporary."""
    import torch

    if not tensor.is_floating_point() or tensor.numel() == 0:
        return False
    lo, hi = torch.aminmax(tensor)
    return not (math.isfinite(float(lo)) and math.isfinite(float(hi)))


def check_finite(name: str, tensor, where: str | Path) -> None:
    """Refuse to write a model with a NaN or infinite weight (nothing downstream can use it)."""
    if non_finite(tensor):
        raise GrowmergeError(f"{where}: tensor {name} would hold NaN or infinite values; nothing was written")


def write_safetensors(path: str | Path, tensors: dict, metadata: dict | None = None, finite: bool = True) -> None:
    """Write a safetensors file tensor by tensor (`finite`: refusing NaN and infinite weights).

    `safetensors.torch.save_file` first serialises everything into one bytes object, which doubles
    peak memory and costs a full extra copy; the format (8-byte header size, JSON header, raw
    little-endian data) is simple enough to stream.
    """
    import torch

    names = sorted(tensors)
    header: dict[str, Any] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name in names:
        t = tensors[name]
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": SAFETENSORS_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little"))
        fh.write(raw)
        for name in names:
            t = tensors[name].detach().cpu().contiguous()
            if finite:
                check_finite(name, t, path)
            if t.numel():
                fh.write(t.reshape(-1).view(torch.uint8).numpy().data)


class _LazyDtypes(dict):
    def __missing__(self, key):
        self.update({v: k for k, v in torch_dtypes().items()})
        return dict.__getitem__(self, key)


SAFETENSORS_DTYPES = _LazyDtypes()  # torch dtype -> safetensors name


# ---------------------------------------------------------------------------------------------
# JSON files
# ---------------------------------------------------------------------------------------------
def read_json(path: str | Path, expect: type | None = None) -> Any:
    """A JSON file, or one error line naming it (missing, not UTF-8, not JSON, not an `expect`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GrowmergeError(f"{path}: missing") from None
    except UnicodeDecodeError:
        raise GrowmergeError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise GrowmergeError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if expect is not None and not isinstance(data, expect):
        raise GrowmergeError(f"{path}: expected a JSON {'object' if expect is dict else expect.__name__}")
    return data


# ---------------------------------------------------------------------------------------------
# growmerge.json
# ---------------------------------------------------------------------------------------------
def read_meta(model_dir: str | Path) -> dict:
    """The sidecar of a model directory; a model from elsewhere counts as an external model with no
    recorded training cost."""
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        return {"kind": "external", "parents": [], "flops": {"self": 0.0, "cumulative": 0.0}}
    return read_json(path, dict)


def write_meta(model_dir: str | Path, meta: dict) -> None:
    write_json_atomic(Path(model_dir) / META_FILE, meta)


def cumulative_flops(model_dir: str | Path) -> float:
    return float(read_meta(model_dir).get("flops", {}).get("cumulative", 0.0))


def fingerprint_of(data: Any) -> str:
    """A short stable hash of JSON-able data (what produced an output)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_identity(model_dir: str | Path) -> str:
    """What a model is, for the fingerprints of whatever is computed from it: the fingerprint its
    producer recorded (a training run and step, a clone, a merge, a conversion) or, for a model from
    elsewhere, its config's bytes and its weight files' sizes and modification times (so an outside
    model edited in place gets a new identity). A hub id is its own identity."""
    path = Path(model_dir)
    if not path.is_dir():
        return fingerprint_of({"hub": str(model_dir)})
    meta = read_meta(path)
    if meta.get("fingerprint"):
        return fingerprint_of({"fingerprint": meta["fingerprint"], "step": meta.get("step")})
    config = path / "config.json"
    stamps = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in weight_files(path) if f.is_file()]
    return fingerprint_of({"config": hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None,
                           "weights": stamps})


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def is_local(src: str | Path) -> bool:
    """A path that exists, or anything that cannot be a hub id (`org/name`), is treated as local."""
    s = str(src)
    return Path(s).expanduser().exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", s) or s.startswith(".")


def check_model_dir(src: str | Path) -> Path:
    """A local model directory must have a config and safetensors weights (we never unpickle)."""
    path = Path(src).expanduser()
    if not path.is_dir():
        raise GrowmergeError(f"{path}: no such model directory")
    if not (path / "config.json").is_file():
        raise GrowmergeError(f"{path}: no config.json (not a Hugging Face model directory)")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
        hint = f" (found {pickled[0]}: pickled checkpoints are refused, convert to safetensors)" if pickled else ""
        raise GrowmergeError(f"{path}: no model.safetensors weights{hint}")
    return path


def check_safetensors(path: Path) -> None:
    """Every weight file's header checked against its size: a truncated or corrupt file is one error
    line naming it, before any loader reads it."""
    for f in weight_files(path):
        read_safetensors_header(f)


# What a loader raises for a config or weights it cannot make sense of (a corrupt or foreign model).
LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError)


def load_config(src: str | Path):
    from transformers import AutoConfig

    if is_local(src):
        read_json(check_model_dir(src) / "config.json", dict)
    try:
        return AutoConfig.from_pretrained(str(src))
    except LOAD_ERRORS as exc:
        raise GrowmergeError(f"{src}: cannot load config ({first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def load_model(src: str | Path, dtype: Any = None, **kwargs):
    """Load a causal LM from a local directory or a hub id, safetensors only, float32 by default."""
    import torch
    from transformers import AutoModelForCausalLM

    if is_local(src):
        check_safetensors(check_model_dir(src))
        read_json(Path(src) / "config.json", dict)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(src), dtype=dtype or torch.float32, use_safetensors=True, **kwargs
        )
    except MemoryError:
        raise
    except LOAD_ERRORS as exc:
        raise GrowmergeError(f"{src}: cannot load model ({first_line(exc)})") from None
    model.eval()
    return model


def load_tokenizer(src: str | Path, required: bool = False):
    """The tokenizer saved beside a model (None if there is none and it is not required)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(src))
    except (OSError, ValueError, TypeError) as exc:
        if required:
            raise GrowmergeError(f"{src}: no usable tokenizer ({first_line(exc)})") from None
        return None


def copy_tokenizer_files(src: str | Path, dst: str | Path) -> None:
    """Copy tokenizer files verbatim (cheaper and more faithful than load + save)."""
    names = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
             "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "generation_config.json")
    for name in names:
        f = Path(src) / name
        if f.is_file():
            shutil.copy2(f, Path(dst) / name)


def save_model(model, out: str | Path, tokenizer=None, meta: dict | None = None, force: bool = False,
               tokenizer_from: str | Path | None = None, kind: str | None = None, inputs=()) -> Path:
    """Write a loadable HF directory atomically: safetensors + config + tokenizer + growmerge.json.
    A model with a NaN or infinite weight is refused (nothing is written)."""
    out = Path(out)
    for name, t in model.state_dict().items():
        check_finite(name, t, out)
    with atomic_dir(out, force=force, kind=kind, inputs=inputs) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        elif tokenizer_from is not None:
            copy_tokenizer_files(tokenizer_from, tmp)
        if meta is not None:
            write_meta(tmp, meta)
    return out


def resolve_source(src: str | Path) -> Path:
    """A local model directory, or a hub id downloaded (safetensors only) into the HF cache."""
    if not is_local(src):
        from huggingface_hub import snapshot_download

        try:
            src = snapshot_download(str(src), allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.jinja"])
        except Exception as exc:  # offline, unknown repo, gated repo: all one line for the user
            raise GrowmergeError(f"{src}: cannot fetch from the Hugging Face hub ({type(exc).__name__})") from None
    path = check_model_dir(src)
    check_safetensors(path)
    return path
