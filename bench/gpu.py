"""The numbers that matter on a GPU, each against a peer measured in the same run:

* training tokens/s and MFU at the paper's 1x shape (SmolLM2-180M: hidden 576, 30 layers, 9/3 heads,
  vocabulary 128,256) and its 2x HyperClone (hidden 1152, 18/6 heads), bf16 autocast, eager and
  torch.compile (peer: eager; MFU against a bf16 matmul measured on the device in the same run);
* minimal-pair scoring, pairs/s of growmerge's Scorer against lm-eval-harness's HFLM (peer) on the
  same device, same model and dtype (float32; bf16 too on a GPU);
* merge time (linear and TIES of two models onto a base, the paper's float16 merges) on the device
  against the CPU (peer).

The device is growmerge's `auto`: the GPU when torch sees one. Without one every number is a CPU
number and says so; no GPU figure is ever printed. `--small` shrinks every shape so that the whole
script runs on a CPU in well under a minute (tests/test_device.py runs it that way).

    .venv/bin/python bench/gpu.py [--small] [--steps 12] [--warmup 3] [--batch 4] [--seq 2048] [--no-compile]

It reuses bench/train.py (shard writer, our training run, steady-state rate, CPU matmul peak) and
bench/score.py (the model and pairs, timing rounds, gap comparison, the lm-eval runner).
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent

import argparse
import contextlib
import importlib.util
import json
import tempfile
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # save_pretrained and lm-eval draw bars that bury the table
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch


def sibling(name: str):
    """bench/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_train, bench_score, bench_merge = sibling("train"), sibling("score"), sibling("merge")

PAPER_VOCAB = 128_256


def shapes(small: bool, batch: int, seq: int) -> dict[str, dict]:
    """bench/train.py's shape constants for the 1x shape and its 2x HyperClone."""
    from growmerge.train.spec import PRESETS

    if small:
        one = dict(D=64, LAYERS=2, HEADS=4, KV=2, FFN=128, VOCAB=512, SEQ=64, BATCH=4)
    else:
        p = PRESETS["smollm2-180m"]
        one = dict(D=p["hidden_size"], LAYERS=p["num_hidden_layers"], HEADS=p["num_attention_heads"],
                   KV=p["num_key_value_heads"], FFN=p["intermediate_size"], VOCAB=PAPER_VOCAB, SEQ=seq, BATCH=batch)
    two = {**one, **{k: 2 * one[k] for k in ("D", "HEADS", "KV", "FFN")}}  # what `clone --factor 2` makes
    return {"1x": one, "2x": two}


@contextlib.contextmanager
def shaped(shape: dict):
    """bench/train.py's functions read its module constants: set them for the duration."""
    saved = {k: getattr(bench_train, k) for k in shape}
    for k, v in shape.items():
        setattr(bench_train, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(bench_train, k, v)


def peak_flops(device: torch.device, dtype: torch.dtype, seconds: float) -> float:
    """Sustained FLOP/s of a large matmul on `device`: what MFU is measured against."""
    if device.type == "cpu":
        return bench_train.matmul_flops(dtype, n=1024, seconds=seconds)
    n = 8192
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
        if count % 10 == 0:
            torch.cuda.synchronize(device)
    torch.cuda.synchronize(device)
    return 2 * n**3 * count / (time.perf_counter() - t0)


def training(device: torch.device, shape: dict, tmp: Path, steps: int, warmup: int, compile_too: bool) -> dict:
    """Tokens/s of growmerge's training loop (bf16 autocast on `device`), eager and compiled."""
    from growmerge.train.flops import flops_per_token

    tmp.mkdir(parents=True)
    # The writer stores uint16 ids: they stay below 65,536 while the model gets the full vocabulary
    # (the shard's vocab_size sizes the model), which is what costs time in the output layer.
    with shaped({**shape, "VOCAB": min(shape["VOCAB"], 65_535)}):
        shard = bench_train.write_shard(tmp / "shard.bin", shape["BATCH"] * (steps + 1))
    meta = shard.with_name(shard.stem + ".meta.json")
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "vocab_size": shape["VOCAB"]}))
    with shaped(shape):
        rates = {"eager": bench_train.ours(shard, tmp, steps, warmup, "bf16", False)}
        if compile_too:
            rates["torch.compile"] = bench_train.ours(shard, tmp, steps, warmup, "bf16", True)
        return {"rates": rates, "flops_per_token": flops_per_token(bench_train.config(), shape["SEQ"])}


