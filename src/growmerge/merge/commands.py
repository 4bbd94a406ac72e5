"""CLI commands of `growmerge.merge` (registered by `growmerge.cli`)."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.core import TyperCommand

from growmerge.errors import GrowmergeError

analyze_app = typer.Typer(help="Analyse models (beyond the paper).", no_args_is_help=True)

DEVICE_HELP = "where the default mode computes: auto (CUDA when available), cpu, cuda, cuda:N (compat: always cpu)"


class RegistryHelp(TyperCommand):
    """Fills {methods} and {params} in the help from the merge-method registry when the help is
    shown: reading the registry imports torch, which no other command should pay for."""

    def format_help(self, ctx, formatter) -> None:
        from growmerge.merge.registry import METHODS, parameter_names

        methods = "; ".join(f"{m.name} ({', '.join(p.name for p in m.params) or 'no parameters'})"
                            for m in METHODS.values())
        for p in self.params:
            if p.help:
                p.help = p.help.replace("{methods}", methods).replace("{params}", ", ".join(parameter_names()))
        super().format_help(ctx, formatter)


def parse_models(pairs: list[str]) -> dict[str, Path]:
    """`lang=dir` arguments -> {lang: Path}; each language once."""
    from growmerge.artifacts import check_name

    models: dict[str, Path] = {}
    for pair in pairs:
        lang, sep, path = pair.partition("=")
        if not sep or not lang or not path:
            raise GrowmergeError(f"{pair!r}: expected lang=model_dir (e.g. isl=runs/x/models/isl-1x)")
        check_name(lang, "language")  # it names output directories
        if lang in models:
            raise GrowmergeError(f"language {lang!r} is given twice")
        models[lang] = Path(path)
    return models


def parse_params(pairs: list[str]) -> dict:
    """`name=value` arguments -> {name: value typed as the registry declares the parameter}."""
    from growmerge.merge.registry import find_param

    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise GrowmergeError(f"--param {pair!r}: expected name=value (e.g. density=0.3)")
        params[name.strip()] = find_param(name.strip()).parse(value)
    return params


def merge_cmd(
    config: Path = typer.Argument(..., help="mergekit YAML (merge_method, base_model, models, parameters, dtype); "
                                             "methods (parameters): {methods}"),
    out: Path = typer.Argument(..., help="output model directory"),
    mergekit_compat: bool = typer.Option(False, "--mergekit-compat",
                                         help="reproduce mergekit 0.1.5 bit for bit (slower)"),
    seed: int = typer.Option(None, "--seed", help="DARE seed (as mergekit's --random-seed); overrides `seed:`"),
    force: bool = typer.Option(False, "--force", help="replace an existing output directory"),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
) -> None:
    """Merge models as described by a mergekit YAML."""
    import time

    from growmerge.merge.config import read_mergekit_yaml
    from growmerge.merge.engine import merge

    spec = read_mergekit_yaml(config)
    if seed is not None:
        spec.seed = seed
    t = time.time()
    merge(spec, out, compat=mergekit_compat, force=force, device=device)
    typer.echo(f"merged {len(spec.models)} models ({spec.merge_method}) into {out} in {time.time() - t:.1f} s",
               err=True)


def merge_grid_cmd(
    models: list[str] = typer.Argument(..., help="lang=model_dir, two or more"),
    out_root: Path = typer.Option(..., "--out", help="outputs go to OUT/<method>/<lang+lang+...>/"),
    base: Path = typer.Option(None, "--base", help="base model (task vectors are taken from it)"),
    methods: str = typer.Option("linear,task_arithmetic,ties,dare_ties,multislerp", "--methods",
                                help="comma-separated, of: {methods}"),
    sizes: str = typer.Option("", "--sizes", help="subset sizes, e.g. 2,3 (default: 2 .. all)"),
    dtype: str = typer.Option("float16", "--dtype"),
    density: float = typer.Option(0.5, "--density"),
    normalize: bool = typer.Option(True, "--normalize/--no-normalize"),
    seed: int = typer.Option(0, "--seed"),
    mergekit_compat: bool = typer.Option(False, "--mergekit-compat"),
    param: list[str] = typer.Option([], "--param", help="name=value, repeatable, for every method that takes "
                                    "it (overrides the options above); one of: {params}"),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
) -> None:
    """Merge every language subset with every method in one pass (existing outputs are skipped)."""
    from rich.progress import Progress

    from growmerge.merge.grid import merge_grid

    try:
        size_list = [int(s) for s in sizes.split(",") if s.strip()] or None
    except ValueError:
        raise GrowmergeError(f"--sizes {sizes!r}: expected comma-separated integers like 2,3") from None
    params = {"dtype": dtype, "density": density, "normalize": normalize, "int8_mask": True, "seed": seed,
              "weight": 1.0, **parse_params(param)}
    with Progress(transient=True) as bar:
        def progress(total: int):
            task = bar.add_task("merging tensors", total=total)
            return lambda: bar.advance(task)

        outs = merge_grid(parse_models(models), base, [m.strip() for m in methods.split(",") if m.strip()],
                          size_list, out_root, params, compat=mergekit_compat, progress=progress, device=device)
    typer.echo(f"{len(outs)} merges under {out_root}", err=True)


@analyze_app.command("vectors")
def vectors_cmd(
    models: list[str] = typer.Argument(..., help="lang=model_dir, two or more"),
    base: Path = typer.Option(..., "--base", help="the model the language vectors are taken from"),
    png: Path = typer.Option(Path("vectors.png"), "--png", help="heatmap output"),
    json_out: Path = typer.Option(None, "--json", help="also write the numbers as JSON"),
) -> None:
    """Cosine similarity and norms of language vectors (model - base), overall and per module type."""
    from rich.console import Console
    from rich.table import Table

    from growmerge.artifacts import write_json_atomic
    from growmerge.merge.vectors import vector_similarity, write_heatmap

    result = vector_similarity(base, parse_models(models))
    langs = result["languages"]
    table = Table(title=f"cosine(model - {base.name})")
    for col in ["", *langs, "norm"]:
        table.add_column(col, justify="right")
    for lang, row, norm in zip(langs, result["overall"]["cosine"], result["overall"]["norm"]):
        table.add_row(lang, *(f"{v:.3f}" for v in row), f"{norm:.2f}")
    Console().print(table)
    mods = Table(title="mean off-diagonal cosine per module type")
    mods.add_column("module")
    mods.add_column("cosine", justify="right")
    for name, summary in result["by_module"].items():
        c = summary["cosine"]
        off = [c[i][j] for i in range(len(c)) for j in range(len(c)) if i != j]
        mods.add_row(name, f"{sum(off) / len(off):.3f}")
    Console().print(mods)
    write_heatmap(result, png)
    if json_out:
        write_json_atomic(json_out, result)
    typer.echo(f"heatmap: {png}", err=True)


def register(app: typer.Typer) -> None:
    app.command("merge", cls=RegistryHelp)(merge_cmd)
    app.command("merge-grid", cls=RegistryHelp)(merge_grid_cmd)
    app.add_typer(analyze_app, name="analyze")
