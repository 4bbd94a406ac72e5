"""The plan: a study config → an ordered DAG of typed stages (paper §3, Fig. 1).

    data → pairs
    seed_code → seed → base_1x ──────────────┬─► 1x_<L>, 1x_multi ─────────┐
                  └─► seed_2x → base_2x ─────┼─► 2x_<L>, 2x_multi ─────────┤
                       base_1x_cloned ───────┴─► 1x_cloned_<L>, …_multi ───┤
    opt-in:            base_1x_deep (base_1x deepened) ─► 1x_deep_<L>, …_multi ─┤
                       scratch_init (random init) ──────► scratch_<L>, …_multi ─┤
                                                   merge_<scale> ◄─────────┤
                                                   eval_<model>, eval_matched, vectors_<scale>, report

Stages are listed in an order that respects their dependencies, so a runner may walk the list.
Each stage's fingerprint hashes its own fields and its parents' fingerprints.
"""

from __future__ import annotations

from growmerge.errors import GrowmergeError
from growmerge.names import CODE, DEPTH_SCALE, ENGLISH, SCRATCH_SCALE, base_of
from growmerge.study.spec import StudyConfig
from growmerge.study.stages import (CloneStage, ControlStage, DataStage, DeepenStage, EvalMergesStage, EvalStage,
                                    InitStage, MatchedStage, MergeStage, PairsStage, ReferenceStage, ReportStage,
                                    SimilarityStage, Stage, TrainStage, VectorsStage, fingerprint)


def build_plan(cfg: StudyConfig) -> list[Stage]:
    langs = list(cfg.data.languages)
    tasks = cfg.eval.tasks
    epochs = cfg.phase_epochs()  # per-language epochs of adapt / multi
    stages: list[Stage] = [DataStage(id="data", data=cfg.data, epochs=epochs),
                           PairsStage(id="pairs", deps=["data"], languages=langs + [ENGLISH], tasks=tasks, seed=cfg.seed)]

    def train(name, init, mixture, phase, role, group, scale, languages):
        deps = ["data"] + ([init] if any(s.id == init for s in stages) else [])
        stages.append(TrainStage(id=name, deps=deps, init=init, mixture=mixture, phase=phase, role=role, group=group,
                                 scale=scale, languages=languages, spec=cfg.train_spec(phase),
                                 epochs={k: v for k, v in epochs.get(phase, {}).items() if k in languages}))

    def clone(name, src, scale):
        stages.append(CloneStage(id=name, deps=[src], src=src, factor=cfg.model.factor, snr_db=cfg.model.snr_db,
                                 seed=cfg.seed, scale=scale))

    train("seed_code", cfg.model.init, "seed_code", "seed_code", "seed", "seed", None, [CODE])
    train("seed", "seed_code", "seed_mixed", "seed_mixed", "seed", "seed", None, [CODE, ENGLISH])
    train("base_1x", "seed", "base_en", "base", "base", "base_1x", "1x", [ENGLISH])
    if "2x" in cfg.scales:
        clone("seed_2x", "seed", None)
        train("base_2x", "seed_2x", "base_en", "base", "base", "base_2x", "2x", [ENGLISH])
    if "1x_cloned" in cfg.scales:
        clone("base_1x_cloned", "base_1x", "1x_cloned")
    stages += optional_bases(cfg)

    adapted: dict[str, dict[str, str]] = {s: {} for s in cfg.scales}
    for scale in cfg.scales:
        for lang in langs:
            adapted[scale][lang] = f"{scale}_{lang}"
            train(f"{scale}_{lang}", base_of(scale), f"adapt_{lang}", "adapt", "adapt", scale, scale, [lang])
        if cfg.multilingual:
            train(f"{scale}_multi", base_of(scale), "multi", "multi", "adapt", f"{scale}_multi", scale, langs)

    merged: list[MergeStage] = []
    if cfg.merge.methods and len(langs) >= 2:
        for scale in cfg.merge.scales:
            if scale in cfg.scales:
                merged.append(MergeStage(id=f"merge_{scale}", deps=[base_of(scale), *adapted[scale].values()],
                                         scale=scale, base=base_of(scale), models=adapted[scale],
                                         methods=cfg.merge.methods, sizes=cfg.merge.sizes, dtype=cfg.merge.dtype,
                                         parameters=cfg.merge.parameters, compat=cfg.merge.compat, seed=cfg.seed))
    stages += merged

    reference = "base_2x" if "2x" in cfg.scales else "base_1x"
    for ots in cfg.eval.off_the_shelf:
        stages.append(ReferenceStage(id=ots.name, source=ots.source))

    scoring = {"tasks": tasks, "reference": reference, "seed": cfg.seed}
    eval_deps = ["pairs", reference]
    evaluated = [s for s in stages if isinstance(s, ReferenceStage) or (isinstance(s, TrainStage) and s.role != "seed")]
    for s in evaluated:
        every_lang = isinstance(s, ReferenceStage) or s.role == "base"
        max_pairs = next((o.max_pairs for o in cfg.eval.off_the_shelf if o.name == s.id), None)
        stages.append(EvalStage(id=f"eval_{s.id}", deps=[s.id, *eval_deps], target=s.id, max_pairs=max_pairs,
                                languages=[*(langs if every_lang else s.languages), ENGLISH], **scoring))
    for m in merged:
        stages.append(EvalMergesStage(id=f"eval_{m.id}", deps=[m.id, *eval_deps], scale=m.scale,
                                      english=cfg.eval.merges_on_english, max_pairs=cfg.eval.merge_max_pairs,
                                      **scoring))

    # The unigram control of every language's minimal-pair sets (evaluate/controls.py).
    stages.append(ControlStage(id="control_unigram", deps=list(eval_deps), languages=[*langs, ENGLISH], **scoring))
    adapt_runs = [s.id for s in stages if isinstance(s, TrainStage) and s.role == "adapt" and s.group in cfg.scales]
    if cfg.eval.checkpoints == "matched" and len(cfg.scales) > 1:
        stages.append(MatchedStage(id="eval_matched", deps=[*adapt_runs, *eval_deps], scales=cfg.scales, **scoring))
    for scale in cfg.merge.scales:
        if scale in cfg.scales and len(langs) >= 2:
            stages.append(VectorsStage(id=f"vectors_{scale}", deps=[base_of(scale), *adapted[scale].values()],
                                       scale=scale, base=base_of(scale), models=adapted[scale]))
            if cfg.analysis.predictors:
                stages.append(SimilarityStage(id=f"similarity_{scale}", deps=[*adapted[scale].values(), "pairs"],
                                              scale=scale, models=adapted[scale],
                                              max_sentences=cfg.analysis.max_sentences))
    stages.append(ReportStage(id="report", deps=[s.id for s in stages]))
    return fingerprint_plan(stages)


