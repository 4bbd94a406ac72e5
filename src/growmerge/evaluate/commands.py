"""CLI commands of `growmerge.evaluate` (registered by `growmerge.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from growmerge.device import DEVICE_HELP, METAVAR, check_spec

pairs_app = typer.Typer(help="Minimal-pair sets: generate LA pairs, build FK pairs.", no_args_is_help=True)


def eval_cmd(
    model: str = typer.Argument(..., help="model directory"),
    lang: str = typer.Option(..., "--lang", help="language code of the evaluation sets (en = forgetting)"),
    ip: Optional[Path] = typer.Option(None, "--ip", help="parallel JSONL {id, en, tgt} for Information Parity"),
    la: List[Path] = typer.Option([], "--la", help="LA pair file(s): BLiMP JSONL, MultiBLiMP TSV or own JSONL"),
    fk: List[str] = typer.Option([], "--fk", help="FK source(s): 'cldr', an mParaRel directory, or a pair file"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="English reference model for IP"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the rows as JSON here"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="reference NLL cache (default $GROWMERGE_CACHE)"),
    device: str = typer.Option("auto", parser=check_spec, metavar=METAVAR, help=f"{DEVICE_HELP}; scores in float32"),
) -> None:
    """Evaluate MODEL: IP, LA and FK; prints a table and optionally writes JSON rows."""
    from rich.console import Console
    from rich.table import Table

    from growmerge.artifacts import write_json_atomic
    from growmerge.evaluate.run import evaluate_model
    from growmerge.evaluate.scorer import Scorer

    # With the default, evaluate_model loads the model itself (on auto's device) after it has checked
    # every set, so a bad file costs no model load; a device given explicitly is honoured up front.
    scorer = Scorer.from_dir(model, device=device) if device != "auto" else None
    rows = evaluate_model(model, lang, ip_file=ip, la_files=la, fk_files=fk, reference=reference,
                          cache_dir=cache_dir, scorer=scorer)
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
) -> None:
    """Minimal pairs: one word per sentence changed in exactly one morphological feature."""
    from growmerge.evaluate.perturb.sets import generate_file

    report = generate_file(lang, sentences, out, n=n, seed=seed, backend=backend)
    print(f"{report['pairs']} pairs -> {out}  features: {report['features']}")


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
) -> None:
    """FK minimal pairs (true vs wrong object of the same relation) as pair JSONL."""
    from growmerge.evaluate.pairs import read_fk
    from growmerge.evaluate.perturb.sets import write_jsonl

    ps = read_fk(source, lang, seed)
    write_jsonl([dict(p, lang=lang) for p in ps.pairs], out)
    print(f"{len(ps.pairs)} pairs ({ps.skipped} skipped) -> {out}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
    app.add_typer(pairs_app, name="pairs")
