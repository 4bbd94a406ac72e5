"""The SQLite results store: schema, upserts, reopening, queries, CSV export, headline scores."""

from __future__ import annotations

import csv
import json
import math
import sqlite3

import pytest

from growmerge.errors import GrowmergeError
from growmerge.ledger.store import Cell, Results, headline_cells, mean_cell


def score(model, lang, task, value, dataset="d", metric=None, step=-1, n=100):
    metric = metric or {"ip": "ip"}.get(task, "accuracy")
    return dict(model=model, step=step, lang=lang, task=task, dataset=dataset, metric=metric, value=value, n=n)


def test_models_checkpoints_and_reopen(tmp_path):
    res = Results(tmp_path)  # a run directory is accepted
    assert res.path == tmp_path / "results.sqlite"
    res.add_model("sv-1x", "adapt", setup="1x", scale="1x", languages=["sv"], parent="base-1x",
                  tokens=1000, flops_cumulative=2e12, params=180)
    res.add_checkpoint("sv-1x", 5, tokens=500, flops_cumulative=1.5e12, path="ck/5")
    res.add_checkpoint("sv-1x", 10, tokens=1000, flops_cumulative=2e12)
    res.add_checkpoint("sv-1x", 5, tokens=500, flops_cumulative=1.6e12)  # upsert, not a duplicate
    assert res.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"
    res.close()

    res = Results(tmp_path / "results.sqlite")
    (m,) = res.models(kind="adapt")
    assert m["languages"] == ["sv"] and m["flops_cumulative"] == 2e12 and m["parent"] == "base-1x"
    assert [(c["step"], c["flops_cumulative"]) for c in res.checkpoints("sv-1x")] == [(5, 1.6e12), (10, 2e12)]


def test_scores_upsert_and_has_scores(tmp_path):
    res = Results(tmp_path / "r.sqlite")
    assert res.add_scores([score("m", "sv", "la", 0.6), score("m", "sv", "ip", 0.8)]) == 2
    res.add_scores([score("m", "sv", "la", 0.7)])
    assert res.query("SELECT value FROM scores WHERE task='la'") == [{"value": 0.7}]
    assert res.has_scores("m", -1, "sv", "la") and not res.has_scores("m", -1, "da", "la")
    assert not res.has_scores("m", 10, "sv", "la")
    with pytest.raises(GrowmergeError, match="lacks value"):
        res.add_scores([{k: v for k, v in score("m", "sv", "la", 0.6).items() if k != "value"}])
    with pytest.raises(GrowmergeError, match="unknown task 'qa'"):
        res.add_scores([score("m", "sv", "qa", 0.6, metric="accuracy")])
    # A failed batch writes nothing: all rows or none.
    with pytest.raises(GrowmergeError):
        res.add_scores([score("m", "da", "la", 0.6), score("m", "da", "xx", 0.6, metric="a")])
    assert not res.has_scores("m", -1, "da", "la")


def test_merge_is_also_a_model_and_train_log(tmp_path):
    res = Results(tmp_path)
    res.add_merge("ties-2x-sv+da", "ties", "2x", ["sv", "da"], path="merges/ties/2x/sv+da")
    (m,) = res.models(kind="merge")
    assert m["scale"] == "2x" and m["languages"] == ["sv", "da"]
    assert res.merges()[0]["method"] == "ties"
    res.add_train_log("sv-1x", [dict(step=1, tokens=10, flops=1.0, loss=5.0, lr=1e-3),
                                dict(step=2, tokens=20, flops=2.0, loss=4.0, lr=1e-3)])
    res.add_train_log("sv-1x", [dict(step=2, tokens=20, flops=2.0, loss=3.5, lr=1e-3)])  # resumed stage
    assert [r["loss"] for r in res.query("SELECT loss FROM train_log ORDER BY step")] == [5.0, 3.5]


def test_bad_inputs_are_one_line_errors(tmp_path):
    res = Results(tmp_path)
    with pytest.raises(GrowmergeError, match="unknown model kind 'adapter'"):
        res.add_model("x", "adapter")
    with pytest.raises(GrowmergeError, match="unknown scale '3x'"):
        res.add_merge("x", "linear", "3x", ["sv"])
    with pytest.raises(GrowmergeError, match="SQL error: no such table: nope"):
        res.query("SELECT * FROM nope")
    with pytest.raises(GrowmergeError, match="no table 'modles'"):
        res.to_csv("modles", tmp_path / "x.csv")
    with pytest.raises(GrowmergeError, match="no results database"):
        Results(tmp_path / "elsewhere", must_exist=True)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(GrowmergeError, match="not a usable results database"):
        Results(junk)


