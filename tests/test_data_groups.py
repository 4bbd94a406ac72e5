"""A stream read as file groups (each by its own process, or unit) gives the bytes of one reader; a
read group is never read again; units run in waves give the bytes of `prepare_data`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from growmerge.data.groups import file_groups
from growmerge.data.prepare import prepare_data
from growmerge.data.spec import DataSpec
from growmerge.data.units import pending_units, run_unit
from growmerge.errors import GrowmergeError
from test_data import corpus_spec, make_corpus
from test_data_resume import outputs


def split_into_files(src: Path, out_dir: Path, n: int) -> Path:
    """`src` (JSONL) as `n` files of consecutive rows in `out_dir` (read in name order)."""
    rows = src.read_text(encoding="utf-8").splitlines(keepends=True)
    out_dir.mkdir()
    for i in range(n):
        (out_dir / f"part-{i:02d}.jsonl").write_text("".join(rows[len(rows) * i // n:len(rows) * (i + 1) // n]))
    return out_dir


def grouped_spec(root: Path, groups: int | None, workers: int) -> DataSpec:
    spec = corpus_spec(root, workers=workers)
    for lang, n in (("sv", 5), ("en", 4)):
        files = root / f"{lang}.parts"
        if not files.is_dir():
            split_into_files(root / f"{lang}.jsonl", files, n)
        spec["streams"][lang]["sources"][0]["paths"] = [str(files)]
        if groups:
            spec["streams"][lang]["file_groups"] = groups
    return DataSpec.model_validate(spec)


def without_fingerprint(files: dict[str, bytes]) -> dict[str, bytes]:
    manifest = json.loads(files.pop("data/manifest.json"))
    assert manifest.pop("fingerprint")
    return files | {"data/manifest.json": json.dumps(manifest, sort_keys=True).encode()}


def test_file_groups_read_side_by_side_give_the_bytes_of_one_reader(tmp_path):
    make_corpus(tmp_path)
    prepare_data(grouped_spec(tmp_path, None, 1), tmp_path / "one")
    said: list[str] = []
    grouped = grouped_spec(tmp_path, 3, 2)
    assert [len(g) for g in file_groups(grouped.streams["sv"])] == [2, 2, 1]  # consecutive, by bytes
    prepare_data(grouped, tmp_path / "groups", log=said.append)
    assert any(m.startswith("read 6 file groups") for m in said), said  # 3 of sv, 3 of en
    assert without_fingerprint(outputs(tmp_path / "groups")) == without_fingerprint(outputs(tmp_path / "one"))
    assert not list((tmp_path / "groups").rglob("*.docs.jsonl*"))  # group files are dropped after the split


def test_file_groups_need_one_files_source(tmp_path):
    spec = corpus_spec(tmp_path)
    spec["streams"]["sv"]["sources"] *= 2
    spec["streams"]["sv"]["file_groups"] = 2
    with pytest.raises(ValueError, match="file_groups needs exactly one source"):
        DataSpec.model_validate(spec)


def test_units_in_waves_give_the_bytes_of_prepare_data(tmp_path):
    make_corpus(tmp_path)
    spec = grouped_spec(tmp_path, 2, 1)
    prepare_data(spec, tmp_path / "ref")
    run = tmp_path / "run"
    waves = pending_units(spec, run)
    packs = [f"pack:{s}" for s in ("code", "en_seed", "en_base", "sv", "is")]
    assert waves == [["read:sv:0", "read:sv:1", "read:en:0", "read:en:1"], ["split:is", "split:sv", "split:code"],
                     ["split:en"], ["tokenizer"], packs]
    with pytest.raises(GrowmergeError, match="split en: stream 'is' is not split yet"):
        run_unit(spec, run, "split:en")
    with pytest.raises(GrowmergeError, match="has 2 file groups; there is no group 2"):
        run_unit(spec, run, "read:sv:2")
    with pytest.raises(GrowmergeError, match="not a unit of the data stage"):
        run_unit(spec, run, "pack:en")  # en is packed as en_seed and en_base
    with pytest.raises(GrowmergeError, match="the text and tokenizer are not ready"):
        run_unit(spec, run, "pack:sv")
    run_unit(spec, run, "read:sv:0")
    group = run / "data" / "text.partial" / "sv.g0of2.docs.jsonl"
    stamp = group.stat().st_mtime_ns
    assert pending_units(spec, run)[0] == ["read:sv:1", "read:en:0", "read:en:1"]  # a read group is done
    for key in waves[0]:
        run_unit(spec, run, key)
    assert group.stat().st_mtime_ns == stamp  # not read again
    for wave in waves[1:4]:
        for key in wave:
            run_unit(spec, run, key)
    assert pending_units(spec, run) == [packs] and not list(run.rglob("*.docs.jsonl*"))
    for key in packs[:2]:
        run_unit(spec, run, key)
    assert pending_units(spec, run) == [packs[2:]]  # a packed stream is done
    for key in packs[2:]:
        run_unit(spec, run, key)
    assert pending_units(spec, run) == []
    prepare_data(spec, run)
    assert outputs(run) == outputs(tmp_path / "ref")


def test_dataset_data_files_read_in_groups_give_the_bytes_of_one_reader(tmp_path):
    make_corpus(tmp_path)
    parts = split_into_files(tmp_path / "sv.jsonl", tmp_path / "sv.parts", 5)
    for f in sorted(parts.iterdir()):  # a dataset read in groups needs its own ids (no row numbers)
        rows = [json.loads(line) | {"id": f"{f.stem}-{i}"} for i, line in enumerate(f.read_text().splitlines())]
        f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    def spec(**over) -> DataSpec:
        raw = corpus_spec(tmp_path)
        raw["streams"]["sv"].update(sources=[{"kind": "hf_dataset", "path": "json", "id_field": "id",
                                              "data_files": str(parts / "*.jsonl"), "group_field": "page"}], **over)
        return DataSpec.model_validate(raw)

    assert [len(g) for g in file_groups(spec(file_groups=3).streams["sv"])] == [2, 2, 1]
    prepare_data(spec(), tmp_path / "one")
    prepare_data(spec(file_groups=3), tmp_path / "groups")
    assert outputs(tmp_path / "groups") == outputs(tmp_path / "one")
    with pytest.raises(ValueError, match="needs data_files .a list or a glob., id_field and no max_docs"):
        raw = corpus_spec(tmp_path)
        raw["streams"]["sv"].update(sources=[{"kind": "hf_dataset", "path": "json", "data_files": [str(parts)]}],
                                    file_groups=2)
        DataSpec.model_validate(raw)