@contextlib.contextmanager
def lm_eval_on(device: torch.device, dtype: str, batch: int):
    """bench/score.py's lm-eval runner on `device` in `dtype` (it asks HFLM for the CPU, float32, batch 32)."""
    import lm_eval.models.huggingface as hf

    real = hf.HFLM
    hf.HFLM = lambda **kw: real(**{**kw, "device": str(device), "dtype": dtype, "batch_size": batch})
    try:
        yield
    finally:
        hf.HFLM = real


def pairs_for(n: int) -> list[tuple[str, str]]:
    """BLiMP pairs when ../shared has them, else agreement pairs built here."""
    pairs = bench_score.blimp_pairs(max(1, n // 12))[:n]
    if pairs:
        return pairs
    subjects = ["The dog", "The old man", "My sister", "The committee", "A child near the river"]
    verbs = [("runs", "run"), ("sings", "sing"), ("was late", "were late"), ("has left", "have left")]
    made = [(f"{s} {g} every day.", f"{s} {b} every day.") for s in subjects for g, b in verbs]
    return (made * (n // len(made) + 1))[:n]


def scoring_model(device: torch.device, small: bool, tmp: Path) -> Path:
    """bench/score.py's real-shaped model; on a GPU the paper's 1x shape (its head dominates scoring)."""
    out = bench_score.random_real_shaped(tmp / "scorer-model")
    if not small and device.type == "cuda":
        from transformers import AutoConfig, LlamaForCausalLM

        from growmerge.train.spec import PRESETS

        cfg = AutoConfig.from_pretrained(out)
        cfg.update({**PRESETS["smollm2-180m"], "vocab_size": PAPER_VOCAB})
        torch.manual_seed(0)
        LlamaForCausalLM(cfg).save_pretrained(out)
    return out


def scoring(device: torch.device, model_dir: Path, n: int, repeats: int, batch: int) -> list[dict]:
    from growmerge.evaluate.scorer import Scorer

    pairs = pairs_for(n)
    # A GPU wants big batches; the CPU default budget is sized for its caches.
    budget = 16_384 if device.type == "cuda" else 1024
    rows = []
    for dtype in (["float32", "bfloat16"] if device.type == "cuda" else ["float32"]):
        scorer = Scorer.from_dir(model_dir, device=device, dtype=getattr(torch, dtype), token_budget=budget)
        with lm_eval_on(device, dtype, batch):
            ref = bench_score.lm_eval_runner(model_dir, pairs)
        runners = {"lm-eval": ref, "growmerge": lambda s=scorer: s.score_minimal_pairs(pairs, conditional=True)}
        wall, _, scores = bench_score.best_times(runners, repeats)
        agree = [g >= b for g, b in scores["growmerge"]] == [g >= b for g, b in scores["lm-eval"]]
        rows.append(dict(dtype=dtype, pairs=len(pairs), ours=len(pairs) / wall["growmerge"],
                         peer=len(pairs) / wall["lm-eval"], agree=agree,
                         gap=bench_score.max_gap_diff(scores["growmerge"], scores["lm-eval"])))
        del scorer
    return rows


def merge_models(shape: dict, root: Path) -> list[Path]:
    """A base and two "language" models (base + small random task vectors) of `shape`, float32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=shape["D"], num_hidden_layers=shape["LAYERS"], num_attention_heads=shape["HEADS"],
                      num_key_value_heads=shape["KV"], intermediate_size=shape["FFN"], vocab_size=shape["VOCAB"],
                      tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    dirs = []
    for name in ("base", "lang0", "lang1"):
        model.save_pretrained(root / name)
        dirs.append(root / name)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p), alpha=0.002)
    return dirs


def merging(device: torch.device, shape: dict, tmp: Path) -> dict[str, dict[str, float]]:
    """Seconds per merge on the device and on the CPU (the same single CPU run when the device is it)."""
    from growmerge.merge.config import read_mergekit_yaml
    from growmerge.merge.engine import merge

    base, *langs = merge_models(shape, tmp / "merge-models")
    places = [torch.device("cpu")] + ([device] if device.type != "cpu" else [])
    times: dict[str, dict[str, float]] = {}
    for method in ("linear", "ties"):
        spec = read_mergekit_yaml(bench_merge.paper_config(tmp / f"{method}.yaml", method, langs, base))
        for where in places:
            t0 = time.perf_counter()
            merge(spec, tmp / "merged" / f"{method}-{where.type}", force=True, device=str(where))
            times.setdefault(method, {})[where.type] = time.perf_counter() - t0
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="CPU-sized shapes (the test runs this)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per run (default 12; 5 with --small)")
    ap.add_argument("--warmup", type=int, default=None, help="steps left out of the rate (default 3; 2 with --small)")
    ap.add_argument("--batch", type=int, default=4, help="sequences per step at full size")
    ap.add_argument("--seq", type=int, default=2048, help="sequence length at full size")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    ap.add_argument("--pairs", type=int, default=None, help="minimal pairs scored (default 2000; 60 with --small)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved scoring rounds; the best counts")
    ap.add_argument("--lm-eval-batch", type=int, default=32)
    a = ap.parse_args()
    steps, warmup = a.steps or (5 if a.small else 12), a.warmup or (2 if a.small else 3)
    n_pairs = a.pairs or (60 if a.small else 2000)

    from growmerge.device import pick_device

    device = pick_device("auto")
    gpu = device.type == "cuda"
    if not gpu:
        torch.set_num_threads(1)  # as bench/train.py: one thread on a shared CPU
    name = torch.cuda.get_device_name(device) if gpu else "CPU (no GPU here: every number below is a CPU number)"
    print(f"device {device}: {name}; torch {torch.__version__}{'; small shapes' if a.small else ''}")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        peak = peak_flops(device, torch.bfloat16, 1.0 if a.small else 3.0)
        print(f"\n[training] bf16 autocast, {steps} steps ({warmup} warm-up steps not counted); bf16 matmul peak "
              f"{peak / 1e12:.3g} TFLOP/s measured here")
        for label, shape in shapes(a.small, a.batch, a.seq).items():
            got = training(device, shape, tmp / f"train-{label}", steps, warmup, not a.no_compile)
            eager = got["rates"]["eager"]
            for mode, rate in got["rates"].items():
                print(f"  {label} d={shape['D']} L={shape['LAYERS']} vocab {shape['VOCAB']:,} {shape['BATCH']}x"
                      f"{shape['SEQ']}: {mode:13s} {rate:10.0f} tok/s  MFU {rate * got['flops_per_token'] / peak:6.1%}"
                      + (f"  x{rate / eager:.2f} vs eager" if mode != "eager" else ""))

        model_dir = scoring_model(device, a.small, tmp)  # before the header: its tokenizer trainer prints
        print(f"\n[scoring] minimal pairs, conditional scores; best of {a.repeats} interleaved rounds, "
              f"lm-eval HFLM batch {a.lm_eval_batch}")
        for r in scoring(device, model_dir, n_pairs, a.repeats, a.lm_eval_batch):
            print(f"  {r['dtype']:8s} {r['pairs']} pairs: growmerge {r['ours']:8.1f} pairs/s, lm-eval {r['peer']:8.1f} "
                  f"pairs/s  x{r['ours'] / r['peer']:.2f}  decisions identical: {r['agree']}  max |gap diff| "
                  f"{r['gap']:.1e}")

        merge_shape = shapes(a.small, a.batch, a.seq)["1x"]
        print(f"\n[merging] two models onto a base, float16 merges, 1x shape (vocab {merge_shape['VOCAB']:,})")
        for method, by_place in merging(device, merge_shape, tmp).items():
            ratio = f"  x{by_place['cpu'] / by_place['cuda']:.2f} vs cpu" if gpu else ""
            print(f"  {method:8s} " + "  ".join(f"{k} {v:6.2f} s" for k, v in by_place.items()) + ratio)


if __name__ == "__main__":
    main()
