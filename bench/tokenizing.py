"""Packing throughput: tokens/s with 2 worker processes vs 1 (in-process), and peak RSS.

Usage: .venv/bin/python bench/tokenizing.py [RUN_DIR]   (default runs/demo, after `growmerge data prepare`)

Packs every training text of the run with the run's tokenizer into a temporary directory, once with
`workers=1` and once with `workers=2`, and prints both rates and their ratio (the peer measured in
the same run: this machine is shared, absolute numbers are noisy).
"""

from __future__ import annotations

import sys
from pathlib import Path


import json
import tempfile
import time

from growmerge.data.packing import Packer
from growmerge.data.tokenizer import tokenizer_hash


def concat_texts(run_dir: Path, out: Path) -> int:
    chars = 0
    with open(out, "w", encoding="utf-8") as fh:
        for f in sorted((run_dir / "data" / "text").glob("*.train.jsonl")):
            for line in open(f, encoding="utf-8"):
                chars += len(json.loads(line)["text"])
                fh.write(line)
    return chars


def peak_rss_mb(_: object = None) -> float:
    """High-water RSS of this process since exec (ru_maxrss of a spawned child would include the
    parent's size at fork time)."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rate(tok_dir: Path, text: Path, out: Path, workers: int, eos_id: int, vocab: int) -> tuple[float, int, float]:
    t = time.perf_counter()
    with Packer(tok_dir / "tokenizer.json", workers, eos_id) as packer:
        meta = packer.pack(text, out, seq_len=256, vocab_size=vocab,
                           tokenizer_hash=tokenizer_hash(tok_dir), input_hash=f"bench-{workers}")
        seconds = time.perf_counter() - t
        workers_rss = max(packer.pool.map(peak_rss_mb, range(workers * 4), chunksize=1)) if packer.pool else 0.0
    return meta["tokens"] / seconds, meta["tokens"], workers_rss


def raw_rate(tok_dir: Path, text: Path) -> float:
    """The peer: the bare Rust tokenizer on one thread over the same texts (no packing, no I/O)."""
    import os

    from tokenizers import Tokenizer

    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    texts = [json.loads(line)["text"] for line in open(text, encoding="utf-8")]
    t = time.perf_counter()
    n = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))
    return n / (time.perf_counter() - t)


def eos_of(tok_dir: Path) -> tuple[int, int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    eos = json.loads((tok_dir / "tokenizer_config.json").read_text())["eos_token"]
    return tok.token_to_id(eos if isinstance(eos, str) else eos["content"]), tok.get_vocab_size()


def main() -> None:
    run_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
    tok_dir = run_dir / "tokenizer"
    if not (tok_dir / "tokenizer.json").is_file():
        sys.exit(f"{tok_dir} not found: run `growmerge data prepare configs/demo.yaml --run-dir {run_dir}` first")
    eos_id, vocab = eos_of(tok_dir)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        chars = concat_texts(run_dir, tmp / "all.jsonl")
        one, tokens, _ = rate(tok_dir, tmp / "all.jsonl", tmp / "one.bin", 1, eos_id, vocab)
        two, _, worker_rss = rate(tok_dir, tmp / "all.jsonl", tmp / "two.bin", 2, eos_id, vocab)
        main_rss = peak_rss_mb()  # before the peer, which holds every text and encoding in memory
        raw = raw_rate(tok_dir, tmp / "all.jsonl")
    print(f"input: {chars:,} characters -> {tokens:,} tokens")
    print(f"bare tokenizer, 1 thread: {raw:12,.0f} tokens/s  (peer)")
    print(f"packing, 1 process      : {one:12,.0f} tokens/s  (ratio to peer {one / raw:.2f})")
    print(f"packing, 2 processes    : {two:12,.0f} tokens/s  (ratio to peer {two / raw:.2f}, to 1 process {two / one:.2f})")
    print(f"peak RSS while packing: main {main_rss:.0f} MB, each worker <= {worker_rss:.0f} MB "
          f"(the in-memory peer then took the main process to {peak_rss_mb():.0f} MB)")


if __name__ == "__main__":
    main()
