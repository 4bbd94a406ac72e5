"""The study's vocabulary, defined once: languages with a special role, scales, phases, model roles.

A *scale* is one of the paper's three arms of adaptation: the 1× base, the 1× base HyperCloned
without further English training (``1x_cloned``), and the 2× base (cloned seed + English). Every
per-language model, merge and compute-matched comparison belongs to exactly one scale.
"""

from __future__ import annotations

ENGLISH = "en"  # the replay language and the language of every model's forgetting check
CODE = "code"  # the seed's first pretraining data, replayed during adaptation

PAPER_SCALES = ("1x", "1x_cloned", "2x")  # the paper's three arms: what a study runs by default
# Opt-in arms beyond the paper (issue 16): the 1x base deepened ×k without further English training
# (depth growth, grow/depth.py), and per-language models trained from random initialisation (the
# companion paper's from-scratch setting). Trained, merged, evaluated and compute-matched like the others.
DEPTH_SCALE, SCRATCH_SCALE = "1x_deep", "scratch"
SCALES = PAPER_SCALES + (DEPTH_SCALE, SCRATCH_SCALE)
MULTI_SUFFIX = "_multi"  # the joint multilingual model of a scale: "<scale>_multi"
MULTI_SCALES = tuple(s + MULTI_SUFFIX for s in SCALES)

# Training phases, in the order a study runs them (each has its own token budget in the YAML).
PHASES = ("seed_code", "seed_mixed", "base", "adapt", "multi")

# The kinds of study stage (growmerge.study.stages; the cluster section's per-kind resources).
STAGE_KINDS = ("data", "pairs", "reference", "train", "clone", "merge", "eval", "eval_merges", "matched", "vectors",
               "report", "similarity", "control", "deepen", "init")

# What a model is in the lineage (the `kind` of results.sqlite's models table).
MODEL_KINDS = ("seed", "base", "adapt", "clone", "merge", "reference", "control")  # control: evaluate/controls.py

# The labels the report groups models by: a scale's per-language runs, its multilingual model,
# the two English bases, the seed and the off-the-shelf reference.
REFERENCE = "smollm2"
GROUPS = SCALES + MULTI_SCALES + ("base_1x", "base_2x", "seed", REFERENCE)


def base_of(scale: str) -> str:
    """The English base a scale adapts from (and that task-vector merges subtract)."""
    return {"1x": "base_1x", "1x_cloned": "base_1x_cloned", "2x": "base_2x", DEPTH_SCALE: "base_1x_deep",
            SCRATCH_SCALE: "scratch_init"}[scale]  # scratch: the shared random initialisation
