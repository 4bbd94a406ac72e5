"""Sources fail fast (every source opens and yields text before any stream is split), and Python-Edu
is read from its blob ids joined with contents downloaded beforehand (a local fixture)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from growmerge.data import prepare as prepare_mod
from growmerge.data.prepare import prepare_data
from growmerge.data.sources import documents
from growmerge.data.spec import DataSpec, PythonCode, PythonEdu
from growmerge.errors import GrowmergeError

from test_data import corpus_spec, make_corpus

GROWMERGE = [str(Path(sys.executable).with_name("growmerge"))]
FIXTURE = Path(__file__).parent / "data" / "python_edu"


def with_code_source(root: Path, source: dict) -> dict:
    """The local corpus with the code stream (split last) read from `source`."""
    spec = corpus_spec(root)
    spec["streams"]["code"] = {"lang": "code", "sources": [source]}
    return spec


def local_dataset(root: Path) -> Path:
    """A local dataset directory with one subset `sub_a` (declared in its README, as on the hub)."""
    ds = root / "ds"
    (ds / "sub_a").mkdir(parents=True)
    (ds / "sub_a" / "a.jsonl").write_text(json.dumps({"content": "def f():\n    return 1\n"}) + "\n")
    (ds / "README.md").write_text("---\nconfigs:\n- config_name: sub_a\n  data_files: sub_a/*.jsonl\n---\n")
    return ds


def source_errors(root: Path) -> dict[str, tuple[dict, str]]:
    ds = local_dataset(root)
    return {
        "missing local file": ({"kind": "files", "paths": [str(root / "gone.jsonl")]}, "does not exist"),
        "missing text field": ({"kind": "files", "paths": [str(root / "code.jsonl")], "text_field": "body"},
                               "row 0 has no field 'body'"),
        "missing dataset": ({"kind": "hf_dataset", "path": str(root / "no-such-dataset")}, "cannot load"),
        "missing hub dataset": ({"kind": "hf_dataset", "path": "nobody/no-such-dataset"}, "cannot load"),
        "missing subset": ({"kind": "hf_dataset", "path": str(ds), "name": "sub_b", "text_field": "content"},
                           "BuilderConfig 'sub_b' not found"),
        "missing field in a subset": ({"kind": "hf_dataset", "path": str(ds), "name": "sub_a"},
                                      "has no field 'text'"),
        "empty source": ({"kind": "files", "paths": [str(root / "empty.jsonl")]}, "yields no documents"),
        "python_edu without contents": ({"kind": "python_edu", "path": "json", "name": None,
                                         "data_files": str(FIXTURE / "rows.jsonl"), "contents": str(root / "blobs")},
                                        "does not exist: download the blobs first"),
    }


@pytest.mark.parametrize("case", [
    "missing local file", "missing text field", "missing dataset", "missing hub dataset", "missing subset",
    "missing field in a subset", "empty source", "python_edu without contents"])
def test_a_bad_source_fails_before_any_stream_is_split(tmp_path, monkeypatch, case):
    make_corpus(tmp_path)
    (tmp_path / "empty.jsonl").write_text("")
    source, message = source_errors(tmp_path)[case]
    spec = DataSpec.model_validate(with_code_source(tmp_path, source))
    split = []
    monkeypatch.setattr(prepare_mod, "split_stream", lambda *a, **k: split.append(a[0]))
    with pytest.raises(GrowmergeError) as err:
        prepare_data(spec, tmp_path / "run")
    msg = str(err.value)
    assert msg.startswith("stream code, source 1 (") and message in msg and "\n" not in msg
    assert split == []  # the code stream is split last: nothing before it was read either
    assert not (tmp_path / "run" / "data" / "text").exists()


def test_cli_names_stream_and_source_in_one_line_exit_2(tmp_path):
    make_corpus(tmp_path)
    spec = corpus_spec(tmp_path)
    spec["streams"]["is"]["sources"].append({"kind": "hf_dataset", "path": "parquet",
                                             "data_files": str(tmp_path / "missing.parquet")})
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump({"data": spec}))
    proc = subprocess.run([*GROWMERGE, "data", "prepare", str(cfg), "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: stream is, source 2 (hf_dataset parquet): "), lines
    assert "missing.parquet" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "data" / "text").exists()


# ---------------------------------------------------------------------------------------------
# Python-Edu
# ---------------------------------------------------------------------------------------------
def edu(contents: Path = FIXTURE / "contents", **kw) -> PythonEdu:
    # Rows from local JSONL in the dataset's own columns; with the hub: path/name default to smollm-corpus.
    return PythonEdu(kind="python_edu", path="json", name=None, data_files=str(FIXTURE / "rows.jsonl"),
                     contents=contents, **kw)


def test_python_edu_joins_blob_ids_with_downloaded_contents():
    rows = [json.loads(line) for line in (FIXTURE / "rows.jsonl").read_text().splitlines()]
    docs = list(documents(edu(), "code"))
    assert [d["id"] for d in docs] == [r["blob_id"] for r in rows]
    assert [d["group"] for d in docs] == [r["repo_name"] for r in rows]  # a repository is never split
    assert [len(d["text"].encode()) for d in docs] == [r["length_bytes"] for r in rows]  # .gz and plain alike
    assert docs[0]["text"].startswith('"""Fibonacci numbers') and all(d["lang"] == "code" for d in docs)


def test_python_edu_missing_blob_is_an_error_or_skipped(tmp_path):
    import shutil

    shutil.copytree(FIXTURE / "contents", tmp_path / "c")
    gone = sorted((tmp_path / "c").iterdir())[0]
    gone.unlink()
    blob = gone.name.removesuffix(".gz")
    with pytest.raises(GrowmergeError, match=f"blob {blob} .* is not in .*; download it, or set missing: skip"):
        list(documents(edu(tmp_path / "c"), "code"))
    assert len(list(documents(edu(tmp_path / "c", missing="skip"), "code"))) == 3


def test_python_edu_and_a_directory_of_py_files_prepare_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("GROWMERGE_CACHE", str(tmp_path / "cache"))
    make_corpus(tmp_path)
    (tmp_path / "mine" / "pkg").mkdir(parents=True)
    for i in range(12):
        (tmp_path / "mine" / "pkg" / f"m{i}.py").write_text(f"def f{i}(x):\n    return x * {i}\n")
    spec = with_code_source(tmp_path, edu().model_dump(mode="json"))
    spec["streams"]["code"]["sources"].append(PythonCode(kind="python_code", root=tmp_path / "mine")
                                              .model_dump(mode="json"))
    spec["streams"]["code"]["eval_fraction"] = 0.3
    manifest = prepare_data(DataSpec.model_validate(spec), tmp_path / "run")
    text = tmp_path / "run" / "data" / "text"
    docs = [json.loads(line) for split in ("train", "eval") for line in (text / f"code.{split}.jsonl").open()]
    assert len(docs) == 4 + 12 and any("Fibonacci" in d["text"] for d in docs)
    assert manifest["streams"]["code"]["train"]["tokens"] > 0
