"""Training throughput: our loop vs Hugging Face Trainer on the same model, data and precision.

    .venv/bin/python bench/train.py [--steps 12] [--warmup 3] [--dtype bf16] [--no-compile] [--threads 1]

Model: Llama d=256, 6 layers, 4/2 heads, MLP 768, vocab 16,384; 8 x 512 tokens per step, AdamW, grad
clip 1.0, WSD; eager against eager and torch.compile against torch.compile. Prints tokens/s of each
(steady state: the first `--warmup` steps are excluded, which also leaves out torch.compile's
compilation), the ratio, and MFU = achieved model FLOP/s (the
Nanotron formula of growmerge.train.flops) over the FLOP/s of a large bf16 (or fp32) matmul measured
in the same run, before and after. The machine may be shared: only same-run ratios mean anything.
"""

from __future__ import annotations

import sys
from pathlib import Path


import argparse
import json
import tempfile
import time

import numpy as np
import torch

D, LAYERS, HEADS, KV, FFN, VOCAB, SEQ, BATCH = 256, 6, 4, 2, 768, 16_384, 512, 8


def config():
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV,
                       intermediate_size=FFN, vocab_size=VOCAB, tie_word_embeddings=True, max_position_embeddings=SEQ,
                       initializer_range=0.0417)


def matmul_flops(dtype: torch.dtype, n: int = 2048, seconds: float = 3.0) -> float:
    """Sustained FLOP/s of an n x n matmul: the 'peak' MFU is measured against."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - t0)


def write_shard(path: Path, n: int) -> Path:
    rows = np.random.default_rng(0).integers(0, VOCAB, (n, SEQ), dtype=np.uint16)
    rows.tofile(path)
    meta = {"dtype": "uint16", "seq_len": SEQ, "sequences": n, "tokens": n * SEQ, "vocab_size": VOCAB,
            "tokenizer_hash": "bench", "eos_id": 0, "complete": True}
    path.with_name(path.stem + ".meta.json").write_text(json.dumps(meta))
    return path


def steady_rate(times: list[float], warmup: int) -> float:
    """Tokens/s between the end of step `warmup` and the end of the last step."""
    return (len(times) - warmup) * BATCH * SEQ / (times[-1] - times[warmup - 1])


def ours(shard: Path, tmp: Path, steps: int, warmup: int, dtype: str, compile: bool) -> float:
    from growmerge.data.mixture import Mixture, MixtureItem
    from growmerge.train.loop import train
    from growmerge.train.observe import read_log
    from growmerge.train.spec import PRESETS, TrainSpec

    PRESETS["bench"] = dict(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                            num_key_value_heads=KV, intermediate_size=FFN, initializer_range=0.0417,
                            max_position_embeddings=SEQ)
    spec = TrainSpec(init="bench", steps=steps, global_batch=BATCH, lr=3e-3, dtype=dtype, compile=compile,
                     checkpoints=1)
    out = train(None, Mixture(items=[MixtureItem(shard=shard)]), spec, tmp / f"ours-{compile}", progress=False)
    return steady_rate([r["elapsed"] for r in read_log(out / "train_log.jsonl")], warmup)


def hf_trainer(shard: Path, tmp: Path, steps: int, warmup: int, dtype: str, compile: bool) -> float:
    from transformers import LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

    rows = torch.from_numpy(np.fromfile(shard, dtype=np.uint16).astype(np.int64).reshape(-1, SEQ))

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return {"input_ids": rows[i], "labels": rows[i]}

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter())

    torch.manual_seed(0)
    args = TrainingArguments(output_dir=str(tmp / "hf"), per_device_train_batch_size=BATCH, max_steps=steps,
                             learning_rate=3e-3, weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.95, max_grad_norm=1.0,
                             lr_scheduler_type="warmup_stable_decay", warmup_steps=max(1, steps // 10),
                             lr_scheduler_kwargs={"num_decay_steps": max(1, steps // 5), "decay_type": "linear"},
                             bf16=dtype == "bf16", use_cpu=True, report_to=[], save_strategy="no",
                             logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0, seed=0,
                             torch_compile=compile)
    Trainer(model=LlamaForCausalLM(config()), args=args, train_dataset=Rows(), callbacks=[Clock()]).train()
    return steady_rate(times, warmup)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for every contender (default 1: with 2 threads on a shared 2-core machine one busy "
                         "neighbour makes OpenMP barriers collapse and the numbers swing 5x between runs)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from growmerge.train.flops import flops_per_token

    fpt = flops_per_token(config(), SEQ)
    mm_dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    print(f"threads {torch.get_num_threads()}  model {D}d x {LAYERS}L, vocab {VOCAB}, {BATCH}x{SEQ} tokens/step, "
          f"{fpt / 1e6:.1f} MFLOP/token, {a.dtype}")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        shard = write_shard(tmp / "bench.bin", BATCH * (a.steps + 1))
        peak0 = matmul_flops(mm_dtype)
        rates = {"ours (eager)": ours(shard, tmp, a.steps, a.warmup, a.dtype, False),
                 "HF Trainer": hf_trainer(shard, tmp, a.steps, a.warmup, a.dtype, False)}
        if not a.no_compile:
            rates["ours (torch.compile)"] = ours(shard, tmp, a.steps, a.warmup, a.dtype, True)
            rates["HF Trainer (compile)"] = hf_trainer(shard, tmp, a.steps, a.warmup, a.dtype, True)
        peak1 = matmul_flops(mm_dtype)
    peak = max(peak0, peak1)
    print(f"{a.dtype} matmul 2048^3: {peak0 / 1e9:.1f} / {peak1 / 1e9:.1f} GFLOP/s (before / after; MFU uses the max)")
    for name, rate in rates.items():
        peer = "HF Trainer (compile)" if "compile" in name else "HF Trainer"
        print(f"{name:22s} {rate:9.0f} tok/s   MFU {rate * fpt / peak:6.1%}   x{rate / rates[peer]:.2f} vs {peer}")


if __name__ == "__main__":
    main()