def optional_bases(cfg: StudyConfig) -> list[Stage]:
    """The bases of the opt-in arms: base_1x deepened (no further English), and the random
    initialisation every from-scratch language model starts from (same adapt/multi budgets as the
    other arms; the shared init is what makes their task vectors mergeable at all)."""
    out: list[Stage] = []
    if DEPTH_SCALE in cfg.scales:
        out.append(DeepenStage(id=base_of(DEPTH_SCALE), deps=["base_1x"], src="base_1x", depth=cfg.model.depth,
                               scale=DEPTH_SCALE))
    if SCRATCH_SCALE in cfg.scales:
        out.append(InitStage(id=base_of(SCRATCH_SCALE), deps=["data"], init=cfg.model.init, seed=cfg.seed,
                             scale=SCRATCH_SCALE))
    return out


def fingerprint_plan(stages: list[Stage]) -> list[Stage]:
    ids = [s.id for s in stages]
    twice = next((i for i in ids if ids.count(i) > 1), None)
    if twice:  # e.g. an off-the-shelf model named like a trained one: both would write models/<id>
        raise GrowmergeError(f"two stages of this study are named {twice!r}: rename the off-the-shelf model")
    done: dict[str, str] = {}
    for s in stages:
        missing = [d for d in s.deps if d not in done]
        if missing:  # a bug in build_plan, not a user error
            raise AssertionError(f"stage {s.id} depends on {missing} which come later or not at all")
        s.fingerprint = done[s.id] = fingerprint(s, [done[d] for d in s.deps])
    return stages
