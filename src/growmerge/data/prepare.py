"""`prepare_data`: sources -> deduplicated train/eval text -> tokenizer -> packed shards -> manifest.

Layout under ``run_dir``::

    tokenizer/                                HF tokenizer directory (BOS and EOS set)
    data/text/<stream>.{train,eval}.jsonl     the text that was packed (inspectable)
    data/<stream>/{train,eval}.bin + .meta.json   packed shards (growmerge.data.shards)
    data/eval/parallel/<lang>.jsonl           {id, en, tgt, lang} from evaluation groups only
    data/eval/sentences/<lang>.txt            held-out single sentences, one per line
    data/manifest.json, data/card.md

Each stage is skipped when its output exists and was built from the same inputs (a stamp holds the
fingerprint), so a second run costs almost nothing and an interrupted one resumes at its stage.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from growmerge.artifacts import atomic_dir, write_json_atomic
from growmerge.data.card import render_card
from growmerge.data.groups import drop_groups, grouped_documents, missing_groups, read_group
from growmerge.data.mixture import mixture_table
from growmerge.data.packing import Packer, Shard
from growmerge.data.probe import probe_sources
from growmerge.data.sources import EXTRACTOR_VERSION
from growmerge.data.spec import DataSpec
from growmerge.data.splits import SplitState, dedup_pairs, split_stream, stream_order
from growmerge.data.text import text_key, unit_hash
from growmerge.data.tokenizer import balanced_sample, load_pretrained, tokenizer_hash, train_bpe
from growmerge.names import ENGLISH

STAMP = "growmerge-data.json"
SPLIT_FIELDS = ("languages", "streams", "eval_fraction", "seed")
SPLIT_VERSION = "2"  # bump when splitting or the evaluation sets change


def read_stamp(d: Path) -> dict:
    f = d / STAMP
    return json.loads(f.read_text()) if f.is_file() else {}


def build_splits(spec: DataSpec, data_dir: Path, log) -> dict:
    """Text splits and evaluation sets (stage 1).

    Streams are split into ``text.partial/`` (side by side, ``split_streams``); a finished stream
    leaves its files and a ``<stream>.done.json`` (its counts, evaluation pairs and sentences), so a
    killed run resumes with the streams it had not finished. The whole appears as ``text/`` in one
    rename once every stream is split."""
    fingerprint = split_fingerprint(spec)
    text_dir, eval_dir = data_dir / "text", data_dir / "eval"
    work = open_split_work(spec, data_dir, log)
    if work is None:
        return read_stamp(text_dir)
    records = split_streams(spec, work, log)
    state, stats = SplitState(), {}
    for name in stream_order(spec):  # in this order, whatever order the streams finished in
        lang = spec.streams[name].lang
        state.pairs[lang], state.sentences[lang] = records[name]["pairs"], records[name]["sentences"]
        stats.update(records[name]["stats"])
    with atomic_dir(eval_dir, force=True) as etmp:
        english = write_eval_sets(etmp, state, spec.seed)
    stamp = {"fingerprint": fingerprint, "streams": stats,
             "eval": {"pairs": {k: len(v) for k, v in state.pairs.items() if v} | {"en": len(english)},
                      "sentences": {k: len(v) for k, v in state.sentences.items() if v}}}
    write_json_atomic(work / STAMP, stamp)  # the .done.json files stay: a kill before the rename redoes nothing
    publish_dir(work, text_dir)
    return stamp


def split_fingerprint(spec: DataSpec) -> str:
    return EXTRACTOR_VERSION + SPLIT_VERSION + spec.fingerprint(*SPLIT_FIELDS)


def open_split_work(spec: DataSpec, data_dir: Path, log) -> Path | None:
    """``text.partial/`` ready for splitting (kept when it holds the same inputs' streams), after
    every source was probed; None when ``text/`` and the evaluation sets are already built."""
    fingerprint = split_fingerprint(spec)
    if read_stamp(data_dir / "text").get("fingerprint") == fingerprint and (data_dir / "eval").is_dir():
        return None
    probe_sources(spec, log)  # a bad source fails now, not after the streams before it were split
    work = data_dir / "text.partial"
    if read_stamp(work).get("fingerprint") != fingerprint:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        write_json_atomic(work / STAMP, {"fingerprint": fingerprint})
    return work


def english_inputs(spec: DataSpec, records: dict[str, dict]) -> tuple[set[int], dict[str, list]]:
    """What an English stream's split needs from the streams split before it: the keys of their
    evaluation pairs' English sides (blocked from English training) and the pairs by language."""
    before = {spec.streams[n].lang: records[n]["pairs"] for n in stream_order(spec) if n in records}
    return {text_key(p["en"]) for pairs in before.values() for p in pairs}, before


def split_streams(spec: DataSpec, work: Path, log) -> dict[str, dict]:
    """Every stream's record (counts, evaluation pairs, sentences), split into `work`.

    Streams finished by an earlier run are kept. The others run in `spec.workers` processes, one
    stream each, except English, which comes after every target language: their evaluation pairs'
    English sides are kept out of English training. A stream's output depends on nothing else, so
    the result is the same in any order and with any number of processes."""
    records: dict[str, dict] = {}
    for name in stream_order(spec):
        done = work / f"{name}.done.json"
        if done.is_file():
            records[name] = json.loads(done.read_text(encoding="utf-8"))
            log(f"split {name}: kept from an earlier run")

    def finish(name: str, record: dict, started: float) -> None:
        write_json_atomic(work / f"{name}.done.json", record)
        drop_groups(name, spec.streams[name], work)
        records[name] = record
        log(f"split {name}: {time.time() - started:.1f} s")
        kill_point(f"split:{name}")

    todo = [n for n in stream_order(spec) if n not in records]
    read_groups(spec, work, todo, log)
    first = [n for n in todo if spec.streams[n].lang != ENGLISH]
    if spec.workers > 1 and len(first) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: the parent may already hold tokenizer threads or open datasets; a fork could deadlock.
        with ProcessPoolExecutor(min(spec.workers, len(first)), mp_context=mp.get_context("spawn")) as pool:
            started = {pool.submit(split_one, name, spec, work, set(), {}): (name, time.time()) for name in first}
            try:
                for future in as_completed(started):
                    name, t = started[future]
                    finish(name, future.result(), t)
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    else:
        for name in first:
            t = time.time()
            finish(name, split_one(name, spec, work, set(), {}), t)
    for name in [n for n in todo if n not in records]:  # English, after every target
        blocked, before = english_inputs(spec, records)
        t = time.time()
        finish(name, split_one(name, spec, work, blocked, before), t)
    return records


def read_groups(spec: DataSpec, work: Path, names: list[str], log) -> None:
    """The file groups of these streams not read yet (``data.groups``), in `spec.workers` processes."""
    units = [(name, k) for name in names for k in missing_groups(name, spec.streams[name], work)]
    if not units:
        return
    t = time.time()
    if spec.workers > 1 and len(units) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(spec.workers, len(units)), mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(read_group, *zip(*[(n, spec.streams[n], work, k) for n, k in units])))
    else:
        for name, k in units:
            read_group(name, spec.streams[name], work, k)
    log(f"read {len(units)} file groups: {time.time() - t:.1f} s")


