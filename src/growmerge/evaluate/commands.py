"""CLI commands of `growmerge.evaluate` (registered by `growmerge.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from growmerge.device import DEVICE_HELP, METAVAR, check_spec

pairs_app = typer.Typer(help="Evaluation sets: generate LA pairs, build FK pairs, export to lm-eval, "
                        "read FLORES+.", no_args_is_help=True)


def eval_cmd(
    model: str = typer.Argument(..., help="model directory"),
    lang: str = typer.Option(..., "--lang", help="language code of the evaluation sets (en = forgetting)"),
    ip: Optional[Path] = typer.Option(None, "--ip", help="parallel JSONL {id, en, tgt} for Information Parity"),
    la: List[Path] = typer.Option([], "--la", help="LA pair file(s): BLiMP JSONL or directory, MultiBLiMP TSV, "
                         "own JSONL, or a .pairs.yaml column mapping"),
    fk: List[str] = typer.Option([], "--fk", help="FK source(s): 'cldr', an mParaRel directory "
                        "(every pattern × every tuple), or a pair file"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="English reference model for IP"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the rows as JSON here"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="reference NLL cache (default $GROWMERGE_CACHE)"),
    device: str = typer.Option("auto", parser=check_spec, metavar=METAVAR, help=f"{DEVICE_HELP}; scores in float32"),
) -> None:
    """Evaluate MODEL: IP, LA and FK; prints a table and optionally writes JSON rows."""
    from rich.console import Console
    from rich.table import Table

    from growmerge.artifacts import write_json_atomic
    from growmerge.device import pick_device
    from growmerge.evaluate.run import evaluate_model

    pick_device(device)  # a GPU asked for on a machine without one fails before anything is read
    # The model and the IP reference are loaded on `device` once every set has been read (a bad file
    # costs no model load).
    rows = evaluate_model(model, lang, ip_file=ip, la_files=la, fk_files=fk, reference=reference,
                          cache_dir=cache_dir, device=device)
    table = Table("task", "dataset", "metric", "value", "n")
    for r in rows:
        table.add_row(r["task"], r["dataset"], r["metric"], f"{r['value']:.4f}", str(r["n"]))
    Console().print(table)
    if json_out:
        write_json_atomic(json_out, rows)


@pairs_app.command("generate")
def generate_cmd(
    lang: str = typer.Option(..., "--lang"),
    sentences: Path = typer.Option(..., "--sentences", help="one sentence per line"),
    out: Path = typer.Option(..., "--out", help="pairs JSONL to write"),
    backend: Optional[str] = typer.Option(None, "--backend", help="unimorph:PATH, islenska, vabamorf, apertium:sv|da, "
                                          "persian, lemminflect (default: the language's)"),
    n: int = typer.Option(1000, "--n", help="number of pairs (at most)"),
    seed: int = typer.Option(0, "--seed"),
    method: str = typer.Option("auto", "--method", help="rules (break agreement or government; sv, da, et, is, "
                               "fa, en with their default backend), one-feature (the paper's: any one feature, any "
                               "backend) or auto (rules where the language has them)"),
) -> None:
    """Minimal pairs: one word per sentence changed so that it no longer agrees with, or is no longer
    governed by, another word (or, with --method one-feature, changed in any one feature)."""
    from growmerge.evaluate.perturb.sets import generate_file

    report = generate_file(lang, sentences, out, n=n, seed=seed, backend=backend, method=method)
    print(f"{report['pairs']} pairs ({report['method']}) -> {out}  rules: {report['rules']}")
    if report.get("filter"):
        print(f"{report['filter']} filter removed {report['filtered']} pairs: {report['filter_reasons']}")


@pairs_app.command("audit")
def audit_cmd(
    set_file: Path = typer.Argument(..., metavar="SET", help="a pair set (JSONL with good and bad)"),
    sample: int = typer.Option(50, "--sample", help="pairs to judge (a seeded random sample)"),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="judgement file to write for filling in "
                                       "(default SET's name + .judge.jsonl)"),
    judgements: Optional[Path] = typer.Option(None, "--judgements", help="a filled-in judgement file: read it, "
                                              "and record the validity rate in SET's metadata"),
) -> None:
    """Judge a pair set by hand. Without --judgements: print a seeded sample and write it as a
    judgement file (set "judgement" to good, bad or unsure: is the bad sentence really
    ungrammatical?). With --judgements: read it back and record the validity rate."""
    from growmerge.evaluate.perturb import audit

    pairs = audit.read_set(set_file)
    if judgements is not None:
        result = audit.validity(pairs, audit.read_judgements(judgements), str(judgements))
        audit.write_meta(set_file, validity=result)
        print(f"validity {result['rate']:.3f}: {result['good']} good, {result['bad']} bad, {result['unsure']} unsure "
              f"of {result['judged']} judged pairs -> {audit.meta_path(set_file)}")
        return
    from growmerge.evaluate.perturb.sets import write_jsonl

    rows = audit.sample(pairs, sample, seed)
    out = out or set_file.with_name(f"{set_file.stem}.judge.jsonl")
    print(audit.format_sample(rows))
    write_jsonl(rows, out)
    print(f"{len(rows)} of {len(pairs)} pairs -> {out} (fill in each \"judgement\": good, bad or unsure; "
          f"then: growmerge pairs audit {set_file} --judgements {out})")


@pairs_app.command("build-la")
def build_la_cmd(
    run: Path = typer.Option(..., "--run", help="run directory with data/eval/sentences/<lang>.txt"),
    lang: List[str] = typer.Option([], "--lang", help="languages (default: every sentence file)"),
    n: int = typer.Option(1000, "--n"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Generate <run>/data/eval/la/<lang>.jsonl for every language with held-out sentences."""
    from growmerge.evaluate.perturb.sets import build_la_sets

    for r in build_la_sets(run, lang or None, n=n, seed=seed):
        print(f"{r['lang']}: {r['pairs']} pairs ({r['backend']}) -> {r['out']}  features: {r['features']}")


