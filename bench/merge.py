"""Merge two and three 180M-shaped models (the paper's 1x shape: hidden 576, 30 layers, 9/3 heads,
vocab 128,256, tied; float32 on disk, `dtype: float16` merges) with mergekit 0.1.5 (`mergekit-yaml`)
and with `growmerge merge` in both modes, on the same paper-style configs in the same run.

Every merge runs in its own child process; wall time includes start-up (what a user pays) and peak
RSS is that child's own ru_maxrss (os.wait4). Compat outputs are also checked bit for bit against
mergekit's. Goals: compat no slower than mergekit for any method; default >= 5x faster for TIES and
DARE-TIES and >= 2x for the rest, at no more peak RSS than mergekit.

`--safety-cost` instead measures what two guarantees cost a default-mode merge: the check that no
output tensor is NaN or infinite (on the writer thread, as each tensor is written) and the fsync of
every output file and directory before the rename that publishes it. Merges run in this process (no
start-up), the variants interleaved `--reps` times; the table gives each variant's median.

    OMP_NUM_THREADS=1 .venv/bin/python bench/merge.py [--work runs/bench-merge] [--methods ties,linear] [--sizes 2,3]
    OMP_NUM_THREADS=1 .venv/bin/python bench/merge.py --safety-cost [--reps 5] [--methods ...] [--sizes 2]
"""

from __future__ import annotations

import sys


import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import torch
import yaml

BIN = Path(sys.executable).parent
SHAPE = dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
             intermediate_size=1536, vocab_size=128_256)
METHODS = ["linear", "task_arithmetic", "ties", "dare_ties", "multislerp"]


def tensor_shapes() -> dict[str, tuple[int, ...]]:
    h, i, v, kv = SHAPE["hidden_size"], SHAPE["intermediate_size"], SHAPE["vocab_size"], 192
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    for layer in range(SHAPE["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        shapes.update({
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
            p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h), p + "mlp.down_proj.weight": (h, i),
        })
    return shapes