def test_to_csv_table_and_select(tmp_path):
    res = Results(tmp_path)
    res.add_scores([score("a", "sv", "la", 0.5), score("b", "sv", "la", 0.75)])
    out = res.to_csv("scores", tmp_path / "scores.csv")
    rows = list(csv.DictReader(out.open()))
    assert [r["model"] for r in rows] == ["a", "b"] and rows[1]["value"] == "0.75"
    out = res.to_csv("SELECT model, value * 2 AS twice FROM scores WHERE model = 'b'", tmp_path / "new" / "q.csv")
    assert list(csv.reader(out.open())) == [["model", "twice"], ["b", "1.5"]]
    assert not list(tmp_path.glob("**/*.tmp-*"))


def test_headline_cells_average_datasets_with_standard_errors(tmp_path):
    res = Results(tmp_path)
    res.add_scores([
        score("m", "sv", "la", 0.6, dataset="blimp", n=100),
        score("m", "sv", "la", 0.8, dataset="ged", n=400),
        score("m", "sv", "la", 0.1, dataset="blimp", metric="loss"),  # not the headline metric
        score("m", "sv", "ip", 0.9, dataset="flores", n=100),
        score("m", "sv", "ip", 0.2, dataset="flores", metric="ip_std", n=100),
    ])
    cells = headline_cells(res)
    la = cells[("m", -1, "sv", "la")]
    assert la.value == pytest.approx(0.7)
    se1, se2 = math.sqrt(0.6 * 0.4 / 100), math.sqrt(0.8 * 0.2 / 400)
    assert la.se == pytest.approx(math.sqrt(se1**2 + se2**2) / 2)
    assert cells[("m", -1, "sv", "ip")] == Cell(0.9, pytest.approx(0.02), 100)
    assert mean_cell([]) is None
    assert (Cell(0.5, 0.03) - Cell(0.2, 0.04)).se == pytest.approx(0.05)


def test_concurrent_reader_sees_committed_rows(tmp_path):
    writer = Results(tmp_path)
    reader = Results(tmp_path)
    writer.add_scores([score("a", "sv", "la", 0.5)])
    assert reader.query("SELECT COUNT(*) AS c FROM scores")[0]["c"] == 1
    assert isinstance(reader.conn, sqlite3.Connection)


def test_record_model_dir_reads_sidecars_checkpoints_and_log(tmp_path, tiny_llama):
    from growmerge.artifacts import write_meta
    from growmerge.ledger.store import count_params, record_model_dir

    model = tiny_llama("sv-1x")
    write_meta(model, {"kind": "adapt", "setup": "1x", "languages": ["sv"], "parents": ["runs/x/models/base-1x"],
                       "tokens": 4000, "step": 4, "flops": {"self": 40.0, "cumulative": 1040.0}})
    for step in (2, 4):
        ck = model / "checkpoints" / f"step-{step}"
        ck.mkdir(parents=True)
        write_meta(ck, {"tokens": 1000 * step, "flops": {"cumulative": 1000.0 + 10 * step}})
    (model / "checkpoints" / "step-6.tmp").mkdir()  # an unfinished export is not a checkpoint
    (model / "train_log.jsonl").write_text("\n".join(json.dumps(
        {"step": s, "tokens": 1000 * s, "flops": 1000.0 + 10 * s, "loss": 5.0 - s, "lr": 1e-3, "grad_norm": 1.0})
        for s in (1, 2, 3, 4)) + "\n")
    res = Results(tmp_path / "run")
    record_model_dir(res, "sv-1x", model, scale="1x")
    (m,) = res.models()
    assert (m["kind"], m["setup"], m["scale"], m["languages"]) == ("adapt", "1x", "1x", ["sv"])
    assert m["parent"] == "runs/x/models/base-1x" and m["flops_cumulative"] == 1040.0 and m["tokens"] == 4000
    import torch
    from transformers import AutoModelForCausalLM

    # Tied embeddings are stored (and counted by torch) once.
    n = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).parameters())
    assert m["params"] == count_params(model) == n
    assert [(c["step"], c["flops_cumulative"]) for c in res.checkpoints("sv-1x")] == [(2, 1020.0), (4, 1040.0)]
    assert [r["loss"] for r in res.query("SELECT loss FROM train_log ORDER BY step")] == [4.0, 3.0, 2.0, 1.0]


def test_read_only_store_refuses_writes(tmp_path):
    Results(tmp_path).add_scores([score("a", "sv", "la", 0.5)])
    ro = Results(tmp_path, read_only=True)
    assert ro.query("SELECT model FROM scores") == [{"model": "a"}]
    with pytest.raises(GrowmergeError, match="DELETE is not allowed"):
        ro.query("DELETE FROM scores")
    with pytest.raises(GrowmergeError, match="no results database"):
        Results(tmp_path / "other", read_only=True)