def split_one(name: str, spec: DataSpec, work: Path, blocked_en: set[int], pairs_before: dict) -> dict:
    """Split one stream (here or in a worker process); its record for ``<name>.done.json``."""
    state = SplitState(blocked_en=blocked_en, pairs=dict(pairs_before))
    stats = split_stream(name, spec.streams[name], spec, work, state,
                         grouped_documents(name, spec.streams[name], work))
    lang = spec.streams[name].lang
    return {"stats": stats, "pairs": state.pairs[lang], "sentences": state.sentences[lang]}


def publish_dir(work: Path, out: Path) -> None:
    """`work` (complete) becomes `out` in one rename, replacing an older `out`."""
    from growmerge.artifacts import fsync_tree, publish

    fsync_tree(work)
    publish(work, out)


def kill_point(name: str) -> None:
    """Tests kill the data stage at a named point with a real SIGKILL (GROWMERGE_KILL_AT=split:sv):
    no cleanup runs, exactly as when a job is pre-empted."""
    if os.environ.get("GROWMERGE_KILL_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def write_eval_sets(eval_dir: Path, state: SplitState, seed: int) -> list[dict]:
    """Pairs and sentences in a seeded random order, so that the first N are a sample of all
    evaluation pages rather than the paragraphs of a few."""
    (eval_dir / "parallel").mkdir()
    (eval_dir / "sentences").mkdir()
    # en.jsonl (English with itself): the English sides, held out from all English training, for
    # Information Parity on English as a forgetting measure.
    english = dedup_pairs([{"id": p["id"], "en": p["en"], "tgt": p["en"], "lang": "en"}
                           for ps in state.pairs.values() for p in ps])
    for lang, pairs in {**state.pairs, "en": english}.items():
        pairs = sorted(pairs, key=lambda p: unit_hash(seed, "pair", p["id"]))
        if pairs:
            with open(eval_dir / "parallel" / f"{lang}.jsonl", "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)
    for lang, sents in state.sentences.items():
        sents = sorted(sents, key=lambda x: unit_hash(seed, "sentence", x))
        if sents:
            (eval_dir / "sentences" / f"{lang}.txt").write_text("\n".join(sents) + "\n", encoding="utf-8")
    return english


def build_tokenizer(spec: DataSpec, run_dir: Path, split_stamp: dict) -> Path:
    """Stage 2: train (or load) the tokenizer; retrained only if the text or its settings change."""
    tok_dir = run_dir / "tokenizer"
    fingerprint = split_stamp["fingerprint"] + spec.fingerprint("tokenizer")
    if read_stamp(tok_dir).get("fingerprint") == fingerprint:
        return tok_dir
    if spec.tokenizer.pretrained:
        tok = load_pretrained(spec.tokenizer.pretrained, spec.tokenizer.vocab_size)
    else:
        files: dict[str, list[Path]] = {}
        for stream, lang in spec.output_streams().items():
            files.setdefault(lang, []).append(run_dir / "data" / "text" / f"{stream}.train.jsonl")
        tok = train_bpe(balanced_sample(files, spec.tokenizer.sample_chars), spec.tokenizer.vocab_size)
    with atomic_dir(tok_dir, force=True) as tmp:
        tok.save_pretrained(tmp)
        write_json_atomic(tmp / STAMP, {"fingerprint": fingerprint})
    return tok_dir


def pack_all(spec: DataSpec, run_dir: Path, tok_dir: Path, split_stamp: dict, log) -> dict:
    """Stage 3: one shard per (stream, split), all packed by one pool (data/packing.py); complete
    shards with the same inputs are kept."""
    eos_id, vocab_size, thash = tokenizer_facts(tok_dir)
    shards = {f"{stream}/{split}": shard_of(spec, run_dir, split_stamp, stream, split, vocab_size, thash)
              for stream in spec.output_streams() for split in ("train", "eval")}
    names = {shard: name for name, shard in shards.items()}
    t = time.time()

    def done(shard, meta) -> None:
        log(f"pack {names[shard]}: {meta['tokens']:,} tokens, {time.time() - t:.1f} s")
        kill_point(f"pack:{names[shard]}")

    with Packer(tok_dir / "tokenizer.json", spec.workers, eos_id) as packer:
        return dict(zip(shards, packer.pack_all(list(shards.values()), on_done=done)))


def tokenizer_facts(tok_dir: Path) -> tuple[int, int, str]:
    """(EOS id, vocabulary size, hash) of the tokenizer in `tok_dir`: what every shard is packed with."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    return tok.eos_token_id, len(tok), tokenizer_hash(tok_dir)


def shard_input(split_stamp: dict, stream: str, split: str) -> str:
    """What a shard is packed from (with the tokenizer): its meta's `input_hash`."""
    return f"{split_stamp['fingerprint']}/{stream}/{split}"


def shard_of(spec: DataSpec, run_dir: Path, split_stamp: dict, stream: str, split: str, vocab_size: int,
             thash: str) -> Shard:
    """The shard of (stream, split): where its text is, where it goes, what it is made of."""
    data_dir = run_dir / "data"
    (data_dir / stream).mkdir(parents=True, exist_ok=True)
    return Shard(data_dir / "text" / f"{stream}.{split}.jsonl", data_dir / stream / f"{split}.bin",
                 seq_len=spec.seq_len, vocab_size=vocab_size, tokenizer_hash=thash,
                 input_hash=shard_input(split_stamp, stream, split))


def prepare_data(spec: DataSpec, run_dir: Path, log=lambda msg: None,
                 epochs: dict[str, dict[str, float]] | None = None) -> dict:
    """Build everything the later stages read; return the manifest (also at data/manifest.json).
    `epochs` (the study's ``phases.<phase>.epochs``) only shapes the mixtures the card shows."""
    run_dir = Path(run_dir)
    data_dir = run_dir / "data"
    manifest_file = data_dir / "manifest.json"
    fingerprint = EXTRACTOR_VERSION + SPLIT_VERSION + spec.fingerprint()
    if epochs:  # the card's mixtures change with them; the shards do not
        fingerprint += "/" + json.dumps(epochs, sort_keys=True)
    if manifest_file.is_file():
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("fingerprint") == fingerprint and all_shards_complete(run_dir, manifest):
            return manifest
    if spec.tokenizer.pretrained:  # fail before the long stages if it does not fit
        load_pretrained(spec.tokenizer.pretrained, spec.tokenizer.vocab_size)
    data_dir.mkdir(parents=True, exist_ok=True)
    split_stamp = build_splits(spec, data_dir, log)
    t = time.time()
    tok_dir = build_tokenizer(spec, run_dir, split_stamp)
    log(f"tokenizer: {time.time() - t:.1f} s")
    metas = pack_all(spec, run_dir, tok_dir, split_stamp, log)
    manifest = make_manifest(spec, split_stamp, metas, tok_dir, fingerprint)
    manifest.update(mixture_table(spec, {s: v["train"] for s, v in manifest["streams"].items()}, epochs))
    card = data_dir / f"card.md.tmp-{os.getpid()}"
    card.write_text(render_card(manifest), encoding="utf-8")
    os.replace(card, data_dir / "card.md")
    write_json_atomic(manifest_file, manifest)  # last: its presence means "prepared"
    return manifest


def make_manifest(spec: DataSpec, split_stamp: dict, metas: dict, tok_dir: Path, fingerprint: str) -> dict:
    streams = {}
    for stream, lang in spec.output_streams().items():
        streams[stream] = {"lang": lang, **{
            split: {"documents": metas[f"{stream}/{split}"]["documents"],
                    "characters": metas[f"{stream}/{split}"]["characters"],
                    "tokens": metas[f"{stream}/{split}"]["tokens"],
                    "sequences": metas[f"{stream}/{split}"]["sequences"],
                    "shard": f"data/{stream}/{split}.bin"} for split in ("train", "eval")}}
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    return {"fingerprint": fingerprint, "seq_len": spec.seq_len, "tokenizer": "tokenizer",
            "bos_id": tok.bos_token_id, "eos_id": tok.eos_token_id,
            "tokenizer_hash": tokenizer_hash(tok_dir), "vocab_size": metas[next(iter(metas))]["vocab_size"],
            "languages": spec.languages, "streams": streams, "eval": split_stamp["eval"]}


def all_shards_complete(run_dir: Path, manifest: dict) -> bool:
    from growmerge.data.shards import meta_path

    for stream in manifest.get("streams", {}).values():
        for split in ("train", "eval"):
            mp = meta_path(run_dir / stream[split]["shard"])
            if not mp.is_file() or not json.loads(mp.read_text()).get("complete"):
                return False
    return True