def build_models(work: Path, n: int) -> list[Path]:
    """An "English base" and n "language" models = base + small random task vectors (float32)."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    dirs = [work / "models" / name for name in ["base"] + [f"lang{i}" for i in range(n)]]
    config = LlamaConfig(**SHAPE, tie_word_embeddings=True, max_position_embeddings=2048,
                         architectures=["LlamaForCausalLM"])
    if all((d / "model.safetensors").is_file() for d in dirs):
        for d in dirs:
            config.save_pretrained(d)
        return dirs
    g = torch.Generator().manual_seed(0)
    base = {k: (torch.rand(s, generator=g) + 0.5 if len(s) == 1 else torch.randn(s, generator=g) * 0.02)
            for k, s in tensor_shapes().items()}
    for i, d in enumerate(dirs):
        d.mkdir(parents=True, exist_ok=True)
        state = base if i == 0 else {k: v + 0.002 * torch.randn(v.shape, generator=g) for k, v in base.items()}
        save_file(state, d / "model.safetensors", metadata={"format": "pt"})
        config.save_pretrained(d)
    return dirs


def paper_config(path: Path, method: str, models: list[Path], base: Path) -> Path:
    params = {"weight": 1.0, **({"density": 0.5} if method in ("ties", "dare_ties") else {})}
    cfg = {"merge_method": method, "models": [{"model": str(m), "parameters": params} for m in models],
           "parameters": {"normalize": True, "int8_mask": True}, "dtype": "float16"}
    if method != "linear":
        cfg["base_model"] = str(base)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and this child's own peak RSS in GB."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode()[-2000:]}")
    proc.stderr.close()
    return wall, usage.ru_maxrss / 1e6


def same_bits(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return x.keys() == y.keys() and all(torch.equal(x[k].view(torch.int16), y[k].view(torch.int16)) for k in x)


def safety_cost(work: Path, methods: list[str], n: int, reps: int) -> None:
    """Median wall and CPU seconds of in-process default-mode merges with and without the finite check
    and the fsync before publishing (both on by default; switched off here by replacing the function)."""
    import statistics

    from growmerge import artifacts
    from growmerge.merge import tensorio
    from growmerge.merge.config import read_mergekit_yaml
    from growmerge.merge.engine import merge

    def skip(*args) -> None:
        return None

    no_check = [(tensorio, "check_finite", skip)]
    no_fsync = [(artifacts, "fsync_tree", skip), (artifacts, "fsync_path", skip)]
    variants = {"as shipped": [], "no finite check": no_check, "no fsync": no_fsync, "neither": no_check + no_fsync}
    dirs = build_models(work, n)
    out = work / "out-safety"
    print(f"default-mode merges of {n} models (180M shape, float16), in-process, median of {reps}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"{'method':16s} " + " ".join(f"{v:>22s}" for v in variants) + f" {'finite check':>13s} {'fsync':>9s}")
    for method in methods:
        spec = read_mergekit_yaml(paper_config(work / f"{method}-{n}.yaml", method, dirs[1:n + 1], dirs[0]))
        times: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
        for _ in range(reps):
            for variant, patches in variants.items():
                saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
                for mod, name, fn in patches:
                    setattr(mod, name, fn)
                try:
                    shutil.rmtree(out, ignore_errors=True)
                    wall, cpu = time.perf_counter(), time.process_time()
                    merge(spec, out)
                    times[variant].append((time.perf_counter() - wall, time.process_time() - cpu))
                finally:
                    for mod, name, fn in saved:
                        setattr(mod, name, fn)
        med = {v: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for v, t in times.items()}
        cells = " ".join(f"{f'{w:.2f} s ({c:.2f} cpu)':>22s}" for w, c in med.values())
        check = med["as shipped"][0] - med["no finite check"][0]
        sync = med["as shipped"][0] - med["no fsync"][0]
        print(f"{method:16s} {cells} {check:+12.2f}s {sync:+8.2f}s", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    print("last two columns: wall seconds the finite check and the fsync add to a merge (as shipped minus without)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("runs/bench-merge"))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--sizes", default="2,3")
    ap.add_argument("--safety-cost", action="store_true", help="time the finite check and the fsync (see above)")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.safety_cost:
        safety_cost(args.work, args.methods.split(","), sizes[0], args.reps)
        return
    dirs = build_models(args.work, max(sizes))
    base, langs = dirs[0], dirs[1:]
    out = args.work / "out"
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; shared machine: ratios only")
    print(f"{'method':16s} {'n':>2s} {'mergekit s':>10s} {'compat s':>9s} {'default s':>9s} "
          f"{'mk/compat':>9s} {'mk/default':>10s} {'RSS mk GB':>9s} {'compat':>7s} {'default':>7s} {'bitwise':>7s}")
    rows = []
    for n in sizes:
        for method in args.methods.split(","):
            cfg = paper_config(args.work / f"{method}-{n}.yaml", method, langs[:n], base)
            shutil.rmtree(out, ignore_errors=True)
            mk = run([str(BIN / "mergekit-yaml"), str(cfg), str(out / "mk"), "--random-seed", "0"])
            co = run([str(BIN / "growmerge"), "merge", str(cfg), str(out / "compat"), "--mergekit-compat", "--seed", "0"])
            de = run([str(BIN / "growmerge"), "merge", str(cfg), str(out / "default"), "--seed", "0"])
            same = same_bits(out / "mk", out / "compat")
            rows.append(dict(method=method, n=n, mergekit=mk, compat=co, default=de, bitwise=same))
            print(f"{method:16s} {n:2d} {mk[0]:10.1f} {co[0]:9.1f} {de[0]:9.1f} {mk[0] / co[0]:8.2f}x "
                  f"{mk[0] / de[0]:9.2f}x {mk[1]:9.2f} {co[1] / mk[1]:6.2f}x {de[1] / mk[1]:6.2f}x {str(same):>7s}",
                  flush=True)
    shutil.rmtree(out, ignore_errors=True)
    (args.work / "results.json").write_text(json.dumps(rows, indent=2))
    print("columns: mk/compat, mk/default = speed-up over mergekit (goal compat >= 1x; default >= 5x for "
          "ties/dare_ties, >= 2x otherwise); compat/default RSS as a fraction of mergekit's (goal <= 1x)")


if __name__ == "__main__":
    main()
