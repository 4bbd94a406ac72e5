"""Evaluation files of a study are read before anything runs (`study run` refuses, `study plan` warns),
and the task options that reach the readers: IP from a FLORES+ directory, mParaRel's k."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_readers import FLORES, flores_rows, mpararel_fixture, write_jsonl
from test_study import micro_config

from growmerge.errors import GrowmergeError
from growmerge.evaluate.tasks import PrepareEnv, get_task
from growmerge.study.spec import StudyConfig

ROOT = Path(__file__).resolve().parents[1]


def cli(capsys, *args) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of the CLI as a user runs it (errors as one line on stderr)."""
    from growmerge.cli import run_app

    capsys.readouterr()  # only this command's output
    code = run_app([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def study(tmp_path: Path, **tasks) -> Path:
    raw = micro_config(tmp_path / "run")
    for name, opts in tasks.items():
        raw["eval"]["tasks"][name].update(opts)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path / "study.yaml"


def flores_dir(root: Path, langs=(("eng", "Latn"), ("isl", "Latn"), ("pes", "Arab"))) -> Path:
    texts = {**FLORES, ("isl", "Latn"): ["Á mánudaginn kynntu vísindamenn nýtt próf.", "Kötturinn sefur.",
                                         "Það rigndi allan daginn."]}
    for split, base in (("dev", 0), ("devtest", 100)):
        for lang, script in langs:
            write_jsonl(root / split / f"{lang}_{script}.jsonl",
                        flores_rows(lang, script, texts[(lang, script)], [base + 1, base + 2, base + 3]))
    return root


def test_run_refuses_an_unreadable_file_before_any_stage(tmp_path, capsys):
    bad = tmp_path / "isl.tsv"
    bad.write_text("sentence\tother\nA\tB\n", encoding="utf-8")  # not MultiBLiMP's columns
    t0 = time.perf_counter()
    code, out, err = cli(capsys, "study", "run", study(tmp_path, la={"extra": {"is": [str(bad)]}}))
    assert code == 2, err
    assert "eval.tasks.la.extra.is[0]" in err and "isl.tsv: expected a TSV with header columns" in err
    assert len(err.strip().splitlines()) == 1 and not out and time.perf_counter() - t0 < 30
    assert not (tmp_path / "run").exists()  # nothing planned, nothing written


def test_run_refuses_a_flores_dir_without_a_study_language(tmp_path):
    root = flores_dir(tmp_path / "flores", langs=(("eng", "Latn"), ("isl", "Latn")))  # no Persian
    cfg = StudyConfig.model_validate(yaml.safe_load(study(tmp_path, ip={"flores": str(root)}).read_text()))
    with pytest.raises(GrowmergeError, match=r"^eval.tasks.ip.flores: .*devtest: no file for pes_Arab"):
        cfg.check_files()
    flores_dir(root)
    cfg.check_files()  # with Persian there it passes


def test_ip_file_of_another_language_is_refused(tmp_path):
    f = write_jsonl(tmp_path / "is.jsonl", [{"id": 1, "en": "The cat sleeps.", "tgt": "Gorbe", "lang": "fa"}])
    cfg = StudyConfig.model_validate(yaml.safe_load(study(tmp_path, ip={"files": {"is": str(f)}}).read_text()))
    with pytest.raises(GrowmergeError, match=r"eval.tasks.ip.files.is: .*is.jsonl: rows are lang 'fa', named for is"):
        cfg.check_files()


def test_mpararel_source_must_cover_a_study_language(tmp_path):
    root = mpararel_fixture(tmp_path / "mpararel")  # Swedish only; the micro study is is + fa
    cfg = StudyConfig.model_validate(yaml.safe_load(study(tmp_path, fk={"source": str(root)}).read_text()))
    with pytest.raises(GrowmergeError, match=r"eval.tasks.fk.source: .*no patterns/<lang> folder for any of en, is, fa"):
        cfg.check_files()


def test_plan_warns_about_every_problem_and_still_prints_the_plan(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "blimp.jsonl", [{"sentence_good": "A cat sleeps."}])  # no sentence_bad
    cfg = study(tmp_path, ip={"flores": str(tmp_path / "nowhere")}, la={"extra": {"en": [str(bad)]}},
                fk={"extra": {"fa": [str(tmp_path / "fk.jsonl")]}})
    code, out, err = cli(capsys, "study", "plan", cfg)
    assert code == 0, err
    assert "warning: evaluation file not found: eval.tasks.ip.flores" in err
    assert "warning: evaluation file not found: eval.tasks.fk.extra.fa[0]" in err
    assert "warning: eval.tasks.la.extra.en[0]: " in err and "missing text field(s) sentence_bad" in err
    assert "3 evaluation file problem(s)" in err
    assert " report " in out and "stages" in out  # the plan itself
    code, out, err = cli(capsys, "study", "run", cfg)  # run stops at the missing ones, reading nothing
    assert code == 2 and err.startswith("error: evaluation file not found: eval.tasks.") and "(and 1 more" in err


def test_paper_yaml_without_evaluation_files_fails_within_seconds(tmp_path):
    """The acceptance: a checkout without eval-data/ refuses to start, naming a missing file."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "growmerge.cli", "study", "run", str(ROOT / "configs" / "paper.yaml")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    took = time.perf_counter() - t0
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "evaluation file not found: eval.tasks.ip.flores: eval-data/flores_plus" in lines[0]
    assert not (tmp_path / "runs").exists()  # no stage started, no run directory
    assert took < 60, took  # seconds (import time included), under a shared machine's load


def test_ip_prepares_from_flores_and_fk_takes_k(tmp_path):
    root = flores_dir(tmp_path / "flores")
    env = PrepareEnv(tmp_path / "run", seed=0, say=lambda _: None)
    ip = get_task("ip")
    for split, first in (("devtest", 101), ("dev", 1)):
        ip.prepare(ip.Options.model_validate({"flores": str(root), "flores_split": split, "max_pairs": 2}), "is", env)
        rows = [json.loads(line) for line in env.set_file("ip", "is").read_text(encoding="utf-8").splitlines()]
        assert [r["id"] for r in rows] == [first, first + 1] and rows[1]["tgt"] == "Kötturinn sefur."
        assert rows[1]["en"] == "The cat sleeps." and rows[0]["lang"] == "is"
    fk = get_task("fk")
    mp = mpararel_fixture(tmp_path / "mpararel")
    counts = {}
    for k in (1, 2):
        fk.prepare(fk.Options.model_validate({"source": str(mp), "k": k, "pairs": 10_000}), "sv", env)
        counts[k] = len(env.set_file("fk", "sv").read_text(encoding="utf-8").splitlines())
    # P36: 2 well-formed patterns x 4 tuples, P17: 2 x 3; P19 has one object. k wrong objects each.
    assert counts == {1: 14, 2: 28}
    with pytest.raises(Exception, match="greater than or equal to 1"):
        fk.Options.model_validate({"k": 0})
    with pytest.raises(Exception, match="dev"):
        ip.Options.model_validate({"flores_split": "test"})


def test_large_models_read_the_first_pairs_of_any_published_format(tmp_path):
    """A reference (max_pairs) or a merge (merge_max_pairs) scores the first N pairs of every set, also of
    a BLiMP directory or a MultiBLiMP TSV (configs/paper.yaml names both), with the set's convention."""
    from test_readers import blimp_row

    from growmerge.evaluate.pairs import read_pairs
    from growmerge.study.stages import trim

    blimp = tmp_path / "eval-data" / "blimp"
    write_jsonl(blimp / "anaphor_gender_agreement.jsonl",
                [blimp_row("anaphor_gender_agreement", f"Mary saw herself {i}.", f"Mary saw himself {i}.", i)
                 for i in range(5)])
    tsv = tmp_path / "eval-data" / "multiblimp" / "isl" / "data.tsv"
    tsv.parent.mkdir(parents=True)
    tsv.write_text("sen\twrong_sen\tphenomenon\nHann sefur .\tHann sofa .\tSV-#\nVið sögðum .\tVið sagði .\tSV-P\n"
                   "Þú sefur .\tÞú sofa .\tSV-#\n", encoding="utf-8")
    for src, n in ((blimp, 3), (tsv, 2)):
        whole, small = read_pairs(src), read_pairs(trim(tmp_path / "run", src, n))
        assert small.pairs == whole.pairs[:n] and small.space_prefix == whole.space_prefix
    assert read_pairs(trim(tmp_path / "run", blimp, 3)).name == "blimp/blimp"
