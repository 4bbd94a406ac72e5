"""The builtin Debian sources on real packages (downloaded once with apt-get into the cache)."""

from __future__ import annotations

import json
import shutil

import pytest

from growmerge.data.debian import apt_lists_present, package_root
from growmerge.data.prepare import prepare_data
from growmerge.data.sources import documents
from growmerge.data.sources.libreoffice import PLACEHOLDER, help_dir, help_paragraphs
from growmerge.data.spec import DataSpec, LibreOfficeHelp
from growmerge.data.text import paragraphs, text_key
from growmerge.errors import GrowmergeError

pytestmark = pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None,
                                reason="needs Debian's apt-get and dpkg-deb")
PAGE = "text/simpress/guide/print_tofit.html"
PACKAGES = ("libreoffice-help-en-us", "libreoffice-help-sv", "libreoffice-help-et", "libreoffice-l10n-is", "manpages")


@pytest.fixture(scope="module", autouse=True)
def packages():
    """Download (once, into the cache) what these tests read; a machine that cannot is skipped."""
    try:
        for p in PACKAGES:
            package_root(p)
    except GrowmergeError as exc:
        pytest.skip(f"Debian packages unavailable: {exc}")


def test_alignment_by_paragraph_id_on_a_known_page():
    pars = {lang: help_paragraphs((help_dir(lang) / PAGE).read_text(encoding="utf-8")) for lang in ("en", "sv", "et")}
    assert pars["en"]["par_id3154658"] == "Open the document that you want to print."
    assert pars["sv"]["par_id3154658"] == "Öppna det dokument du vill skriva ut."
    assert pars["et"]["par_id3154658"] == "Ava dokument, mida soovid printida."
    assert pars["sv"]["hd_id3155067"] == "Anpassa utskrift till papperssida"
    assert set(pars["en"]) == set(pars["sv"]) == set(pars["et"])
    # The source document of that page carries the same pair, keyed by (page, id).
    doc = next(d for d in documents(LibreOfficeHelp(kind="libreoffice_help"), "sv") if d["id"] == PAGE)
    assert [f"{PAGE}#par_id3154658", "Open the document that you want to print.",
            "Öppna det dokument du vill skriva ut."] in doc["pairs"]


def test_missing_package_is_one_clear_error():
    if not apt_lists_present():
        pytest.skip("no apt lists on this machine")
    with pytest.raises(GrowmergeError, match="libreoffice-help-xx.*could not be downloaded.*apt-cache policy"):
        package_root("libreoffice-help-xx")


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    spec = DataSpec.model_validate({
        "languages": ["sv", "is"], "seq_len": 64, "workers": 1,
        "tokenizer": {"vocab_size": 600, "sample_chars": 50_000},
        "streams": {
            "code": {"lang": "code", "sources": [{"kind": "python_code"}], "max_chars": 200_000},
            "en": {"lang": "en", "split": {"en_seed": 0.8, "en_base": 0.2}, "max_chars": 1_500_000,
                   "sources": [{"kind": "libreoffice_help"}, {"kind": "english_docs", "packages": ["manpages"]}]},
            "sv": {"lang": "sv", "sources": [{"kind": "libreoffice_help"}], "max_chars": 300_000},
            "is": {"lang": "is", "sources": [{"kind": "libreoffice_ui"}], "eval_fraction": 0.2},
        }})
    run = tmp_path_factory.mktemp("real") / "run"
    return spec, run, prepare_data(spec, run)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_no_evaluation_english_in_any_english_training_text(real_run):
    spec, run, manifest = real_run
    text, ev = run / "data" / "text", run / "data" / "eval"
    pairs = {lang: read_jsonl(ev / "parallel" / f"{lang}.jsonl") for lang in ("sv", "is")}
    assert len(pairs["sv"]) > 100 and len(pairs["is"]) > 100
    eval_en = {text_key(p["en"]) for ps in pairs.values() for p in ps}
    train_en = [p for s in ("en_seed", "en_base") for d in read_jsonl(text / f"{s}.train.jsonl")
                for p in paragraphs(d["text"])]
    assert len(train_en) > 1000
    assert not {text_key(p) for p in train_en} & eval_en
    english = read_jsonl(ev / "parallel" / "en.jsonl")  # the English sides, paired with themselves
    assert {text_key(p["en"]) for p in english} == eval_en and all(p["en"] == p["tgt"] for p in english)
    # Evaluation pages are evaluation pages in every language: no group on both sides anywhere.
    eval_groups = {d["group"] for s in manifest["streams"] for d in read_jsonl(text / f"{s}.eval.jsonl")}
    train_groups = {d["group"] for s in manifest["streams"] for d in read_jsonl(text / f"{s}.train.jsonl")}
    assert not eval_groups & train_groups
    # ...and the target side of an evaluation pair is not trained on either.
    sv_train = {text_key(p) for d in read_jsonl(text / "sv.train.jsonl") for p in paragraphs(d["text"])}
    assert not sv_train & {text_key(p["tgt"]) for p in pairs["sv"]}


def test_real_streams_and_eval_sets(real_run):
    spec, run, manifest = real_run
    for name, s in manifest["streams"].items():
        assert s["train"]["tokens"] > 0 and s["eval"]["tokens"] > 0, name
    assert not any(PLACEHOLDER.search(p["tgt"]) for p in read_jsonl(run / "data/eval/parallel/is.jsonl"))
    sents = (run / "data/eval/sentences/sv.txt").read_text(encoding="utf-8").splitlines()
    assert len(sents) > 100 and all(s[-1] in ".!?" for s in sents)
    assert (run / "data/eval/sentences/en.txt").is_file()
