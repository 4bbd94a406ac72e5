"""Data stage without Debian packages: rules (replay, UniMax), parsing, packing, splits, mixtures, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from growmerge.data import packing
from growmerge.data.mixture import build_mixtures, replay_fractions, unimax
from growmerge.data.prepare import prepare_data
from growmerge.data.shards import open_shard, read_shard_meta
from growmerge.data.sources.debian_docs import roff_to_text
from growmerge.data.sources.libreoffice import help_paragraphs, usable_pair
from growmerge.data.spec import DataSpec
from growmerge.data.text import paragraphs, sentences, text_key
from growmerge.errors import GrowmergeError

from conftest import tiny_tokenizer

GROWMERGE = [str(Path(sys.executable).with_name("growmerge"))]


# ---------------------------------------------------------------------------------------------
# The paper's rules
# ---------------------------------------------------------------------------------------------
def test_replay_fractions_from_the_papers_document_counts():
    docs = {"sv": 59.5e6, "fa": 58.8e6, "et": 10.2e6, "is": 3.01e6, "fo": 291e3}
    f = replay_fractions(docs)
    assert f["sv"] == 1.0
    assert {k: round(100 * v, 1) for k, v in f.items() if k != "sv"} == {"fa": 98.8, "et": 17.1, "is": 5.1, "fo": 0.5}
    # The paper rounds to 99, 17, 5 and 1 %.
    assert {k: round(100 * v) for k, v in f.items()} == {"sv": 100, "fa": 99, "et": 17, "is": 5, "fo": 0}
    assert replay_fractions(docs, reference="et")["et"] == 1.0
    with pytest.raises(GrowmergeError, match="reference"):
        replay_fractions(docs, reference="de")


def test_unimax_cap_binds_for_small_languages_and_rest_is_spread_uniformly():
    # Budget 100 over 4 languages: share 25 each. a (1 char, cap 4) takes 4, b (5, cap 20) takes 20;
    # the 76 left go 38/38 to c and d, which are big enough.
    e = unimax({"a": 1, "b": 5, "c": 100, "d": 200}, budget_chars=100, max_epochs=4)
    assert e == pytest.approx({"a": 4.0, "b": 4.0, "c": 0.38, "d": 0.19})
    # Budget larger than one pass over all data: large ones get > 1 epoch, small ones stay capped.
    e = unimax({"a": 1, "b": 10, "c": 20}, budget_chars=60, max_epochs=3)
    assert e == pytest.approx({"a": 3.0, "b": 2.85, "c": 1.425})  # 3, then 57/2 = 28.5 each
    assert sum(e[k] * s for k, s in {"a": 1, "b": 10, "c": 20}.items()) == pytest.approx(60)
    # Exactly all data × max_epochs: everything at the cap.
    assert unimax({"a": 1, "b": 10}, 22, 2) == pytest.approx({"a": 2.0, "b": 2.0})
    # The paper's shape: the two small languages capped at 6 epochs, the 289 left split in three.
    sizes = {"sv": 100.0, "fa": 100.0, "et": 20.0, "is": 5.0, "fo": 0.3}
    e = unimax(sizes, budget_chars=320.8, max_epochs=6)
    assert e == pytest.approx({"fo": 6, "is": 6, "et": 289 / 3 / 20, "sv": 289 / 3 / 100, "fa": 289 / 3 / 100})


def test_unimax_budget_that_cannot_be_met():
    with pytest.raises(GrowmergeError, match="cannot be met"):
        unimax({"a": 1, "b": 10}, budget_chars=23, max_epochs=2)
    with pytest.raises(GrowmergeError):
        unimax({"a": 0, "b": 10}, budget_chars=5, max_epochs=2)


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------
HELP_PAGE = """<html><body><div id="TopLeftHeader"><p id="par_id1">menu</p></div>
<div id="DisplayArea"><h1 id="hd_id10">Deleting Words</h1>
<p id="par_id20" class="listitem">Choose <span class="switchinline"><span hidden="true" class="MAC">
<span class="emph">LibreOffice - Preferences</span></span><span hidden="true" id="defaultx"><span class="emph">
Tools - Options</span></span></span> - Writing<br/>Aids.</p>
<p id="bm_x">not a paragraph</p></div></body></html>"""


def test_help_parser_keeps_default_variant_and_only_display_area():
    pars = help_paragraphs(HELP_PAGE)
    assert pars == {"hd_id10": "Deleting Words", "par_id20": "Choose Tools - Options - Writing Aids."}


def test_roff_to_text_keeps_words_drops_markup():
    roff = '.\\" comment\n.TH LS 1\n.SH NAME\nls \\- list \\fBdirectory\\fR contents\n.PP\nSecond para.\n'
    assert roff_to_text(roff) == "NAME\n\nls - list directory contents\n\nSecond para."


def test_ui_pairs_drop_placeholders_short_and_untranslated():
    assert usable_pair("Insert a new table here", "Setja inn nýja töflu hér", 4)
    assert not usable_pair("Insert table", "Setja inn töflu", 4)
    assert not usable_pair("Delete %s rows from here", "Eyða %s línum héðan", 4)
    assert not usable_pair("Open the {0} file now", "Opna {0} skrána núna", 4)
    assert not usable_pair("Same text in both here", "Same  text in both here", 4)


def test_sentences_are_single_complete_prose():
    text = "Choose a file, e.g. a letter. Then click the OK button!\n\nx = f(y) is code.\n\nshort one."
    assert sentences(text) == ["Choose a file, e.g. a letter.", "Then click the OK button!"]


# ---------------------------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    tiny_tokenizer(320).save_pretrained(d)
    return d


def write_docs(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": str(i), "group": str(i), "text": t}) + "\n"
                            for i, t in enumerate(texts)), encoding="utf-8")
    return path


TEXTS = [f"Hunden {i} springer över staketet. The fox number {i} jumps." * (1 + i % 5) for i in range(60)]


def pack(tok_dir, text_file, out, workers=1, **kw):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    with packing.Packer(tok_dir / "tokenizer.json", workers, tok.eos_token_id) as p:
        return p.pack(text_file, out, seq_len=16, vocab_size=len(tok),
                      tokenizer_hash="h", input_hash="i", **kw), tok


def test_packing_round_trip_with_two_processes(tmp_path, tok_dir, monkeypatch):
    monkeypatch.setattr(packing, "BATCH_DOCS", 7)  # several batches per piece
    monkeypatch.setattr(packing, "PIECE_BYTES", 500)  # several pieces in flight across 2 workers
    meta, tok = pack(tok_dir, write_docs(tmp_path / "d.jsonl", TEXTS), tmp_path / "s.bin", workers=2)
    arr, meta2 = open_shard(tmp_path / "s.bin")
    assert meta == meta2 and meta["dtype"] == "uint16" and arr.shape == (meta["sequences"], 16)
    assert meta["documents"] == 60 and meta["characters"] == sum(map(len, TEXTS))
    ids = arr.reshape(-1).tolist()
    docs, cur = [], []
    for i in ids:
        if i == tok.eos_token_id:
            if cur:
                docs.append(tok.decode(cur))
            cur = []
        else:
            cur.append(i)
    assert docs == TEXTS  # every document, in order, each followed by EOS; padding is EOS only
    # The same bytes from one process with one piece: pieces only split the work.
    monkeypatch.setattr(packing, "PIECE_BYTES", 1 << 30)
    pack(tok_dir, tmp_path / "d.jsonl", tmp_path / "one.bin")
    assert (tmp_path / "one.bin").read_bytes() == (tmp_path / "s.bin").read_bytes()


def test_piece_bounds_start_at_lines_and_cover_the_file(tmp_path):
    f = write_docs(tmp_path / "d.jsonl", TEXTS)
    data = f.read_bytes()
    bounds = packing.piece_bounds(f, 300)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(data) and len(bounds) > 5
    assert all(a == b for (_, a), (b, _) in zip(bounds, bounds[1:]))  # contiguous
    assert all(data[a - 1:a] == b"\n" for a, _ in bounds[1:])  # every piece starts a line


def test_packing_resumes_after_interruption_and_never_exposes_partial(tmp_path, tok_dir, monkeypatch):
    monkeypatch.setattr(packing, "BATCH_DOCS", 5)
    monkeypatch.setattr(packing, "PIECE_BYTES", 400)
    src = write_docs(tmp_path / "d.jsonl", TEXTS)
    ref, _ = pack(tok_dir, src, tmp_path / "ref.bin")
    with pytest.raises(KeyboardInterrupt):
        pack(tok_dir, src, tmp_path / "s.bin", stop_after=3)
    with pytest.raises(GrowmergeError, match="not found|incomplete"):
        read_shard_meta(tmp_path / "s.bin")
    done = sorted(p.name for p in (tmp_path / "s.pieces").glob("0*.json"))
    assert len(done) == 3
    tokenized = []
    real = packing.tokenize_piece
    monkeypatch.setattr(packing, "tokenize_piece", lambda p: tokenized.append(Path(p.out).name) or real(p))
    meta, _ = pack(tok_dir, src, tmp_path / "s.bin")
    n = len(packing.piece_bounds(src, 400))
    assert len(tokenized) == n - 3 and not {t.replace(".tok", ".json") for t in tokenized} & set(done)
    assert meta == ref
    assert (tmp_path / "s.bin").read_bytes() == (tmp_path / "ref.bin").read_bytes()
    assert not (tmp_path / "s.pieces").exists() and not list(tmp_path.glob("*.partial"))
    # A complete shard with the same inputs is not rebuilt.
    tokenized.clear()
    pack(tok_dir, src, tmp_path / "s.bin")
    assert tokenized == []


def test_no_apt_lists_without_root_names_the_command(tmp_path, monkeypatch):
    from growmerge.data import debian

    monkeypatch.setattr(debian, "APT_LISTS", tmp_path)
    monkeypatch.setattr(debian.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(debian.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setenv("GROWMERGE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(GrowmergeError, match=r"run `sudo apt-get update` once"):
        debian.package_root("manpages")


def test_incomplete_meta_is_refused(tmp_path):
    (tmp_path / "x.bin").write_bytes(np.zeros(32, np.uint16).tobytes())
    (tmp_path / "x.meta.json").write_text(json.dumps({"dtype": "uint16", "seq_len": 16, "sequences": 2}))
    with pytest.raises(GrowmergeError, match="incomplete"):
        open_shard(tmp_path / "x.bin")


# ---------------------------------------------------------------------------------------------
# End to end on local files: splits, leakage, eval sets, mixtures, idempotence
# ---------------------------------------------------------------------------------------------
SHARED_EN = "This exact sentence appears on an evaluation page and on a training page."


def make_corpus(root: Path) -> dict:
    """Local JSONL streams; `group` puts several documents on one page (never split)."""
    def rows(lang, n, words):
        out = []
        for i in range(n):
            pars = [f"{words[j % len(words)]} {lang} page {i // 2} paragraph {j} of document {i}." for j in range(4)]
            if lang == "en":
                pars.append(SHARED_EN)  # repeats across pages: must never reach English training
            out.append({"text": "\n\n".join(pars), "page": f"p{i // 2}"})
        return out

    data = {"en": rows("en", 200, ["The", "A", "Every"]), "sv": rows("sv", 120, ["Den", "Ett"]),
            "is": rows("is", 30, ["Það", "Eitt"]), "code": [{"text": f"def f{i}(x):\n    return x + {i}\n", "page": f"f{i}"}
                                                            for i in range(80)]}
    for lang, rs in data.items():
        (root / f"{lang}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rs))
    return data


def corpus_spec(root: Path, **over) -> dict:
    def stream(lang, **kw):
        return {"lang": lang, "sources": [{"kind": "files", "paths": [str(root / f"{lang}.jsonl")],
                                           "group_field": "page"}], **kw}

    spec = {"languages": ["sv", "is"], "seq_len": 32, "eval_fraction": 0.2, "workers": 1,
            "tokenizer": {"vocab_size": 400, "sample_chars": 20000},
            "streams": {"code": stream("code"), "en": stream("en", split={"en_seed": 0.8, "en_base": 0.2}),
                        "sv": stream("sv"), "is": stream("is")}}
    spec.update(over)
    return spec


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root)
    spec = DataSpec.model_validate(corpus_spec(root))
    run = root / "run"
    return spec, run, prepare_data(spec, run)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_split_is_disjoint_by_group_and_keeps_eval_text_out_of_training(prepared):
    spec, run, manifest = prepared
    text = run / "data" / "text"
    for stream in ("en_seed", "en_base", "sv", "is", "code"):
        train, ev = read_jsonl(text / f"{stream}.train.jsonl"), read_jsonl(text / f"{stream}.eval.jsonl")
        assert train and ev
        assert not {d["group"] for d in train} & {d["group"] for d in ev}
        train_pars = {text_key(p) for d in train for p in paragraphs(d["text"])}
        assert not train_pars & {text_key(p) for d in ev for p in paragraphs(d["text"])}
    english_train = [d["text"] for s in ("en_seed", "en_base") for d in read_jsonl(text / f"{s}.train.jsonl")]
    english_eval = [d["text"] for s in ("en_seed", "en_base") for d in read_jsonl(text / f"{s}.eval.jsonl")]
    assert any(SHARED_EN in t for t in english_eval) and not any(SHARED_EN in t for t in english_train)
    # Both English parts are disjoint page sets of one stream, roughly 80/20.
    seed_groups = {d["group"] for d in read_jsonl(text / "en_seed.train.jsonl")}
    base_groups = {d["group"] for d in read_jsonl(text / "en_base.train.jsonl")}
    assert not seed_groups & base_groups and 0.6 < len(seed_groups) / (len(seed_groups) + len(base_groups)) < 0.95


def test_manifest_shards_and_card(prepared):
    spec, run, manifest = prepared
    assert set(manifest["streams"]) == {"code", "en_seed", "en_base", "sv", "is"}
    for name, s in manifest["streams"].items():
        for split in ("train", "eval"):
            arr, meta = open_shard(run / s[split]["shard"])
            assert arr.shape[1] == 32 and meta["tokens"] == s[split]["tokens"] > 0
            assert meta["tokenizer_hash"] == manifest["tokenizer_hash"] and meta["vocab_size"] <= 400
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run / "tokenizer")
    assert tok.bos_token and tok.eos_token and tok.eos_token_id == manifest_eos(run)
    card = (run / "data" / "card.md").read_text()
    assert all(f"| {name} |" in card for name in manifest["streams"])
    assert manifest["eos_id"] == tok.eos_token_id and manifest["bos_id"] == tok.bos_token_id
    sv_sents = (run / "data" / "eval" / "sentences" / "sv.txt").read_text().splitlines()
    assert sv_sents and all(s.startswith("Den") or s.startswith("Ett") for s in sv_sents)


def manifest_eos(run: Path) -> int:
    return json.loads((run / "data" / "sv" / "train.meta.json").read_text())["eos_id"]


def test_second_prepare_is_a_no_op(prepared):
    spec, run, manifest = prepared
    bins = {p: p.stat().st_mtime_ns for p in (run / "data").rglob("*.bin")}
    assert prepare_data(spec, run) == manifest
    assert {p: p.stat().st_mtime_ns for p in (run / "data").rglob("*.bin")} == bins


def test_mixtures_follow_the_replay_rule_and_unimax(prepared):
    spec, run, manifest = prepared
    mix = build_mixtures(run, spec)
    assert set(mix) == {"seed_code", "seed_mixed", "base_en", "adapt_sv", "adapt_is", "multi"}
    assert [(i.name, i.epochs) for i in mix["seed_code"].items] == [("code", 2.0)]
    assert [i.name for i in mix["seed_mixed"].items] == ["code", "en_seed"]
    assert [i.shard for i in mix["base_en"].items] == [run / "data/en_base/train.bin"]
    docs = {lang: manifest["streams"][lang]["train"]["documents"] for lang in ("sv", "is")}
    ratio = docs["is"] / docs["sv"]
    assert docs["sv"] > docs["is"]  # sv is the reference
    adapt_sv = {i.name: i.epochs for i in mix["adapt_sv"].items}
    adapt_is = {i.name: i.epochs for i in mix["adapt_is"].items}
    assert adapt_sv == pytest.approx({"sv": 1, "en_seed_replay": 0.01, "en_base_replay": 0.01, "code_replay": 0.05})
    assert adapt_is == pytest.approx({"is": 1, "en_seed_replay": 0.01 * ratio, "en_base_replay": 0.01 * ratio,
                                      "code_replay": 0.05 * ratio})
    multi = {i.name: i.epochs for i in mix["multi"].items}
    chars = {lang: manifest["streams"][lang]["train"]["characters"] for lang in ("sv", "is")}
    want = unimax(chars, sum(chars.values()), 6.0)
    assert multi["sv"] == pytest.approx(want["sv"]) and multi["is"] == pytest.approx(want["is"])
    assert multi["is"] > 1 > multi["sv"]
    assert multi["code_replay"] == pytest.approx(0.05 * (1 + ratio))
    for m in mix.values():
        assert all(read_shard_meta(i.shard)["complete"] for i in m.items)


def test_pretrained_tokenizer_from_a_local_path(prepared, tmp_path, tok_dir):
    spec, run, manifest = prepared
    spec = spec.model_copy(update={"tokenizer": spec.tokenizer.model_copy(update={"pretrained": str(tok_dir)})})
    m = prepare_data(spec, tmp_path / "run")
    assert m["vocab_size"] == 320 and m["tokenizer_hash"] != manifest["tokenizer_hash"]
    assert (tmp_path / "run/tokenizer/tokenizer.json").read_bytes() != (run / "tokenizer/tokenizer.json").read_bytes()
    arr, meta = open_shard(tmp_path / "run" / m["streams"]["sv"]["train"]["shard"])
    assert int(arr.max()) < 320 and meta["eos_id"] == m["eos_id"]


def test_hf_dataset_source_streams_local_parquet_and_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from growmerge.data.sources import documents
    from growmerge.data.spec import HFDataset

    pq.write_table(pa.table({"content": ["first doc", "second doc", ""], "uid": ["a", "b", "c"]}),
                   tmp_path / "d.parquet")
    spec = HFDataset(kind="hf_dataset", path="parquet", data_files=str(tmp_path / "d.parquet"),
                     text_field="content", id_field="uid")
    docs = list(documents(spec, "sv"))
    assert [(d["id"], d["group"], d["text"], d["lang"]) for d in docs] == [("a", "a", "first doc", "sv"),
                                                                          ("b", "b", "second doc", "sv")]
    write_docs(tmp_path / "d.jsonl", ["x y", "z"])
    spec = HFDataset(kind="hf_dataset", path="json", data_files=str(tmp_path / "d.jsonl"), max_docs=1,
                     group_field="group")
    assert [(d["group"], d["text"]) for d in documents(spec, "en")] == [("0", "x y")]


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit 2
# ---------------------------------------------------------------------------------------------
def bad_configs(root: Path) -> dict[str, tuple[dict, str]]:
    ok = corpus_spec(root)
    return {
        "unknown language": ({**ok, "languages": ["sv", "xx"]}, "unknown language code 'xx'"),
        "english as a target": ({**ok, "languages": ["sv", "en"]}, "always included"),
        "no stream for a language": ({**ok, "languages": ["sv", "is", "et"]}, "no stream for et"),
        "typo key": ({**ok, "seqlen": 3}, "seqlen"),
        "missing file": ({**ok, "streams": {**ok["streams"], "is": {
            "lang": "is", "sources": [{"kind": "files", "paths": [str(root / "nope.jsonl")]}]}}}, "does not exist"),
        "empty source": ({**ok, "streams": {**ok["streams"], "is": {
            "lang": "is", "sources": [{"kind": "files", "paths": [str(root / "empty.jsonl")]}]}}}, "yields no documents"),
        "tokenizer too big": ({**ok, "tokenizer": {"vocab_size": 300, "pretrained": str(root / "tok")}},
                              "raise vocab_size to at least 320"),
    }


@pytest.mark.parametrize("case", ["unknown language", "english as a target", "no stream for a language", "typo key", "missing file",
                                  "empty source", "tokenizer too big"])
def test_bad_config_is_one_line_exit_2(tmp_path, case):
    make_corpus(tmp_path)
    (tmp_path / "empty.jsonl").write_text("")
    tiny_tokenizer(320).save_pretrained(tmp_path / "tok")
    data, message = bad_configs(tmp_path)[case]
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump({"data": data, "train": {"ignored": "other stages' keys"}}))
    proc = subprocess.run([*GROWMERGE, "data", "prepare", str(cfg), "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # progress lines may come first; the error is one line
    assert last.startswith("error: ") and message in last and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "data" / "manifest.json").exists()


def test_unmeetable_budget_fails_when_mixing(prepared):
    spec, run, _ = prepared
    bad = spec.model_copy(update={"unimax": spec.unimax.model_copy(update={"budget_chars": 10**12})})
    with pytest.raises(GrowmergeError, match="cannot be met"):
        build_mixtures(run, bad)


def test_cli_card_and_missing_run_dir(prepared, tmp_path):
    spec, run, manifest = prepared
    proc = subprocess.run([*GROWMERGE, "data", "card", str(run)], capture_output=True, text=True)
    assert proc.returncode == 0 and "| en_base | en |" in proc.stdout
    proc = subprocess.run([*GROWMERGE, "data", "card", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "data prepare" in proc.stderr
    proc = subprocess.run([*GROWMERGE, "data", "prepare", str(tmp_path / "none.yaml")], capture_output=True, text=True)
    assert proc.returncode == 2 and "no such config file" in proc.stderr


def test_files_source_reads_txt_jsonl_in_a_directory(tmp_path):
    from growmerge.data.sources import documents
    from growmerge.data.spec import Files

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("A whole file is one document.\n\nTwo paragraphs.")
    write_docs(tmp_path / "d" / "b.jsonl", ["row zero", "row one"])
    (tmp_path / "d" / "skip.md").write_text("not read")
    docs = list(documents(Files(kind="files", paths=[tmp_path / "d"], group_field="group"), "en"))
    assert [(Path(d["group"]).name if d["group"].endswith(".txt") else d["group"], d["text"]) for d in docs] == [
        ("a.txt", "A whole file is one document.\n\nTwo paragraphs."), ("0", "row zero"), ("1", "row one")]
    with pytest.raises(GrowmergeError, match="no field 'body'"):
        list(documents(Files(kind="files", paths=[tmp_path / "d" / "b.jsonl"], text_field="body"), "en"))
