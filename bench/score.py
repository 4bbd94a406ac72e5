"""Minimal-pair scoring: lm-eval-harness's HFLM loglikelihood (batch 32) vs growmerge's Scorer.

Both score the same BLiMP pairs (lm-eval's `blimp` convention: empty context, " " + sentence) with
the same model in one process; prints pairs/s for each, the ratio, and whether every decision
agrees. The model is a random Llama of a real shape (SmolLM2's tokenizer when a converted SmolLM2
is present under runs/, so the output layer has its real 49k rows), or any --model directory.

    OMP_NUM_THREADS=2 .venv/bin/python bench/score.py [--model DIR] [--per-paradigm 40]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# bench/tokenize.py would shadow the standard library's tokenize module for everything we import.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = ROOT / "runs" / "bench" / "smollm2"


def random_real_shaped(out: Path) -> Path:
    """~20M parameters: 49k vocabulary (tied), hidden 256, 6 layers, GQA 4/2 heads."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if (SMOLLM2 / "tokenizer.json").is_file():
        tok = AutoTokenizer.from_pretrained(SMOLLM2)
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import tiny_tokenizer

        tok = tiny_tokenizer(320)
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=256, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=768, vocab_size=len(tok), tie_word_embeddings=True,
                      max_position_embeddings=1024, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def blimp_pairs(per_paradigm: int) -> list[tuple[str, str]]:
    from growmerge.evaluate.pairs import read_blimp

    shared = ROOT.parent / "shared" / "blimp"
    pairs = []
    for f in sorted(shared.glob("*.jsonl")):
        pairs += [(" " + p["good"], " " + p["bad"]) for p in read_blimp(f).pairs[:per_paradigm]]
    if not pairs:
        raise SystemExit(f"no BLiMP files under {shared}")
    return pairs


def lm_eval_runner(model_dir: Path, pairs):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(model_dir), batch_size=32, device="cpu", dtype="float32")
    reqs = [Instance(request_type="loglikelihood", doc={}, arguments=("", s), idx=i)
            for i, p in enumerate(pairs) for s in p]

    def run():
        lls = [r[0] for r in lm.loglikelihood(reqs, disable_tqdm=True)]
        return list(zip(lls[0::2], lls[1::2]))

    return run


def our_runner(model_dir: Path, pairs, share: bool | None, conditional: bool):
    from growmerge.evaluate.scorer import Scorer

    scorer = Scorer.from_dir(model_dir, share_prefix=share)
    return lambda: scorer.score_minimal_pairs(pairs, conditional=conditional)


def timed(fn) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--per-paradigm", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best time of each counts")
    args = ap.parse_args()

    import numpy as np
    import torch

    from growmerge.artifacts import load_model

    pairs = blimp_pairs(args.per_paradigm)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or random_real_shaped(Path(tmp) / "model")
        n_params = sum(p.numel() for p in load_model(model_dir).parameters())
        print(f"model {model_dir if args.model else 'random real-shaped'}: {n_params / 1e6:.1f}M params, "
              f"{len(pairs)} BLiMP pairs, torch threads {torch.get_num_threads()}, best of {args.repeats} "
              "interleaved rounds (shared machine: ratios only)")
        runners = {"lm-eval HFLM (batch 32)": lm_eval_runner(model_dir, pairs),
                   "growmerge score_pairs": our_runner(model_dir, pairs, None, True),
                   "growmerge totals shared": our_runner(model_dir, pairs, True, False),
                   "growmerge totals unshared": our_runner(model_dir, pairs, False, False)}
        best = {k: float("inf") for k in runners}
        scores = {}
        for _ in range(args.repeats):
            for name, fn in runners.items():
                scores[name], t = timed(fn)
                best[name] = min(best[name], t)
        ref_name = "lm-eval HFLM (batch 32)"
        theirs = scores[ref_name]
        lm_correct = [int(np.argmax([g, b]) == 0) for g, b in theirs]
        print(f"{ref_name:27s}: {len(pairs) / best[ref_name]:8.1f} pairs/s  ({best[ref_name]:.2f} s)")
        for name in list(runners)[1:]:
            ours = scores[name]
            same = [int(g >= b) for g, b in ours] == lm_correct
            gap = max(abs((g - b) - (tg - tb)) for (g, b), (tg, tb) in zip(ours, theirs))
            print(f"{name:27s}: {len(pairs) / best[name]:8.1f} pairs/s  ({best[name]:.2f} s)  ratio "
                  f"{best[ref_name] / best[name]:5.2f}x  decisions identical: {same}  max |gap diff| {gap:.2e}")


if __name__ == "__main__":
    main()
