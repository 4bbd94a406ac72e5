"""Minimal-pair scoring: lm-eval-harness's HFLM loglikelihood (batch 32) vs growmerge's Scorer.

Both score the same pairs with the same model in one process (lm-eval's conventions: empty
context, the sentence as continuation; BLiMP with a leading space). Datasets: the BLiMP sample, our
generated LA set for sv (when the demo built it) and mParaRel FK pairs for sv. For each it prints
pairs/s, the ratio to lm-eval in wall and CPU time (best of interleaved rounds: the machine is
shared), whether every decision agrees, and how far the good−bad gaps are from lm-eval's and from a
float64 run of the same model (lm-eval's own float32 sums drift ~1e-4 on long sentences). ``score_pairs`` is what LA/FK evaluation runs
(conditional scores, the shared prefix's output rows skipped); "totals" return full log-probs.
The model is a random Llama of a real shape (SmolLM2's 49k tokenizer when a converted SmolLM2 is
under runs/bench/smollm2), or any --model directory.

    OMP_NUM_THREADS=1 .venv/bin/python bench/score.py [--model DIR] [--pairs 360] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


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

    pairs = []
    for f in sorted((ROOT.parent / "shared" / "blimp").glob("*.jsonl")):
        pairs += [(" " + p["good"], " " + p["bad"]) for p in read_blimp(f).pairs[:per_paradigm]]
    return pairs


def datasets(n: int) -> dict[str, list[tuple[str, str]]]:
    """BLiMP (short sentences, short shared prefixes), our generated LA set (one word changed in a
    longer sentence) and mParaRel FK (the object at the end): the prefix share differs a lot."""
    import random

    from growmerge.evaluate.pairs import read_mpararel, read_own

    out = {"blimp": blimp_pairs(max(1, n // 12))}
    la = ROOT / "runs" / "demo" / "data" / "eval" / "la" / "sv.jsonl"
    if la.is_file():
        out["la sv (generated)"] = [(p["good"], p["bad"]) for p in read_own(la).pairs[:n]]
    mpararel = ROOT.parent / "shared" / "mpararel"
    if mpararel.is_dir():
        fk = read_mpararel(mpararel, "sv").pairs
        out["fk sv (mParaRel)"] = [(p["good"], p["bad"]) for p in random.Random(0).sample(fk, min(n, len(fk)))]
    return {k: v for k, v in out.items() if v}


def lm_eval_runner(model_dir: Path, pairs):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from growmerge.artifacts import load_tokenizer
    from growmerge.evaluate.scorer import boundary_of, boundary_token

    # The context token our Scorer uses for this model (lm-eval's own for a model from elsewhere, the
    # EOS for one growmerge trained), so the decisions compare like with like.
    prefix = boundary_token(load_tokenizer(model_dir, required=True), boundary_of(model_dir))
    lm = HFLM(pretrained=str(model_dir), batch_size=32, device="cpu", dtype="float32", prefix_token_id=prefix)
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


def float64_scores(model_dir: Path, pairs):
    """The same pairs in float64: shows how far each float32 scorer's good−bad gaps are from exact."""
    import torch

    from growmerge.evaluate.scorer import Scorer

    return Scorer.from_dir(model_dir, dtype=torch.float64).score_minimal_pairs(pairs, conditional=True)


def max_gap_diff(scores, other) -> float:
    return max(abs((g - b) - (tg - tb)) for (g, b), (tg, tb) in zip(scores, other))


def best_times(runners: dict, repeats: int) -> tuple[dict, dict, dict]:
    """Interleaved rounds; the best wall and CPU (process) time of each runner, and its scores."""
    wall = {k: float("inf") for k in runners}
    cpu = dict(wall)
    scores = {}
    for _ in range(repeats):
        for name, fn in runners.items():
            t, c = time.perf_counter(), time.process_time()
            scores[name] = fn()
            wall[name] = min(wall[name], time.perf_counter() - t)
            cpu[name] = min(cpu[name], time.process_time() - c)
    return wall, cpu, scores


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--pairs", type=int, default=360, help="pairs per dataset")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best time of each counts")
    args = ap.parse_args()

    import numpy as np
    import torch

    from growmerge.artifacts import load_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or random_real_shaped(Path(tmp) / "model")
        n_params = sum(p.numel() for p in load_model(model_dir).parameters())
        print(f"model {model_dir if args.model else 'random real-shaped'}: {n_params / 1e6:.1f}M params, torch threads "
              f"{torch.get_num_threads()}, best of {args.repeats} interleaved rounds; shared machine: compare ratios")
        ref = "lm-eval HFLM batch 32"
        for data_name, pairs in datasets(args.pairs).items():
            runners = {ref: lm_eval_runner(model_dir, pairs),
                       "growmerge score_pairs": our_runner(model_dir, pairs, None, True),
                       "growmerge totals, shared": our_runner(model_dir, pairs, True, False),
                       "growmerge totals, unshared": our_runner(model_dir, pairs, False, False)}
            wall, cpu, scores = best_times(runners, args.repeats)
            exact = float64_scores(model_dir, pairs)
            lm_correct = [int(np.argmax([g, b]) == 0) for g, b in scores[ref]]
            print(f"\n[{data_name}] {len(pairs)} pairs")
            print(f"  {ref:28s}: {len(pairs) / wall[ref]:7.1f} pairs/s wall ({wall[ref]:.2f} s, cpu {cpu[ref]:.2f} s)"
                  f"  max |gap diff| vs float64 {max_gap_diff(scores[ref], exact):.1e}")
            for name in list(runners)[1:]:
                same = [int(g >= b) for g, b in scores[name]] == lm_correct
                print(f"  {name:28s}: {len(pairs) / wall[name]:7.1f} pairs/s wall  ratio {wall[ref] / wall[name]:4.2f}x "
                      f"wall, {cpu[ref] / cpu[name]:4.2f}x cpu  decisions identical: {same}  max |gap diff| "
                      f"{max_gap_diff(scores[name], scores[ref]):.1e} (vs float64 {max_gap_diff(scores[name], exact):.1e})")


if __name__ == "__main__":
    main()
