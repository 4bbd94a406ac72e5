"""Clone SmolLM2-135M ×2: wall time and peak RSS of `growmerge clone`, against the naive peer measured
in the same run (load the source with transformers, initialise a random big model, copy the cloned
tensors in, `save_pretrained`). Goals: < 5 s and peak RSS < 2.5× the destination's size.

    .venv/bin/python bench/clone.py [--work runs/bench]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAIVE = """
import sys, torch
from transformers import AutoModelForCausalLM
from growmerge.grow.hyperclone import clone_state, grown_config
src, out = sys.argv[1], sys.argv[2]
small = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
state = small.state_dict()
big = AutoModelForCausalLM.from_config(grown_config(small.config, 2, True))  # random init first
big.load_state_dict(clone_state(state.keys(), state.__getitem__, small.config, 2), strict=False)
big.save_pretrained(out)
"""


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the max over all children so far: run the smaller job first.
    return wall, max(peak, before) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="runs/bench")
    args = ap.parse_args()
    src = Path(args.work) / "smollm2"
    if not (src / "model.safetensors").is_file():
        subprocess.run([sys.executable, "-m", "growmerge.cli", "convert", "smollm2", str(src)], check=True)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        ours_t, ours_rss = timed([sys.executable, "-m", "growmerge.cli", "clone", str(src), f"{tmp}/ours", "--factor", "2"])
        dest_gb = (Path(tmp) / "ours" / "model.safetensors").stat().st_size / 1e9
        naive_t, naive_rss = timed([sys.executable, "-c", NAIVE, str(src), f"{tmp}/naive"])
    print(json.dumps({"destination_GB": round(dest_gb, 3)}))
    print(f"{'':10s} {'wall s':>8s} {'peak RSS GB':>12s} {'RSS/dest':>9s}")
    print(f"{'growmerge':10s} {ours_t:8.2f} {ours_rss:12.2f} {ours_rss / dest_gb:9.2f}")
    print(f"{'naive HF':10s} {naive_t:8.2f} {naive_rss:12.2f} {naive_rss / dest_gb:9.2f}")
    print(f"speed-up vs naive: {naive_t / ours_t:.2f}×  (goal: growmerge < 5 s, RSS/dest < 2.5)")


if __name__ == "__main__":
    main()