@pairs_app.command("fk")
def fk_cmd(
    lang: str = typer.Option(..., "--lang"),
    source: str = typer.Option("cldr", "--source", help="'cldr' (offline, babel) or an mParaRel directory"),
    out: Path = typer.Option(..., "--out"),
    seed: int = typer.Option(0, "--seed"),
    k: int = typer.Option(1, "--k", help="mParaRel: wrong objects per tuple (each one pair per pattern)"),
) -> None:
    """FK minimal pairs (true vs wrong object of the same relation) as pair JSONL; from mParaRel every
    well-formed pattern × every tuple (malformed patterns skipped and counted)."""
    from growmerge.evaluate.pairs import read_fk
    from growmerge.evaluate.perturb.sets import write_jsonl

    ps = read_fk(source, lang, seed, k)
    write_jsonl([dict(p, lang=lang) for p in ps.pairs], out)
    malformed = ps.meta.get("malformed_patterns")
    extra = f"; {malformed} malformed patterns skipped" if malformed is not None else ""
    print(f"{len(ps.pairs)} pairs ({ps.skipped} skipped{extra}) -> {out}")


@pairs_app.command("export-lm-eval")
def export_lm_eval_cmd(
    set_file: Path = typer.Argument(..., metavar="SET", help="a pair set (generated LA or FK JSONL, BLiMP, "
                                    "MultiBLiMP TSV, a .pairs.yaml mapping)"),
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR", help="directory for the task's YAML and data"),
    name: Optional[str] = typer.Option(None, "--name", help="task name (default growmerge_<SET's name>)"),
) -> None:
    """Write SET as an lm-eval task: score any model on it with
    `lm_eval --include_path OUT_DIR --tasks NAME` (accuracy = growmerge's)."""
    from growmerge.evaluate.export import export_lm_eval

    r = export_lm_eval(set_file, out_dir, name)
    print(f"{r['pairs']} pairs -> task {r['task']}: {r['yaml']} + {r['data']}\n"
          f"run: lm_eval --model hf --model_args pretrained=MODEL --include_path {out_dir} --tasks {r['task']}")


@pairs_app.command("flores")
def flores_cmd(
    root: Path = typer.Argument(..., help="a FLORES+ directory (dev/ and devtest/ with <iso639-3>_<script> files)"),
    lang: str = typer.Option(..., "--lang", help="target language: growmerge code (sv) or FLORES+ code (swe_Latn)"),
    out: Path = typer.Option(..., "--out", help="parallel JSONL {id, en, tgt, lang} to write (for IP)"),
    split: str = typer.Option("devtest", "--split", help="dev or devtest"),
    source: str = typer.Option("en", "--source", help="the 'en' side's language (default English)"),
) -> None:
    """Parallel JSONL for Information Parity from FLORES+, sentences paired by id."""
    from growmerge.evaluate.perturb.sets import write_jsonl
    from growmerge.evaluate.readers import flores_parallel

    rows = flores_parallel(root, lang, split, source)
    write_jsonl(rows, out)
    print(f"{len(rows)} parallel sentences ({split}) -> {out}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.add_typer(pairs_app, name="pairs")
