"""CLI commands of `growmerge.data` (registered by `growmerge.cli`)."""

from pathlib import Path

import typer

data_app = typer.Typer(help="Prepare corpora, tokenizer and packed shards.", no_args_is_help=True)


@data_app.command("prepare")
def prepare(config: Path = typer.Argument(..., help="study YAML (only its `data:` section is read)"),
            run_dir: Path = typer.Option(Path("runs/demo"), "--run-dir", help="where data/ and tokenizer/ go")):
    """Build text splits, evaluation sets, tokenizer, packed shards and the data card."""
    import time

    from growmerge.artifacts import check_names, naming
    from growmerge.data.card import render_card
    from growmerge.data.prepare import prepare_data
    from growmerge.config import read_yaml
    from growmerge.data.mixture import phase_epochs_of
    from growmerge.data.spec import load_data_spec

    spec = load_data_spec(config)
    epochs = phase_epochs_of(read_yaml(config).get("phases"), spec.languages)  # for the card's mixtures
    # Languages and streams name directories under data/: usable, each once (a duplicate would skew
    # the mixtures without a word). The study YAML checks the same when it is read.
    check_names(spec.languages, f"{config}: data.languages:")
    check_names(spec.streams, f"{config}: data.streams:")
    t = time.time()
    with naming(run_dir):  # a write that fails without a file name (a full disk) names the run directory
        manifest = prepare_data(spec, run_dir, log=lambda msg: typer.echo(msg, err=True), epochs=epochs)
    typer.echo(render_card(manifest))
    typer.echo(f"prepared {run_dir / 'data'} in {time.time() - t:.1f} s", err=True)


@data_app.command("unit")
def unit(stage_file: Path = typer.Argument(..., help="the data stage as JSON (jobs/<id>.json of a run)"),
         key: str = typer.Argument(..., help="read:<stream>:<k>, split:<stream>, tokenizer or pack:<packed stream>"),
         run_dir: Path = typer.Option(..., "--run-dir", help="the run directory")):
    """Run one unit of a data stage (one Slurm array task of `study run --executor slurm`)."""
    from pydantic import ValidationError

    from growmerge.artifacts import read_json
    from growmerge.config import validation_message
    from growmerge.data.spec import DataSpec
    from growmerge.data.units import run_unit
    from growmerge.errors import GrowmergeError

    # Only the stage's `data` section is read here (the data package does not import the study).
    stage = read_json(stage_file, dict)
    if stage.get("kind") != "data":
        raise GrowmergeError(f"{stage_file}: stage {stage.get('id')!r} is a {stage.get('kind')} stage, not a data stage")
    try:
        spec = DataSpec.model_validate(stage.get("data"))
    except ValidationError as exc:
        raise GrowmergeError(validation_message(exc, str(stage_file))) from None
    run_unit(spec, run_dir, key, log=lambda msg: typer.echo(msg, err=True))


@data_app.command("card")
def card(run_dir: Path = typer.Argument(..., help="a run directory with data/manifest.json")):
    """Print the data card of a prepared run directory."""
    from growmerge.data.card import read_manifest, render_card

    typer.echo(render_card(read_manifest(run_dir)))


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
